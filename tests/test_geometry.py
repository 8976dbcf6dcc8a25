"""The geometry slice (engine/geometry*.py) against a classifier whose decision boundary is known.

A linear binary classifier f(x) = [w·x + b > 0] has a half-space as each decision region, and its
Gaussian smoothing is the same half-space: P[f(x + ε) = 1] = Φ((w·x + b)/(σ‖w‖)) (Cohen et al. 2019,
Fig. 8). So in the plane x + a·u + b·v with u = ŵ the boundary of both f and g is the vertical line
a* = −(w·x + b)/‖w‖, and the smoothed map's empirical probabilities must follow Φ((a − a*)/σ).
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import binom, binomtest, norm
from torch import nn

from robustlens.engine import geometry, geometry_maps, geometry_overlays, geometry_plane
from robustlens.engine.jobs import CancelToken, Cancelled, Partial, run_to_end
from robustlens.engine.smoothing import ABSTAIN, Smooth

SIGMA = 0.25


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LinearBinary(nn.Module):
    """Logits (0, w·x + b): class 1 exactly where w·x + b > 0."""

    def __init__(self, w: torch.Tensor, bias: float):
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)
        self.bias = float(bias)

    def forward(self, x):
        score = (x.flatten(1) * self.w.flatten()).sum(1) + self.bias
        return torch.stack([torch.zeros_like(score), score], dim=1)


def linear_case(distance: float, seed: int = 0):
    """An image x (class 0) at L2 distance ``distance`` from a random hyperplane, and the model."""
    generator = torch.Generator().manual_seed(2024 + seed)
    x = 0.3 + 0.4 * torch.rand((1, 28, 28), generator=generator)
    w = torch.randn((1, 28, 28), generator=generator)
    w = 2.5 * w / w.norm()  # ‖w‖ ≠ 1 on purpose: distances must not depend on the scale of the logits
    bias = -float((w * x).sum()) - distance * float(w.norm())  # w·x + b = −distance·‖w‖
    return x, LinearBinary(w, bias), w


class OneModel:
    """What geometry_job asks of a ModelCache (``model(key)``, ``smooth(key, σ)``), for a model that is
    neither a zoo entry nor a checkpoint file."""

    def __init__(self, model: nn.Module, num_classes: int = 2):
        self._model, self._num_classes = model, num_classes

    def model(self, key: str) -> nn.Module:
        return self._model

    def smooth(self, key: str, sigma: float) -> Smooth:
        return Smooth(self._model, self._num_classes, sigma)


# ---------------------------------------------------------------- the plane

def test_plane_is_orthonormal_and_coordinates_are_l2_distances():
    x, model, w = linear_case(0.4)
    plane = geometry_plane.plane_through(model, x, seed=3)
    assert plane.u_source == "gradient"
    assert float(plane.u.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(plane.v.norm()) == pytest.approx(1.0, abs=1e-5)
    assert abs(float((plane.u * plane.v).sum())) < 1e-5
    # the cross-entropy gradient for class 0 points towards class 1: along +w
    assert float((plane.u * w).sum() / w.norm()) == pytest.approx(1.0, abs=1e-5)
    a, b = np.array([0.3, -1.2, 2.0]), np.array([0.5, 0.7, -0.1])
    points = plane.points(a, b)
    np.testing.assert_allclose(plane.coordinates(points), np.stack([a, b], 1), atol=1e-4)
    distances = (points - x).flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(distances, np.hypot(a, b), rtol=1e-4)
    # no clamping: the plane leaves [0,1] and stays exact
    far = plane.points([25.0], [0.0])
    assert float(far.max()) > 1.0 or float(far.min()) < 0.0
    assert float((far - x).norm()) == pytest.approx(25.0, rel=1e-5)
    # the same seed gives the same slice; another seed another v
    again = geometry_plane.plane_through(model, x, seed=3)
    assert torch.equal(again.v, plane.v)
    assert not torch.allclose(geometry_plane.plane_through(model, x, seed=4).v, plane.v)


def test_plane_follows_a_given_direction_and_places_the_attack_on_its_axis():
    x, model, w = linear_case(0.4)
    delta = -0.8 * w / w.norm()
    plane = geometry_plane.plane_through(model, x, direction=delta)
    assert plane.u_source == "attack"
    assert float((plane.u * delta).sum() / delta.norm()) == pytest.approx(1.0, abs=1e-5)
    point = geometry_overlays.locate_attack(model, plane, x + delta, "test")
    assert point.coordinates[0] == pytest.approx(0.8, abs=1e-4)
    assert point.coordinates[1] == pytest.approx(0.0, abs=1e-4)
    assert point.off_plane < 1e-4 and point.distance == pytest.approx(0.8, abs=1e-4)
    # a zero perturbation (the attack did not move x) falls back to the gradient
    assert geometry_plane.plane_through(model, x, direction=torch.zeros_like(x)).u_source == "gradient"


def test_refinement_schedule_nests_grids():
    assert geometry_plane.refinement_sizes(41) == (11, 21, 41)
    assert geometry_plane.refinement_sizes(81) == (11, 21, 41, 81)
    assert geometry_plane.refinement_sizes(11) == (11,)
    for sizes in (geometry_plane.refinement_sizes(81), geometry_plane.refinement_sizes(101)):
        for coarse, fine in zip(sizes, sizes[1:]):
            # every coarse coordinate is a fine one: the even-indexed points
            np.testing.assert_allclose(geometry_plane.grid_axis(1.0, fine)[::2], geometry_plane.grid_axis(1.0, coarse))


# ---------------------------------------------------------------- both maps on the linear classifier

def test_base_map_boundary_is_the_analytic_line():
    distance = 0.37
    x, model, _ = linear_case(distance)
    plane = geometry_plane.plane_through(model, x, seed=1)
    base = geometry_maps.base_map(model, plane, extent=1.0, size=101, batch_size=777)
    a = base.axis[:, None] * np.ones((1, base.size))
    expected = (a > distance).astype(int)  # u = ŵ: class 1 beyond a* = distance
    assert np.array_equal(base.classes, expected)
    # the boundary line measured on the map: midway between the last class-0 and first class-1 column
    first_one = np.argmax(base.classes[:, 50] == 1)
    measured = 0.5 * (base.axis[first_one - 1] + base.axis[first_one])
    assert abs(measured - distance) <= 0.5 * (base.axis[1] - base.axis[0]) + 1e-9


def test_smoothed_map_is_the_same_half_space_with_the_analytic_probabilities():
    distance = 0.35  # midway between grid columns 0.3 and 0.4: no point sits on the boundary
    x, model, _ = linear_case(distance)
    plane = geometry_plane.plane_through(model, x, seed=2)
    n, alpha = 300, 0.001
    smoothed = geometry_maps.smoothed_map(model, plane, 1.0, sigma=SIGMA, n=n, alpha=alpha, final_size=21,
                                     batch_size=1000, seed=5)
    assert smoothed.complete and smoothed.size == 21
    assert (smoothed.counts.sum(axis=2) == n).all()
    a = np.repeat(smoothed.axis[:, None], smoothed.size, axis=1)
    truth = (a > distance).astype(int)
    # every significant prediction is on the right side (each is wrong with probability ≤ α)
    significant = smoothed.predictions != ABSTAIN
    assert np.array_equal(smoothed.predictions[significant], truth[significant])
    # points 0.15 or more from the line (p ≥ Φ(0.6) = 0.73) are decided and right
    far = np.abs(a - distance) >= 0.15 - 1e-9
    assert (smoothed.predictions[far] == truth[far]).all()
    # points right next to the line (p = Φ(0.2) = 0.58) mostly abstain at n = 300, α = 0.001
    near = np.abs(a - distance) < 0.06
    assert (smoothed.predictions[near] == ABSTAIN).mean() > 0.5
    # the estimated P[f = 1] follows Φ((a − a*)/σ): fit the line Φ⁻¹(p̂) = (a − a*)/σ
    p_hat = smoothed.counts[:, :, 1] / n
    usable = (p_hat > 0.02) & (p_hat < 0.98)
    slope, intercept = np.polyfit(a[usable], norm.ppf(p_hat[usable]), 1)
    assert -intercept / slope == pytest.approx(distance, abs=0.02)  # the boundary line a*
    assert 1.0 / slope == pytest.approx(SIGMA, rel=0.1)            # the noise level σ


def test_certified_disk_holds_the_certified_class_in_both_maps():
    distance = 0.37
    x, model, _ = linear_case(distance)
    disk = geometry_overlays.certified_disk(model, x, sigma=SIGMA, n0=100, n=10_000, alpha=0.001, seed=0)
    assert disk.cls == 0
    # R = σ Φ⁻¹(p_A lower) never exceeds the true distance (w.p. 1 − α) and comes close with n = 10⁴
    assert 0.9 * distance < disk.radius <= distance
    # the Clopper–Pearson bound behind it: P[Binomial(n, p_lower) ≥ n_A] = α
    certificate = disk.certificate
    assert binom.sf(certificate.nA - 1, certificate.n, certificate.pA_lower) == pytest.approx(0.001, rel=1e-3)
    assert disk.radius == pytest.approx(SIGMA * norm.ppf(certificate.pA_lower))

    plane = geometry_plane.plane_through(model, x, seed=0)
    base = geometry_maps.base_map(model, plane, extent=2 * disk.radius, size=61)
    inside = geometry_overlays.in_disk(base, disk.radius)
    assert inside.sum() > 500
    assert (base.classes[inside] == disk.cls).all()

    smoothed = geometry_maps.smoothed_map(model, plane, 2 * disk.radius, sigma=SIGMA, n=200, alpha=0.001,
                                     final_size=21, seed=1)
    check = geometry_overlays.check_disk(smoothed, disk)
    assert check.checked == geometry_overlays.in_disk(smoothed, disk.radius).sum() > 50
    assert check.disagreeing == 0
    assert check.agreeing + check.abstained == check.checked
    assert check.agreeing > 0.7 * check.checked  # abstentions only near the disk's edge facing the line


def test_certify_abstains_on_the_boundary():
    x, model, _ = linear_case(0.0)
    disk = geometry_overlays.certified_disk(model, x, sigma=SIGMA, n0=50, n=500, alpha=0.001)
    assert disk.abstained and disk.radius == 0.0


def test_predict_with_ten_samples_always_abstains():
    # 10 of 10 votes: binomtest(10, 10, 0.5).pvalue = 2/1024 > 0.001
    assert geometry_maps.predict_from_counts(np.array([0, 10, 0]), 0.001) == (1, False)
    assert geometry_maps.predict_from_counts(np.array([0, 60, 40]), 0.05) == (1, False)
    assert geometry_maps.predict_from_counts(np.array([0, 80, 20]), 0.001) == (1, True)


def test_vectorised_predict_equals_scipy_binomtest():
    n_a, n_b = np.meshgrid(np.arange(0, 45), np.arange(0, 45), indexing="ij")
    reference = np.array([[binomtest(int(a), int(a + b), 0.5).pvalue if a + b else 1.0 for b in range(45)]
                          for a in range(45)])
    np.testing.assert_allclose(geometry_maps.binomial_p_values(n_a, n_b), reference, rtol=1e-9, atol=1e-300)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(100, [0.5, 0.3, 0.1, 0.1], size=(7, 9))
    top, significant = geometry_maps.predict_counts(counts, 0.01)
    for i in range(7):
        for j in range(9):
            assert (top[i, j], significant[i, j]) == geometry_maps.predict_from_counts(counts[i, j], 0.01)


# ---------------------------------------------------------------- streaming, cancelling, the cloud

def test_progressive_refinement_streams_nested_levels():
    x, model, _ = linear_case(0.3)
    plane = geometry_plane.plane_through(model, x)
    partials = []
    final = run_to_end(geometry_maps.smoothed_map_job(model, plane, 1.0, sigma=SIGMA, n=20, alpha=0.01,
                                                 final_size=21, batch_size=64, seed=0),
                       on_event=lambda e: partials.append(e.value) if isinstance(e, Partial) else None)
    assert [p.size for p in partials][0] == 11 and partials[-1].size == 21
    levels = [p.level for p in partials]
    assert levels == sorted(levels)
    coarse = [p for p in partials if p.level == 0][-1]
    assert coarse.computed.all()
    # the fine grid reuses the coarse points (never sampled twice) and computes each other point once
    np.testing.assert_array_equal(final.counts[::2, ::2], coarse.counts)
    done = [int(p.computed.sum()) for p in partials if p.level == 1]
    assert done == sorted(done) and done[0] >= 121 and done[-1] == 441
    # a partial map shows the coarse answer where the fine one is not computed yet
    first_fine = next(p for p in partials if p.level == 1)
    hidden = ~first_fine.computed
    np.testing.assert_array_equal(first_fine.classes[hidden],
                                  coarse.classes[np.ix_(np.arange(21) // 2, np.arange(21) // 2)][hidden])


def test_cancel_stops_the_smoothed_map():
    x, model, _ = linear_case(0.3)
    plane = geometry_plane.plane_through(model, x)
    cancel = CancelToken()
    seen = []

    def on_event(event):
        if isinstance(event, Partial):
            seen.append(event)
            cancel.cancel()

    with pytest.raises(Cancelled):
        run_to_end(geometry_maps.smoothed_map_job(model, plane, 1.0, sigma=SIGMA, n=50, final_size=41,
                                             batch_size=50), cancel, on_event)
    assert len(seen) == 1


def test_noise_cloud_in_the_plane_has_sigma_but_the_noise_is_long():
    x, model, _ = linear_case(0.2)
    plane = geometry_plane.plane_through(model, x)
    cloud = geometry_overlays.noise_cloud(model, plane, SIGMA, samples=2000, seed=0)
    assert cloud.coordinates.shape == (2000, 2)
    np.testing.assert_allclose(cloud.coordinates.std(axis=0), [SIGMA, SIGMA], rtol=0.08)
    assert cloud.norms.mean() == pytest.approx(SIGMA * math.sqrt(784), rel=0.02)
    # the votes: class 1 where the draw crossed the line, P = Φ(−0.2/σ) = 0.21
    assert cloud.classes.mean() == pytest.approx(norm.cdf(-0.2 / SIGMA), abs=0.03)
    # a draw's class is decided by its component along u = ŵ alone
    assert np.array_equal(cloud.classes, (cloud.coordinates[:, 0] > 0.2).astype(int))


def test_geometry_job_events_and_bad_input():
    x, model, w = linear_case(0.5)
    request = geometry.GeometryRequest(model_key="linear", image=x, sigma=SIGMA, base_size=21, smooth_size=11,
                                       n=50, certify_n=1000, adversarial=(x + 0.9 * w / w.norm()).clamp(0, 1),
                                       cloud_samples=50, attack_n=300)
    cache = OneModel(model)
    kinds = []
    result = run_to_end(geometry.geometry_job(cache, request),
                        on_event=lambda e: kinds.append(e.kind) if isinstance(e, Partial) else None)
    assert kinds[:5] == ["disk", "plane", "attack", "extent", "base-map"]
    assert "noise-cloud" in kinds and kinds[-1] == "smoothed-map"
    assert result.plane.u_source == "attack" and result.attack.base_class == 1
    assert result.attack.smoothed_class == 1  # 0.4 beyond the line: P[f = 1] = Φ(1.6) = 0.95
    assert result.extent == pytest.approx(max(2 * result.disk.radius, 3 * SIGMA, 1.25 * result.attack.distance))
    assert result.disk_check is not None and result.disk_check.disagreeing == 0
    with pytest.raises(ValueError, match="σ"):
        geometry.geometry_job(cache, replace(request, sigma=0.0))
    with pytest.raises(ValueError, match="one image"):
        geometry.geometry_job(cache, replace(request, image=torch.zeros(2, 1, 28, 28)))
    with pytest.raises(ValueError, match="α"):
        geometry_maps.smoothed_map_job(model, geometry_plane.plane_through(model, x), 1.0, sigma=SIGMA, alpha=1.5)


# ---------------------------------------------------------------- the built-in noise model

def test_certified_disk_holds_on_the_built_in_noise_model(zoo_model, fmnist_test):
    """Theorem 1 on a real network: wherever PREDICT decides inside the certified disk, it decides
    the certified class (each decision is wrong with probability ≤ α, the certificate with ≤ α)."""
    model = zoo_model("fashion-mnist/noise-0.25")
    totals = {"checked": 0, "agreeing": 0, "abstained": 0}
    for index in (0, 1, 2):
        x = fmnist_test.images[index]
        disk = geometry_overlays.certified_disk(model, x, sigma=0.25, n0=100, n=2000, alpha=0.001, seed=index)
        assert not disk.abstained, f"test image {index} should be certifiable at σ = 0.25"
        plane = geometry_plane.plane_through(model, x, seed=index)  # u: the loss gradient, the steepest way out
        smoothed = geometry_maps.smoothed_map(model, plane, 1.5 * disk.radius, sigma=0.25, n=80, alpha=0.001,
                                         final_size=11, seed=index)
        check = geometry_overlays.check_disk(smoothed, disk)
        assert check.checked > 20
        assert check.disagreeing == 0, f"image {index}: a significant PREDICT inside the disk disagrees"
        for key in totals:
            totals[key] += getattr(check, key)
    assert totals["agreeing"] > totals["checked"] // 2  # most in-disk points are decided, not abstained


def test_geometry_job_runs_while_another_job_holds_inference_mode():
    """On the engine thread jobs take turns between yields; a generator suspended inside
    ``torch.inference_mode()`` (a chunked sampler between chunks) leaves that mode on for the next
    job. The slice still needs gradients (the plane's u, PGD) and must not fail."""
    x, model, _ = linear_case(0.5)

    def other_job():
        with torch.inference_mode():
            yield
            yield

    held = other_job()
    next(held)
    try:
        assert torch.is_inference_mode_enabled()
        request = geometry.GeometryRequest(model_key="linear", image=x, sigma=SIGMA, base_size=11, smooth_size=11,
                                           n=20, certify_n=200, attack_eps=0.8, cloud_samples=20, attack_n=50)
        result = run_to_end(geometry.geometry_job(OneModel(model), request))
        assert result.plane.u_source == "attack" and result.attack.distance == pytest.approx(0.8, abs=1e-3)
        assert geometry_plane.plane_through(model, x).u_source == "gradient"
    finally:
        held.close()
    assert not torch.is_inference_mode_enabled()
