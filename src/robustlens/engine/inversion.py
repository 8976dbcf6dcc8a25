"""Representation inversion (Ilyas et al. 2019, "Adversarial Examples Are Not Bugs, They Are Features",
Sec. 3.1 and App. C): given a target image x and a model with penultimate representation g, start from
a seed x_0 and minimise

    d(x_r) = ‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂

over x_r ∈ [0,1] by normalised gradient steps x_r ← clamp(x_r − α ∇d/‖∇d‖₂, 0, 1) (per sample; the
paper: α = 0.1, 1000 steps, an L2 ball of radius 1000, i.e. unbounded). With an adversarially trained
("robust") model the result keeps only features the robust model uses: the *robust reconstruction*.
With a standard model it is the *non-robust reconstruction*. The datasets D_R and D_NR built from
such reconstructions are in ``constructed.py``; the experiment on them in ``ilyas_experiment.py``.

Long work is a job in the ``engine.jobs`` protocol (a factory ``f(cancel)`` returning an iterator of
events); run one synchronously with ``jobs.run_to_end``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_count, check_finite_outputs, check_images, model_input_shape
from .cost import CostEstimate, announce, estimate_seconds
from .data import Dataset
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress, Snapshot

SEED_MODES = ("other-class", "random", "noise")
NOISE_MEAN, NOISE_STD = 0.5, 0.05  # the paper's gray seed: 0.5 + N(0, 0.05²)
_TINY = 1e-12


def model_device(model) -> torch.device:
    """The device a model's parameters are on (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")

def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"{what} must be a (N, C, H, W) tensor")
    check_images(images, None, what)  # finite and in [0, 1]: `min() < 0` alone lets NaN through


# ---------------------------------------------------------------- seeds

def noise_seeds(count: int, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
    """The paper's noise seed: gray 0.5 + N(0, 0.05²) per pixel, clamped to [0, 1]."""
    noise = torch.randn((count, *shape), generator=generator)
    return (NOISE_MEAN + NOISE_STD * noise).clamp(0.0, 1.0)


def pick_seed_indices(labels: torch.Tensor, pool_labels: torch.Tensor, mode: str,
                      generator: torch.Generator | None = None,
                      own_indices: torch.Tensor | None = None) -> torch.Tensor:
    """For each target, the index in the pool of its seed image.

    ``"random"``: a uniformly drawn pool image other than the target itself (``own_indices`` are the
    targets' positions in the pool, if they are in it) — the paper's choice. ``"other-class"``: a
    uniformly drawn pool image of a class different from the target's, so that whatever in a
    reconstruction looks like the target's class cannot have come from the seed.
    """
    if mode not in ("random", "other-class"):
        raise ValueError(f"unknown seed mode {mode!r} for pool seeds: choose 'random' or 'other-class'")
    labels, pool_labels = torch.as_tensor(labels).cpu(), torch.as_tensor(pool_labels).cpu()
    n, pool = len(labels), len(pool_labels)
    if pool < 2:
        raise ValueError("seeds need a pool of at least two images")
    chosen = torch.empty(n, dtype=torch.long)
    if mode == "random":
        chosen = torch.randint(0, pool, (n,), generator=generator)
        if own_indices is not None:
            own = torch.as_tensor(own_indices, dtype=torch.long).cpu()
            shift = torch.randint(1, pool, (n,), generator=generator)
            chosen = torch.where(chosen == own, (own + shift) % pool, chosen)  # never the target itself
        return chosen
    for cls in labels.unique().tolist():
        targets = (labels == cls).nonzero().flatten()
        candidates = (pool_labels != cls).nonzero().flatten()
        if len(candidates) == 0:
            raise ValueError(f"no pool image of a class other than {cls} to seed from")
        chosen[targets] = candidates[torch.randint(0, len(candidates), (len(targets),), generator=generator)]
    return chosen


def make_seeds(labels: torch.Tensor, pool: Dataset | None, mode: str, generator: torch.Generator | None = None,
               own_indices: torch.Tensor | None = None,
               shape: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed images for targets with the given labels, and the pool index of each (−1 for noise)."""
    if mode not in SEED_MODES:
        raise ValueError(f"unknown seed mode {mode!r}: choose one of {', '.join(SEED_MODES)}")
    n = len(labels)
    if mode == "noise":
        if shape is None:
            if pool is None:
                raise ValueError("noise seeds need an image shape")
            shape = pool.image_shape
        return noise_seeds(n, shape, generator), torch.full((n,), -1, dtype=torch.long)
    if pool is None:
        raise ValueError(f"{mode!r} seeds are drawn from a dataset: give one")
    indices = pick_seed_indices(labels, pool.labels, mode, generator, own_indices)
    return pool.images[indices].clone(), indices


# ---------------------------------------------------------------- inversion

def representation_distance(model, images: torch.Tensor, target_representation: torch.Tensor) -> torch.Tensor:
    """d(x_r) = ‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂ per sample (Ilyas et al., Sec. 3.1)."""
    representation = model.representation(images).flatten(1)
    target = target_representation.flatten(1)
    return (representation - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-6)


@dataclass
class InversionState:
    """One step of the inversion: ``images`` after ``step`` updates and their distances, and per sample
    the best iterate so far (the paper's code returns the iterate of lowest loss). ``best_*`` are
    updated in place by later steps: copy them to keep a step's values."""
    step: int
    steps: int
    images: torch.Tensor
    distance: torch.Tensor
    best_images: torch.Tensor
    best_distance: torch.Tensor


def _check_inversion(targets: torch.Tensor, seeds: torch.Tensor, steps: int, step_size: float) -> None:
    _check_images(targets, "targets")
    _check_images(seeds, "seeds")
    if seeds.shape != targets.shape:
        raise ValueError(f"seeds {tuple(seeds.shape)} and targets {tuple(targets.shape)} differ in shape")
    check_count(steps, "steps", minimum=0)
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step size must be a positive number, got {step_size}")


STEP_SCHEDULES = ("constant", "cosine")


def step_size_at(step: int, steps: int, step_size: float, schedule: str = "constant") -> float:
    """α for update ``step`` (0-based). ``"constant"`` is the paper's; ``"cosine"`` anneals α from
    ``step_size`` towards 0 (α·½(1 + cos πk/K)), which lets a larger first step reach in a few hundred
    steps the distance a constant small step reaches in a thousand: a constant normalised step can
    only settle to within about α of the optimum."""
    if schedule == "constant":
        return step_size
    if schedule == "cosine":
        return step_size * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))
    raise ValueError(f"unknown step schedule {schedule!r}: choose one of {', '.join(STEP_SCHEDULES)}")


def inversion_steps(model, targets: torch.Tensor, seeds: torch.Tensor, *, steps: int = 1000,
                    step_size: float = 0.1, schedule: str = "constant") -> Iterator[InversionState]:
    """Representation inversion as a stream: yields the state after 0, 1, ..., ``steps`` updates.

    Each update is x ← clamp(x − α ∇d/‖∇d‖₂, 0, 1) with the gradient normalised per sample (the L2
    step of PGD with an unbounded ball, as in the paper). One forward and one backward pass per step;
    gradients are taken with respect to the images only, so the model's parameters are untouched.
    """
    _check_inversion(targets, seeds, steps, step_size)
    check_images(targets, model_input_shape(model), "the targets")
    step_size_at(0, steps, step_size, schedule)  # reject an unknown schedule before any work
    device = model_device(model)
    with torch.no_grad():
        target_representation = model.representation(targets.to(device)).detach()
    check_finite_outputs(target_representation)
    images = seeds.to(device).detach().clone()
    best_images, best_distance = images.clone(), None
    for step in range(steps + 1):
        last = step == steps
        with torch.set_grad_enabled(not last):
            images.requires_grad_(not last)
            distance = representation_distance(model, images, target_representation)
            if not last:
                (grad,) = torch.autograd.grad(distance.sum(), images)
        images = images.detach()
        distance = distance.detach()
        check_finite_outputs(distance)  # NaN representations would make every "best" iterate NaN
        if best_distance is None:
            best_distance = distance.clone()
        else:
            better = distance < best_distance
            best_images[better] = images[better]
            best_distance = torch.where(better, distance, best_distance)
        yield InversionState(step, steps, images, distance, best_images, best_distance)
        if not last:
            with torch.no_grad():
                direction = grad / _view(grad.flatten(1).norm(dim=1) + _TINY, grad)
                alpha = step_size_at(step, steps, step_size, schedule)
                images = (images - alpha * direction).clamp(0.0, 1.0)


@dataclass
class InversionResult:
    """Reconstructions (CPU, [0,1]) with their final distances and the mean distance after each step
    (``curve[k]`` is the mean over the batch of d(x_k), k = 0 .. steps)."""
    images: torch.Tensor
    distances: torch.Tensor
    curve: list[float] = field(default_factory=list)
    steps: int = 0
    step_size: float = 0.0


def invert(model, targets: torch.Tensor, seeds: torch.Tensor | str, *, steps: int = 1000, step_size: float = 0.1,
           use_best: bool = True, batch_size: int = 500, generator: torch.Generator | None = None,
           schedule: str = "constant") -> InversionResult:
    """Invert ``model``'s representation of ``targets`` starting from ``seeds`` (images, or ``"noise"``).

    Returns per sample the iterate of lowest distance (``use_best``, as the paper's code does) or the
    last one. Batched in ``batch_size`` images; the distance curve is the mean over all targets.
    """
    check_count(batch_size, "batch size")
    if isinstance(seeds, str):
        if seeds != "noise":
            raise ValueError("seeds must be images or 'noise' (draw dataset seeds with make_seeds)")
        seeds = noise_seeds(len(targets), targets.shape[1:], generator)
    _check_inversion(targets, seeds, steps, step_size)
    outputs, distances, curve = [], [], np.zeros(steps + 1)
    for start in range(0, len(targets), batch_size):
        batch = slice(start, start + batch_size)
        for state in inversion_steps(model, targets[batch], seeds[batch], steps=steps, step_size=step_size,
                                     schedule=schedule):
            curve[state.step] += state.distance.sum().item()
        outputs.append((state.best_images if use_best else state.images).cpu())
        distances.append((state.best_distance if use_best else state.distance).cpu())
    images = torch.cat(outputs) if outputs else targets.new_empty((0, *targets.shape[1:]))
    return InversionResult(images, torch.cat(distances) if distances else torch.empty(0),
                           (curve / max(1, len(targets))).tolist(), steps, step_size)


@torch.no_grad()
def predictions(model, images: torch.Tensor) -> list[dict]:
    """Top class and its softmax probability for each image: what the panel prints under an image."""
    probabilities = F.softmax(model(images.to(model_device(model))), dim=1).cpu()
    top, classes = probabilities.max(dim=1)
    names = getattr(getattr(model, "meta", None), "classes", None)
    return [{"class": int(c), "name": names[int(c)] if names else str(int(c)), "probability": float(p)}
            for p, c in zip(top.tolist(), classes.tolist())]


@dataclass
class Reconstructions:
    """What :func:`reconstruct_job` finishes with: per model key its InversionResult, the predictions
    of every model on every reconstruction (``predictions[reconstruction_key][model_key]``, one
    {"class", "name", "probability"} per target), and the seeds the inversions started from
    (``seed_indices``: positions in the pool, −1 for noise; None when seeds were given as images)."""
    results: dict[str, InversionResult]
    predictions: dict[str, dict[str, list[dict]]]
    seeds: torch.Tensor
    seed_indices: torch.Tensor | None = None


def reconstruct_job(models: Mapping[str, Any], targets: torch.Tensor, seeds: torch.Tensor | str, *,
                    steps: int = 1000, step_size: float = 0.1, schedule: str = "constant",
                    snapshot_interval: float = 0.05, use_best: bool = True,
                    generator: torch.Generator | None = None, pool: Dataset | None = None,
                    labels: torch.Tensor | None = None, own_indices: torch.Tensor | None = None) -> JobFactory:
    """Invert several models' representations of the same targets from the same seeds, in lockstep,
    so that e.g. the robust and the non-robust reconstruction form side by side.

    ``seeds``: images, or a seed mode: ``"noise"``, or ``"other-class"`` / ``"random"`` drawn from
    ``pool`` (give the targets' ``labels``, and ``own_indices``, their positions in the pool, if
    they are in it).

    Events (``key`` is the name given in ``models``):
      Snapshot("seed", image (N,C,H,W) float32 numpy, {"seed_indices": [...] or None})   first
      Partial("distance", {"model": key, "step", "steps", "distance": [per target], "mean"})  every step
      Snapshot("reconstruction", image (N,C,H,W) float32 numpy, {"model": key, "step", "steps",
          "distance"})  the current iterate, at most every ``snapshot_interval`` seconds per model,
          always at step 0, and at the end the returned reconstruction (info "final": True)
      Progress(step, steps)  after each step of all models
      Finished(Reconstructions)
    """
    if not models:
        raise ValueError("give at least one model to invert")
    seed_indices = None
    if isinstance(seeds, str):
        if seeds != "noise" and labels is None:
            raise ValueError(f"{seeds!r} seeds need the targets' labels")
        seeds, seed_indices = make_seeds(labels if labels is not None else torch.zeros(len(targets)), pool, seeds,
                                         generator, own_indices, shape=targets.shape[1:])
    _check_inversion(targets, seeds, steps, step_size)
    step_size_at(0, steps, step_size, schedule)

    def job(cancel: CancelToken):
        yield Snapshot("seed", seeds.cpu().numpy().astype(np.float32),
                       {"seed_indices": None if seed_indices is None else seed_indices.tolist()})
        streams = {key: inversion_steps(model, targets, seeds, steps=steps, step_size=step_size,
                                        schedule=schedule)
                   for key, model in models.items()}
        last_snapshot = {key: -math.inf for key in models}
        curves: dict[str, list[float]] = {key: [] for key in models}
        final: dict[str, InversionState] = {}
        for step in range(steps + 1):
            for key, stream in streams.items():
                state = next(stream)
                final[key] = state
                distance = state.distance.cpu()
                curves[key].append(distance.mean().item())
                yield Partial("distance", {"model": key, "step": step, "steps": steps,
                                           "distance": distance.tolist(), "mean": curves[key][-1]})
                now = time.monotonic()
                if step == 0 or (step < steps and now - last_snapshot[key] >= snapshot_interval):
                    last_snapshot[key] = now
                    yield Snapshot("reconstruction", state.images.cpu().numpy().astype(np.float32),
                                   {"model": key, "step": step, "steps": steps, "distance": distance.tolist()})
            cancel.check()
            yield Progress(step, steps, f"inverting, step {step}/{steps}")
        results, predicted = {}, {}
        for key, state in final.items():
            images = (state.best_images if use_best else state.images).cpu().clone()
            distances = (state.best_distance if use_best else state.distance).cpu().clone()
            results[key] = InversionResult(images, distances, curves[key], steps, step_size)
            predicted[key] = {other: predictions(model, images) for other, model in models.items()}
            yield Snapshot("reconstruction", images.numpy().astype(np.float32),
                           {"model": key, "step": steps, "steps": steps, "distance": distances.tolist(),
                            "final": True})
        yield Finished(Reconstructions(results, predicted, seeds.cpu(), seed_indices))

    return job



@dataclass(frozen=True)
class ReconstructRequest:
    """What the Features tab asks for one image, captured when the run starts.

    ``image``: the target x, a (1, C, H, W) [0,1] array; ``label`` its class (None: unknown) and
    ``index`` its position in ``pool`` (None: not from it). ``keys``: the models to invert, in column
    order. Seeds are drawn by ``seed_mode`` from ``pool`` (or gray noise), with a generator seeded by
    ``draw`` and the image's source index, so each image and each draw gets its own seed.
    """
    image: Any
    keys: tuple[str, ...]
    label: int | None = None
    index: int | None = None
    pool: Dataset | None = None
    seed_mode: str = "other-class"
    draw: int = 0
    steps: int = 1000
    step_size: float = 0.1
    schedule: str = "constant"


def seed_mode_for(request: ReconstructRequest) -> tuple[str, str]:
    """The seed mode a request can use, and a note when it is not the one asked for: "other-class"
    needs the target's class, a dataset seed needs a pool of two images or more."""
    mode, note = request.seed_mode, ""
    if mode == "other-class" and request.label is None:
        mode, note = "random", " (no class known for this file: a random image instead)"
    if mode != "noise" and (request.pool is None or len(request.pool) < 2):
        mode, note = "noise", " (no dataset to draw a seed image from: noise instead)"
    return mode, note


def reconstruct_image_job(cache, request: ReconstructRequest) -> JobFactory:
    """The Features tab's job: invert every model of ``request.keys`` (from ``cache``, a
    :class:`~robustlens.engine.model_cache.ModelCache`) on one image, from one seed, in lockstep.

    Events:
      Partial("models", {key: ModelMeta})   first, once the models are loaded
      Partial("estimate", CostEstimate)     what the run will cost, from a short probe
      Partial("seed", {"image", "index" (pool position, −1 for noise), "mode", "note"})
      Partial("curves", {"d": {key: [d at each step]}, "lowest": {key: [lowest d so far]}})  a whole
          state each time, so coalescing may drop any of them; "lowest" is the d of the iterate shown
      Snapshot("reconstruction:KEY", image, info)   one kind per model, so coalescing keeps each
          model's latest (info as :func:`reconstruct_job`'s)
      Progress; Finished(Reconstructions)
    """
    mode, note = seed_mode_for(request)
    image = torch.as_tensor(request.image, dtype=torch.float32)
    shape = tuple(image.shape[1:])
    pool = request.pool if mode != "noise" else None
    source_index = 0
    if request.pool is not None and request.index is not None:
        source_index = request.pool.source_index(request.index)
    generator_seed = request.draw * 1_000_003 + source_index

    def job(cancel: CancelToken):
        models = {}
        for key in request.keys:
            model = cache.model(key)
            model_shape = tuple(model.meta.input_shape)
            if model_shape != shape:
                raise ValueError(f"{key} takes {'×'.join(map(str, model_shape))} images, this one is "
                                 f"{'×'.join(map(str, shape))}: choose models of this dataset")
            models[key] = model
        yield Partial("models", {key: model.meta for key, model in models.items()})
        # a step inverts the representation: at most one forward and one backward pass of each model
        per_step = sum(estimate_seconds(model, shape, 0, gradient_passes=1, batch_size=1) for model in models.values())
        yield announce(CostEstimate(per_step, request.steps, "step",
                                    f"{request.steps:,} steps × {len(models)} model{'s' if len(models) != 1 else ''}"))
        inner = reconstruct_job(models, image, mode, steps=request.steps, step_size=request.step_size,
                                schedule=request.schedule, generator=torch.Generator().manual_seed(generator_seed),
                                pool=pool, labels=torch.tensor([request.label or 0]),
                                own_indices=torch.tensor([request.index]) if request.index is not None else None)
        curves: dict[str, list[float]] = {key: [] for key in models}
        lowest: dict[str, list[float]] = {key: [] for key in models}
        for event in inner(cancel):
            if isinstance(event, Partial) and event.kind == "distance":
                key, d = event.value["model"], event.value["mean"]
                curves[key].append(d)
                lowest[key].append(min(d, lowest[key][-1]) if lowest[key] else d)
                yield Partial("curves", {"d": {k: list(v) for k, v in curves.items()},
                                         "lowest": {k: list(v) for k, v in lowest.items()}})
            elif isinstance(event, Snapshot) and event.kind == "seed":
                indices = event.info.get("seed_indices") or [-1]
                yield Partial("seed", {"image": event.image, "index": int(indices[0]), "mode": mode, "note": note})
            elif isinstance(event, Snapshot):
                yield Snapshot(f"reconstruction:{event.info['model']}", event.image, event.info)
            else:
                yield event

    return job
