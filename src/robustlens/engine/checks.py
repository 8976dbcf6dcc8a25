"""One place for the checks every public engine entry point makes on what it is given, so that bad
input is a clear ``ValueError`` (one line, naming what is wrong) and never a silent wrong answer:

- :func:`check_images`: finite, in [0, 1], of the model's (C, H, W) shape. An all-NaN image would
  otherwise be "certified" (NaN logits argmax to class 0 under every draw), and ``x * 1000`` or
  ``x − 5`` would be certified or attacked as if they were images.
- :func:`check_sigma`, :func:`check_positive`, :func:`check_nonnegative`, :func:`check_count`,
  :func:`check_probability`, :func:`check_labels`: σ finite and above 0, step sizes and ε in range,
  counts whole numbers in range, α strictly between 0 and 1, classes among the model's.
- :func:`check_finite_outputs`: the model's logits are finite. Where logits become votes (the
  smoothed classifier's counts) or a loss (PGD), NaN or inf logits raise
  :class:`NonFiniteOutputError` ("the model outputs NaN for this input") instead of counting as
  class 0. One ``torch.isfinite(logits).all()`` per forward pass: nothing next to the forward itself.
- :func:`check_finite_weights`: a model whose parameters or buffers hold NaN or inf (a damaged file,
  a diverged training run) is refused when it is loaded.

Comparisons like ``x.min() < 0`` are false for NaN, so every check here asks for finiteness first.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch


class NonFiniteOutputError(ValueError):
    """The model gave NaN or infinite logits: no vote, loss or certificate can be made from them."""


# ---------------------------------------------------------------- numbers


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0 and not value.dtype == torch.bool:
            return float(value)
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def check_sigma(sigma, name: str = "σ") -> float:
    """σ as a float: a finite number above 0 (σ = inf would "certify" any class at radius inf)."""
    return check_positive(sigma, name)


def check_positive(value, name: str) -> float:
    """A finite number above 0 (σ, step sizes, extents), as a float."""
    number = _real(value, name)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number above 0, got {value}")
    return number


def check_nonnegative(value, name: str) -> float:
    """A finite number ≥ 0 (ε: 0 means no perturbation), as a float."""
    number = _real(value, name)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number of at least 0, got {value}")
    return number


def check_count(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum] (sample counts, batch sizes, steps, restarts), as an int."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            value = int(value)  # 1000.0 from a settings file or arithmetic: the same count
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def check_probability(value, name: str = "α") -> float:
    """A number strictly between 0 and 1 (a failure probability α), as a float."""
    number = _real(value, name)
    if not 0.0 < number < 1.0:  # false for NaN too
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    return number


def check_labels(labels, num_classes: int, name: str = "label") -> None:
    """Every class index in ``labels`` (a tensor, array or int) is one of 0 … num_classes − 1."""
    values = torch.as_tensor(labels)
    if values.numel() == 0:
        return
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"{name}s must be whole class indices, got {values.dtype}")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} {bad} is not a class: the model has classes 0..{num_classes - 1}")


# ---------------------------------------------------------------- images


def model_input_shape(model) -> tuple[int, ...] | None:
    """The (C, H, W) a model takes, from its metadata (None when it has none)."""
    shape = getattr(getattr(model, "meta", None), "input_shape", None)
    return tuple(int(s) for s in shape) if shape else None


def model_classes(model) -> int | None:
    """How many classes a model scores, from its metadata (None when it has none)."""
    classes = getattr(getattr(model, "meta", None), "classes", None)
    return len(classes) if classes else None


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def check_images(images, expected_shape: Sequence[int] | None = None, name: str = "the image", *,
                 unit_range: bool = True) -> None:
    """Raise ValueError unless ``images`` (one (C, H, W) image or a (N, C, H, W) batch; a tensor or an
    array) are finite, of the model's (C, H, W) ``expected_shape`` when it is given, and — unless
    ``unit_range`` is False (points of a plane through an image may leave the box) — in [0, 1].

    The message says what is wrong: "the image has 784 NaN pixels", "the image is 3×32×32, but the
    model takes 1×28×28 images", "pixel values must be in [0, 1]: the image has -5 … 1 (images are
    [0, 1] floats)". Costs one pass over the pixels: call it once per request, not per sample.
    """
    tensor = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold real pixel values, got {tensor.dtype}")
    if tensor.dim() not in (3, 4):
        raise ValueError(f"{name} must be one image (C, H, W) or a batch (N, C, H, W), "
                         f"got shape {tuple(tensor.shape)}")
    if expected_shape is not None and tuple(tensor.shape[-3:]) != tuple(int(s) for s in expected_shape):
        raise ValueError(f"{name} is {_shape_text(tensor.shape[-3:])}, but the model takes "
                         f"{_shape_text(expected_shape)} images")
    if tensor.numel() == 0:
        return
    has = "have" if name.endswith("s") else "has"  # "the image has", "the images have", "seeds have"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        nan = int(torch.isnan(tensor).sum())
        infinite = int(torch.isinf(tensor).sum())
        parts = ([_plural(nan, "NaN pixel")] if nan else []) + ([_plural(infinite, "infinite pixel")] if infinite else [])
        raise ValueError(f"{name} {has} {' and '.join(parts)}")
    if not unit_range:
        return
    low, high = (float(v) for v in torch.aminmax(tensor.detach().float()))
    if low < 0.0 or high > 1.0:
        hint = "images are [0, 1] floats"
        if low >= 0.0 and high <= 255.0:
            hint += "; did you pass 0–255?"
        raise ValueError(f"pixel values must be in [0, 1]: {name} {has} {low:.4g} … {high:.4g} ({hint})")


# ---------------------------------------------------------------- models


def check_finite_outputs(logits: torch.Tensor, what: str = "the model") -> None:
    """Raise :class:`NonFiniteOutputError` ("the model outputs NaN for this input", or inf) unless
    every logit is finite. One reduction over a (batch, classes) tensor: cheap next to the forward."""
    if not bool(torch.isfinite(logits).all()):
        kind = "NaN" if bool(torch.isnan(logits).any()) else "inf"
        raise NonFiniteOutputError(f"{what} outputs {kind} for this input")


class FiniteOutputs:
    """A model wrapped so that every forward pass checks its logits (:func:`check_finite_outputs`):
    what PGD calls, so a NaN loss never steers an attack or marks a non-finite iterate the "best"."""

    def __init__(self, model, what: str = "the model"):
        self.model, self.what = model, what
        self.meta = getattr(model, "meta", None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        check_finite_outputs(logits, self.what)
        return logits

    def __getattr__(self, attribute):  # parameters(), eval(), representation(), …: the model's own
        if attribute == "model":
            raise AttributeError(attribute)
        return getattr(self.model, attribute)


def finite_outputs(model, what: str = "the model"):
    """``model`` with its outputs checked on every call (once: wrapping twice checks once)."""
    return model if isinstance(model, FiniteOutputs) else FiniteOutputs(model, what)


def count_nonfinite(module: torch.nn.Module) -> tuple[int, int]:
    """(NaN count, infinite count) over a module's floating-point parameters and buffers."""
    nan = infinite = 0
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point() and tensor.numel():
                nan += int(torch.isnan(tensor).sum())
                infinite += int(torch.isinf(tensor).sum())
    return nan, infinite


def check_finite_weights(module: torch.nn.Module, what: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` ("model.pt has 12 NaN weights") when a module's parameters or buffers hold NaN
    or inf: such a model gives NaN logits, which would otherwise count as votes for class 0."""
    nan, infinite = count_nonfinite(module)
    if nan or infinite:
        parts = ([f"{nan:,} NaN"] if nan else []) + ([f"{infinite:,} infinite"] if infinite else [])
        raise error(f"{what} has {' and '.join(parts)} weight{'s' if nan + infinite > 1 else ''}: "
                    "the file is damaged or its training diverged")
