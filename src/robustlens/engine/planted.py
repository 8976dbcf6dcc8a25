"""Planted non-robust features: a controlled Fashion-MNIST on which Ilyas et al. 2019's theory must show.

Ilyas et al. (Sec. 4) model a non-robust feature as a direction that is perfectly predictive of the
label yet small next to the robust model's ε. We plant one per class: image x of class y becomes

    x̃ = clip(x + p_y, 0, 1),

where p_0 … p_{C−1} are fixed, seeded patterns: random ±1 values on a grid of ``block``×``block``-pixel
squares (default 4: the 7×7 grid that fmnist-cnn's two 2×2 max-pools leave, so one value per cell of
its last feature map), made
orthogonal to each other, to the constant image and to every class's mean image by Gram–Schmidt (so a
pattern changes no image's mean brightness, no two patterns share a component, and on real images the
component along a pattern is zero on average in every class), then scaled to the same L2 norm ``norm``
(default 1.0 on [0,1] pixels, against the robust model's ε = 1.5; about 0.036 per pixel, 9/255: invisible).

Clipping to [0,1] keeps x̃ a valid image but removes the part of p_y that would push a black (0) or
white (1) pixel outside the range: Fashion-MNIST's black background loses the pattern's negative
half there, so the pattern an image really carries, x̃ − x, has a smaller norm than ``norm``
(:func:`planted_norms` measures it; the README gives the figure).

The planted dataset is ``fashion-mnist-planted`` for :func:`engine.data.load_dataset`: both splits
carry the pattern of each image's own class (as in the paper's distribution, where the feature is part
of the data). :func:`with_patterns` plants any class's pattern on any image, for the test where a
pattern disagrees with the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import Dataset

PLANTED_NAME = "fashion-mnist-planted"
BASE_NAME = "fashion-mnist"


@dataclass(frozen=True)
class PatternSpec:
    """The planted pattern family: ``classes`` patterns of shape ``shape``, ±1 on a ``block``×``block``
    pixel grid before orthogonalisation, L2 norm ``norm`` each, drawn with ``seed``."""
    classes: int = 10
    shape: tuple[int, int, int] = (1, 28, 28)
    norm: float = 1.0
    block: int = 4
    seed: int = 0

    def validate(self) -> None:
        channels, height, width = self.shape
        if self.block < 1 or height % self.block or width % self.block:
            raise ValueError(f"the pattern block ({self.block}) must divide the image size {height}×{width}")
        cells = channels * (height // self.block) * (width // self.block)
        if not 2 <= self.classes or 2 * self.classes + 1 > cells:
            raise ValueError(f"{self.classes} patterns orthogonal to {self.classes} class means and the constant "
                             f"image need {2 * self.classes + 1} grid cells; the grid has {cells}")
        if not (np.isfinite(self.norm) and self.norm > 0):
            raise ValueError(f"the pattern norm must be a positive number, got {self.norm}")

    def to_dict(self) -> dict:
        return {"classes": self.classes, "shape": list(self.shape), "norm": self.norm, "block": self.block,
                "seed": self.seed}


DEFAULT_SPEC = PatternSpec()


def builtin_class_means(spec: PatternSpec = DEFAULT_SPEC) -> np.ndarray:
    """The mean image of each class of the built-in Fashion-MNIST training subset (shipped with the
    package, so the same on every machine), a (classes, C·H·W) float64 array."""
    from .data import load_fashion_mnist

    train = load_fashion_mnist("train", builtin_only=True)
    if train.image_shape != spec.shape or len(train.classes) != spec.classes:
        raise ValueError(f"the built-in training set has {len(train.classes)} classes of {train.image_shape}, "
                         f"not the {spec.classes} of {spec.shape} the patterns are for")
    flat = train.images.flatten(1).double()
    return torch.stack([flat[train.labels == c].mean(0) for c in range(spec.classes)]).numpy()


def class_patterns(spec: PatternSpec = DEFAULT_SPEC) -> torch.Tensor:
    """The patterns p_c, a (classes, C, H, W) float32 tensor, each of L2 norm ``spec.norm`` and
    orthogonal to the constant image, to every class's mean image (of the built-in training set) and to
    the other patterns: so on the real images, class by class, the component along any p_c averages to
    about zero, and whatever component along p_y an image has was planted. Same spec, same patterns
    (numpy's seeded PCG64)."""
    spec.validate()
    channels, height, width = spec.shape
    grid = (channels, height // spec.block, width // spec.block)
    cells = int(np.prod(grid))
    signs = np.random.default_rng(spec.seed).choice([-1.0, 1.0], size=(spec.classes, cells))
    # the class means on the pattern's grid: a block-averaged image has the same inner product (up to
    # the factor block²) with a block-constant pattern as the image itself
    means = builtin_class_means(spec).reshape(spec.classes, channels, grid[1], spec.block, grid[2], spec.block)
    means = means.mean(axis=(3, 5)).reshape(spec.classes, cells)
    avoid = np.vstack([np.ones((1, cells)), means])
    # QR of [avoid…, s_0, …, s_{C−1}] is Gram–Schmidt in that order: each sign pattern loses its
    # components along the constant image, the class means and every earlier pattern
    basis, _ = np.linalg.qr(np.column_stack([avoid.T, signs.T]))
    patterns = basis[:, len(avoid):].T.reshape(spec.classes, *grid)
    # each grid cell becomes a block×block square; a common factor, so orthogonality survives
    patterns = np.repeat(np.repeat(patterns, spec.block, axis=2), spec.block, axis=3)
    flat = patterns.reshape(spec.classes, -1)
    patterns = patterns * (spec.norm / np.linalg.norm(flat, axis=1)).reshape(-1, 1, 1, 1)
    return torch.from_numpy(patterns.astype(np.float32))


def with_patterns(images: torch.Tensor, classes: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """clip(x_i + p_{classes_i}, 0, 1) for every image."""
    classes = torch.as_tensor(classes, dtype=torch.long)
    return (images + patterns[classes].to(images.device)).clamp_(0.0, 1.0)


def planted_norms(images: torch.Tensor, classes: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """‖x̃ − x‖₂ per image: the norm of the pattern each image really carries after clipping."""
    delta = with_patterns(images, classes, patterns) - images
    return delta.flatten(1).norm(dim=1)


def pattern_cosines(delta: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """cos(δ_i, p_c) for every image i and class c, an (N, classes) tensor: how much of a perturbation
    (or of an image's difference from another) points along each planted pattern."""
    flat = delta.flatten(1)
    units = patterns.flatten(1).to(flat)
    units = units / units.norm(dim=1, keepdim=True)
    return (flat @ units.T) / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def pattern_projections(images: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """⟨x_i, p_c⟩ / ‖p_c‖ for every image and class, an (N, classes) tensor: the component of an image
    along each pattern. On a planted image the own class's component stands out by about ‖p‖."""
    units = patterns.flatten(1).to(images)
    units = units / units.norm(dim=1, keepdim=True)
    return images.flatten(1) @ units.T


def planted_dataset(dataset: Dataset, spec: PatternSpec = DEFAULT_SPEC) -> Dataset:
    """``dataset`` with each image carrying its own class's pattern (the planted training or test split)."""
    if dataset.image_shape != spec.shape or len(dataset.classes) != spec.classes:
        raise ValueError(f"the patterns are for {spec.classes} classes of shape {spec.shape}, "
                         f"not {len(dataset.classes)} of {dataset.image_shape}")
    patterns = class_patterns(spec)
    return Dataset(PLANTED_NAME, dataset.split, with_patterns(dataset.images, dataset.labels, patterns),
                   dataset.labels.clone(), dataset.classes,
                   f"{dataset.source} + class pattern (L2 {spec.norm:g}, block {spec.block}, seed {spec.seed})",
                   dataset.indices)


def load_planted(split: str, root=None) -> Dataset:
    """The ``fashion-mnist-planted`` split (default patterns) for :func:`engine.data.load_dataset`."""
    from .data import load_fashion_mnist

    return planted_dataset(load_fashion_mnist(split, root))
