"""The Attack tab's job: PGD on one image, then every loaded model judges the clean and the adversarial
image, and the smoothed classifier g of every noise model answers with CERTIFY (Cohen et al. 2019,
Alg. 1) on both, so the table shows whether the example transfers (Ilyas et al. 2019, Sec. 5) and
whether it left g's certified L2 ball.

:func:`attack_and_judge_job` ``(cache, request)`` has the shape of every GUI job (``app/panels/base.py``):
``cache`` is the engine thread's :class:`~robustlens.engine.model_cache.ModelCache`, ``request`` an
:class:`AttackRequest` of plain values captured when the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .attack_jobs import AttackConfig, attack_job, inference_mode_off, judge
from .attacks import perturbation_norm
from .jobs import Finished, Progress

# CERTIFY's settings for the smoothed classifiers' verdicts on the clean and the adversarial image
SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, SMOOTH_SEED = 100, 1000, 0.001, 0


@dataclass(frozen=True)
class AttackParams:
    """What one attack was asked for (the Attack tab's controls). ``step_size`` None means
    2.5·ε/steps (Madry et al.)."""
    source: str                       # model key
    smoothed: bool                    # attack the smoothed classifier of ``source`` (a noise model)
    samples: int                      # noise draws per step for the smoothed attack
    norm: str
    eps: float
    step_size: float | None
    steps: int
    random_start: str
    restarts: int
    target: str
    target_class: int | None
    loss: str
    seed: int = 0

    def config(self, sigma: float | None) -> AttackConfig:
        """The engine's attack configuration; ``sigma``: the source's training noise (smoothed attack)."""
        return AttackConfig(norm=self.norm, eps=float(self.eps), step_size=self.step_size, steps=int(self.steps),
                            random_start=self.random_start, restarts=int(self.restarts), target=self.target,
                            target_class=self.target_class if self.target == "class" else None, loss=self.loss,
                            smoothing_sigma=sigma if self.smoothed else None, smoothing_samples=int(self.samples),
                            seed=self.seed).validate()


@dataclass(frozen=True)
class AttackRequest:
    """One run of the Attack tab: ``params`` on ``image`` ((1, C, H, W) or (C, H, W), [0,1]) of true
    class ``label`` (None for a user's file: the source's clean answer stands in), judged by the models
    ``judge_keys``; the smoothed classifier of every model in ``smooth_keys`` (noise models) certifies."""
    params: AttackParams
    image: Any
    label: int | None
    judge_keys: tuple[str, ...]
    smooth_keys: tuple[str, ...]


@dataclass
class SmoothedVerdict:
    """CERTIFY's answers for the smoothed classifier g of one noise model, clean and adversarial."""
    sigma: float
    clean_prediction: int
    clean_radius: float
    clean_pA: float
    adversarial_prediction: int
    adversarial_radius: float
    adversarial_pA: float


@dataclass
class AttackOutcome:
    """An attack and every loaded model's verdict, ready to draw (numbers and numpy arrays only)."""
    adversarial: np.ndarray            # (1, C, H, W)
    perturbation: np.ndarray           # (1, C, H, W): adversarial − original
    norm: str
    eps: float
    norm_value: float                  # ‖δ‖ in the attack's norm
    l2_value: float                    # ‖δ‖₂ (what the smoothed classifiers' certificates speak of)
    label: int                         # the true class, or the source's clean prediction for a file
    label_known: bool
    target: int | None
    success: bool                      # on the attacked classifier
    source_probability: np.ndarray     # the attacked classifier's probabilities on the adversarial image
    clean_probs: dict[str, np.ndarray] = field(default_factory=dict)        # model key -> (classes,)
    adversarial_probs: dict[str, np.ndarray] = field(default_factory=dict)
    smoothed: dict[str, SmoothedVerdict] = field(default_factory=dict)      # noise model key -> verdict


def attack_and_judge_job(cache, request: AttackRequest):
    """The streaming PGD job of :func:`~robustlens.engine.attack_jobs.attack_job` (its Progress, Partial
    and Snapshot events), then the clean and adversarial predictions of every judge and CERTIFY for the
    smoothed classifier of every noise model. Ends with ``Finished(AttackOutcome)``."""
    params = request.params

    def run(cancel):
        source = cache.model(params.source)
        judges = cache.models(request.judge_keys)
        x = torch.as_tensor(request.image, dtype=torch.float32)
        x = x[None] if x.dim() == 3 else x
        label, label_known = request.label, request.label is not None
        if label is None:  # a user's file: attack the class the source model sees
            label = int(judge({"source": source}, x)["source"].predicted[0])
        sigma = getattr(source.meta, "sigma", None) if params.smoothed else None
        if params.smoothed and sigma is None:
            raise ValueError(f"{params.source} was not trained with Gaussian noise: it has no smoothed classifier")
        config = params.config(sigma)
        result = None
        for event in inference_mode_off(attack_job(source, x, torch.tensor([label]), config, judges=judges)(cancel)):
            if isinstance(event, Finished):
                result = event.result
                break
            yield event
        clean = judge(judges, result.original)
        delta = result.perturbation
        outcome = AttackOutcome(
            adversarial=result.adversarial.numpy(), perturbation=delta.numpy(), norm=config.norm, eps=config.eps,
            norm_value=float(result.perturbation_norm[0]), l2_value=float(perturbation_norm(delta, "l2")[0]),
            label=label, label_known=label_known,
            target=None if result.targets is None else int(result.targets[0]), success=bool(result.success[0]),
            source_probability=result.probabilities[0].numpy(),
            clean_probs={k: v.probabilities[0].numpy() for k, v in clean.items()},
            adversarial_probs={k: v.probabilities[0].numpy() for k, v in result.judgments.items()})
        keys = request.smooth_keys
        for i, key in enumerate(keys):
            cancel.check()
            yield Progress(i, len(keys), f"smoothed classifier of {key.split('/')[-1]}: CERTIFY, n = {SMOOTH_N:,}")
            smooth = cache.smooth(key)
            before = smooth.certify_detailed(result.original, SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, generator=SMOOTH_SEED)
            cancel.check()
            after = smooth.certify_detailed(result.adversarial, SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA,
                                            generator=SMOOTH_SEED)
            outcome.smoothed[key] = SmoothedVerdict(smooth.sigma, before.prediction, before.radius, before.pA_lower,
                                                    after.prediction, after.radius, after.pA_lower)
        yield Finished(outcome)

    return run
