"""What the Geometry figure draws over the maps (engine/geometry_maps.py): the certified disk, the noise
cloud and the attack point, each seen in the slice (engine/geometry_plane.py).

- the certified disk: CERTIFY (Cohen et al. 2019, Sec. 3.2) at x, radius R = σ Φ⁻¹(p_A lower); in any
  plane through x the certified L2 ball is the disk of radius R;
- the noise cloud: samples x + ε projected onto the plane, at (⟨ε, u⟩, ⟨ε, v⟩), coloured by f(x + ε).
  In the plane the cloud has standard deviation σ, while ‖ε‖₂ ≈ σ√d: the projection hides almost all
  of the noise's length (the lecture point R = O(σ) ≪ ‖ε‖₂ = O(σ√d));
- the attack point: an adversarial image's coordinates in the plane and its distance off it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_count, check_images, model_input_shape
from .geometry_maps import SmoothedMap, smoothing_of
from .geometry_plane import Plane, as_image, check_alpha, check_positive, device_of, gradients_on, \
    predicted_class, seeded_generator, stream_seed
from .jobs import CancelToken, Finished, Progress, run_to_end
from .smoothing import ABSTAIN, Certificate, Smooth


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
    check_positive("σ", sigma)
    if samples < 1:
        raise ValueError(f"the noise cloud needs at least one sample, got {samples}")
    smooth = smooth or smoothing_of(model, sigma, plane.origin)
    drawn = smooth.noise_samples(plane.origin, int(samples),
                                 generator=seeded_generator(smooth.device, stream_seed(seed, "cloud")))
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


def certified_disk_job(model, image, *, sigma: float, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
                        batch_size: int = 1000, seed: int = 0, smooth: Smooth | None = None):
    """CERTIFY (Cohen et al. 2019, Sec. 3.2) at x with engine/smoothing.py's ``Smooth``, as a job:
    Progress before and after, Finished(CertifiedDisk); cancellable between chunks.

    It does not yield between chunks: ``certify_steps`` is suspended inside ``torch.inference_mode()``
    there, and yielding would hand that mode to the engine thread's other jobs."""
    check_positive("σ", sigma)
    check_alpha(alpha)
    x = as_image(image)
    check_images(x, model_input_shape(model))
    for value, name in ((n0, "n0"), (n, "n"), (batch_size, "batch size")):
        check_count(value, name)

    def job(cancel: CancelToken):
        smoother = smooth or smoothing_of(model, sigma, x)
        generator = seeded_generator(smoother.device, stream_seed(seed, "certify"))
        yield Progress(0, n0 + n, f"certifying x (n = {n:,})")
        certificate = None
        for update in smoother.certify_steps(x, n0, n, alpha, batch_size, generator):
            cancel.check()  # raising here closes certify_steps, ending its inference mode
            certificate = update.certificate
        yield Progress(n0 + n, n0 + n, f"certifying x (n = {n:,})")
        yield Finished(CertifiedDisk.from_certificate(certificate))

    return job


def certified_disk(model, image, **options) -> CertifiedDisk:
    return run_to_end(certified_disk_job(model, image, **options))


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
    adversarial = as_image(adversarial)
    check_images(adversarial, tuple(plane.origin.shape), "the adversarial image")
    offset = (adversarial - plane.origin).unsqueeze(0)
    a, b = plane.offset_coordinates(offset)[0]
    residual = offset[0] - float(a) * plane.u - float(b) * plane.v
    return AttackPoint((float(a), float(b)), float(residual.double().norm()), float(offset.double().norm()),
                       predicted_class(model, adversarial), source, adversarial.numpy())


def pgd_adversarial(model, image, label: int, *, eps: float, steps: int = 40, seed: int = 0) -> torch.Tensor:
    """An L2 PGD adversarial image for the base classifier within ‖δ‖₂ ≤ ε (engine/attacks.py)."""
    from .attacks import pgd

    check_positive("ε", eps)
    x = as_image(image)
    device = device_of(model)
    with gradients_on():
        adversarial = pgd(model, x.to(device).unsqueeze(0).clone(), torch.tensor([int(label)], device=device),
                          norm="l2", eps=float(eps), step_size=2.5 * eps / steps, steps=steps, random_start=False,
                          generator=seeded_generator(device, seed))
    return adversarial[0].detach().cpu()

