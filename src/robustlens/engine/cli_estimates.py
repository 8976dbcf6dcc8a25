"""The line each long CLI command prints on stderr as it starts: what the job will cost, from a short
probe on the actual model and input (engine/cost.py) times the job's size.

    estimate: about 9 min (27 s per image × 20 images at n = 100,000)

Counts of gradient steps follow the attacks as they run: PGD takes ``steps`` steps per restart on every
image; APGD-CE 100 steps on the images still standing, APGD-T 100 per target class (9) on those it left;
an inversion ``steps`` steps per image and model. Where the survivors decide the cost (APGD), the line
gives the most it can take.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from .cost import format_duration, format_estimate, probe_seconds, probe_seconds_per_forward, probe_seconds_per_gradient
from .evaluate import APGD_STEPS, SQUARE_QUERIES

FORWARD_PROBE_BATCH = 64  # images per probed clean forward


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def smoothing_seconds_per_image(smooth, image, samples: int, batch: int) -> float:
    """Seconds to run the base classifier on ``samples`` noisy copies of ``image`` (CERTIFY draws n0 + n,
    PREDICT n), probed on one chunk of this run's size as the run draws it."""
    probe = max(1, min(batch, samples, smooth.forward_batch or batch))
    per_call = probe_seconds(lambda: smooth.sample_counts(image, probe, batch, generator=0), device=smooth.device)
    return per_call / probe * samples


def say_smoothing_estimate(args, smooth, images, todo: list[int]) -> None:
    """certify / predict (and radius decisions, at most max n per image): before the first image."""
    if not todo:
        return
    n0 = getattr(args, "n0", 0) or 0
    deciding = getattr(args, "max_n", None) is not None and getattr(args, "radius", None) is not None
    n = args.max_n if deciding else args.n
    per_image = smoothing_seconds_per_image(smooth, images[todo[0]], n0 + n, args.batch)
    what = f"at n0 = {n0:,}, n = {n:,}" if n0 else f"at n = {n:,}"
    if deciding:
        what = f"at n0 = {n0:,}, max n = {n:,}"
    precision = getattr(smooth, "precision", "fp32")
    if precision != "fp32":
        what += f", {precision}"
    say(format_estimate(per_image, len(todo), "image", what, prefix="at most" if deciding else "about"))


def clean_pass_seconds(model, count: int) -> float:
    batch = min(count, FORWARD_PROBE_BATCH)
    return probe_seconds_per_forward(model, model.meta.input_shape, batch) / batch * count


def say_evaluate_estimate(model, subset, clean_images: int, *, eps_values, steps: int, restarts: int,
                          attack: str) -> None:
    """evaluate: the clean pass over the test set and PGD on the subset, then what the strong attack
    can add at most (it attacks only the images still standing)."""
    per_step = probe_seconds_per_gradient(model, subset.images, subset.labels)
    attacked = [e for e in eps_values if e > 0]
    per_image = per_step * steps * restarts * len(attacked)
    clean = clean_pass_seconds(model, clean_images)
    line = format_estimate(per_image, len(subset), "image", f"for PGD-{steps} at {len(attacked)} ε",
                           extra_seconds=clean, extra_what=f"for the clean pass over {clean_images:,} images")
    if attack != "pgd" and attacked:
        targets = max(1, min(9, len(model.meta.classes) - 1))
        strong_steps = APGD_STEPS * (1 + targets)
        if attack == "autoattack":
            strong_steps += APGD_STEPS * targets  # FAB-T, one gradient-sized step per iteration and target
        most = per_step * strong_steps * len(subset) * len(attacked)
        if attack == "autoattack":  # Square: forwards only
            most += clean_pass_seconds(model, len(subset)) * SQUARE_QUERIES * len(attacked)
        line += (f"; then {'APGD-CE+APGD-T' if attack == 'apgd' else 'AutoAttack'} at most "
                 f"{format_duration(most)} more ({strong_steps:,} gradient steps per image still standing)")
    say(line)


def say_attack_estimate(models: dict, subset, *, eps_values, steps: int, restarts: int, transfer: bool) -> None:
    """attack --curve (every model at every ε > 0) or --transfer (every model as the source once, every
    model judging every source's images)."""
    per_image = 0.0
    for model in models.values():
        per_step = probe_seconds_per_gradient(model, subset.images, subset.labels)
        attacked = 1 if transfer else len([e for e in eps_values if e > 0])
        per_image += per_step * steps * restarts * attacked
    judging = sum(clean_pass_seconds(m, len(subset)) for m in models.values()) * (len(models) + 1 if transfer else 1)
    what = (f"for PGD-{steps} crafted on {len(models)} models" if transfer
            else f"for PGD-{steps} on {len(models)} models at {len(eps_values)} ε")
    say(format_estimate(per_image, len(subset), "image", what, extra_seconds=judging,
                        extra_what="for the models' predictions"))


def say_inversion_estimate(models, images, labels, *, count: int, steps: int, what: str) -> None:
    """invert / build-dataset: ``steps`` gradient steps per image on each of ``models``."""
    if count <= 0:
        return
    per_image = sum(probe_seconds_per_gradient(m, images, labels) for m in models) * steps
    say(format_estimate(per_image, count, "image", what))


def images_left_to_build(out: Path | str, count: int, chunk: int) -> int:
    """build-dataset resumes by chunk: the images of the chunk files already in ``out`` are not redone."""
    chunks = Path(out) / "chunks"
    done = 0
    for k in range(math.ceil(count / chunk)):
        if (chunks / f"chunk-{k:05d}.npz").is_file():
            done += min(chunk, count - k * chunk)
    return count - done
