"""Where the base classifier f and the smoothed classifier g decide what, on a grid of the slice
(engine/geometry_plane.py): the two maps of the Geometry figure (Cohen et al. 2019, Fig. 1, computed on
a real model).

- f on a grid of the plane, one batched forward pass per chunk of points;
- g(p) = argmax_c P[f(p + ε) = c], ε ~ N(0, σ²I), on a grid refined progressively (11×11, 21×21,
  41×41, ...: each grid holds the previous one, so no point is ever sampled twice) with n noise
  samples per point, drawn by engine/smoothing.py's ``Smooth`` (the same sampler CERTIFY uses). Each
  point gets Cohen et al.'s PREDICT (Sec. 3.2, Prop. 1): the top class, its count, and whether the
  two-sided binomial test of the top two counts is significant at α (otherwise g abstains there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import binom as binom_distribution
from scipy.stats import binomtest

from .checks import check_count, check_finite_outputs, check_images
from .geometry_plane import Plane, check_alpha, check_positive, device_of, grid_axis, refinement_sizes, \
    seeded_generator, stream_seed
from .jobs import CancelToken, Finished, Partial, Progress, run_to_end
from .smoothing import ABSTAIN, Smooth

PARTIAL_INTERVAL_S = 0.04  # partial maps: as often as the eye needs
BASE_FORWARD_BATCH = 256  # activations of 256 28×28 images stay in cache (bench: faster than 1024)


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
    check_count(batch_size, "batch size")
    check_images(plane.origin)  # the plane goes through an image: finite and in [0, 1]

    def job(cancel: CancelToken):
        device = device_of(model)
        on_device = plane.to(device)
        a, b = np.meshgrid(axis, axis, indexing="ij")
        a, b = a.ravel(), b.ravel()
        classes = np.empty(a.size, dtype=np.int64)
        confidence = np.empty(a.size, dtype=np.float32)
        for start in range(0, a.size, batch_size):
            cancel.check()
            stop = min(a.size, start + batch_size)
            with torch.inference_mode():
                logits = model(on_device.points(a[start:stop], b[start:stop]))
                check_finite_outputs(logits)
                probabilities = torch.softmax(logits.float(), dim=1)
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
        return int(model(x.to(device_of(model)).unsqueeze(0)).shape[1])


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
    check_positive("σ", sigma)
    check_alpha(alpha)
    check_count(n, "n")
    check_count(batch_size, "batch size")
    check_images(plane.origin)
    sizes = refinement_sizes(final_size, coarsest)
    grid_axis(extent, sizes[-1])  # validates the extent

    def job(cancel: CancelToken):
        smoother = smooth or smoothing_of(model, sigma, plane.origin)
        on_device = plane.to(smoother.device)
        generator = seeded_generator(smoother.device, stream_seed(seed, "smoothed-map"))
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
