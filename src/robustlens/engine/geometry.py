"""The geometry of a certificate: decision regions in a 2-D slice of input space through one image.

The lecture figure of randomized smoothing (Cohen et al. 2019, Fig. 1), computed on a real model:

- a plane through the image x spanned by two orthonormal directions (unit L2): u, the direction of
  an adversarial perturbation δ = x_adv − x (or, without one, of the loss gradient at x), and v, a
  seeded random direction made orthogonal to u. A point of the plane is p(a, b) = x + a·u + b·v, so
  the coordinates (a, b) are L2 distances in [0,1]-pixel units, the units of ε, σ and the radius R;
  |p(a, b) − x|₂ = √(a² + b²) exactly, and a disk of radius R around the origin is the slice of the
  certified ball ‖δ‖₂ < R through this plane;
- the base classifier f on a grid of the plane (one batched forward pass per chunk of points);
- the smoothed classifier g(p) = argmax_c P[f(p + ε) = c], ε ~ N(0, σ²I), on a grid refined
  progressively (11×11, 21×21, 41×41, ...: each grid holds the previous one, so no point is ever
  sampled twice) with n noise samples per point, drawn by engine/smoothing.py's ``Smooth`` (the same
  sampler CERTIFY uses). Each point gets Cohen et al.'s PREDICT (Sec. 3.2, Prop. 1): the top class,
  its count, and whether the two-sided binomial test of the top two counts is significant at α
  (otherwise g abstains there);
- the noise cloud: samples x + ε projected onto the plane, at (⟨ε, u⟩, ⟨ε, v⟩), coloured by f(x + ε).
  In the plane the cloud has standard deviation σ, while ‖ε‖₂ ≈ σ√d: the projection hides almost all
  of the noise's length (the lecture point R = O(σ) ≪ ‖ε‖₂ = O(σ√d));
- the certified disk: CERTIFY (Cohen et al., Sec. 3.2) at x, radius R = σ Φ⁻¹(p_A lower).

Points of the plane are NOT clamped to [0, 1]. Clamping would bend the plane into a polytope-shaped
surface, breaking |p(a, b) − x|₂ = √(a² + b²), and the certificate is a statement about the L2 ball in
R^d, not its intersection with the cube; the models accept any real input, and Cohen et al. do not
clamp noisy inputs either. Only the attack point, which PGD keeps in [0, 1], is a valid image.

Array layout: every map is indexed ``[i, j]`` with i along u (the horizontal axis a) and j along v
(the vertical axis b), ``axis[i]`` giving the coordinate: the column-major order pyqtgraph's
ImageItem expects.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binom as binom_distribution
from scipy.stats import binomtest

from .jobs import CancelToken, Finished, Partial, Progress, run_to_end
from .smoothing import ABSTAIN, Certificate, Smooth

_TINY = 1e-12
PARTIAL_INTERVAL_S = 0.04  # partial maps: as often as the eye needs
BASE_FORWARD_BATCH = 256  # activations of 256 28×28 images stay in cache (bench: faster than 1024)


# ---------------------------------------------------------------- small helpers

def _device_of(model) -> torch.device:
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _as_image(x) -> torch.Tensor:
    """One image as a float32 (C, H, W) CPU tensor, from (C, H, W) or (1, C, H, W), tensor or array."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"expected one image of shape (C, H, W), got shape {tuple(t.shape)}")
    return t


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"α must lie strictly between 0 and 1, got {alpha}")


def _generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def stream_seed(seed: int, purpose: str) -> int:
    """An independent seed per use of one user seed (the plane's v, the certificate, the cloud, the
    map), so that no two of them replay the same Gaussian draws (e.g. v equal to a noise sample)."""
    entropy = [int(seed) & 0xFFFFFFFF] + [ord(c) for c in purpose]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# ---------------------------------------------------------------- the plane

@dataclass(frozen=True)
class Plane:
    """The affine plane {x + a·u + b·v}: ``origin`` x and orthonormal ``u``, ``v`` (CPU, (C, H, W)).

    ``u_source`` says where u came from: "attack" (the direction of x_adv − x), "gradient" (the
    cross-entropy gradient at x for ``label``) or "random" (the gradient vanished).
    """
    origin: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    u_source: str
    label: int | None = None
    seed: int = 0

    def points(self, a, b) -> torch.Tensor:
        """x + a·u + b·v for coordinate vectors a, b (length N) -> (N, C, H, W), on the plane's device."""
        device = self.origin.device
        coordinates = torch.stack([torch.as_tensor(a, dtype=torch.float32, device=device).reshape(-1),
                                   torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1)], dim=1)
        basis = torch.stack([self.u.flatten(), self.v.flatten()])
        flat = torch.addmm(self.origin.reshape(1, -1), coordinates, basis)  # one (N, 2) @ (2, D) product
        return flat.view(-1, *self.origin.shape)

    def coordinates(self, points) -> np.ndarray:
        """(⟨p − x, u⟩, ⟨p − x, v⟩) of images p, (N, C, H, W) -> (N, 2) float64."""
        offsets = torch.as_tensor(points, dtype=torch.float32).to(self.origin.device) - self.origin
        return self.offset_coordinates(offsets)

    def offset_coordinates(self, offsets) -> np.ndarray:
        """(⟨δ, u⟩, ⟨δ, v⟩) of offsets δ (N, C, H, W) -> (N, 2) float64."""
        flat = torch.as_tensor(offsets).to(self.origin.device).flatten(1).double()
        basis = torch.stack([self.u.flatten(), self.v.flatten()], dim=1).double()
        return (flat @ basis).cpu().numpy()

    def to(self, device) -> "Plane":
        return replace(self, origin=self.origin.to(device), u=self.u.to(device), v=self.v.to(device))


@contextlib.contextmanager
def _gradients_on():
    """Autograd on, whatever the caller's mode: a job runs between other jobs' steps on the engine
    thread, and a generator suspended inside ``torch.inference_mode()`` (which ``enable_grad`` does
    not override) leaves that mode on for whoever runs next. Inputs are cloned inside, so they are
    never inference tensors."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _unit(t: torch.Tensor) -> tuple[torch.Tensor, float]:
    length = float(t.double().norm())
    return (t / length if length > _TINY else t), length


def loss_gradient(model, x: torch.Tensor, label: int) -> torch.Tensor:
    """∇_x of the cross-entropy of ``model`` at x for ``label`` (the direction the loss rises fastest)."""
    device = _device_of(model)
    with _gradients_on():
        image = x.to(device).unsqueeze(0).clone().requires_grad_(True)
        loss = F.cross_entropy(model(image), torch.tensor([int(label)], device=device))
        (grad,) = torch.autograd.grad(loss, image)
    return grad[0].detach().cpu()


def predicted_class(model, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x.to(_device_of(model)).unsqueeze(0)).argmax(1).item())


def plane_through(model, image, *, direction=None, label: int | None = None, seed: int = 0) -> Plane:
    """The plane through ``image`` spanned by u and v (both unit L2, orthogonal).

    u is the direction of ``direction`` (e.g. the PGD perturbation x_adv − x) when it is given and
    non-zero, else the cross-entropy gradient at x for ``label`` (default: the model's prediction at
    x, so u points to where the model's own decision weakens fastest). v is a standard Gaussian drawn
    with ``seed`` and orthogonalised against u (Gram–Schmidt), so the slice is reproducible.
    """
    x = _as_image(image)
    if label is None:
        label = predicted_class(model, x)
    u, source = None, ""
    if direction is not None:
        u, length = _unit(_as_image(direction))
        source = "attack" if length > _TINY else ""
    if not source:
        u, length = _unit(loss_gradient(model, x, label))
        source = "gradient" if length > _TINY else ""
    generator = torch.Generator().manual_seed(stream_seed(seed, "plane"))
    if not source:  # a flat loss (saturated model): any direction is as good as another
        u, _ = _unit(torch.randn(x.shape, generator=generator))
        source = "random"
    for _ in range(3):  # a random draw parallel to u has probability zero, but never divide by 0
        v = torch.randn(x.shape, generator=generator)
        v = v - (v.flatten() @ u.flatten()) * u
        v = v - (v.flatten() @ u.flatten()) * u  # second pass: orthogonal to float precision
        v, length = _unit(v)
        if length > _TINY:
            break
    return Plane(origin=x, u=u.contiguous(), v=v.contiguous(), u_source=source, label=int(label), seed=int(seed))


def grid_axis(extent: float, size: int) -> np.ndarray:
    """``size`` equally spaced coordinates from −extent to +extent (an odd size puts x on the grid)."""
    _check_positive("the extent", extent)
    if size < 2:
        raise ValueError(f"a grid needs at least 2 points per side, got {size}")
    return np.linspace(-extent, extent, int(size))


def refinement_sizes(final_size: int, coarsest: int = 11) -> tuple[int, ...]:
    """The nested grid sizes leading to ``final_size``: s → 2s − 1 each level (11, 21, 41, 81, ...).

    Every level's points are the even-indexed points of the next, so each point is computed once.
    Halving stops at ``coarsest`` or where it no longer divides evenly.
    """
    if final_size < 2:
        raise ValueError(f"a grid needs at least 2 points per side, got {final_size}")
    sizes = [int(final_size)]
    while sizes[-1] > coarsest and (sizes[-1] - 1) % 2 == 0 and (sizes[-1] - 1) // 2 + 1 >= coarsest:
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return tuple(reversed(sizes))


# ---------------------------------------------------------------- the base classifier's map

@dataclass(frozen=True)
class BaseMap:
    """f on a size × size grid: ``classes[i, j]`` = argmax f(x + axis[i]·u + axis[j]·v) and
    ``confidence`` its softmax probability."""
    extent: float
    axis: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray

    @property
    def size(self) -> int:
        return len(self.axis)


def base_map_job(model, plane: Plane, extent: float, size: int = 101, batch_size: int = BASE_FORWARD_BATCH):
    """Job (engine/jobs.py protocol) computing the :class:`BaseMap`: Progress per chunk, then Finished."""
    axis = grid_axis(extent, size)
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")

    def job(cancel: CancelToken):
        device = _device_of(model)
        on_device = plane.to(device)
        a, b = np.meshgrid(axis, axis, indexing="ij")
        a, b = a.ravel(), b.ravel()
        classes = np.empty(a.size, dtype=np.int64)
        confidence = np.empty(a.size, dtype=np.float32)
        for start in range(0, a.size, batch_size):
            cancel.check()
            stop = min(a.size, start + batch_size)
            with torch.inference_mode():
                probabilities = torch.softmax(model(on_device.points(a[start:stop], b[start:stop])).float(), dim=1)
                top, cls = probabilities.max(dim=1)
            classes[start:stop] = cls.cpu().numpy()
            confidence[start:stop] = top.cpu().numpy()
            yield Progress(stop, a.size, f"base classifier on {size}×{size} grid")
        yield Finished(BaseMap(float(extent), axis, classes.reshape(size, size), confidence.reshape(size, size)))

    return job


def base_map(model, plane: Plane, extent: float, size: int = 101, batch_size: int = BASE_FORWARD_BATCH) -> BaseMap:
    return run_to_end(base_map_job(model, plane, extent, size, batch_size))


# ---------------------------------------------------------------- Monte Carlo counts

def _num_classes(model, x: torch.Tensor) -> int:
    classes = getattr(getattr(model, "meta", None), "classes", None)
    if classes:
        return len(classes)
    with torch.no_grad():
        return int(model(x.to(_device_of(model)).unsqueeze(0)).shape[1])


def smoothing_of(model, sigma: float, x: torch.Tensor) -> Smooth:
    """The project's smoothed classifier (engine/smoothing.py) of ``model`` at noise level σ: its
    sampler (SAMPLEUNDERNOISE in chunks, the base classifier run in its fastest verified form) is
    what every noisy count here comes from, so the map and the certificate use one implementation."""
    return Smooth(model, _num_classes(model, x), sigma)


def binomial_p_values(n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the binomial test of p = 1/2 for n_a successes in n_a + n_b trials,
    vectorised: for p = 1/2 the distribution is symmetric, so scipy's ``binomtest(n_a, n_a + n_b,
    0.5).pvalue`` is exactly min(1, 2·P[Bin(n_a + n_b, 1/2) ≤ min(n_a, n_b)]) (tests check this)."""
    n_a, n_b = np.asarray(n_a), np.asarray(n_b)
    trials = n_a + n_b
    p = np.minimum(1.0, 2.0 * binom_distribution.cdf(np.minimum(n_a, n_b), trials, 0.5))
    return np.where(trials > 0, p, 1.0)


def predict_counts(counts: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Cohen et al.'s PREDICT (Sec. 3.2) on many points' counts (..., classes): (top class,
    significant). Significant when the binomial test of the top two counts nA, nB rejects p = 1/2 at
    level α; elsewhere the smoothed classifier abstains (Prop. 1: a significant answer is wrong with
    probability at most α)."""
    counts = np.asarray(counts)
    order = np.argsort(-counts, axis=-1, kind="stable")
    top = order[..., 0]
    n_a = np.take_along_axis(counts, order[..., :1], -1)[..., 0]
    n_b = np.take_along_axis(counts, order[..., 1:2], -1)[..., 0] if counts.shape[-1] > 1 else np.zeros_like(n_a)
    return top, binomial_p_values(n_a, n_b) <= alpha


def predict_from_counts(counts: np.ndarray, alpha: float) -> tuple[int, bool]:
    """Cohen et al.'s PREDICT on one point's counts: (top class, significant). The prediction is
    significant when the two-sided binomial test of the top two counts nA, nB rejects p = 1/2 at α
    (binomtest(nA, nA + nB, 0.5).pvalue ≤ α); otherwise the smoothed classifier abstains."""
    order = np.argsort(-counts, kind="stable")
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]]) if len(counts) > 1 else 0
    if n_a + n_b == 0:
        return int(order[0]), False
    return int(order[0]), bool(binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha)


# ---------------------------------------------------------------- the smoothed classifier's map

@dataclass(frozen=True)
class SmoothedMap:
    """g on a size × size grid, as far as computed.

    ``counts[i, j]`` are the noise-sample class counts at x + axis[i]·u + axis[j]·v (n per point),
    ``classes`` the top class, ``top_counts`` its count, ``significant`` whether PREDICT's test
    passed (not abstaining). ``computed`` marks the points of this level already sampled; the others
    show the nearest point of the coarser level (``significant`` False there), so a partial map is
    already a full picture. ``level`` indexes ``sizes`` (the refinement schedule).
    """
    extent: float
    axis: np.ndarray
    counts: np.ndarray
    classes: np.ndarray
    top_counts: np.ndarray
    significant: np.ndarray
    computed: np.ndarray
    n: int
    alpha: float
    sigma: float
    level: int
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.axis)

    @property
    def complete(self) -> bool:
        return bool(self.computed.all()) and self.level == len(self.sizes) - 1

    @property
    def predictions(self) -> np.ndarray:
        """PREDICT at every grid point: the top class where significant, ABSTAIN (−1) elsewhere."""
        return np.where(self.significant & self.computed, self.classes, ABSTAIN)


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Nearest coarser-level value for every point of the next level (index i ↔ coarse i // 2)."""
    index = np.minimum(np.arange(size) // 2, coarse.shape[0] - 1)
    return coarse[np.ix_(index, index)]


def smoothed_map_job(model, plane: Plane, extent: float, *, sigma: float, n: int = 100, alpha: float = 0.001,
                     final_size: int = 41, coarsest: int = 11, batch_size: int = 1000, seed: int = 0,
                     smooth: Smooth | None = None):
    """Job computing g on nested grids (coarse first), streaming ``Partial("smoothed-map", SmoothedMap)``
    after every batch and Progress over all levels' samples; Finished(the final SmoothedMap).

    A point's n draws are its own independent sample (Cohen et al.'s PREDICT, Prop. 1: a significant
    answer is wrong with probability at most α), drawn from one seeded generator in grid order.
    """
    _check_positive("σ", sigma)
    _check_alpha(alpha)
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and the batch size must be positive, got n={n}, batch={batch_size}")
    sizes = refinement_sizes(final_size, coarsest)
    grid_axis(extent, sizes[-1])  # validates the extent

    def job(cancel: CancelToken):
        smoother = smooth or smoothing_of(model, sigma, plane.origin)
        on_device = plane.to(smoother.device)
        generator = _generator(smoother.device, stream_seed(seed, "smoothed-map"))
        new_per_level = [sizes[0] ** 2] + [s * s - p * p for p, s in zip(sizes, sizes[1:])]
        total, done = n * sum(new_per_level), 0
        previous: SmoothedMap | None = None
        for level, size in enumerate(sizes):
            axis = grid_axis(extent, size)
            counts = np.zeros((size, size, smoother.num_classes), dtype=np.int64)
            computed = np.zeros((size, size), dtype=bool)
            significant = np.zeros((size, size), dtype=bool)
            classes = np.zeros((size, size), dtype=np.int64)
            if previous is not None:  # the coarser grid's points are this grid's even-indexed points
                counts[::2, ::2] = previous.counts
                computed[::2, ::2] = True
                significant[::2, ::2] = previous.significant
                classes[::2, ::2] = previous.classes
                shown = _upsample(previous.classes, size)
            else:
                shown = np.zeros((size, size), dtype=np.int64)
            message = f"smoothed classifier: {size}×{size} grid, n={n} per point"
            last_shown = time.monotonic()
            todo = np.argwhere(~computed)  # row by row along u: the picture fills in sweeps
            for number, (i, j) in enumerate(todo):
                point = on_device.points([axis[i]], [axis[j]])[0]  # not clamped (module docstring)
                for chunk in smoother.sample_chunks(point, n, batch_size, generator):
                    counts[i, j] += chunk
                    cancel.check()
                top, passed = predict_counts(counts[i, j], alpha)
                classes[i, j], significant[i, j], computed[i, j] = top, passed, True
                done += n
                # a complete picture at most ~25 times a second, and at the end of every level
                if time.monotonic() - last_shown >= PARTIAL_INTERVAL_S or number == len(todo) - 1:
                    last_shown = time.monotonic()
                    yield Partial("smoothed-map", SmoothedMap(
                        float(extent), axis, counts.copy(), np.where(computed, classes, shown),
                        counts.max(axis=2), significant.copy(), computed.copy(), int(n), float(alpha),
                        float(sigma), level, sizes))
                    yield Progress(done, total, message)
            previous = SmoothedMap(float(extent), axis, counts, classes, counts.max(axis=2), significant,
                                   computed, int(n), float(alpha), float(sigma), level, sizes)
        yield Finished(previous)

    return job


def smoothed_map(model, plane: Plane, extent: float, **options) -> SmoothedMap:
    return run_to_end(smoothed_map_job(model, plane, extent, **options))


# ---------------------------------------------------------------- the noise cloud

@dataclass(frozen=True)
class NoiseCloud:
    """Noise draws ε ~ N(0, σ²I) seen in the plane: ``coordinates`` (m, 2) = (⟨ε, u⟩, ⟨ε, v⟩),
    ``classes`` = f(x + ε) (what each draw votes for) and ``norms`` = ‖ε‖₂ (≈ σ√d, far longer than
    the in-plane part, whose standard deviation is σ)."""
    coordinates: np.ndarray
    classes: np.ndarray
    norms: np.ndarray
    sigma: float


def noise_cloud(model, plane: Plane, sigma: float, samples: int = 300, seed: int = 1,
                smooth: Smooth | None = None) -> NoiseCloud:
    """``samples`` draws x + ε (engine/smoothing.py's ``noise_samples``) seen in the plane."""
    _check_positive("σ", sigma)
    if samples < 1:
        raise ValueError(f"the noise cloud needs at least one sample, got {samples}")
    smooth = smooth or smoothing_of(model, sigma, plane.origin)
    drawn = smooth.noise_samples(plane.origin, int(samples),
                                 generator=_generator(smooth.device, stream_seed(seed, "cloud")))
    offsets = torch.as_tensor(drawn.noisy) - plane.origin  # ε itself
    return NoiseCloud(plane.offset_coordinates(offsets), np.asarray(drawn.predictions),
                      np.asarray(drawn.noise_norms), float(sigma))


# ---------------------------------------------------------------- the certified disk

@dataclass(frozen=True)
class CertifiedDisk:
    """CERTIFY's answer at x: class ``cls`` (ABSTAIN = −1) and radius R = σ Φ⁻¹(p_A lower)
    (0 when abstaining). In any plane through x the certified L2 ball is the disk of radius R.
    ``certificate``: the full evidence (engine/smoothing.py) when computed here."""
    cls: int
    radius: float
    sigma: float
    certificate: Certificate | None = None
    source: str = "computed"

    @property
    def abstained(self) -> bool:
        return self.cls == ABSTAIN

    @classmethod
    def from_certificate(cls, certificate: Certificate, source: str = "computed") -> "CertifiedDisk":
        return cls(int(certificate.prediction), float(certificate.radius), float(certificate.sigma),
                   certificate, source)


def certify_job(model, image, *, sigma: float, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
                batch_size: int = 1000, seed: int = 0, smooth: Smooth | None = None):
    """CERTIFY (Cohen et al. 2019, Sec. 3.2) at x with engine/smoothing.py's ``Smooth``, as a job:
    Progress before and after, Finished(CertifiedDisk); cancellable between chunks.

    It does not yield between chunks: ``certify_steps`` is suspended inside ``torch.inference_mode()``
    there, and yielding would hand that mode to the engine thread's other jobs."""
    _check_positive("σ", sigma)
    _check_alpha(alpha)
    x = _as_image(image)

    def job(cancel: CancelToken):
        smoother = smooth or smoothing_of(model, sigma, x)
        generator = _generator(smoother.device, stream_seed(seed, "certify"))
        yield Progress(0, n0 + n, f"certifying x (n = {n:,})")
        certificate = None
        for update in smoother.certify_steps(x, n0, n, alpha, batch_size, generator):
            cancel.check()  # raising here closes certify_steps, ending its inference mode
            certificate = update.certificate
        yield Progress(n0 + n, n0 + n, f"certifying x (n = {n:,})")
        yield Finished(CertifiedDisk.from_certificate(certificate))

    return job


def certify(model, image, **options) -> CertifiedDisk:
    return run_to_end(certify_job(model, image, **options))


def in_disk(smoothed_or_base, radius: float) -> np.ndarray:
    """Boolean mask of the grid points strictly inside the disk of radius R around x."""
    a, b = np.meshgrid(smoothed_or_base.axis, smoothed_or_base.axis, indexing="ij")
    return a ** 2 + b ** 2 < radius ** 2


@dataclass(frozen=True)
class DiskCheck:
    """How the smoothed map agrees with the certificate inside the disk: ``checked`` grid points
    strictly inside, ``abstained`` of them where PREDICT abstained, ``agreeing`` / ``disagreeing``
    significant predictions equal to / different from the certified class."""
    checked: int
    abstained: int
    agreeing: int
    disagreeing: int


def check_disk(smoothed: SmoothedMap, disk: CertifiedDisk) -> DiskCheck:
    inside = in_disk(smoothed, disk.radius) & smoothed.computed
    predictions = smoothed.predictions[inside]
    abstained = int((predictions == ABSTAIN).sum())
    agreeing = int((predictions == disk.cls).sum())
    return DiskCheck(int(inside.sum()), abstained, agreeing, int(inside.sum()) - abstained - agreeing)


# ---------------------------------------------------------------- the attack point

@dataclass(frozen=True)
class AttackPoint:
    """An adversarial image seen in the plane: ``coordinates`` (a, b), ``off_plane`` its L2 distance
    to the plane (0 when u is its own direction), ``distance`` ‖x_adv − x‖₂, ``base_class``
    f(x_adv), how it was made (``source``: "attack panel" or "PGD L2 ε=…"), and g(x_adv) by PREDICT
    with ``smoothed_n`` draws (``smoothed_class``)."""
    coordinates: tuple[float, float]
    off_plane: float
    distance: float
    base_class: int
    source: str
    image: np.ndarray | None = None
    smoothed_class: int | None = None  # PREDICT at x_adv (ABSTAIN = −1), when asked for
    smoothed_n: int | None = None


def locate_attack(model, plane: Plane, adversarial, source: str) -> AttackPoint:
    adversarial = _as_image(adversarial)
    offset = (adversarial - plane.origin).unsqueeze(0)
    a, b = plane.offset_coordinates(offset)[0]
    residual = offset[0] - float(a) * plane.u - float(b) * plane.v
    return AttackPoint((float(a), float(b)), float(residual.double().norm()), float(offset.double().norm()),
                       predicted_class(model, adversarial), source, adversarial.numpy())


def pgd_adversarial(model, image, label: int, *, eps: float, steps: int = 40, seed: int = 0) -> torch.Tensor:
    """An L2 PGD adversarial image for the base classifier within ‖δ‖₂ ≤ ε (engine/attacks.py)."""
    from .attacks import pgd

    _check_positive("ε", eps)
    x = _as_image(image)
    device = _device_of(model)
    with _gradients_on():
        adversarial = pgd(model, x.to(device).unsqueeze(0).clone(), torch.tensor([int(label)], device=device),
                          norm="l2", eps=float(eps), step_size=2.5 * eps / steps, steps=steps, random_start=False,
                          generator=_generator(device, seed))
    return adversarial[0].detach().cpu()


# ---------------------------------------------------------------- the whole figure as one job

@dataclass(frozen=True)
class GeometryRequest:
    """Everything the Geometry panel asks for. ``extent`` None: chosen from R, the attack's distance
    and σ (:func:`default_extent`). ``disk`` None: certified here with ``certify_n0`` / ``certify_n``.
    ``adversarial`` None: L2 PGD at ``attack_eps`` on the base classifier (skipped when that is None).
    """
    sigma: float
    extent: float | None = None
    base_size: int = 101
    smooth_size: int = 41
    n: int = 100
    alpha: float = 0.001
    batch_size: int = 1000
    seed: int = 0
    label: int | None = None
    adversarial: object = None
    attack_source: str = "attack panel"
    attack_eps: float | None = 1.0
    disk: CertifiedDisk | None = None
    certify_n0: int = 100
    certify_n: int = 10_000
    cloud_samples: int = 300
    attack_n: int = 1000
    compute_smoothed: bool = True


@dataclass(frozen=True)
class GeometryResult:
    plane: Plane
    extent: float
    base: BaseMap
    smoothed: SmoothedMap | None
    disk: CertifiedDisk
    attack: AttackPoint | None
    cloud: NoiseCloud
    disk_check: DiskCheck | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)


def default_extent(radius: float, sigma: float, attack_distance: float | None = None) -> float:
    """Half-width of the view: the disk twice over, the noise cloud's 3σ, and the attack point with
    a margin, whichever is largest."""
    candidates = [2.0 * radius, 3.0 * sigma]
    if attack_distance:
        candidates.append(1.25 * attack_distance)
    return float(max(candidates))


def geometry_job(model, image, request: GeometryRequest):
    """The Geometry panel's job. Events, in order: Partial("disk") (CertifiedDisk), Partial("plane"),
    Partial("attack") (AttackPoint, when there is one), Partial("extent") (float), Partial("base-map"),
    Partial("noise-cloud"), then Partial("smoothed-map") refining, with Progress throughout;
    Finished(GeometryResult). One ``Smooth`` serves the certificate, the cloud, PREDICT at the attack
    point and the map, so its fast forward is built once."""
    _check_positive("σ", request.sigma)
    if request.extent is not None:
        _check_positive("the extent", request.extent)
    x = _as_image(image)
    classes = tuple(getattr(getattr(model, "meta", None), "classes", ()) or ())

    def relay(inner, cancel, label):
        result = None
        for event in inner(cancel):
            if isinstance(event, Finished):
                result = event.result
            elif isinstance(event, Progress):
                yield Progress(event.done, event.total, label or event.message)
            else:
                yield event
        return result

    def job(cancel: CancelToken):
        smooth = smoothing_of(model, request.sigma, x)  # one Smooth: its fast forward is built once
        label = request.label if request.label is not None else predicted_class(model, x)
        disk = request.disk
        if disk is None:
            disk = yield from relay(certify_job(model, x, sigma=request.sigma, n0=request.certify_n0,
                                                n=request.certify_n, alpha=request.alpha,
                                                batch_size=request.batch_size, seed=request.seed, smooth=smooth),
                                    cancel, "certifying x for the disk")
        yield Partial("disk", disk)
        cancel.check()
        adversarial, source = request.adversarial, request.attack_source
        if adversarial is None and request.attack_eps:
            yield Progress(0, 1, f"PGD (L2, ε={request.attack_eps:g}) on the base classifier")
            adversarial = pgd_adversarial(model, x, label, eps=request.attack_eps, seed=request.seed)
            source = f"PGD L2 ε={request.attack_eps:g}"
        direction = None if adversarial is None else _as_image(adversarial) - x
        plane = plane_through(model, x, direction=direction, label=label, seed=request.seed)
        yield Partial("plane", plane)
        attack = None
        if adversarial is not None:
            cancel.check()
            attack = locate_attack(model, plane, adversarial, source)
            # what the smoothed classifier says there: PREDICT with its own seeded draws
            verdict = smooth.predict_detailed(_as_image(adversarial), request.attack_n, request.alpha,
                                              request.batch_size,
                                              _generator(smooth.device, stream_seed(request.seed, "attack")))
            attack = replace(attack, smoothed_class=int(verdict.prediction), smoothed_n=int(request.attack_n))
            yield Partial("attack", attack)
        extent = request.extent or default_extent(disk.radius, request.sigma,
                                                  attack.distance if attack else None)
        yield Partial("extent", extent)
        base = yield from relay(base_map_job(model, plane, extent, request.base_size), cancel, "")
        yield Partial("base-map", base)
        cancel.check()
        cloud = noise_cloud(model, plane, request.sigma, request.cloud_samples, seed=request.seed, smooth=smooth)
        yield Partial("noise-cloud", cloud)
        smoothed = check = None
        if request.compute_smoothed:
            smoothed = yield from relay(
                smoothed_map_job(model, plane, extent, sigma=request.sigma, n=request.n, alpha=request.alpha,
                                 final_size=request.smooth_size, batch_size=request.batch_size,
                                 seed=request.seed, smooth=smooth), cancel, "")
            if not disk.abstained:
                check = check_disk(smoothed, disk)
        yield Finished(GeometryResult(plane, extent, base, smoothed, disk, attack, cloud, check, classes))

    return job
