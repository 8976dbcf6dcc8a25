"""The 2-D slice of input space the Geometry figure is drawn in: a plane through one image x and the
grids laid on it.

The plane is spanned by two orthonormal directions (unit L2): u, the direction of an adversarial
perturbation δ = x_adv − x (or, without one, of the loss gradient at x), and v, a seeded random
direction made orthogonal to u. A point of the plane is p(a, b) = x + a·u + b·v, so the coordinates
(a, b) are L2 distances in [0,1]-pixel units, the units of ε, σ and the radius R;
|p(a, b) − x|₂ = √(a² + b²) exactly, and a disk of radius R around the origin is the slice of the
certified ball ‖δ‖₂ < R through this plane.

Points of the plane are NOT clamped to [0, 1]. Clamping would bend the plane into a polytope-shaped
surface, breaking |p(a, b) − x|₂ = √(a² + b²), and the certificate is a statement about the L2 ball in
R^d, not its intersection with the cube; the models accept any real input, and Cohen et al. do not
clamp noisy inputs either. Only the attack point, which PGD keeps in [0, 1], is a valid image.

Array layout: every map on a grid is indexed ``[i, j]`` with i along u (the horizontal axis a) and j
along v (the vertical axis b), ``axis[i]`` giving the coordinate: the column-major order pyqtgraph's
ImageItem expects.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_finite_outputs, check_images, model_input_shape

_TINY = 1e-12


# ---------------------------------------------------------------- shared by the geometry modules

def device_of(model) -> torch.device:
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def as_image(x) -> torch.Tensor:
    """One image as a float32 (C, H, W) CPU tensor, from (C, H, W) or (1, C, H, W), tensor or array."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"expected one image of shape (C, H, W), got shape {tuple(t.shape)}")
    return t


def check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"α must lie strictly between 0 and 1, got {alpha}")


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
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
def gradients_on():
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
    device = device_of(model)
    with gradients_on():
        image = x.to(device).unsqueeze(0).clone().requires_grad_(True)
        loss = F.cross_entropy(model(image), torch.tensor([int(label)], device=device))
        (grad,) = torch.autograd.grad(loss, image)
    return grad[0].detach().cpu()


def predicted_class(model, x: torch.Tensor) -> int:
    with torch.no_grad():
        logits = model(x.to(device_of(model)).unsqueeze(0))
    check_finite_outputs(logits)
    return int(logits.argmax(1).item())


def plane_through(model, image, *, direction=None, label: int | None = None, seed: int = 0) -> Plane:
    """The plane through ``image`` spanned by u and v (both unit L2, orthogonal).

    u is the direction of ``direction`` (e.g. the PGD perturbation x_adv − x) when it is given and
    non-zero, else the cross-entropy gradient at x for ``label`` (default: the model's prediction at
    x, so u points to where the model's own decision weakens fastest). v is a standard Gaussian drawn
    with ``seed`` and orthogonalised against u (Gram–Schmidt), so the slice is reproducible.
    """
    x = as_image(image)
    check_images(x, model_input_shape(model))
    if label is None:
        label = predicted_class(model, x)
    u, source = None, ""
    if direction is not None:
        u, length = _unit(as_image(direction))
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
    check_positive("the extent", extent)
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

