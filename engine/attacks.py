"""Projected gradient descent (Madry et al. 2018) in L∞ and L2, on [0,1] images.

Guarantees, after every step: ‖δ‖ ≤ ε (up to float rounding) and x + δ ∈ [0,1].
- L∞: step α·sign(∇), project by clamping δ to [−ε, ε].
- L2: step α·∇/‖∇‖₂ per sample, project by scaling δ to norm ≤ ε.
Clamping x + δ to [0,1] afterwards only shrinks |δ_i|, so it never leaves the ball.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

NORMS = ("linf", "l2")
RANDOM_STARTS = ("none", "uniform", "sphere")
LOSSES = ("ce", "cw")
_TINY = 1e-12


def _per_sample_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    flat = t.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """‖δ‖ per sample in the given norm."""
    return _per_sample_norm(delta, norm)


def project(delta: torch.Tensor, images: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project δ onto {‖δ‖ ≤ ε} ∩ {x + δ ∈ [0,1]}."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = _per_sample_norm(delta, "l2")
        delta = delta * _view(torch.clamp(eps / (norms + _TINY), max=1.0), delta)
    return (images + delta).clamp(0.0, 1.0) - images


def initial_delta(images: torch.Tensor, norm: str, eps: float, mode: str = "uniform",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random δ: uniform in the ε-ball, or on its sphere (L2: Gaussian direction × ε·U^(1/d))."""
    if mode == "none" or eps == 0:
        return torch.zeros_like(images)
    shape, device = images.shape, images.device
    if norm == "linf":
        if mode == "sphere":  # a vertex of the cube: every coordinate at ±ε
            delta = eps * (torch.randint(0, 2, shape, generator=generator, device=device) * 2 - 1).to(images.dtype)
        else:
            delta = (torch.rand(shape, generator=generator, device=device) * 2 - 1) * eps
    else:
        direction = torch.randn(shape, generator=generator, device=device)
        direction = direction / _view(_per_sample_norm(direction, "l2") + _TINY, direction)
        if mode == "sphere":
            radius = torch.full((shape[0],), eps, device=device)
        else:
            d = images[0].numel()
            radius = eps * torch.rand(shape[0], generator=generator, device=device) ** (1.0 / d)
        delta = direction * _view(radius, direction)
    return project(delta, images, norm, eps)


def margin_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Carlini–Wagner margin max_{j≠c} z_j − z_c per sample (high = far from class c)."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.scatter(1, classes[:, None], float("-inf")).amax(dim=1)
    return others - own


def attack_loss(logits: torch.Tensor, classes: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-sample loss with respect to ``classes`` (the true label, or the target when targeted).
    The attacker raises it when untargeted and lowers it when targeted."""
    if loss == "ce":
        return F.cross_entropy(logits, classes, reduction="none")
    if loss == "cw":
        return margin_loss(logits, classes)
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


def _check(norm: str, eps: float, steps: int, start: str, loss: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"ε must be a finite non-negative number, got {eps}")
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if start not in RANDOM_STARTS:
        raise ValueError(f"unknown random start {start!r}: choose one of {', '.join(RANDOM_STARTS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


def _start_mode(random_start_arg) -> str:
    if random_start_arg is True:
        return "uniform"
    if random_start_arg in (False, None):
        return "none"
    return str(random_start_arg)


@dataclass
class PGDStep:
    """State after one PGD step of one restart (tensors per sample, on the attack's device)."""
    restart: int
    step: int
    steps: int
    adversarial: torch.Tensor
    loss: torch.Tensor
    logits: torch.Tensor


def pgd_steps(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf", eps: float,
              step_size: float, steps: int, random_start=True, restarts: int = 1, targeted: bool = False,
              loss: str = "ce", generator: torch.Generator | None = None,
              evaluate_every_step: bool = True) -> Iterator[PGDStep]:
    """PGD as a stream: yields the state after every step of every restart.

    With ``evaluate_every_step=False`` the loss and logits after a step are computed only for the last
    step (intermediate states carry those from before the step): one forward pass fewer per step.

    ``labels`` are the true classes, or the targets when ``targeted`` (then the loss is minimised).
    Gradients are taken with respect to the input only, so the model's parameter gradients are untouched.
    """
    start = _start_mode(random_start)
    _check(norm, eps, steps, start, loss)
    images = images.detach()
    sign = -1.0 if targeted else 1.0
    for restart in range(max(1, restarts)):
        delta = initial_delta(images, norm, eps, start, generator)
        for step in range(1, steps + 1):
            delta.requires_grad_(True)
            logits = model(images + delta)
            losses = attack_loss(logits, labels, loss)
            (grad,) = torch.autograd.grad(losses.sum(), delta)
            with torch.no_grad():
                if norm == "linf":
                    direction = grad.sign()
                else:
                    direction = grad / _view(_per_sample_norm(grad, "l2") + _TINY, grad)
                delta = project(delta.detach() + sign * step_size * direction, images, norm, eps)
                if evaluate_every_step or step == steps:
                    logits = model(images + delta)
                    losses = attack_loss(logits, labels, loss)
            yield PGDStep(restart, step, steps, images + delta, losses.detach(), logits.detach())
        if steps == 0:
            with torch.no_grad():
                logits = model(images + delta)
                yield PGDStep(restart, 0, 0, images + delta, attack_loss(logits, labels, loss), logits)


def pgd(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf", eps: float,
        step_size: float, steps: int, random_start=True, restarts: int = 1, targeted: bool = False,
        loss: str = "ce", generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD adversarial examples in [0,1]. With restarts, keeps per sample the best final iterate:
    a successful one first (misclassified / at the target), then the one with the best loss."""
    best, best_score = images.detach().clone(), None
    sign = -1.0 if targeted else 1.0
    final = None
    for state in pgd_steps(model, images, labels, norm=norm, eps=eps, step_size=step_size, steps=steps,
                           random_start=random_start, restarts=restarts, targeted=targeted, loss=loss,
                           generator=generator, evaluate_every_step=False):
        if state.step != state.steps:
            continue
        final = state
        predicted = state.logits.argmax(dim=1)
        success = predicted.eq(labels) if targeted else predicted.ne(labels)
        # success dominates; among equals the better loss wins
        score = success.float() * 1e6 + sign * state.loss.clamp(-1e5, 1e5)
        if best_score is None:
            best, best_score = state.adversarial.detach().clone(), score
        else:
            better = score > best_score
            best[better] = state.adversarial[better]
            best_score = torch.where(better, score, best_score)
    return best if final is not None else images.detach().clone()
