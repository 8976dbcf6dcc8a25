"""Cost up front (engine/cost.py): the estimate from a short probe is checked against an independent
timing of the same work in the same process — a ratio within a generous factor, never an absolute
time — and its wording is the one the window and the CLI show."""

from __future__ import annotations

import time

import pytest

from robustlens.engine.cost import CostEstimate, certify_estimate, duration_text, estimate_seconds
from robustlens.engine.evaluate import pgd_robust_mask
from robustlens.engine.smoothing import Smooth

FACTOR = 4.0  # a shared, loaded CPU: the probe and the job run seconds apart


def _ratio(estimated: float, measured: float) -> float:
    return estimated / max(measured, 1e-9)


def test_the_certify_estimate_matches_a_timed_certify(one_torch_thread, zoo_model, fmnist_test):
    smooth = Smooth.from_model(zoo_model("fashion-mnist/noise-0.25"))
    image = fmnist_test.images[:1]
    smooth.certify(image, 10, 100, 0.001, 500, generator=0)  # the traced forward, built before either timing
    estimate = certify_estimate(smooth, image, n0=100, n=4000, batch_size=500, images=2)
    start = time.perf_counter()
    for seed in range(2):
        smooth.certify(image, 100, 4000, 0.001, 500, generator=seed)
    measured = time.perf_counter() - start
    assert 1 / FACTOR < _ratio(estimate.seconds, measured) < FACTOR, (estimate, measured)
    # the estimate grows with n as the work does: ten times the samples, about ten times the time
    bigger = certify_estimate(smooth, image, n0=100, n=40_000, batch_size=500, images=2)
    assert bigger.seconds / estimate.seconds == pytest.approx(40_100 / 4_100)


def test_the_gradient_estimate_matches_a_timed_pgd(one_torch_thread, zoo_model, fmnist_test):
    model = zoo_model("fashion-mnist/standard")
    images, labels = fmnist_test.images[:100], fmnist_test.labels[:100]
    steps = 10
    estimated = estimate_seconds(model, (1, 28, 28), 0, gradient_passes=steps * len(images), batch_size=100)
    start = time.perf_counter()
    pgd_robust_mask(model, images, labels, norm="l2", eps=1.0, steps=steps, batch_size=100)  # exactly `steps` passes
    measured = time.perf_counter() - start
    assert 1 / FACTOR < _ratio(estimated, measured) < FACTOR, (estimated, measured)
    forward_only = estimate_seconds(model, (1, 28, 28), steps * len(images), batch_size=100)
    assert forward_only < estimated  # a forward pass costs less than a forward and a backward pass


def test_the_estimate_says_time_rate_and_size():
    assert CostEstimate(1.6, 120).text() == "about 3 min (1.6 s per image, 120 images)"
    assert CostEstimate(0.004, 600, "attacked image", "100 images × 6 ε").text() == (
        "about 2 s (4 ms per attacked image, 100 images × 6 ε)")
    assert [duration_text(s) for s in (0.3, 42, 200, 5 * 3600, 30 * 3600, 5 * 86400)] == [
        "under a second", "about 42 s", "about 3 min", "about 5.0 h", "about 30 h", "about 5 days"]
