"""The Attack tab's final status line says what happened to the attacked classifier: fooled or not
(with its class and confidence), a target reached or not, and for a smoothed source CERTIFY's answer,
where abstaining is not being fooled."""

import numpy as np
import pytest

from robustlens.app.eps_control import NORM_NAMES
from robustlens.app.panels.attack_texts import outcome_text, settings_text
from robustlens.engine.attack_judge import AttackOutcome, AttackParams, SmoothedVerdict
from robustlens.engine.smoothing import ABSTAIN

CLASSES = ("cat", "dog", "bird")


def class_name(index):
    return "abstain" if index == ABSTAIN else CLASSES[index]


def params(**changes):
    base = dict(source="m", smoothed=False, samples=8, norm="l2", eps=1.5, step_size=None, steps=10,
                random_start="none", restarts=2, target="untargeted", target_class=None, loss="ce")
    return AttackParams(**{**base, **changes})


def outcome(success, probabilities, target=None, smoothed=None):
    return AttackOutcome(adversarial=np.zeros((1, 1, 2, 2)), perturbation=np.zeros((1, 1, 2, 2)), norm="l2", eps=1.5,
                         norm_value=1.2345, l2_value=1.2345, label=0, label_known=True, target=target,
                         success=success, source_probability=np.array(probabilities), smoothed=smoothed or {})


def verdict(adversarial_prediction):
    return SmoothedVerdict(sigma=0.25, clean_prediction=0, clean_radius=0.3, clean_pA=0.8,
                           adversarial_prediction=adversarial_prediction, adversarial_radius=0.0, adversarial_pA=0.5)


@pytest.mark.parametrize("case, text, expected", [
    ("fooled", outcome(True, [0.1, 0.7, 0.2]), ["fooled</b>", "now <b>dog</b>", "(70%)"]),
    ("not fooled", outcome(False, [0.6, 0.3, 0.1]), ["not fooled</b>", "still <b>cat</b>", "(60%)"]),
    ("target reached", outcome(True, [0.1, 0.1, 0.8], target=2), ["reached the target <b>bird</b>"]),
    ("target missed", outcome(False, [0.9, 0.05, 0.05], target=2), ["did not reach the target bird"]),
])
def test_the_verdict_on_the_attacked_classifier(case, text, expected):
    line = outcome_text(text, params(), "standard", class_name)
    for part in expected + ["Done: <b>standard</b>", "1.2345", "the best of 22 iterates"]:
        assert part in line, (case, line)


def test_a_smoothed_source_is_judged_by_certify_and_abstaining_is_not_fooled():
    smoothed = params(smoothed=True)
    abstained = outcome_text(outcome(True, [0.4, 0.35, 0.25], smoothed={"m": verdict(ABSTAIN)}), smoothed, "g",
                             class_name)
    assert "abstained</b> (not fooled)" in abstained and "fooled</b>:" not in abstained
    fooled = outcome_text(outcome(True, [0.2, 0.7, 0.1], smoothed={"m": verdict(1)}), smoothed, "g", class_name)
    assert "fooled</b></span>: CERTIFY says <b>dog</b>" in fooled
    kept = outcome_text(outcome(False, [0.7, 0.2, 0.1], smoothed={"m": verdict(0)}), smoothed, "g", class_name)
    assert "not fooled</b></span>: CERTIFY says <b>cat</b>" in kept


def test_the_settings_line_names_every_choice():
    line = settings_text(params(target="next", loss="cw", random_start="uniform"))
    for part in (f"{NORM_NAMES['l2']} ε = 1.5", "10 steps of 2.5ε/steps", "2 restart(s)", "start uniform",
                 "(y + 1) mod C (D_det)", "CW"):
        assert part in line, line
