"""The Attack tab's status lines, built from the run's settings and the engine's events: what is being
attacked and how, each step's loss and verdict, and the final verdict of the source model (for a
smoothed source, CERTIFY's answer on the adversarial image: abstaining is not being fooled)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from robustlens.engine.attack_judge import AttackOutcome, AttackParams, SmoothedVerdict
from robustlens.engine.smoothing import ABSTAIN

from .. import style
from ..eps_control import NORM_NAMES, NORM_SUBSCRIPTS
from .attack_table import NBSP

RANDOM_STARTS = (("none", "none"), ("uniform", "uniform"), ("sphere", "sphere"))
TARGETS = (("untargeted", "untargeted"), ("class", "a chosen class"),
           ("random", "random other (D_rand)"), ("next", "(y + 1) mod C (D_det)"))
LOSSES = (("ce", "CE"), ("cw", "CW"))

ClassName = Callable[[int | None], str]


def _colored(word: str, color) -> str:
    return f"<span style='color:{color.name()}'><b>{word}</b></span>"


def settings_text(params: AttackParams) -> str:
    """The attack's settings on one line: norm, ε, steps and step size, restarts, start, target, loss."""
    step = f"{params.step_size:g}" if params.step_size is not None else "2.5ε/steps"
    target = dict(TARGETS)[params.target]
    return (f"{NORM_NAMES[params.norm]} ε = {params.eps:.4g}, {params.steps} steps of {step}, "
            f"{params.restarts} restart(s), start {params.random_start}, {target}, {dict(LOSSES)[params.loss]}")


def step_text(step, params: AttackParams, source: str, class_name: ClassName) -> str:
    """A running attack's latest step: loss, the true (and target) class's probability, the prediction,
    the perturbation's norm, and whether the source is fooled yet."""
    restart = f"restart {step.restart + 1}/{params.restarts}, " if params.restarts > 1 else ""
    verdict = _colored("fooled", style.WRONG) if bool(step.success[0]) else "not fooled yet"
    target = ""
    if step.target_probability is not None:
        target = f" · P(target) = {float(step.target_probability[0]):.3f}"
    return (f"Attacking <b>{source}</b> · {restart}step {step.step}/{step.steps}<br>"
            f"loss {float(step.loss[0]):.3f} · P(true) = {float(step.true_probability[0]):.3f}{target}<br>"
            f"predicted <b>{class_name(int(step.predicted[0]))}</b> · ‖δ‖{NORM_SUBSCRIPTS[params.norm]} = "
            f"{float(step.perturbation_norm[0]):.4f} · {verdict}")


def smoothed_verdict(verdict: SmoothedVerdict, outcome: AttackOutcome, class_name: ClassName) -> str:
    """The smoothed source's answer on the adversarial image, as g's CERTIFY row says it."""
    if verdict.adversarial_prediction == ABSTAIN:
        return "<b>abstained</b> (not fooled): CERTIFY gives no class on the adversarial image; EOT"
    fooled = outcome.label_known and verdict.adversarial_prediction != outcome.label
    word = _colored("fooled", style.WRONG) if fooled else _colored("not fooled", style.CORRECT)
    return f"{word}: CERTIFY says <b>{class_name(verdict.adversarial_prediction)}</b>; EOT"


def outcome_text(outcome: AttackOutcome, params: AttackParams, source: str, class_name: ClassName) -> str:
    """The finished attack: whether the source was fooled (or reached the target), its confidence, and
    the perturbation's norm."""
    predicted = int(np.argmax(outcome.source_probability))
    if outcome.target is not None:
        verdict = (f"reached the target <b>{class_name(outcome.target)}</b>" if outcome.success
                   else f"did not reach the target {class_name(outcome.target)}")
    elif params.smoothed and params.source in outcome.smoothed:
        verdict = smoothed_verdict(outcome.smoothed[params.source], outcome, class_name)
    elif outcome.success:
        verdict = f"{_colored('fooled', style.WRONG)}: now <b>{class_name(predicted)}</b>"
    else:
        verdict = f"{_colored('not fooled', style.CORRECT)}: still <b>{class_name(predicted)}</b>"
    return (f"Done: <b>{source}</b> {verdict} ({100 * float(outcome.source_probability[predicted]):.0f}%) · "
            f"‖δ‖{NORM_SUBSCRIPTS[outcome.norm]}{NBSP}={NBSP}{outcome.norm_value:.4f}, the best of "
            f"{params.restarts * (params.steps + 1)} iterates.")
