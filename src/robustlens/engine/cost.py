"""What a long job will cost, said before it runs: seconds per unit of work from a short probe on the
actual model and input shape, times the job's size.

The probe runs the work itself (a forward pass, a forward and backward pass, or any callable doing
``k`` units) after a warm-up call at doubling sizes until about ``budget_s`` has been spent; the
largest size timed gives the rate, so a batch of a few hundred images is timed as the job will run
it, not one image at a time. A rate is
remembered per model, shape, batch size and kind of pass, so a second job on the same model costs no
probe.

Every number here is an estimate under the machine's load at the time of the probe: the CLI prints it
as a job starts and the window shows it in the status bar (``Partial("estimate", CostEstimate)``).
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .attacks import model_device
from .jobs import Partial

ESTIMATE = "estimate"          # the Partial kind a job announces its cost with, before its work
PROBE_BUDGET_S = 0.2           # a probe stops doubling once it has spent this long
PROBE_BATCH = 256              # the largest probe batch when the job's own batch is not given
# the smallest batch a rate is taken from: one image at a time costs per-call overhead that a job's
# batches do not (on a busy CPU a batch of 1 made certify look 100× dearer than it ran)
SMALLEST_TIMED_BATCH = 32

_rates: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_unit(work: Callable[[int], Any], *, largest: int, budget_s: float = PROBE_BUDGET_S,
                     device: torch.device | str = "cpu") -> float:
    """Seconds per unit of ``work(k)`` (which does ``k`` units). A first call with k = 1 warms up (it
    may build a traced graph) and is not counted; then k = 1, 2, 4, … up to ``largest`` until half of
    ``budget_s`` is spent (but at least to ``SMALLEST_TIMED_BATCH``), and the size reached once more:
    the faster of its two timings is the rate (the first call at a new size pays for allocating its
    buffers)."""
    device = torch.device(device)
    largest = max(1, int(largest))

    def timed(k: int) -> float:
        _synchronize(device)
        start = time.perf_counter()
        work(k)
        _synchronize(device)
        return time.perf_counter() - start

    timed(1)
    k, spent = 1, 0.0
    while True:
        elapsed = timed(k)
        spent += elapsed
        if (spent >= budget_s / 2 and k >= SMALLEST_TIMED_BATCH) or k >= largest:
            return min(elapsed, timed(k)) / k
        k = min(2 * k, largest)


def seconds_per_pass(model: nn.Module, input_shape: Sequence[int], *, gradient: bool = False,
                     batch_size: int = PROBE_BATCH, budget_s: float = PROBE_BUDGET_S) -> float:
    """Seconds per image of one forward pass of ``model`` (``gradient``: a forward and a backward pass
    to the input, what one PGD or inversion step costs) on random images of ``input_shape`` in batches
    of up to ``batch_size``. Remembered per model, shape, batch size and kind of pass."""
    shape = tuple(int(s) for s in input_shape)
    key = (shape, int(batch_size), bool(gradient))
    remembered = _rates.setdefault(model, {}) if _weakly_referable(model) else {}
    if key in remembered:
        return remembered[key]
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(0)  # the global RNG stays where it was
    images = torch.rand((int(batch_size),) + shape, device=device, generator=generator)
    was_training = model.training
    model.eval()

    def forward(k: int) -> None:
        with torch.no_grad():
            model(images[:k])

    def forward_backward(k: int) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            x = images[:k].clone().requires_grad_(True)
            logits = model(x)
            torch.autograd.grad(logits.logsumexp(1).sum(), x)

    try:
        rate = seconds_per_unit(forward_backward if gradient else forward, largest=batch_size,
                                budget_s=budget_s, device=device)
    finally:
        model.train(was_training)
    remembered[key] = rate
    return rate


def _weakly_referable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def estimate_seconds(model: nn.Module, input_shape: Sequence[int], forward_passes: float, *,
                     gradient_passes: float = 0, batch_size: int = PROBE_BATCH,
                     budget_s: float = PROBE_BUDGET_S) -> float:
    """Seconds for ``forward_passes`` image forward passes plus ``gradient_passes`` forward-and-backward
    passes of ``model`` on images of ``input_shape``, in batches of ``batch_size`` (e.g. certifying one
    image at n0 + n samples: ``forward_passes = n0 + n``; PGD-20 on 100 images: ``gradient_passes =
    2000``)."""
    seconds = 0.0
    if forward_passes:
        seconds += forward_passes * seconds_per_pass(model, input_shape, batch_size=batch_size, budget_s=budget_s)
    if gradient_passes:
        seconds += gradient_passes * seconds_per_pass(model, input_shape, gradient=True, batch_size=batch_size,
                                                      budget_s=budget_s)
    return seconds


# ---------------------------------------------------------------- saying it

def duration_text(seconds: float) -> str:
    """'under a second', 'about 40 s', 'about 3 min', 'about 2.5 h', 'about 3 days'."""
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours = seconds / 3600
        return f"about {hours:.1f} h" if hours < 10 else f"about {hours:.0f} h"
    return f"about {seconds / 86400:.0f} days"


def _unit_text(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 0.1:
        return f"{seconds:.1f} s"
    if seconds >= 0.001:
        return f"{1000 * seconds:.0f} ms"
    return f"{1e6 * seconds:.0f} µs"


@dataclass(frozen=True)
class CostEstimate:
    """A job's cost before it runs: ``per_unit`` seconds for each of ``units`` ``unit``s (an image, an
    attacked image, a step); ``size`` says how the count is made ("120 images × 2 models")."""
    per_unit: float
    units: int
    unit: str = "image"
    size: str = ""

    @property
    def seconds(self) -> float:
        return self.per_unit * self.units

    def text(self) -> str:
        """'about 3 min (1.6 s per image, 120 images)'."""
        size = self.size or f"{self.units:,} {self.unit}{'s' if self.units != 1 else ''}"
        return f"{duration_text(self.seconds)} ({_unit_text(self.per_unit)} per {self.unit}, {size})"

    def __str__(self) -> str:
        return self.text()


def announce(estimate: CostEstimate) -> Partial:
    """The event a job yields before its work, so the window can show the estimate."""
    return Partial(ESTIMATE, estimate)


def certify_estimate(smooth, image, *, n0: int, n: int, batch_size: int, images: int = 1,
                     budget_s: float = PROBE_BUDGET_S) -> CostEstimate:
    """CERTIFY (Cohen et al. 2019, Alg. 1) on ``images`` images of ``image``'s shape: n0 + n noisy
    forward passes each, timed through the smoothed classifier's own sampling (its traced forward,
    its batch size)."""
    x = torch.as_tensor(image, dtype=torch.float32)
    x = x[0] if x.dim() == 4 else x
    shape = tuple(x.shape)
    key = ("certify", shape, int(batch_size))
    remembered = _rates.setdefault(smooth, {})
    if key not in remembered:
        generator = torch.Generator(device=smooth.device).manual_seed(0)
        remembered[key] = seconds_per_unit(
            lambda k: smooth.sample_counts(x, k, batch_size, generator=generator), largest=batch_size,
            budget_s=budget_s, device=smooth.device)
    per_image = remembered[key] * (int(n0) + int(n))
    return CostEstimate(per_image, int(images), "image")
