"""The geometry of a certificate as one job: decision regions in a 2-D slice of input space through one
image, with the certified disk, the noise cloud and the attack point.

The lecture figure of randomized smoothing (Cohen et al. 2019, Fig. 1), computed on a real model, in
the modules it is built from:

- engine/geometry_plane.py: the plane x + a·u + b·v through the image (u toward the attack, v random
  and orthogonal; a, b are L2 distances) and the grids on it;
- engine/geometry_maps.py: the base classifier f and the smoothed classifier g on those grids (g by
  Cohen et al.'s PREDICT at every point, refined coarse first);
- engine/geometry_overlays.py: the certified disk (CERTIFY at x), the noise cloud and the attack point
  seen in the plane.

:func:`geometry_job` runs them in the order the figure fills in, for the GUI's Geometry tab and for
docs/geometry/make_report.py alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .checks import check_count, check_images, check_probability
from .geometry_maps import BaseMap, SmoothedMap, base_map_job, smoothed_map_job
from .geometry_overlays import AttackPoint, CertifiedDisk, DiskCheck, NoiseCloud, certified_disk_job, check_disk, \
    locate_attack, noise_cloud, pgd_adversarial
from .geometry_plane import Plane, as_image, check_positive, plane_through, predicted_class, seeded_generator, \
    stream_seed
from .jobs import CancelToken, Finished, Partial, Progress


@dataclass(frozen=True)
class GeometryRequest:
    """Everything the Geometry panel asks for: the model ``model_key`` (what ``ModelCache.model``
    takes), the ``image`` x ((C, H, W) or (1, C, H, W), [0, 1]) and the slice's parameters.
    ``extent`` None: chosen from R, the attack's distance and σ (:func:`default_extent`). ``disk``
    None: certified here with ``certify_n0`` / ``certify_n``. ``adversarial`` None: L2 PGD at
    ``attack_eps`` on the base classifier (skipped when that is None).
    """
    model_key: str
    image: object
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


def _relay(inner, cancel, label):
    """Run a sub-job inside this one: its events pass through (Progress relabelled when ``label``
    is given), its result is returned."""
    result = None
    for event in inner(cancel):
        if isinstance(event, Finished):
            result = event.result
        elif isinstance(event, Progress):
            yield Progress(event.done, event.total, label or event.message)
        else:
            yield event
    return result


def _check_request(request: GeometryRequest, x) -> None:
    """The image finite and in [0, 1], every count and size in range, before the job starts."""
    check_images(x)
    if request.adversarial is not None:
        check_images(as_image(request.adversarial), tuple(x.shape), "the adversarial image")
    check_count(request.base_size, "the base map size", minimum=2)
    check_count(request.smooth_size, "the smoothed map size", minimum=2)
    for value, name in ((request.n, "n"), (request.batch_size, "batch size"), (request.certify_n0, "n0"),
                        (request.certify_n, "the certificate's n"), (request.cloud_samples, "noise cloud samples"),
                        (request.attack_n, "PREDICT's n at the attack point")):
        check_count(value, name)
    check_probability(request.alpha)
    if request.attack_eps:  # None or 0: no attack of our own
        check_positive("ε", request.attack_eps)


def geometry_job(cache, request: GeometryRequest):
    """The Geometry panel's job, ``fn(cache, request)`` with ``cache`` a
    :class:`~robustlens.engine.model_cache.ModelCache` (``.model(key)``, ``.smooth(key, σ)``).

    Events, in order: Partial("disk") (CertifiedDisk), Partial("plane"), Partial("attack")
    (AttackPoint, when there is one), Partial("extent") (float), Partial("base-map"),
    Partial("noise-cloud"), then Partial("smoothed-map") refining, with Progress throughout;
    Finished(GeometryResult). One ``Smooth`` (the cache's, for this model and σ) serves the
    certificate, the cloud, PREDICT at the attack point and the map, so its fast forward is built once.
    """
    check_positive("σ", request.sigma)
    if request.extent is not None:
        check_positive("the extent", request.extent)
    x = as_image(request.image)
    _check_request(request, x)

    def job(cancel: CancelToken):
        model = cache.model(request.model_key)
        smooth = cache.smooth(request.model_key, request.sigma)
        classes = tuple(getattr(getattr(model, "meta", None), "classes", ()) or ())
        label = request.label if request.label is not None else predicted_class(model, x)
        disk = request.disk
        if disk is None:
            disk = yield from _relay(certified_disk_job(model, x, sigma=request.sigma, n0=request.certify_n0,
                                                        n=request.certify_n, alpha=request.alpha,
                                                        batch_size=request.batch_size, seed=request.seed,
                                                        smooth=smooth),
                                     cancel, "certifying x for the disk")
        yield Partial("disk", disk)
        cancel.check()
        adversarial, source = request.adversarial, request.attack_source
        if adversarial is None and request.attack_eps:
            yield Progress(0, 1, f"PGD (L2, ε={request.attack_eps:g}) on the base classifier")
            adversarial = pgd_adversarial(model, x, label, eps=request.attack_eps, seed=request.seed)
            source = f"PGD L2 ε={request.attack_eps:g}"
        direction = None if adversarial is None else as_image(adversarial) - x
        plane = plane_through(model, x, direction=direction, label=label, seed=request.seed)
        yield Partial("plane", plane)
        attack = None
        if adversarial is not None:
            cancel.check()
            attack = locate_attack(model, plane, adversarial, source)
            # what the smoothed classifier says there: PREDICT with its own seeded draws
            verdict = smooth.predict_detailed(as_image(adversarial), request.attack_n, request.alpha,
                                              request.batch_size,
                                              seeded_generator(smooth.device, stream_seed(request.seed, "attack")))
            attack = replace(attack, smoothed_class=int(verdict.prediction), smoothed_n=int(request.attack_n))
            yield Partial("attack", attack)
        extent = request.extent or default_extent(disk.radius, request.sigma,
                                                  attack.distance if attack else None)
        yield Partial("extent", extent)
        base = yield from _relay(base_map_job(model, plane, extent, request.base_size), cancel, "")
        yield Partial("base-map", base)
        cancel.check()
        cloud = noise_cloud(model, plane, request.sigma, request.cloud_samples, seed=request.seed, smooth=smooth)
        yield Partial("noise-cloud", cloud)
        smoothed = check = None
        if request.compute_smoothed:
            smoothed = yield from _relay(
                smoothed_map_job(model, plane, extent, sigma=request.sigma, n=request.n, alpha=request.alpha,
                                 final_size=request.smooth_size, batch_size=request.batch_size,
                                 seed=request.seed, smooth=smooth), cancel, "")
            if not disk.abstained:
                check = check_disk(smoothed, disk)
        yield Finished(GeometryResult(plane, extent, base, smoothed, disk, attack, cloud, check, classes))

    return job
