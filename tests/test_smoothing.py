"""Randomized smoothing (engine/smoothing.py, smoothing_bounds.py, certify_jobs.py) against independent computations.

A linear binary classifier f(x) = [w·x + b > 0] has a known smoothed behaviour: under ε ~ N(0, σ²I),
P[f(x + ε) = 1] = Φ(dist/σ) with dist = (w·x + b)/‖w‖, so the exact certified radius is σ Φ⁻¹(pA) = dist
(Theorem 2: tight). CERTIFY may claim more than dist only when its (1 − α) bound fails.
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import betaincinv
from scipy.stats import binom, norm
from torch import nn

from robustlens.engine.data import Dataset
from robustlens.engine.jobs import Aborted, CancelToken, Finished, Partial, Progress, run_job, run_to_end
from robustlens.engine.models import zoo_names
from robustlens.engine.certify_jobs import certified_accuracy_job
from robustlens.engine.smoothing import ABSTAIN, Certificate, CertifyUpdate, Smooth, certify_job, noise_models
from robustlens.engine.smoothing_bounds import (certified_accuracy, certified_radius, expected_noise_norm,
                                                lower_confidence_bound, max_certifiable_radius, radius_curve,
                                                radius_curve_points, upper_confidence_bound)

from known_classifiers import SHAPE, LinearBinary, linear_case  # noqa: E402 - tests/ is on the path


def reference_counts(model, x, num, batch_size, sigma, generator, num_classes):
    """The paper's sampling as a plain loop (as in locuslab/smoothing core.py): repeat, add noise, argmax."""
    counts = np.zeros(num_classes, dtype=np.int64)
    remaining = num
    with torch.no_grad():
        while remaining > 0:
            size = min(batch_size, remaining)
            batch = x.unsqueeze(0).repeat(size, 1, 1, 1)
            noise = torch.randn(batch.shape, generator=generator) * sigma
            predictions = model(batch + noise).argmax(1)
            counts += np.bincount(predictions.numpy(), minlength=num_classes)
            remaining -= size
    return counts


# ---------------------------------------------------------------- bounds


def bisect(f, lo=0.0, hi=1.0, steps=200):
    """Root of an increasing f on [lo, hi]."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("k,n,alpha", [(1, 10, 0.05), (7, 10, 0.001), (990, 1000, 0.001), (5000, 10000, 0.01),
                                       (99_999, 100_000, 0.001), (100_000, 100_000, 0.001), (3, 3, 0.2)])
def test_clopper_pearson_matches_independent_computations(k, n, alpha):
    lower = lower_confidence_bound(k, n, alpha)
    # the exact definition: the p at which observing ≥ k successes has probability α
    by_bisection = bisect(lambda p: binom.sf(k - 1, n, p) - alpha)
    assert lower == pytest.approx(betaincinv(k, n - k + 1, alpha), rel=1e-9, abs=1e-12)
    assert lower == pytest.approx(by_bisection, rel=1e-7, abs=1e-10)
    if k < n:
        upper = upper_confidence_bound(k, n, alpha)
        by_bisection = bisect(lambda p: alpha - binom.cdf(k, n, p))
        assert upper == pytest.approx(betaincinv(k + 1, n - k, 1 - alpha), rel=1e-9)
        assert upper == pytest.approx(by_bisection, rel=1e-7, abs=1e-10)
        assert lower < k / n < upper


def test_bound_edge_cases_and_ceiling():
    assert lower_confidence_bound(0, 100, 0.001) == 0.0
    assert upper_confidence_bound(100, 100, 0.001) == 1.0
    # all n samples agree: the bound is α^(1/n), so the ceiling is σ Φ⁻¹(α^(1/n)) — 3.81σ at n = 1e5
    assert lower_confidence_bound(100_000, 100_000, 0.001) == pytest.approx(0.001 ** 1e-5, rel=1e-12)
    assert max_certifiable_radius(1.0, 100_000, 0.001) == pytest.approx(3.8115, abs=1e-3)
    assert max_certifiable_radius(0.5, 100_000, 0.001) == pytest.approx(0.5 * 3.8115, abs=1e-3)
    assert certified_radius(0.5, 0.4) == 0.0
    assert certified_radius(0.5, 0.9) == pytest.approx(0.5 * norm.ppf(0.9))
    # the general bound reduces to the paper's when pB = 1 − pA
    assert certified_radius(0.5, 0.9, 0.1) == pytest.approx(certified_radius(0.5, 0.9))
    assert certified_radius(0.5, 0.3, 0.3) == 0.0
    assert np.allclose(radius_curve(0.25, [0.5, 0.8413447]), [0.0, 0.25], atol=1e-6)
    d = 784
    assert expected_noise_norm(0.25, d) == pytest.approx(0.25 * math.sqrt(d), rel=1 / (4 * d))
    assert certified_accuracy([0.0, 0.3, 0.6, 0.1, 1.2], [0, 1, 1, 0, 1], [0, 0.25, 0.5, 1.0, 1.25]).tolist() \
        == pytest.approx([0.6, 0.6, 0.4, 0.2, 0.0])


# ---------------------------------------------------------------- CERTIFY on a linear classifier


@pytest.mark.parametrize("p_a", [0.8, 0.97])
def test_certified_radius_exceeds_true_distance_at_most_an_alpha_fraction(p_a):
    sigma, alpha, n0, n, trials = 0.5, 0.1, 20, 300, 400
    distance = sigma * norm.ppf(p_a)
    x, model = linear_case(distance)
    smooth = Smooth(model, 2, sigma)
    failures = 0
    for seed in range(trials):
        prediction, radius = smooth.certify(x, n0, n, alpha, batch_size=300, generator=seed)
        # wrong: a class other than g(x) = 1, or a radius past the boundary
        failures += (prediction not in (1, ABSTAIN)) or radius > distance + 1e-9
    # the exact failure rate of the one-sided Clopper–Pearson bound (≤ α), computed independently
    k = np.arange(n + 1)
    lower = np.where(k > 0, betaincinv(np.maximum(k, 1), n - k + 1, alpha), 0.0)
    exact_rate = binom.pmf(k, n, p_a)[lower > p_a].sum()
    assert exact_rate <= alpha
    assert failures <= binom.ppf(1 - 1e-4, trials, alpha), (failures, exact_rate)
    # ...and not a vacuous bound: the failures occur about as often as the exact rate says
    assert failures >= binom.ppf(1e-4, trials, 0.97 * exact_rate), (failures, exact_rate)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_certified_radius_approaches_true_distance_with_large_n(ratio):
    sigma = 0.4
    distance = sigma * ratio
    x, model = linear_case(distance, seed=1)
    smooth = Smooth(model, 2, sigma)
    result = smooth.certify_detailed(x, 100, 200_000, 0.001, batch_size=20_000, generator=7)
    assert result.prediction == 1
    assert 0.95 * distance <= result.radius <= distance
    assert result.pA_hat == pytest.approx(norm.cdf(ratio), abs=0.004)
    # binary: pB = 1 − pA, so the general bound (at α/2 each) certifies nearly as much, never more than dist
    assert 0.93 * distance <= result.radius_general <= distance
    assert result.radius_general <= result.radius


def test_certificate_fields_against_independent_bounds():
    x, model = linear_case(0.2, seed=3)
    smooth = Smooth(model, 2, 0.5)
    c = smooth.certify_detailed(x, 50, 2000, 0.01, batch_size=700, generator=11)
    assert isinstance(c, Certificate) and c.counts.sum() == 2000 and c.counts0.sum() == 50
    assert c.top_class == int(np.argmax(c.counts0)) and c.nA == c.counts[c.top_class]
    assert c.pA_lower == pytest.approx(betaincinv(c.nA, 2000 - c.nA + 1, 0.01), rel=1e-9)
    assert c.pA_lower_simultaneous == pytest.approx(betaincinv(c.nA, 2000 - c.nA + 1, 0.005), rel=1e-9)
    other = 1 - c.top_class
    expected_pb = min(betaincinv(c.counts[other] + 1, 2000 - c.counts[other], 1 - 0.005), 1 - c.pA_lower_simultaneous)
    assert c.pB_upper == pytest.approx(expected_pb, rel=1e-9)
    assert c.radius == pytest.approx(0.5 * norm.ppf(c.pA_lower), rel=1e-9)
    assert c.max_radius == pytest.approx(0.5 * norm.ppf(0.01 ** (1 / 2000)), rel=1e-9)
    assert c.radius <= c.max_radius


def test_unanimous_noise_reaches_the_ceiling_and_a_coin_abstains():
    far_x, far = linear_case(50.0, seed=2)  # σ = 0.25: no noise sample crosses
    c = Smooth(far, 2, 0.25).certify_detailed(far_x, 10, 1000, 0.001, generator=0)
    assert c.prediction == 1 and c.nA == 1000
    assert c.radius == pytest.approx(max_certifiable_radius(0.25, 1000, 0.001), rel=1e-9)
    on_x, on_boundary = linear_case(0.0, seed=2)  # pA = 1/2: the lower bound is below 1/2
    c = Smooth(on_boundary, 2, 0.25).certify_detailed(on_x, 10, 1000, 0.001, generator=0)
    assert c.prediction == ABSTAIN and c.radius == 0.0 and c.abstained
    assert "< 0.5" in c.abstain_reason


# ---------------------------------------------------------------- PREDICT


def test_predict_with_ten_samples_always_abstains():
    # binomtest(10, 10, 1/2) has p = 2/1024 > 0.001: ten samples can never separate two classes
    x, model = linear_case(50.0)
    smooth = Smooth(model, 2, 0.25)
    for seed in range(20):
        assert smooth.predict(x, 10, 0.001, batch_size=4, generator=seed) == ABSTAIN
    result = smooth.predict_detailed(x, 10, 0.001, generator=0)
    assert result.nA == 10 and result.p_value == pytest.approx(2 / 1024)
    assert smooth.predict(x, 1000, 0.001, generator=0) == 1


def test_predict_separates_a_clear_majority_and_abstains_on_a_coin():
    x, model = linear_case(0.25 * norm.ppf(0.8), seed=4)
    smooth = Smooth(model, 2, 0.25)
    assert smooth.predict(x, 2000, 0.001, generator=1) == 1
    coin_x, coin = linear_case(0.0, seed=4)
    wrong = sum(Smooth(coin, 2, 0.25).predict(coin_x, 200, 0.05, generator=s) != ABSTAIN for s in range(100))
    assert wrong <= binom.ppf(1 - 1e-4, 100, 0.05)  # p ≤ α under the null of a fair coin


# ---------------------------------------------------------------- streaming, seeds, chunks


def test_streaming_and_plain_forms_agree_and_match_the_reference_loop():
    x, model = linear_case(0.3, seed=5)
    sigma, n0, n, batch = 0.5, 70, 2500, 600
    smooth = Smooth(model, 2, sigma)
    plain = smooth.certify_detailed(x, n0, n, 0.001, batch, generator=42)
    updates = list(smooth.certify_steps(x, n0, n, 0.001, batch, generator=42))
    final = updates[-1].certificate
    assert final is not None and all(u.certificate is None for u in updates[:-1])
    assert (final.prediction, final.radius) == (plain.prediction, plain.radius)
    assert np.array_equal(final.counts, plain.counts) and np.array_equal(final.counts0, plain.counts0)
    assert smooth.certify(x, n0, n, 0.001, batch, generator=42) == (plain.prediction, plain.radius)
    # one update per chunk, running counts add up, the estimation phase shows a running bound
    assert len(updates) == math.ceil(n0 / batch) + math.ceil(n / batch)
    for update in updates:
        assert update.counts.sum() == update.drawn
    estimation = [u for u in updates if u.phase == "estimation"]
    assert [u.drawn for u in estimation] == [600, 1200, 1800, 2400, 2500]
    assert estimation[-1].pA_lower == plain.pA_lower
    # the same draws as the paper's plain loop with the same generator
    generator = torch.Generator().manual_seed(42)
    counts0 = reference_counts(model, x, n0, batch, sigma, generator, 2)
    counts = reference_counts(model, x, n, batch, sigma, generator, 2)
    assert np.array_equal(counts0, plain.counts0) and np.array_equal(counts, plain.counts)


def test_seeds_reproduce_and_global_rng_is_used_without_one():
    x, model = linear_case(0.1, seed=6)
    smooth = Smooth(model, 2, 0.5)
    a = smooth.certify_detailed(x, 10, 500, 0.01, generator=3)
    b = smooth.certify_detailed(x, 10, 500, 0.01, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(a.counts, b.counts)
    torch.manual_seed(9)
    c = smooth.certify_detailed(x, 10, 500, 0.01)
    torch.manual_seed(9)
    d = smooth.certify_detailed(x, 10, 500, 0.01)
    assert np.array_equal(c.counts, d.counts)


class BatchRecorder(nn.Module):
    """Records the batch size of every forward call."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 3)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("batch_size,forward_batch", [(100, None), (300, None), (700, 10 ** 9)])
def test_noise_is_drawn_in_chunks_of_batch_size(batch_size, forward_batch):
    model = BatchRecorder()
    smooth = Smooth(model, 3, 0.3, optimize=False, forward_batch=forward_batch)
    model.sizes.clear()
    list(smooth.certify_steps(torch.rand(SHAPE), 50, 5000, 0.01, batch_size, generator=0))
    calls = model.sizes[1:]  # the first call is the output-shape probe
    assert sum(calls) == 5050
    assert max(calls) <= batch_size and max(calls) <= (forward_batch or 256)
    if forward_batch:  # no sub-batching: exactly one forward per chunk, never more than batch_size
        assert calls == [50] + [batch_size] * (5000 // batch_size) + ([5000 % batch_size] if 5000 % batch_size else [])


class ShapeBaking(nn.Module):
    """Untraceable in effect: the trace would bake the batch size in."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 2)

    def forward(self, x):
        rows = int(x.shape[0])
        return self.linear(x.reshape(rows, -1))


def test_optimized_forward_is_used_only_when_it_reproduces_the_model():
    x, model = linear_case(0.3)
    smooth = Smooth(model, 2, 0.5)
    smooth.certify(x, 10, 100, 0.01, generator=0)
    assert "TorchScript" in smooth.backend
    baking = Smooth(ShapeBaking(), 2, 0.5)
    baking.certify(torch.rand(SHAPE), 10, 100, 0.01, generator=0)
    assert baking.backend.startswith("eager")
    eager = Smooth(model, 2, 0.5, optimize=False)
    assert np.array_equal(eager.certify_detailed(x, 10, 3000, 0.01, generator=1).counts,
                          smooth.certify_detailed(x, 10, 3000, 0.01, generator=1).counts)


def test_bad_parameters_raise_one_line_errors():
    x, model = linear_case(0.3)
    smooth = Smooth(model, 2, 0.5)
    with pytest.raises(ValueError, match="n0"):
        smooth.certify(x, 0, 100, 0.01)
    with pytest.raises(ValueError, match="alpha"):
        smooth.certify(x, 10, 100, 1.5)
    with pytest.raises(ValueError, match="batch"):
        smooth.predict(x, 100, 0.01, batch_size=0)
    with pytest.raises(ValueError, match="σ"):
        Smooth(model, 2, 0.0)
    with pytest.raises(ValueError, match="image"):
        smooth.certify(torch.rand(2, *SHAPE), 10, 100, 0.01)
    with pytest.raises(ValueError, match="class scores"):
        Smooth(model, 5, 0.5).certify(x, 10, 100, 0.01)


# ---------------------------------------------------------------- jobs


def test_certify_job_streams_counts_and_finishes_with_the_certificate():
    x, model = linear_case(0.3, seed=8)
    smooth = Smooth(model, 2, 0.5)
    events = []
    result = run_to_end(certify_job(smooth, x, n0=100, n=3000, alpha=0.001, batch_size=500, generator=5),
                        on_event=events.append)
    partials = [e.value for e in events if isinstance(e, Partial)]
    progress = [e for e in events if isinstance(e, Progress)]
    assert all(isinstance(p, CertifyUpdate) for p in partials) and len(partials) == 1 + 6
    assert [p.done for p in partials] == [e.done for e in progress]
    assert progress[-1].done == progress[-1].total == 3100
    assert isinstance(events[-1], Finished) and result is events[-1].result
    assert (result.prediction, result.radius) == smooth.certify(x, 100, 3000, 0.001, 500, generator=5)


def test_certify_job_cancels_between_chunks():
    x, model = linear_case(0.3, seed=8)
    smooth = Smooth(model, 2, 0.5)
    cancel = CancelToken()
    events = []
    for event in run_job(certify_job(smooth, x, n0=100, n=100_000, batch_size=100, generator=0), cancel):
        events.append(event)
        if len(events) == 6:
            cancel.cancel()
    assert isinstance(events[-1], Aborted)
    assert len(events) < 10


def test_certified_accuracy_job_streams_rows_and_curves():
    x1, m1 = linear_case(0.3, seed=9)
    images = torch.stack([x1, x1.flip(-1), x1.flip(-2)])
    labels = torch.tensor([1, 0, 1])
    dataset = Dataset("toy", "test", images, labels, ("a", "b"), indices=torch.tensor([4, 17, 30]))
    smooths = {"σ=0.25": Smooth(m1, 2, 0.25), "σ=0.5": Smooth(m1, 2, 0.5)}
    events = []
    result = run_to_end(certified_accuracy_job(smooths, dataset, n0=20, n=400, alpha=0.01, batch_size=400, seed=3),
                        on_event=events.append)
    rows = [e.value for e in events if isinstance(e, Partial) and e.kind == "row"]
    assert [(r.model, r.idx) for r in rows] == [(m, i) for i in (4, 17, 30) for m in smooths]
    for name, smooth in smooths.items():
        mine = [r for r in rows if r.model == name]
        for k, row in enumerate(mine):
            # each row is a plain certify of that image with seed SEED + idx
            prediction, radius = smooth.certify(images[k], 20, 400, 0.01, 400, generator=3 + row.idx)
            assert (row.prediction, row.radius) == (prediction, radius)
            assert row.correct == (prediction == int(labels[k]))
            expected = certified_accuracy([r.radius for r in mine[:k + 1]], [r.correct for r in mine[:k + 1]],
                                          result.radii)
            assert np.allclose(row.accuracy, expected) and row.images_done == k + 1
        assert np.allclose(result.curves[name], mine[-1].accuracy)
    assert result.radii[-1] == pytest.approx(max_certifiable_radius(0.5, 400, 0.01))


# ---------------------------------------------------------------- the built-in noise model

NOISE_MODEL = "fashion-mnist/noise-0.25"
needs_zoo = pytest.mark.skipif(NOISE_MODEL not in zoo_names(), reason="built-in noise models not built yet")


@needs_zoo
def test_builtin_noise_model_certifies_a_few_images(zoo_model, fmnist_test):
    model = zoo_model(NOISE_MODEL)
    smooth = Smooth.from_model(model)
    assert smooth.sigma == 0.25 and smooth.num_classes == 10
    correct = 0
    for i in range(4):
        c = smooth.certify_detailed(fmnist_test.images[i], 50, 1000, 0.001, batch_size=500, generator=i)
        assert 0.0 <= c.radius <= c.max_radius + 1e-12
        assert c.radius_general <= c.max_radius + 1.0  # finite, computed
        correct += c.prediction == int(fmnist_test.labels[i])
    assert correct >= 3
    # the optimized forward and the model itself agree on the noise votes (up to rare near-ties)
    eager = Smooth.from_model(model, optimize=False)
    a = eager.sample_counts(fmnist_test.images[0], 1000, 500, generator=1)
    b = smooth.sample_counts(fmnist_test.images[0], 1000, 500, generator=1)
    assert np.abs(a - b).sum() <= 4


@needs_zoo
def test_noise_samples_have_norm_sigma_sqrt_d(zoo_model, fmnist_test):
    smooth = Smooth.from_model(zoo_model(NOISE_MODEL))
    samples = smooth.noise_samples(fmnist_test.images[0], count=16, generator=0)
    assert samples.noisy.shape == (16, 1, 28, 28) and samples.dim == 784
    assert samples.display.min() >= 0 and samples.display.max() <= 1
    assert samples.expected_norm == pytest.approx(0.25 * 28, rel=1e-3)
    assert np.all(np.abs(samples.noise_norms - 7.0) < 1.0)  # ‖ε‖ concentrates: sd ≈ σ/√2
    noise = samples.noisy - fmnist_test.images[0].numpy()
    assert np.allclose(np.sqrt((noise ** 2).reshape(16, -1).sum(1)), samples.noise_norms, rtol=1e-4)
    assert samples.predictions.shape == (16,)


def test_radius_curve_points_end_at_the_ceiling():
    p_a, radius = radius_curve_points(0.5, n=10_000, alpha=0.001, points=50)
    assert p_a[0] == 0.5 and radius[0] == 0.0 and np.all(np.diff(radius) > 0)
    assert radius[-1] == pytest.approx(max_certifiable_radius(0.5, 10_000, 0.001), rel=1e-9)


@needs_zoo
def test_noise_models_lists_the_builtin_sigmas():
    assert noise_models("fashion-mnist") == {0.25: "fashion-mnist/noise-0.25", 0.5: "fashion-mnist/noise-0.50",
                                             1.0: "fashion-mnist/noise-1.00"}
