"""The line each long CLI command prints on stderr as it starts: what the job will cost, from a short
probe on the actual model and input, at the batch the job runs, times the job's size; said in the
window's words (engine/cost.py's CostEstimate).

    estimate: about 9 min (27 s per image, 20 images at n0 = 100, n = 100,000)

Counts of passes follow the attacks as they run: PGD takes ``steps`` gradient passes per restart on
every image; APGD-CE 100 on the images still standing, APGD-T 100 per target class (9) on those it
left; FAB-T 100 per target class, Square 5000 forward passes; an inversion ``steps`` gradient passes per
image and model. Where the images left standing decide the cost (APGD) the line gives the most it can
take.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from pathlib import Path

import torch
from torch.nn import functional as F

from .attacks import model_device
from .cost import CostEstimate, duration_text
from .evaluate import APGD_STEPS, SQUARE_QUERIES

# Probes run at the batch the job runs: timed at one or two images instead, a model on two or more
# torch threads of a busy machine spends its time waiting for the threads, and the estimate comes out
# tens of times too long (certify at load 15, two threads: 23,000 s per image probed at 1-2 samples,
# 141 s at one thread, a few minutes probed on a 256-sample sub-batch).
PROBE_IMAGES = 64  # images per probed gradient pass or clean forward (cost per image is flat beyond this)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(call, device) -> float:
    """Seconds of one ``call()`` after an untimed one (that one builds traced graphs and buffers)."""
    device = torch.device(device)
    call()
    _synchronize(device)
    began = time.perf_counter()
    call()
    _synchronize(device)
    return time.perf_counter() - began


def seconds_per_sample(smooth, image, samples: int, batch: int) -> float:
    """The smoothed classifier's own sampling (its traced forward, its sub-batches) on one chunk."""
    count = max(1, min(batch, samples, smooth.forward_batch or batch))
    return probe(lambda: smooth.sample_counts(image, count, batch, generator=0), smooth.device) / count


_rates: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {gradient: seconds per image}


def seconds_per_pass(model, *, gradient: bool) -> float:
    """Seconds per image of a forward pass (``gradient``: forward, cross-entropy and the gradient to the
    input, one step of PGD, APGD or an inversion) on PROBE_IMAGES random images of the model's shape;
    probed once per model and kind of pass."""
    known = _rates.setdefault(model, {})
    if gradient not in known:
        known[gradient] = _probe_pass(model, gradient)
    return known[gradient]


def _probe_pass(model, gradient: bool) -> float:
    device = model_device(model)
    images = torch.rand((PROBE_IMAGES,) + tuple(model.meta.input_shape), device=device,
                        generator=torch.Generator(device=device).manual_seed(0))
    labels = torch.zeros(PROBE_IMAGES, dtype=torch.long, device=device)

    def forward():
        with torch.no_grad():
            model(images)

    def forward_backward():
        x = images.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(x), labels), x)

    return probe(forward_backward if gradient else forward, device) / PROBE_IMAGES


def estimate_seconds(model, forward_passes: float, *, gradient_passes: float = 0) -> float:
    """Seconds for so many image forward passes and forward-and-backward passes of ``model``."""
    seconds = forward_passes * seconds_per_pass(model, gradient=False) if forward_passes else 0.0
    if gradient_passes:
        seconds += gradient_passes * seconds_per_pass(model, gradient=True)
    return seconds


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plural(count: int, unit: str) -> str:
    return f"{count:,} {unit}{'s' if count != 1 else ''}"


def say_smoothing_estimate(args, smooth, images, todo: list[int]) -> None:
    """certify / predict (and radius decisions, at most max n per image): before the first image, probed
    through the smoothed classifier's own sampling on the first image to do."""
    if not todo:
        return
    n0 = getattr(args, "n0", 0) or 0
    deciding = getattr(args, "max_n", None) is not None and getattr(args, "radius", None) is not None
    n = args.max_n if deciding else args.n
    per_image = seconds_per_sample(smooth, images[todo[0]], n0 + n, args.batch) * (n0 + n)
    size = _plural(len(todo), "image") + (f" at n0 = {n0:,}, " if n0 else " at ") + \
        (f"max n = {n:,}" if deciding else f"n = {n:,}")
    precision = getattr(smooth, "precision", "fp32")
    if precision != "fp32":
        size += f", {precision}"
    estimate = CostEstimate(per_image, len(todo), "image", size)
    say(f"estimate{', if every image needs max n' if deciding else ''}: {estimate.text()}")


def say_evaluate_estimate(model, subset, clean_images: int, *, eps_values, steps: int, restarts: int,
                          attack: str) -> None:
    """evaluate: the clean pass over the test set and PGD on the subset, then what the strong attack
    can add at most (it attacks only the images still standing)."""
    attacked = [e for e in eps_values if e > 0]
    per_image = estimate_seconds(model, 0, gradient_passes=steps * restarts * len(attacked))
    clean = estimate_seconds(model, clean_images)
    estimate = CostEstimate(per_image + clean / max(1, len(subset)), len(subset), "image",
                            f"{_plural(len(subset), 'image')} × PGD-{steps} at {len(attacked)} ε, and the clean "
                            f"pass over {clean_images:,}")
    line = f"estimate: {estimate.text()}"
    if attack != "pgd" and attacked:
        targets = max(1, min(9, len(model.meta.classes) - 1))
        gradient_passes = APGD_STEPS * (1 + targets) + (APGD_STEPS * targets if attack == "autoattack" else 0)
        forward_passes = SQUARE_QUERIES if attack == "autoattack" else 0
        most = len(subset) * len(attacked) * estimate_seconds(model, forward_passes,
                                                              gradient_passes=gradient_passes)
        name = "APGD-CE+APGD-T" if attack == "apgd" else "AutoAttack"
        line += (f"; then {name} at most {duration_text(most).removeprefix('about ')} more "
                 f"({gradient_passes:,} gradient passes per image still standing)")
    say(line)


def say_attack_estimate(models: dict, subset, *, eps_values, steps: int, restarts: int, transfer: bool) -> None:
    """attack --curve (every model at every ε > 0, a clean pass at ε = 0) or --transfer (every model as
    the source once, every model judging every source's images)."""
    per_image = 0.0
    for model in models.values():
        attacked = 1 if transfer else len([e for e in eps_values if e > 0])
        judging = len(models) + 1 if transfer else 1
        per_image += estimate_seconds(model, judging, gradient_passes=steps * restarts * attacked)
    size = (f"{_plural(len(subset), 'image')} × PGD-{steps} crafted on {len(models)} models" if transfer
            else f"{_plural(len(subset), 'image')} × PGD-{steps} on {len(models)} models at {len(eps_values)} ε")
    say(f"estimate: {CostEstimate(per_image, len(subset), 'image', size).text()}")


def say_inversion_estimate(models, *, count: int, steps: int, what: str) -> None:
    """invert / build-dataset: ``steps`` gradient passes per image on each of ``models``."""
    if count <= 0:
        return
    per_image = sum(estimate_seconds(m, 0, gradient_passes=steps) for m in models)
    size = f"{_plural(count, 'image')} {what}"
    say(f"estimate: {CostEstimate(per_image, count, 'image', size).text()}")


def images_left_to_build(out: Path | str, count: int, chunk: int) -> int:
    """build-dataset resumes by chunk: the images of the chunk files already in ``out`` are not redone."""
    chunks = Path(out) / "chunks"
    done = 0
    for k in range(math.ceil(count / chunk)):
        if (chunks / f"chunk-{k:05d}.npz").is_file():
            done += min(chunk, count - k * chunk)
    return count - done
