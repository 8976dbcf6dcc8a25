"""What a job will cost, said before it starts: a short probe on the actual model and input gives
seconds per unit (a forward of a batch, one gradient step of one image, one noise sample), times the
job's size.

    per_sample = probe_seconds(lambda: smooth.sample_counts(image, 1000, 1000, generator=0)) / 1000
    print(format_estimate(per_sample * (n0 + n), 20, "image", f"at n = {n:,}"))
    # estimate: about 9 min (27 s per image × 20 images at n = 100,000)

The probe runs its function once untimed (the first call builds traced graphs, fills caches, wakes the
GPU), then repeats it until ``min_seconds`` have passed, so that a short call is not timed from a single
clock reading. An estimate is for the machine as loaded now; it says "about" and rounds accordingly.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

PROBE_SECONDS = 0.2     # how long a probe times its function, after the untimed first call
PROBE_REPEATS = 50      # and at most this many timed calls
GRADIENT_PROBE_BATCH = 64  # images per probed gradient step (the cost per image is flat beyond a few dozen)


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def probe_seconds(fn: Callable[[], object], *, device="cpu", min_seconds: float = PROBE_SECONDS,
                  max_repeats: int = PROBE_REPEATS) -> float:
    """Seconds per call of ``fn``: one untimed call, then calls until ``min_seconds`` (or ``max_repeats``)."""
    fn()
    _synchronize(device)
    calls, began = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        _synchronize(device)
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds or calls >= max_repeats:
            return elapsed / calls


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def probe_seconds_per_forward(model, input_shape: Sequence[int], batch: int, *, forward=None) -> float:
    """Seconds for one inference forward of ``batch`` random inputs of shape (C, H, W); ``forward``
    (default ``model``) is what a job actually runs, e.g. a frozen TorchScript copy."""
    device = _device_of(model)
    forward = forward or model
    inputs = torch.rand((int(batch),) + tuple(input_shape), device=device,
                        generator=torch.Generator(device=device).manual_seed(0))

    def call():
        with torch.inference_mode():
            forward(inputs)

    return probe_seconds(call, device=device)


def probe_seconds_per_gradient(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds per image for one attack step: forward, cross-entropy, gradient with respect to the input
    (what PGD, APGD and the inversions repeat), probed on up to GRADIENT_PROBE_BATCH of ``images``."""
    device = _device_of(model)
    count = min(len(images), GRADIENT_PROBE_BATCH)
    x = images[:count].to(device)
    y = labels[:count].to(device)

    def call():
        delta = torch.zeros_like(x, requires_grad=True)
        loss = F.cross_entropy(model(x + delta), y)
        torch.autograd.grad(loss, delta)

    return probe_seconds(call, device=device) / max(1, count)


def format_duration(seconds: float) -> str:
    """A duration rounded as an estimate deserves: 0.4 s, 27 s, 9 min, 2.5 h, 3 days."""
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds >= 0.1 else f"{seconds:.1g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.2g} h"
    return f"{seconds / 86400:.2g} days"


def format_estimate(seconds_per_item: float, items: int, unit: str = "image", detail: str = "",
                    *, extra_seconds: float = 0.0, extra_what: str = "", prefix: str = "about") -> str:
    """One line, e.g. "estimate: about 9 min (27 s per image × 20 images at n = 100,000)".
    ``extra_seconds``: a fixed cost on top, ``extra_what`` saying what it is ("for the clean pass");
    ``prefix``: "about", or "at most" where the job may stop early."""
    total = seconds_per_item * items + extra_seconds
    units = unit if items == 1 else f"{unit}s"
    inside = f"{format_duration(seconds_per_item)} per {unit} × {items:,} {units}"
    if detail:
        inside += f" {detail}"
    if extra_seconds:
        inside += f" + {format_duration(extra_seconds)}" + (f" {extra_what}" if extra_what else "")
    return f"estimate: {prefix} {format_duration(total)} ({inside})"
