"""An attack as the Attack tab, the CLI and the experiments ask for it: an :class:`AttackConfig`
(norm, ε, steps, restarts, target mode, loss, which iterate to keep, the smoothed classifier) run by
:func:`attack` on a batch, or streamed step by step by :func:`attack_job` (engine/jobs.py events, for
the Attack panel); :func:`judge` gives other models' verdicts on the result (does it transfer?).

The PGD iteration itself, its guarantees (‖δ‖ ≤ ε and x + δ ∈ [0,1] after every step) and the
smoothed classifier's surrogate are in ``engine/attacks.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .checks import check_count, check_images, check_labels, finite_outputs, model_classes, model_input_shape
from .attacks import (KEEPS, TARGET_MODES, BestKeeper, Iterate, SmoothedSoftClassifier, check_arguments,
                      choose_targets, iterates, model_device, perturbation_norm)


# ---------------------------------------------------------------- configuration and results

@dataclass(frozen=True)
class AttackConfig:
    """Everything an attack needs besides the model and the images (what the Attack panel sets).

    ``eps`` and ``step_size`` are in [0,1]-pixel units of the chosen norm; ``step_size=None`` means
    2.5·ε/steps (Madry et al.: enough to cross the ball from a random start). ``keep="best"`` returns
    per sample the best iterate seen over all steps and restarts (a successful one first, then the
    best loss); ``"last"`` the last iterate of each restart (the best of those across restarts).
    ``smoothing_sigma`` set attacks the smoothed classifier (:class:`SmoothedSoftClassifier`) with
    ``smoothing_samples`` noise draws per step. ``stop_at_success`` freezes each image at its first
    successful iterate (faster robust accuracy; the same verdicts with ``keep="best"``).
    """
    norm: str = "linf"
    eps: float = 0.1
    step_size: float | None = None
    steps: int = 20
    random_start: str = "none"
    restarts: int = 1
    target: str = "untargeted"
    target_class: int | None = None
    loss: str = "ce"
    keep: str = "best"
    smoothing_sigma: float | None = None
    smoothing_samples: int = 16
    smoothing_resample: bool = True
    stop_at_success: bool = False
    seed: int | None = 0

    @property
    def targeted(self) -> bool:
        return self.target != "untargeted"

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        return float(self.step_size) if self.step_size is not None else 2.5 * self.eps / max(1, self.steps)

    def validate(self) -> "AttackConfig":
        check_arguments(self.norm, self.eps, self.steps, self.random_start, self.loss)
        check_count(self.steps, "steps")
        if self.step_size is not None and self.eps > 0 and not self.step_size > 0:
            raise ValueError(f"step size must be above 0 (ε = {self.eps:g}), got {self.step_size}")
        if self.step_size is not None and not (self.step_size >= 0 and math.isfinite(self.step_size)):
            raise ValueError(f"step size must be a finite non-negative number, got {self.step_size}")
        if self.restarts < 1:
            raise ValueError(f"restarts must be ≥ 1, got {self.restarts}")
        if self.keep not in KEEPS:
            raise ValueError(f"unknown iterate choice {self.keep!r}: choose one of {', '.join(KEEPS)}")
        if self.target not in TARGET_MODES:
            raise ValueError(f"unknown target mode {self.target!r}: choose one of {', '.join(TARGET_MODES)}")
        if self.target == "class" and self.target_class is None:
            raise ValueError("target mode 'class' needs a target class")
        if self.smoothing_sigma is not None and not (self.smoothing_sigma > 0 and math.isfinite(self.smoothing_sigma)):
            raise ValueError(f"smoothing σ must be a positive number, got {self.smoothing_sigma}")
        if self.smoothing_samples < 1:
            raise ValueError(f"smoothing samples must be ≥ 1, got {self.smoothing_samples}")
        return self


@dataclass
class AttackResult:
    """Outcome of an attack on N images (tensors on the CPU).

    ``logits`` are the attacked classifier's on the adversarial images (for a smoothed attack: log of
    the Monte-Carlo mean softmax, so ``probabilities`` are the smoothed soft scores). ``targets``:
    the target classes (None when untargeted); ``loss`` the attack loss of the returned iterate,
    w.r.t. the target when targeted. ``success``: predicted ≠ label (untargeted) or predicted =
    target (targeted). ``judgments``: name -> :class:`Judgment` of other models on the adversarial
    images, when asked for (:func:`judge`).
    """
    original: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    logits: torch.Tensor
    clean_logits: torch.Tensor
    loss: torch.Tensor
    config: AttackConfig
    judgments: dict = field(default_factory=dict)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.original

    @property
    def perturbation_norm(self) -> torch.Tensor:
        return perturbation_norm(self.perturbation, self.config.norm)

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @property
    def clean_predicted(self) -> torch.Tensor:
        return self.clean_logits.argmax(1)

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(1)

    @property
    def success(self) -> torch.Tensor:
        if self.targets is not None:
            return self.predicted.eq(self.targets)
        return self.predicted.ne(self.labels)


@dataclass(frozen=True)
class Judgment:
    """One model's verdict on a batch of images: predicted classes and softmax probabilities (CPU)."""
    predicted: torch.Tensor
    probabilities: torch.Tensor


@dataclass(frozen=True)
class AttackStep:
    """Per-step numbers of a streaming attack, one entry per image (numpy, ready to plot).

    ``step`` counts gradient steps taken in this ``restart`` (0 = the starting point). ``loss`` is the
    attack loss (w.r.t. the target when targeted); ``true_probability`` the (smoothed, when attacking
    the smoothed classifier) probability of the true class; ``target_probability`` that of the target
    (None when untargeted).
    """
    restart: int
    restarts: int
    step: int
    steps: int
    loss: np.ndarray
    true_probability: np.ndarray
    target_probability: np.ndarray | None
    predicted: np.ndarray
    perturbation_norm: np.ndarray
    success: np.ndarray


# ---------------------------------------------------------------- attack() and the streaming job

def _prepared(model, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
              targets: torch.Tensor | None, generator: torch.Generator | None, device):
    config.validate()
    device = torch.device(device) if device is not None else model_device(model)
    images = images.detach().to(device=device, dtype=torch.float32)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(device)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    check_images(images, model_input_shape(model), "the images")
    if generator is None and config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(config.seed))
    attacked = model
    if config.smoothing_sigma is not None:
        attacked = SmoothedSoftClassifier(model, config.smoothing_sigma, config.smoothing_samples,
                                          resample=config.smoothing_resample, generator=generator)
    if config.targeted:
        if targets is None:
            with torch.no_grad():
                num_classes = model(images[:1]).shape[1] if len(images) else 2
            targets = choose_targets(labels, num_classes, config.target, generator, target_class=config.target_class)
        targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1).to(device)
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
    else:
        targets = None
    classes = model_classes(model)
    if classes is not None:
        check_labels(labels, classes, "label")
        check_labels(targets if targets is not None else [], classes, "target class")
    attacked = finite_outputs(attacked)  # NaN logits stop the attack with a clear error
    return attacked, images, labels, targets, generator


def _stream(attacked, images, labels, targets, config: AttackConfig, generator) -> Iterator[Iterate]:
    return iterates(attacked, images, targets if targets is not None else labels, norm=config.norm,
                     eps=float(config.eps), step_size=config.alpha, steps=int(config.steps),
                     start=config.random_start, restarts=int(config.restarts), targeted=config.targeted,
                     loss=config.loss, generator=generator, evaluate_last=True,
                     stop_at_success=config.stop_at_success)


def _clean_logits(it: Iterate, config: AttackConfig) -> torch.Tensor | None:
    """Without a random start the first iterate is the clean image: its logits come for free."""
    if it.restart == 0 and it.step == 0 and config.random_start == "none" and it.logits is not None:
        return it.logits
    return None


def _result(attacked, images, labels, targets, config, keeper: BestKeeper,
            clean_logits: torch.Tensor | None = None) -> AttackResult:
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = attacked(images)
    cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
    return AttackResult(original=cpu(images), adversarial=cpu(keeper.adversarial), labels=cpu(labels),
                        targets=cpu(targets), logits=cpu(keeper.logits), clean_logits=cpu(clean_logits),
                        loss=cpu(keeper.loss), config=config)


def attack(model, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig | None = None, *,
           targets: torch.Tensor | None = None, generator: torch.Generator | None = None,
           device=None, **overrides) -> AttackResult:
    """Run PGD as ``config`` says (keyword ``overrides`` replace its fields) on a batch of [0,1]
    images (N, C, H, W) or one image (C, H, W). ``targets`` override the target mode's choice.
    A seed in the config (default 0) makes the run reproducible."""
    config = replace(config or AttackConfig(), **overrides)
    attacked, images, labels, targets, generator = _prepared(model, images, labels, config, targets, generator, device)
    keeper = BestKeeper(targets if targets is not None else labels, config.targeted)
    clean_logits = None
    for it in _stream(attacked, images, labels, targets, config, generator):
        if clean_logits is None:
            clean_logits = _clean_logits(it, config)
        if config.keep == "best" or it.step == config.steps:
            keeper.offer(it.adversarial, it.logits, it.loss)
    return _result(attacked, images, labels, targets, config, keeper, clean_logits)


@torch.no_grad()
def judge(models: Mapping[str, nn.Module], images: torch.Tensor, batch_size: int = 500) -> dict[str, Judgment]:
    """Every model's predictions on the same images (e.g. an adversarial example crafted on one of
    them: does it transfer?). Images are moved to each model's device; results come back on the CPU."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    check_images(images, None, "the images")
    check_count(batch_size, "batch size")
    verdicts = {}
    for name, model in models.items():
        device = model_device(model)
        probs = torch.cat([model(images[i:i + batch_size].to(device)).softmax(1).cpu()
                           for i in range(0, len(images), batch_size)])
        verdicts[name] = Judgment(probs.argmax(1), probs)
    return verdicts


def _step_numbers(it: Iterate, images, labels, targets, config: AttackConfig) -> AttackStep:
    probs = it.logits.softmax(1)
    predicted = probs.argmax(1)
    success = predicted.eq(targets) if targets is not None else predicted.ne(labels)
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return AttackStep(
        restart=it.restart, restarts=config.restarts, step=it.step, steps=config.steps,
        loss=numpy(it.loss), true_probability=numpy(probs.gather(1, labels[:, None]).squeeze(1)),
        target_probability=None if targets is None else numpy(probs.gather(1, targets[:, None]).squeeze(1)),
        predicted=numpy(predicted), perturbation_norm=numpy(perturbation_norm(it.adversarial - images, config.norm)),
        success=numpy(success))


def attack_job(model, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig | None = None, *,
               targets: torch.Tensor | None = None, judges: Mapping[str, nn.Module] | None = None,
               snapshot_interval: float = 0.04, snapshot_every: int | None = None, device=None):
    """The attack as a job (engine/jobs.py): ``attack_job(...)(cancel)`` yields, for every iterate
    (step 0 = the start, then after each step, for each restart):

    - ``Progress(done, total, message)`` in gradient steps over all restarts;
    - ``Partial("attack_step", AttackStep)``: loss, true-class (and target) probability, predicted
      class, ‖δ‖ and success per image;
    - ``Snapshot("attack", adversarial, info)``, throttled to at most one per ``snapshot_interval``
      seconds (≈ 25 per second by default) or, when ``snapshot_every`` is set, one per that many
      steps; always for the first and last iterate of each restart. ``adversarial`` is the current
      (N, C, H, W) numpy image; ``info`` holds ``perturbation`` (δ, numpy, same shape), ``restart``,
      ``step``, ``norm``, ``eps`` and ``perturbation_norm``.

    and ends with ``Finished(AttackResult)`` (with ``judgments`` of every model in ``judges`` on the
    adversarial images). Cancellation is checked after every step.
    """
    from .jobs import Finished, Partial, Progress, Snapshot

    config = replace(config or AttackConfig())

    def run(cancel):
        attacked, x, y, t, generator = _prepared(model, images, labels, config, targets, None, device)
        keeper = BestKeeper(t if t is not None else y, config.targeted)
        total = config.restarts * config.steps
        last_snapshot, clean_logits = -math.inf, None
        for it in _stream(attacked, x, y, t, config, generator):
            cancel.check()
            if clean_logits is None:
                clean_logits = _clean_logits(it, config)
            if config.keep == "best" or it.step == config.steps:
                keeper.offer(it.adversarial, it.logits, it.loss)
            done = it.restart * config.steps + it.step
            yield Progress(done, total, f"restart {it.restart + 1}/{config.restarts}, step {it.step}/{config.steps}")
            yield Partial("attack_step", _step_numbers(it, x, y, t, config))
            edge = it.step in (0, config.steps)
            if snapshot_every is not None:
                due = edge or it.step % max(1, snapshot_every) == 0
            else:
                due = edge or time.monotonic() - last_snapshot >= snapshot_interval
            if due:
                last_snapshot = time.monotonic()
                delta = it.adversarial - x
                yield Snapshot("attack", it.adversarial.cpu().numpy(), {
                    "perturbation": delta.cpu().numpy(), "restart": it.restart, "step": it.step,
                    "norm": config.norm, "eps": config.eps,
                    "perturbation_norm": perturbation_norm(delta, config.norm).cpu().numpy()})
        result = _result(attacked, x, y, t, config, keeper, clean_logits)
        if judges:
            cancel.check()
            result.judgments = judge(judges, result.adversarial)
        yield Finished(result)

    return run


def inference_mode_off(events):
    """Advance a job's event iterator with torch's inference mode off at every step.

    Jobs share the engine thread, and a job suspended inside ``torch.inference_mode()`` (a smoothing
    job yields its counts there) leaves the thread in inference mode for whichever job runs next;
    PGD needs gradients, so each of its steps is run under an explicit ``inference_mode(False)``."""
    iterator = iter(events)
    while True:
        with torch.inference_mode(False):
            try:
                event = next(iterator)
            except StopIteration:
                return
        yield event
