"""Projected gradient descent (Madry et al. 2018) in L∞ and L2 on [0,1] images, FGSM as its one-step
case, target choices for D_rand / D_det (Ilyas et al. 2019, Sec. 3.2), and PGD against the smoothed
classifier (Salman et al. 2019, "Provably Robust Deep Learning via Adversarially Trained Smoothed
Classifiers", Sec. 3.1).

PGD maximises the loss L(f(x + δ), y) over the ball ‖δ‖ ≤ ε (Madry et al. eq. 2.1), or, targeted,
minimises L(f(x + δ), t):

    δ₀ = random start (none / uniform in the ball / on its sphere)
    δ_{k+1} = Π_{‖δ‖≤ε, x+δ∈[0,1]} (δ_k ± α · s(∇_δ L))

with s = sign (L∞: fast gradient sign step) or ∇/‖∇‖₂ per sample (L2: normalised gradient step).

Guarantees, after every step: ‖δ‖ ≤ ε (up to float rounding) and x + δ ∈ [0,1].
- L∞: the iterate is clamped to [max(x−ε, 0), min(x+ε, 1)] (the intersection of the two sets).
- L2: δ is scaled to norm ≤ ε, then x + δ clamped to [0,1]; clamping only shrinks |δ_i|, so it
  never leaves the ball.

Speed: gradients are taken with respect to the input only (``torch.autograd.grad``), never the
model's parameters, and the loss and logits of iterate k come from the forward pass that computes
the gradient at step k+1, so tracking the best iterate or streaming per-step numbers costs no extra
forward pass per step, only one at the very end. On the CPU the forward/backward pass runs in
sub-batches whose activations stay in cache, when the model treats each image on its own (eval mode,
known per-sample layers): the same gradients, about twice as fast at batch 1,000
(``engine/attack_gradients.py``, bench/bench_pgd.py).

Entry points:
- :func:`pgd` (the foundation's signature), :func:`pgd_steps` (the same as a stream of steps) and
  :func:`fgsm`: adversarial images.
- :func:`choose_targets`: the target class of each image per target mode.
- :class:`SmoothedSoftClassifier`: log of the Monte-Carlo mean softmax under Gaussian noise, the
  differentiable surrogate of Cohen et al.'s smoothed classifier that PGD attacks.

An attack as the app and the CLI configure it (:class:`AttackConfig`, :func:`attack`, the streaming
:func:`attack_job`, :func:`judge`) is in ``engine/attack_jobs.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attack_gradients import gradient_model, gradient_sub_batch, loss_and_gradient, loss_only
from .checks import check_count, check_images, check_labels, check_nonnegative, check_positive, finite_outputs, \
    model_classes, model_input_shape

NORMS = ("linf", "l2")
RANDOM_STARTS = ("none", "uniform", "sphere")
LOSSES = ("ce", "cw")
KEEPS = ("best", "last")
# untargeted; a given class; a random class other than y (D_rand); (y + 1) mod C (D_det)
TARGET_MODES = ("untargeted", "class", "random", "next")
_TINY = 1e-12


# ---------------------------------------------------------------- geometry

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
    """A random δ: uniform in the ε-ball, or on its sphere (L2: Gaussian direction × ε·U^(1/d);
    L∞ sphere: a random vertex of the cube), then made to keep x + δ in [0,1]."""
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


# ---------------------------------------------------------------- losses and targets

def margin_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Carlini–Wagner margin max_{j≠c} z_j − z_c per sample (high = far from class c;
    Carlini & Wagner 2017, objective f₆ without the confidence clamp)."""
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


def choose_targets(labels: torch.Tensor, num_classes: int, mode: str,
                   generator: torch.Generator | None = None, *, target_class: int | None = None) -> torch.Tensor:
    """The target class t of every image for a targeted attack (Ilyas et al. 2019, Sec. 3.2):

    - ``"random"`` (D_rand): t uniform over the C − 1 classes other than y, so never t = y;
    - ``"next"`` (D_det): t = (y + 1) mod C, a deterministic relabelling;
    - ``"class"``: t = ``target_class`` for every image.

    ``"untargeted"`` has no target: asking for one is an error.
    """
    if num_classes < 2:
        raise ValueError(f"a targeted attack needs at least 2 classes, got {num_classes}")
    if mode == "random":
        device = generator.device if generator is not None else labels.device
        offsets = torch.randint(1, num_classes, labels.shape, generator=generator, device=device)
        return (labels + offsets.to(labels.device)) % num_classes
    if mode == "next":
        return (labels + 1) % num_classes
    if mode == "class":
        if target_class is None or not 0 <= int(target_class) < num_classes:
            raise ValueError(f"target class must be one of 0..{num_classes - 1}, got {target_class}")
        return torch.full_like(labels, int(target_class))
    if mode == "untargeted":
        raise ValueError("an untargeted attack has no target classes")
    raise ValueError(f"unknown target mode {mode!r}: choose one of {', '.join(TARGET_MODES)}")


# ---------------------------------------------------------------- the smoothed classifier

class SmoothedSoftClassifier(nn.Module):
    """The "soft" smoothed classifier G(x) = E_η[softmax f(x + η)], η ~ N(0, σ²I), estimated with
    ``samples`` Monte-Carlo draws; ``forward`` returns log G(x), so a cross-entropy on it is
    −log G(x)_y, the loss Salman et al. 2019 (Sec. 3.1, eq. (S)) maximise with PGD (expectation over
    transformation). Cohen et al.'s hard smoothed classifier g(x) = argmax_c P[f(x + η) = c] is not
    differentiable; attacking G is the strongest practical attack on it. Within the certified L2
    radius no perturbation can change g, so success there means the Monte-Carlo estimate erred.

    ``resample=True`` draws fresh noise at every call (every PGD step sees new noise); ``False``
    draws the noise once per batch shape and reuses it (Salman et al.'s fixed-noise variant: a
    deterministic objective that optimises well but can overfit to those draws).
    Memory: each call runs the base model on N·samples images.
    """

    def __init__(self, base: nn.Module, sigma: float, samples: int = 16, *, resample: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"σ must be a positive number, got {sigma}")
        if samples < 1:
            raise ValueError(f"the smoothed attack needs at least 1 noise sample, got {samples}")
        self.base, self.sigma, self.samples = base, float(sigma), int(samples)
        self.resample, self.generator = resample, generator
        self.meta = getattr(base, "meta", None)
        self._fixed: torch.Tensor | None = None

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.samples, *x.shape)
        if not self.resample and self._fixed is not None and self._fixed.shape == shape:
            return self._fixed
        noise = torch.randn(shape, generator=self.generator, device=x.device, dtype=x.dtype) * self.sigma
        if not self.resample:
            self._fixed = noise
        return noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = (x.unsqueeze(0) + self._noise(x)).flatten(0, 1)  # no clamp: Cohen et al. add raw noise
        log_probs = F.log_softmax(self.base(noisy), dim=1).view(self.samples, x.shape[0], -1)
        # log mean softmax, computed stably as logsumexp − log m
        return torch.logsumexp(log_probs, dim=0) - math.log(self.samples)


# ---------------------------------------------------------------- the iteration

def check_arguments(norm: str, eps: float, steps: int, start: str, loss: str) -> None:
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


def check_attack_inputs(model, images: torch.Tensor, labels, *, eps: float, step_size: float, steps: int,
                        restarts: int, min_steps: int = 1, name: str = "the images") -> None:
    """What every PGD entry point checks before its first gradient: images finite, in [0, 1] and of
    the model's shape; one class index in range per image; ε finite and ≥ 0; a step size finite and
    above 0 (0 only when ε = 0, where nothing moves; a negative one would descend the loss);
    at least ``min_steps`` steps and one restart."""
    check_images(images, model_input_shape(model), name)
    if images.dim() != 4:
        raise ValueError(f"{name} must be a batch (N, C, H, W), got shape {tuple(images.shape)}")
    labels = torch.as_tensor(labels)
    if labels.numel() != len(images):
        raise ValueError(f"{len(images)} images but {labels.numel()} labels")
    classes = model_classes(model)
    if classes is not None:
        check_labels(labels, classes, "class")
    eps = check_nonnegative(eps, "ε")
    if eps == 0:
        check_nonnegative(step_size, "the step size")
    else:
        check_positive(step_size, "the step size")
    check_count(steps, "steps", minimum=min_steps)
    check_count(restarts, "restarts")


def _start_mode(random_start_arg) -> str:
    if random_start_arg is True:
        return "uniform"
    if random_start_arg in (False, None):
        return "none"
    return str(random_start_arg)


@dataclass
class Iterate:
    restart: int
    step: int
    adversarial: torch.Tensor  # detached; never modified in place afterwards
    logits: torch.Tensor | None  # None only for an unevaluated final iterate
    loss: torch.Tensor | None


def iterates(model, images: torch.Tensor, classes: torch.Tensor, *, norm: str, eps: float, step_size: float,
              steps: int, start: str, restarts: int, targeted: bool, loss: str,
              generator: torch.Generator | None, evaluate_last: bool,
              stop_at_success: bool = False) -> Iterator[Iterate]:
    """Every PGD iterate of every restart with its logits and loss: iterate k of a restart is yielded
    after the forward pass that also gives the gradient for step k+1, so evaluating it is free; the
    final iterate costs one forward pass (skipped when ``evaluate_last`` is False).

    ``stop_at_success``: an image stops moving (and costs nothing more) in this restart from its first
    successful iterate on; later iterates repeat that one with its numbers. With the best iterate
    kept, success is final anyway, so robust accuracy comes out the same, only faster.
    """
    sign = -1.0 if targeted else 1.0
    # callers may hold no_grad (e.g. an evaluation loop): loss_and_gradient enables grad mode itself
    objective = functools.partial(attack_loss, loss=loss)
    # on the CPU, forward/backward in sub-batches that stay in cache (the same numbers; see attack_gradients)
    sub_batch = gradient_sub_batch(model, images)
    model = gradient_model(model, images)  # 2×2 max-pooling faster on the CPU (the same numbers; engine/pooling)
    if norm == "linf":  # the feasible box {‖δ‖∞ ≤ ε} ∩ [0,1], as per-pixel bounds
        low, high = (images - eps).clamp_(min=0.0), (images + eps).clamp_(max=1.0)
    for restart in range(restarts):
        adversarial = (images + initial_delta(images, norm, eps, start, generator)).clamp_(0.0, 1.0)
        if norm == "linf":
            adversarial = torch.max(torch.min(adversarial, high), low)
        # the rows still attacked (None: all, the fast path), and their slices of the fixed tensors
        active, x, y = None, images, classes
        if norm == "linf":
            lo, hi = low, high
        moving, logits, losses = adversarial, None, None
        for step in range(steps + 1):
            last = step == steps
            if len(moving) and (not last or evaluate_last):
                if last:
                    part_logits, part_losses = loss_only(model, moving, y, objective, sub_batch)
                else:
                    part_logits, part_losses, grad = loss_and_gradient(model, moving, y, objective, sub_batch)
                if active is None:
                    adversarial, logits, losses = moving, part_logits, part_losses
                else:
                    logits = logits.index_copy(0, active, part_logits)
                    losses = losses.index_copy(0, active, part_losses)
            if last and not evaluate_last:
                yield Iterate(restart, step, adversarial, None, None)
                break
            yield Iterate(restart, step, adversarial, logits, losses)
            if last:
                break
            if not len(moving):
                continue
            if stop_at_success:
                predicted = part_logits.argmax(1)
                going = predicted.ne(y) if targeted else predicted.eq(y)
                if not going.all():
                    active = (torch.arange(len(images), device=images.device) if active is None else active)[going]
                    moving, grad, x, y = moving[going], grad[going], x[going], y[going]
                    if norm == "linf":
                        lo, hi = lo[going], hi[going]
            with torch.no_grad():
                # new tensors each step: the yielded iterate stays valid for the consumer
                if norm == "linf":
                    moved = torch.add(moving, grad.sign_(), alpha=sign * step_size)
                    moving = torch.max(torch.min(moved, hi), lo)
                else:
                    scale = (sign * step_size) / (_per_sample_norm(grad, "l2") + _TINY)
                    delta = torch.addcmul(moving - x, grad, _view(scale, grad))
                    shrink = torch.clamp(eps / (_per_sample_norm(delta, "l2") + _TINY), max=1.0)
                    moving = torch.addcmul(x, delta, _view(shrink, delta)).clamp_(0.0, 1.0)
                if active is None:
                    adversarial = moving
                else:
                    adversarial = adversarial.index_copy(0, active, moving)


class BestKeeper:
    """Per sample, the best iterate seen: a successful one first, then the highest attack loss
    (untargeted) or lowest (targeted)."""

    def __init__(self, classes: torch.Tensor, targeted: bool):
        self.classes, self.targeted = classes, targeted
        self.adversarial = self.logits = self.loss = self.success = None

    def offer(self, adversarial: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
        predicted = logits.argmax(1)
        success = predicted.eq(self.classes) if self.targeted else predicted.ne(self.classes)
        goodness = -loss if self.targeted else loss
        if self.adversarial is None:
            self.adversarial, self.logits, self.loss, self.success = adversarial, logits, loss, success
            self._goodness = goodness
            return
        better = (success & ~self.success) | ((success == self.success) & (goodness > self._goodness))
        self.adversarial = torch.where(_view(better, adversarial), adversarial, self.adversarial)
        self.logits = torch.where(better[:, None], logits, self.logits)
        self.loss = torch.where(better, loss, self.loss)
        self.success = torch.where(better, success, self.success)
        self._goodness = torch.where(better, goodness, self._goodness)


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


# ---------------------------------------------------------------- the foundation's API

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
    """PGD as a stream: yields the state after every step (1..steps) of every restart, with the
    loss and logits of that very iterate (``evaluate_every_step`` is kept for compatibility: the
    numbers come for free from the next step's gradient pass). With ``steps=0`` yields the start.

    ``labels`` are the true classes, or the targets when ``targeted`` (then the loss is minimised).
    Non-finite logits raise NonFiniteOutputError (engine/checks.py).
    """
    check_attack_inputs(model, images, labels, eps=eps, step_size=step_size, steps=steps, restarts=restarts,
                        min_steps=0)
    model = finite_outputs(model)
    start = _start_mode(random_start)
    check_arguments(norm, eps, steps, start, loss)
    for it in iterates(model, images.detach(), labels, norm=norm, eps=eps, step_size=step_size, steps=steps,
                        start=start, restarts=max(1, restarts), targeted=targeted, loss=loss,
                        generator=generator, evaluate_last=True):
        if it.step >= 1 or steps == 0:
            yield PGDStep(it.restart, it.step, steps, it.adversarial, it.loss, it.logits)


def pgd(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf", eps: float,
        step_size: float, steps: int, random_start=True, restarts: int = 1, targeted: bool = False,
        loss: str = "ce", generator: torch.Generator | None = None, keep: str = "last") -> torch.Tensor:
    """PGD adversarial examples in [0,1] (Madry et al. 2018); ``labels`` are the targets when
    ``targeted``. ``random_start``: True / "uniform", "sphere", or False / "none".

    ``keep="last"`` (default, Madry et al.'s PGD): the last iterate of each restart; with restarts the
    best of those per sample (a successful one first, then the better loss). ``keep="best"``: the best
    iterate over all steps and restarts. With one restart and ``keep="last"`` no extra forward pass
    is spent: exactly ``steps`` forward and backward passes. Images must be finite and in [0, 1];
    non-finite logits raise NonFiniteOutputError (engine/checks.py) rather than steer the attack.
    """
    check_attack_inputs(model, images, labels, eps=eps, step_size=step_size, steps=steps, restarts=restarts)
    model = finite_outputs(model)
    start = _start_mode(random_start)
    check_arguments(norm, eps, steps, start, loss)
    if keep not in KEEPS:
        raise ValueError(f"unknown iterate choice {keep!r}: choose one of {', '.join(KEEPS)}")
    images = images.detach()
    restarts = max(1, restarts)
    must_compare = keep == "best" or restarts > 1
    keeper = BestKeeper(labels, targeted)
    final = images.clone()
    for it in iterates(model, images, labels, norm=norm, eps=eps, step_size=step_size, steps=steps, start=start,
                        restarts=restarts, targeted=targeted, loss=loss, generator=generator,
                        evaluate_last=must_compare):
        if not must_compare:
            final = it.adversarial
        elif keep == "best" or it.step == steps:
            keeper.offer(it.adversarial, it.logits, it.loss)
    return keeper.adversarial if must_compare else final


def fgsm(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf", eps: float,
         targeted: bool = False, loss: str = "ce") -> torch.Tensor:
    """Fast gradient (sign) method (Goodfellow et al. 2015): one PGD step of size ε from δ = 0,
    x + ε·sign(∇ₓL) in L∞ (FGSM), x + ε·∇ₓL/‖∇ₓL‖₂ in L2 (FGM), clamped to [0,1]."""
    return pgd(model, images, labels, norm=norm, eps=eps, step_size=eps, steps=1, random_start=False,
               targeted=targeted, loss=loss, keep="last")
