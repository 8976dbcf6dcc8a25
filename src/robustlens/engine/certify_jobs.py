"""The certification jobs the Certify tab runs on the engine thread, each ``fn(cache, request)`` with a
frozen request of plain values captured when the run starts (``cache`` is the engine thread's
:class:`~robustlens.engine.model_cache.ModelCache`, whose ``Smooth`` per model builds its fast forward
once): certify one image with a few noise draws to show, get the noise models' fast forwards ready, and
certified accuracy against radius over a test subset, one curve per noise model.

Image ``idx`` of a dataset split is certified with seed ``seed + idx`` everywhere (the CLI's choice), so
a click, the accuracy curves and ``robustlens certify`` agree on every image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from .anytime import StopSignal
from .checks import check_count, check_images, check_probability, check_sigma
from .cost import CostEstimate, announce, certify_estimate
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress
from .smoothing import Smooth, certify_job
from .smoothing_bounds import certified_accuracy, max_certifiable_radius

NOISE_SHOWN = 4              # draws x + ε shown beside the histogram
NOISE_SEED_OFFSET = 7_919    # the displayed draws use their own generator, apart from CERTIFY's


@dataclass(frozen=True)
class CertifyParams:
    """CERTIFY's settings as a run was asked for them (captured when it starts: widgets may change
    meanwhile). ``sigma`` picks the noise model trained at it; ``seed`` + idx seeds image idx. ``mode``
    "fixed" is Cohen et al.'s CERTIFY at n; "anytime" certifies with at most n samples, valid whenever it
    stops (``engine/anytime.py``)."""
    sigma: float
    n0: int
    n: int
    alpha: float
    batch: int
    seed: int
    mode: str = "fixed"


@dataclass(frozen=True)
class CertifyRequest:
    """Certify ``image`` ((1, C, H, W) in [0, 1]) with the noise model ``model_key``; ``index`` is its
    idx in the dataset split (0 for an image from elsewhere), which makes the seed."""
    model_key: str
    image: Any = field(compare=False)
    index: int
    params: CertifyParams
    noise_shown: int = NOISE_SHOWN


def _check_params(params: CertifyParams, noise_shown: int | None = None) -> None:
    """A run's settings in range before it starts (σ finite and above 0, counts ≥ 1, 0 < α < 1)."""
    check_sigma(params.sigma)
    for value, name in ((params.n0, "n0"), (params.n, "n"), (params.batch, "batch size")):
        check_count(value, name)
    check_probability(params.alpha, "alpha")
    check_count(params.seed, "seed", minimum=-(2 ** 62))
    if noise_shown is not None:
        check_count(noise_shown, "noise draws shown")


def _prepared(cache, request: CertifyRequest):
    """Checks the request; returns (a function giving the model's smoothed classifier, the image's seed,
    a function giving the Partial("noise") event of the draws shown). Image idx is certified with seed SEED + idx,
    as the CLI does; the shown draws use their own generator, apart from CERTIFY's."""
    params = request.params
    _check_params(params, request.noise_shown)
    check_images(request.image)
    seed = params.seed + request.index

    def noise() -> Partial:
        shown = smooth_of().noise_samples(request.image, request.noise_shown, generator=seed + NOISE_SEED_OFFSET)
        return Partial("noise", shown)

    def smooth_of():
        return cache.smooth(request.model_key)

    return smooth_of, seed, noise


def certify_image_job(cache, request: CertifyRequest) -> JobFactory:
    """Partial("noise", NoiseSamples) — ``noise_shown`` draws x + ε with their classes and norms —, then
    :func:`~robustlens.engine.smoothing.certify_job`'s events: Partial("counts", CertifyUpdate) and
    Progress per chunk, Finished(Certificate)."""
    params = request.params
    smooth_of, seed, noise = _prepared(cache, request)

    def job(cancel: CancelToken):
        smooth = smooth_of()
        yield noise()
        yield announce(certify_estimate(smooth, request.image, n0=params.n0, n=params.n, batch_size=params.batch))
        yield from certify_job(smooth, request.image, n0=params.n0, n=params.n, alpha=params.alpha,
                               batch_size=params.batch, generator=seed)(cancel)

    return job


@dataclass(frozen=True)
class AnytimeCertifyRequest(CertifyRequest):
    """Certify anytime (``engine/anytime.py``) with at most ``params.n`` estimation samples; ``stop`` (set
    from the GUI thread) ends the run with the certificate of the evidence so far."""
    stop: StopSignal = field(default_factory=StopSignal, compare=False)
    target_radius: float | None = None


def certify_anytime_image_job(cache, request: AnytimeCertifyRequest) -> JobFactory:
    """Partial("noise", NoiseSamples); then per chunk Partial("counts", AnytimeUpdate) — the running counts,
    both bounds on the same samples (the confidence sequence's, valid whenever you stop, and the fixed-n
    Clopper–Pearson one) and their trace — and Progress; Finished(AnytimeCertificate) when the run ends by
    itself or right after ``request.stop`` is set (its stop_reason then says so)."""
    params = request.params
    smooth_of, seed, noise = _prepared(cache, request)

    def job(cancel: CancelToken):
        smooth = smooth_of()
        yield noise()
        # at most n samples: the estimate is the longest the run can take
        yield announce(certify_estimate(smooth, request.image, n0=params.n0, n=params.n, batch_size=params.batch))
        for update in smooth.certify_anytime(request.image, params.n0, params.n, params.alpha, params.batch,
                                             target_radius=request.target_radius, generator=seed):
            cancel.check()
            yield Partial("counts", update)
            yield Progress(update.done, update.total, f"{update.phase}: {update.drawn:,} (at most {update.phase_total:,})")
            if update.certificate is not None:
                yield Finished(update.certificate)
                return
            if request.stop.stopped and update.so_far is not None:
                yield Finished(replace(update.so_far, stop_reason=f"stopped by you after {update.drawn:,} samples"))
                return

    return job


@dataclass(frozen=True)
class PrepareRequest:
    """Noise models to get ready, each with the (C, H, W) shape of the images it will certify."""
    models: tuple[tuple[str, tuple[int, ...]], ...]


def prepare_smooths_job(cache, request: PrepareRequest) -> JobFactory:
    """Build each model's fast forward now (:meth:`Smooth.prepare`), so the first click certifies at
    full speed; Progress before each model."""

    def job(cancel: CancelToken):
        for done, (key, shape) in enumerate(request.models):
            cancel.check()
            yield Progress(done, len(request.models), f"preparing {key}")
            cache.smooth(key).prepare(shape)

    return job


@dataclass(frozen=True)
class AccuracyRow:
    """One certified image of a certified-accuracy run, with the curve of its model so far."""

    model: str                   # the label of the noise model
    sigma: float
    position: int                # position in the subset
    idx: int                     # index in the dataset split (the TSV's idx)
    label: int
    prediction: int
    radius: float
    correct: bool
    seconds: float
    radii: np.ndarray            # radius grid of the curve
    accuracy: np.ndarray         # certified accuracy at each radius over this model's rows so far
    images_done: int             # rows of this model so far


@dataclass
class AccuracyResult:
    radii: np.ndarray
    rows: dict[str, list[AccuracyRow]] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def default_radius_grid(smooths: Mapping[str, Smooth], n: int, alpha: float, points: int = 201) -> np.ndarray:
    """0 … the largest ceiling σ Φ⁻¹(α^(1/n)) among the models: no curve can go beyond it."""
    top = max(max_certifiable_radius(s.sigma, n, alpha) for s in smooths.values())
    return np.linspace(0.0, top, points)


def certified_accuracy_job(smooths: Mapping[str, Smooth], dataset, *, n0: int = 100, n: int = 1000,
                           alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                           radii: np.ndarray | None = None) -> JobFactory:
    """Certified accuracy vs radius over ``dataset`` (a Dataset, e.g. ``test.subset(range(0, 10000, 50))``)
    for each noise model: image by image, every model certifies it and a Partial("row", AccuracyRow) with
    that model's curve so far is yielded, so all curves grow together on screen. Image ``idx`` is
    certified with seed ``seed + idx`` (the CLI's choice too), so rows do not depend on the subset."""
    for value, name in ((n0, "n0"), (n, "n"), (batch_size, "batch size")):
        check_count(value, name)
    check_probability(alpha, "alpha")
    if not smooths:
        raise ValueError("no noise models to certify with")
    radii = default_radius_grid(smooths, n, alpha) if radii is None else np.asarray(radii, dtype=np.float64)

    def job(cancel: CancelToken):
        result = AccuracyResult(radii=radii, rows={name: [] for name in smooths})
        total = len(dataset) * len(smooths)
        done = 0
        for position in range(len(dataset)):
            idx = dataset.source_index(position)
            label = int(dataset.labels[position])
            for name, smooth in smooths.items():
                certificate = None
                for update in smooth.certify_steps(dataset.images[position], n0, n, alpha, batch_size,
                                                   seed + idx):
                    cancel.check()
                    certificate = update.certificate
                row = add_accuracy_row(result, name, smooth.sigma, position, idx, label, certificate.prediction,
                                       certificate.radius, certificate.seconds)
                done += 1
                yield Partial("row", row)
                yield Progress(done, total, f"{name}: image {position + 1}/{len(dataset)}")
        yield Finished(result)

    return job


def add_accuracy_row(result: AccuracyResult, name: str, sigma: float, position: int, idx: int, label: int,
                     prediction: int, radius: float, seconds: float) -> AccuracyRow:
    """The row of one certified image, with its model's curve over its rows so far, added to ``result``
    (the same whether the image was certified here or on a Ray worker)."""
    rows = result.rows[name]
    correct = prediction == label
    curve = certified_accuracy([r.radius for r in rows] + [radius], [r.correct for r in rows] + [correct],
                               result.radii)
    row = AccuracyRow(name, sigma, position, idx, label, prediction, radius, correct, seconds, result.radii, curve,
                      len(rows) + 1)
    rows.append(row)
    result.curves[name] = curve
    return row


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` positions spread evenly through ``total`` (every ⌊total/count⌋-th, from 0)."""
    count = min(count, total)
    stride = max(1, total // max(count, 1))
    return list(range(0, stride * count, stride))[:count]


@dataclass(frozen=True)
class AccuracyRequest:
    """Certified accuracy of the noise models ``model_keys`` on ``images`` test images spread evenly
    through ``dataset``, with ``n`` samples per image and the rest of ``params`` (n0, α, batch, seed)."""
    model_keys: tuple[str, ...]
    dataset: Any = field(compare=False)
    images: int
    n: int
    params: CertifyParams
    cluster: Any = None  # a cluster.ClusterOptions: certify on Ray (engine/cluster_experiments.py)


def accuracy_curves_job(cache, request: AccuracyRequest) -> JobFactory:
    """:func:`certified_accuracy_job` over the subset with the cache's smoothed classifiers: first
    Partial("estimate", CostEstimate), then a Partial("row", AccuracyRow) per model and image,
    Finished(AccuracyResult)."""
    params = request.params
    _check_params(params)
    check_count(request.images, "images", minimum=1)
    check_count(request.n, "n")
    if request.cluster is not None:
        from .cluster_experiments import ray_accuracy_curves_job

        return ray_accuracy_curves_job(cache, request)

    def job(cancel: CancelToken):
        smooths = {key: cache.smooth(key) for key in request.model_keys}
        subset = request.dataset.subset(evenly_spaced(len(request.dataset), request.images))
        per_image = sum(certify_estimate(smooth, subset.images[:1], n0=params.n0, n=request.n,
                                         batch_size=params.batch).per_unit for smooth in smooths.values())
        models = f" × {len(smooths)} models" if len(smooths) > 1 else ""
        yield announce(CostEstimate(per_image, len(subset), "image", f"{len(subset):,} images{models}"))
        yield from certified_accuracy_job(smooths, subset, n0=params.n0, n=request.n, alpha=params.alpha,
                                          batch_size=params.batch, seed=params.seed)(cancel)

    return job
