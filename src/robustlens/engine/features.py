"""Robust and non-robust features (Ilyas et al. 2019, "Adversarial Examples Are Not Bugs, They Are
Features"): representation inversion, the datasets D_R, D_NR, D_rand, D_det, and the experiment that
trains a standard model on each and evaluates it on the real test set.

Representation inversion (Sec. 3.1 and App. C of the paper): given a target image x and a model with
penultimate representation g, start from a seed x_0 and minimise

    d(x_r) = ‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂

over x_r ∈ [0,1] by normalised gradient steps x_r ← clamp(x_r − α ∇d/‖∇d‖₂, 0, 1) (per sample; the
paper: α = 0.1, 1000 steps, an L2 ball of radius 1000, i.e. unbounded). With an adversarially trained
("robust") model the result keeps only features the robust model uses: the *robust reconstruction*,
and over a training set the robust dataset D_R. With a standard model it is the *non-robust
reconstruction* and D_NR. D_rand and D_det (Sec. 3.2) instead push each image by targeted L2 PGD on a
standard model toward a class t and relabel it t.

Everything long here is a job in the ``engine.jobs`` protocol (a factory ``f(cancel)`` returning an
iterator of events), with a synchronous wrapper for scripts and tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .attacks import pgd
from .data import Dataset
from .evaluate import default_step_size
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress, Snapshot
from .train import optimization_step

SEED_MODES = ("other-class", "random", "noise")
RELABEL_MODES = ("rand", "det")
DATASET_KINDS = ("robust", "non-robust", "rand", "det")
DATASET_NAMES = {"robust": "D_R", "non-robust": "D_NR", "rand": "D_rand", "det": "D_det"}
STORAGE_DTYPES = ("float16", "uint8")
NOISE_MEAN, NOISE_STD = 0.5, 0.05  # the paper's gray seed: 0.5 + N(0, 0.05²)
MANIFEST_FORMAT = "robustlens-features-dataset"
_TINY = 1e-12


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"{what} must be a (N, C, H, W) tensor")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{what} must lie in [0, 1]")


def run_directly(factory: JobFactory, cancel: CancelToken | None = None, on_event=None) -> Any:
    """Run a job synchronously like ``jobs.run_to_end`` but let its exceptions through unchanged (a
    ValueError stays a ValueError, so the CLI prints it as one line); cancellation raises Cancelled."""
    cancel = cancel or CancelToken()
    cancel.check()
    for event in factory(cancel):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Finished):
            return event.result
        cancel.check()
    return None


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
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
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
    step_size_at(0, steps, step_size, schedule)  # reject an unknown schedule before any work
    device = _device(model)
    with torch.no_grad():
        target_representation = model.representation(targets.to(device)).detach()
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
    probabilities = F.softmax(model(images.to(_device(model))), dim=1).cpu()
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


def invert_job(model, targets: torch.Tensor, seeds: torch.Tensor | str, *, steps: int = 1000,
               step_size: float = 0.1, snapshot_interval: float = 0.05, use_best: bool = True,
               generator: torch.Generator | None = None, key: str = "model", schedule: str = "constant") -> JobFactory:
    """One model's inversion as a job: the events of :func:`reconstruct_job` with ``model`` = ``key``,
    ending in Finished(InversionResult)."""
    inner = reconstruct_job({key: model}, targets, seeds, steps=steps, step_size=step_size,
                            snapshot_interval=snapshot_interval, use_best=use_best, generator=generator,
                            schedule=schedule)

    def job(cancel: CancelToken):
        for event in inner(cancel):
            if isinstance(event, Finished):
                yield Finished(event.result.results[key])
            else:
                yield event

    return job


# ---------------------------------------------------------------- dataset files

def model_fingerprint(model) -> str:
    """sha256 of the parameters and buffers: a resumed build must use the very same model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _model_info(model) -> dict:
    meta = getattr(model, "meta", None)
    info = {"fingerprint": model_fingerprint(model)}
    if meta is not None:
        info.update(name=meta.name, kind=meta.kind, norm=meta.norm, eps=meta.eps, sigma=meta.sigma,
                    arch=meta.arch)
    return info


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)  # a crash never leaves a half-written manifest


def _write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _encode(images: torch.Tensor, dtype: str) -> np.ndarray:
    images = images.detach().cpu().clamp(0, 1)
    if dtype == "uint8":
        return images.mul(255).round().to(torch.uint8).numpy()
    return images.numpy().astype(np.float16)


def _decode(images: np.ndarray) -> torch.Tensor:
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 255.0)
    return torch.from_numpy(images.astype(np.float32)).clamp_(0, 1)


def _chunk_generator(seed: int, chunk: int) -> torch.Generator:
    # one independent stream per chunk: a resumed chunk draws exactly what it would have drawn
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0]))


def select_source_indices(source: Dataset, count: int, seed: int) -> torch.Tensor:
    """Positions in ``source`` of the ``count`` images to transform: a seeded random subset (in
    random order, so every chunk holds a mix of classes)."""
    if not 1 <= count <= len(source):
        raise ValueError(f"count must be between 1 and {len(source)} (the source's size), got {count}")
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))
    return order[:count]


@dataclass
class BuiltDataset:
    """A finished D_R / D_NR / D_rand / D_det on disk: ``path`` (folder) and its manifest."""
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    def load(self) -> Dataset:
        return load_built_dataset(self.path)


def load_built_dataset(path: Path | str) -> Dataset:
    """Read a finished dataset folder (``dataset.npz`` + ``manifest.json``) as a Dataset whose
    ``indices`` are the positions of the source images in the source split."""
    path = Path(path).expanduser()
    manifest_path, data_path = path / "manifest.json", path / "dataset.npz"
    if not manifest_path.exists():
        raise ValueError(f"{path} holds no constructed dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{manifest_path} is not a robustlens features-dataset manifest")
    if not manifest.get("complete") or not data_path.exists():
        done = sum(c["count"] for c in manifest.get("chunks", []))
        raise ValueError(f"{path} is unfinished ({done}/{manifest['settings']['count']} images): "
                         "run the same build-dataset command again to resume it")
    with np.load(data_path) as npz:
        images, labels, indices = _decode(npz["images"]), npz["labels"], npz["source_indices"]
    return Dataset(name=manifest["name"], split="train", images=images,
                   labels=torch.from_numpy(labels.astype(np.int64)), classes=tuple(manifest["classes"]),
                   source=f"{path} ({manifest['name']} from {manifest['settings']['source']['name']})",
                   indices=torch.from_numpy(indices.astype(np.int64)))


ChunkMaker = Callable[[int, torch.Tensor, torch.Generator, CancelToken], Iterator[Any]]


def _build_job(out: Path | str, kind: str, model, source: Dataset, *, count: int, chunk_size: int, seed: int,
               dtype: str, settings: dict, make_chunk: ChunkMaker) -> JobFactory:
    """Shared machinery of the four builders: chunks, manifest, resume, events.

    The images to transform are fixed up front (``select_source_indices``); chunk k covers positions
    [k·chunk_size, (k+1)·chunk_size) of that list and is written as ``chunks/chunk-k.npz`` before the
    manifest records it. A rerun with the same settings skips every chunk already on disk, so a crash
    or a cancel after chunk k resumes at chunk k+1 without duplicating or losing images.
    ``make_chunk(k, images_positions, generator, cancel)`` yields events and finally a dict with
    "images" (tensor), "labels" and optional extra per-image arrays.
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}: choose one of {', '.join(DATASET_KINDS)}")
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unknown storage type {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    out = Path(out).expanduser()
    positions = select_source_indices(source, count, seed)
    source_indices = torch.tensor([source.source_index(int(i)) for i in positions], dtype=torch.long)
    chunks = math.ceil(count / chunk_size)
    name = DATASET_NAMES[kind]
    full_settings = {"kind": kind, "count": count, "chunk_size": chunk_size, "seed": seed, "dtype": dtype,
                     "source": {"name": source.name, "split": source.split, "size": len(source),
                                "origin": source.source},
                     "model": _model_info(model), **settings}
    classes = list(getattr(getattr(model, "meta", None), "classes", source.classes))

    def chunk_path(k: int) -> Path:
        return out / "chunks" / f"chunk-{k:05d}.npz"

    def chunk_done(k: int) -> bool:
        path = chunk_path(k)
        if not path.exists():
            return False
        try:
            with np.load(path) as npz:
                return np.array_equal(npz["source_indices"], source_indices[k * chunk_size:(k + 1) * chunk_size].numpy())
        except Exception:  # noqa: BLE001 - an unreadable chunk is simply redone
            return False

    def job(cancel: CancelToken):
        manifest_path = out / "manifest.json"
        if manifest_path.exists():
            old = json.loads(manifest_path.read_text())
            if old.get("format") != MANIFEST_FORMAT or old.get("settings") != full_settings:
                differing = sorted(k for k in set(full_settings) | set(old.get("settings", {}))
                                   if full_settings.get(k) != old.get("settings", {}).get(k))
                raise ValueError(f"{out} holds a dataset built with other settings ({', '.join(differing)}); "
                                 "use another folder or the same settings to resume")
            manifest = old
            if manifest.get("complete") and (out / "dataset.npz").exists():
                yield Progress(count, count, f"{name} already built in {out}")
                yield Finished(BuiltDataset(out, manifest))
                return
        else:
            manifest = {"format": MANIFEST_FORMAT, "version": 1, "name": name, "classes": classes,
                        "settings": full_settings, "chunks": [], "complete": False, "seconds": 0.0}
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        done_chunks = {k for k in range(chunks) if chunk_done(k)}
        manifest["chunks"] = [c for c in manifest["chunks"] if c["index"] in done_chunks]
        recorded = {c["index"] for c in manifest["chunks"]}
        for k in sorted(done_chunks - recorded):  # written but not yet recorded when it stopped
            with np.load(chunk_path(k)) as npz:
                manifest["chunks"].append({"index": k, "count": int(len(npz["labels"])), "seconds": None})
        manifest["chunks"].sort(key=lambda c: c["index"])
        _write_json(manifest_path, manifest)
        done = sum(c["count"] for c in manifest["chunks"])
        if done:
            yield Progress(done, count, f"{name}: resuming with {done}/{count} images done")
            yield Partial("resumed", {"dataset": name, "done": done, "count": count})
        for k in range(chunks):
            if k in done_chunks:
                continue
            cancel.check()
            began = time.perf_counter()
            part = positions[k * chunk_size:(k + 1) * chunk_size]
            chunk = None
            for event in make_chunk(k, part, _chunk_generator(seed, k), cancel):
                if isinstance(event, dict):
                    chunk = event
                    continue
                if isinstance(event, Progress):  # within-chunk progress, in images of the whole build
                    event = Progress(done + event.fraction * len(part), count, f"{name}: {event.message}")
                yield event
            seconds = time.perf_counter() - began
            arrays = {key: np.asarray(value) for key, value in chunk.items() if key not in ("images", "summary")}
            _write_npz(chunk_path(k), images=_encode(chunk["images"], dtype),
                       source_indices=source_indices[k * chunk_size:(k + 1) * chunk_size].numpy(), **arrays)
            summary = {"index": k, "count": len(part), "seconds": round(seconds, 2)}
            summary.update({key: value for key, value in chunk.get("summary", {}).items()})
            manifest["chunks"].append(summary)
            manifest["chunks"].sort(key=lambda c: c["index"])
            manifest["seconds"] = round(manifest.get("seconds", 0.0) + seconds, 2)
            _write_json(manifest_path, manifest)
            done += len(part)
            yield Progress(done, count, f"{name}: chunk {k + 1}/{chunks} done")
            yield Partial("chunk", {"dataset": name, "index": k, "chunks": chunks, "done": done, "count": count,
                                    **summary})
        yield from _consolidate(out, manifest, chunks, chunk_path)
        yield Finished(BuiltDataset(out, manifest))

    return job


def _consolidate(out: Path, manifest: dict, chunks: int, chunk_path) -> Iterator[Any]:
    """Join the chunks into dataset.npz and mark the manifest complete (the chunks stay, small)."""
    parts: dict[str, list[np.ndarray]] = {}
    for k in range(chunks):
        with np.load(chunk_path(k)) as npz:
            for key in npz.files:
                parts.setdefault(key, []).append(npz[key])
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    _write_npz(out / "dataset.npz", **arrays)
    labels = arrays["labels"].astype(np.int64)
    manifest["counts"] = {"images": int(len(labels)),
                          "per_class": np.bincount(labels, minlength=len(manifest["classes"])).tolist()}
    stats = {}
    if "distance" in arrays:
        stats["mean_distance"] = float(arrays["distance"].mean())
        stats["median_distance"] = float(np.median(arrays["distance"]))
    if "reached_target" in arrays:
        stats["target_reached"] = float(arrays["reached_target"].mean())
    if "original_labels" in arrays:
        stats["label_changed"] = float((arrays["original_labels"] != labels).mean())
    manifest["stats"] = stats
    manifest["complete"] = True
    _write_json(out / "manifest.json", manifest)
    yield Partial("complete", {"dataset": manifest["name"], "path": str(out), **stats})


# ---------------------------------------------------------------- builders

def _inversion_chunk_maker(model, source: Dataset, *, seeds: str, steps: int, step_size: float,
                           schedule: str = "constant", progress_every: int = 10) -> ChunkMaker:
    def make_chunk(k, part, generator, cancel):
        targets = source.images[part]
        labels = source.labels[part]
        seed_images, seed_indices = make_seeds(labels, source, seeds, generator, own_indices=part,
                                               shape=source.image_shape)
        state = initial = None
        for state in inversion_steps(model, targets, seed_images, steps=steps, step_size=step_size,
                                     schedule=schedule):
            cancel.check()
            if initial is None:
                initial = state.distance.cpu()
            if state.step % progress_every == 0 or state.step == steps:
                yield Progress(state.step, steps, f"step {state.step}/{steps}, "
                                                  f"mean distance {state.distance.mean().item():.3f}")
        distance = state.best_distance.cpu()
        yield {"images": state.best_images.cpu(), "labels": labels.numpy(),
               "seed_indices": seed_indices.numpy(), "distance": distance.numpy().astype(np.float32),
               "initial_distance": initial.numpy().astype(np.float32),
               "summary": {"mean_distance": round(distance.mean().item(), 4)}}

    return make_chunk


def _inversion_settings(seeds: str, steps: int, step_size: float, schedule: str) -> dict:
    step_size_at(0, steps, step_size, schedule)
    if seeds not in SEED_MODES:
        raise ValueError(f"unknown seed mode {seeds!r}: choose one of {', '.join(SEED_MODES)}")
    if steps < 1 or not step_size > 0:
        raise ValueError("inversion needs steps ≥ 1 and a positive step size")
    return {"method": "representation inversion (Ilyas et al. 2019, Sec. 3.1)", "seeds": seeds,
            "steps": steps, "step_size": step_size, "schedule": schedule, "use_best": True}


def robust_dataset_job(model, source: Dataset, out: Path | str, *, count: int, seeds: str = "other-class",
                       steps: int = 1000, step_size: float = 0.1, chunk_size: int = 500, seed: int = 0,
                       dtype: str = "float16", schedule: str = "constant") -> JobFactory:
    """D_R: each source image x replaced by the inversion of the *robust* model's representation of
    x from a seed, keeping x's label. Pass the adversarially trained model."""
    settings = _inversion_settings(seeds, steps, step_size, schedule)
    return _build_job(out, "robust", model, source, count=count, chunk_size=chunk_size, seed=seed, dtype=dtype,
                      settings=settings,
                      make_chunk=_inversion_chunk_maker(model, source, seeds=seeds, steps=steps, step_size=step_size,
                                                         schedule=schedule))


def non_robust_dataset_job(model, source: Dataset, out: Path | str, *, count: int, seeds: str = "other-class",
                           steps: int = 1000, step_size: float = 0.1, chunk_size: int = 500, seed: int = 0,
                           dtype: str = "float16", schedule: str = "constant") -> JobFactory:
    """D_NR: the same inversion with a *standard* model's representation."""
    settings = _inversion_settings(seeds, steps, step_size, schedule)
    return _build_job(out, "non-robust", model, source, count=count, chunk_size=chunk_size, seed=seed,
                      dtype=dtype, settings=settings,
                      make_chunk=_inversion_chunk_maker(model, source, seeds=seeds, steps=steps, step_size=step_size,
                                                         schedule=schedule))


def relabel_targets(labels: torch.Tensor, num_classes: int, mode: str,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Target classes t (Ilyas et al., Sec. 3.2): ``"rand"`` uniform over the classes other than y,
    ``"det"`` t = (y + 1) mod C."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if mode == "det":
        return (labels + 1) % num_classes
    if mode == "rand":
        shift = torch.randint(1, num_classes, labels.shape, generator=generator)  # 1 .. C−1: never y
        return (labels + shift) % num_classes
    raise ValueError(f"unknown relabelling mode {mode!r}: choose one of {', '.join(RELABEL_MODES)}")


def relabeled_dataset_job(model, source: Dataset, out: Path | str, *, mode: str, count: int, eps: float = 1.5,
                          steps: int = 50, step_size: float | None = None, chunk_size: int = 500, seed: int = 0,
                          dtype: str = "float16", batch_size: int = 250) -> JobFactory:
    """D_rand / D_det: targeted L2 PGD on a *standard* model pushes x toward t (min CE(f(x'), t),
    ‖x' − x‖₂ ≤ ε), and the image is stored with label t (the paper keeps every image, reached or not;
    the manifest reports how many reached t)."""
    if mode not in RELABEL_MODES:
        raise ValueError(f"unknown relabelling mode {mode!r}: choose one of {', '.join(RELABEL_MODES)}")
    if not (eps > 0 and math.isfinite(eps)) or steps < 1:
        raise ValueError("targeted PGD needs ε > 0 and steps ≥ 1")
    step_size = step_size if step_size is not None else default_step_size(eps, steps)
    num_classes = len(getattr(getattr(model, "meta", None), "classes", source.classes))
    settings = {"method": "targeted L2 PGD on the standard model, relabelled with the target "
                          "(Ilyas et al. 2019, Sec. 3.2)",
                "mode": mode, "norm": "l2", "eps": eps, "steps": steps, "step_size": step_size,
                "random_start": False, "loss": "ce"}
    device = _device(model)

    def make_chunk(k, part, generator, cancel):
        images, labels = source.images[part], source.labels[part]
        targets = relabel_targets(labels, num_classes, mode, generator)
        outputs, reached = [], []
        for start in range(0, len(part), batch_size):
            cancel.check()
            x = images[start:start + batch_size].to(device)
            t = targets[start:start + batch_size].to(device)
            adversarial = pgd(model, x, t, norm="l2", eps=eps, step_size=step_size, steps=steps,
                              random_start=False, targeted=True)
            with torch.no_grad():
                reached.append((model(adversarial).argmax(1) == t).cpu())
            outputs.append(adversarial.cpu())
            yield Progress(min(len(part), start + batch_size), len(part), "targeted PGD")
        reached_target = torch.cat(reached)
        yield {"images": torch.cat(outputs), "labels": targets.numpy(), "original_labels": labels.numpy(),
               "reached_target": reached_target.numpy(),
               "summary": {"target_reached": round(reached_target.float().mean().item(), 4)}}

    return _build_job(out, mode, model, source, count=count, chunk_size=chunk_size, seed=seed, dtype=dtype,
                      settings=settings, make_chunk=make_chunk)


def build_robust_dataset(model, source: Dataset, out: Path | str, *, cancel: CancelToken | None = None,
                         on_event=None, **settings) -> BuiltDataset:
    """Build (or resume) D_R synchronously; settings as :func:`robust_dataset_job`."""
    return run_directly(robust_dataset_job(model, source, out, **settings), cancel, on_event)


def build_non_robust_dataset(model, source: Dataset, out: Path | str, *, cancel: CancelToken | None = None,
                             on_event=None, **settings) -> BuiltDataset:
    """Build (or resume) D_NR synchronously; settings as :func:`non_robust_dataset_job`."""
    return run_directly(non_robust_dataset_job(model, source, out, **settings), cancel, on_event)


def build_relabeled_dataset(model, source: Dataset, out: Path | str, *, mode: str,
                            cancel: CancelToken | None = None, on_event=None, **settings) -> BuiltDataset:
    """Build (or resume) D_rand (``mode="rand"``) or D_det (``mode="det"``) synchronously."""
    return run_directly(relabeled_dataset_job(model, source, out, mode=mode, **settings), cancel, on_event)


# ---------------------------------------------------------------- the experiment

# Ilyas et al. 2019 on CIFAR-10 (ResNet-50): a standard model trained on each constructed dataset,
# evaluated on the real test set. Fig. 2b (D_R, D_NR; robust accuracy under L2 PGD at ε = 0.25) and
# Table 1 (D_rand, D_det: clean accuracy only). Their numbers, rounded, for comparison.
PAPER_CIFAR10 = {
    "D_R": {"clean": 0.84, "robust": 0.48},
    "D_NR": {"clean": 0.88, "robust": 0.00},
    "D_rand": {"clean": 0.63, "robust": None},
    "D_det": {"clean": 0.44, "robust": None},
}
PAPER_ROBUST_EPS = 0.25
EXPERIMENT_FORMAT = "robustlens-features-experiment"


@dataclass
class ExperimentSettings:
    """How each row's model is trained and evaluated.

    Training is the zoo's standard model (``fmnist-cnn``, Adam, lr 1e-3, one-cycle schedule, batch 128;
    10 epochs on 60,000 images). On a smaller constructed dataset the number of epochs is scaled up to
    keep roughly the same number of updates — ``reference_epochs · reference_images / N`` — but capped
    at ``max_epochs``; ``epochs`` overrides the rule. Evaluation: clean accuracy on the whole test set;
    robust accuracy under untargeted L2 PGD (random start, step 2.5·ε/steps) at each ``eval_eps`` on the
    first ``eval_images`` test images.
    """
    epochs: int | None = None
    reference_epochs: int = 10
    reference_images: int = 60_000
    max_epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    arch: str = "fmnist-cnn"
    seed: int = 0
    eval_norm: str = "l2"
    eval_eps: tuple[float, ...] = (0.5, 1.5)
    eval_steps: int = 20
    eval_images: int = 1000
    eval_batch: int = 250
    max_batches: int | None = None  # cap on batches per epoch (quick tests only)

    def epochs_for(self, images: int) -> int:
        if self.epochs is not None:
            return self.epochs
        scaled = math.ceil(self.reference_epochs * self.reference_images / max(1, images))
        return max(1, min(self.max_epochs, max(self.reference_epochs, scaled)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval_eps"] = list(self.eval_eps)
        return d


def train_standard_job(dataset: Dataset, settings: ExperimentSettings, *, epochs: int, device=None,
                       name: str | None = None) -> JobFactory:
    """Standard training exactly as ``engine.train.train(TrainConfig(mode="standard"))`` does it (same
    initialisation, batch order, Adam and one-cycle schedule, so the zoo's recipe; a test pins this),
    but cancellable between batches and reporting progress per batch. Finished(model)."""
    from .models import build_model

    def job(cancel: CancelToken):
        dev = torch.device(device or "cpu")
        torch.manual_seed(settings.seed)
        model = build_model(settings.arch, name=name or f"{dataset.name}/standard", dataset=dataset.name,
                            classes=dataset.classes, input_shape=dataset.image_shape, kind="standard").to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=0.0)
        batches = math.ceil(len(dataset) / settings.batch_size)
        if settings.max_batches:
            batches = min(batches, settings.max_batches)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=epochs * batches,
                                                       pct_start=0.15)
        order_generator = torch.Generator().manual_seed(settings.seed)
        history = []
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(dataset), generator=order_generator)
            total_loss = total_correct = seen = 0
            for b in range(batches):
                cancel.check()
                idx = order[b * settings.batch_size:(b + 1) * settings.batch_size]
                images, labels = dataset.images[idx].to(dev), dataset.labels[idx].to(dev)
                batch_loss, batch_correct = optimization_step(model, optimizer, schedule, images, labels)
                total_loss += batch_loss
                total_correct += batch_correct
                seen += len(labels)
                yield Progress(epoch * batches + b + 1, epochs * batches,
                               f"training epoch {epoch + 1}/{epochs}, loss {total_loss / seen:.3f}")
            history.append({"epoch": epoch + 1, "loss": total_loss / seen, "train_accuracy": total_correct / seen})
            yield Partial("epoch", history[-1])
        model.eval()
        model.meta.extra["history"] = history
        yield Finished(model)

    return job


def evaluate_job(model, test: Dataset, settings: ExperimentSettings) -> JobFactory:
    """Clean accuracy on ``test`` and PGD robust accuracy at each ε on its first ``eval_images`` images,
    in chunks of ``eval_batch`` (cancellable between chunks). Finished({"clean_accuracy",
    "robust_accuracy": {str(ε): accuracy}, "confusion": counts[true class][predicted class] on the clean
    test set}) — the confusion shows *what* a model trained on D_det predicts: y, or y + 1."""
    def job(cancel: CancelToken):
        device = _device(model)
        classes = len(test.classes)
        confusion = torch.zeros(classes * classes, dtype=torch.long)
        with torch.no_grad():
            for start in range(0, len(test), 1000):
                cancel.check()
                x, y = test.images[start:start + 1000].to(device), test.labels[start:start + 1000].to(device)
                predicted = model(x).argmax(1)
                confusion += torch.bincount((y * classes + predicted).cpu(), minlength=classes * classes)
        confusion = confusion.view(classes, classes)
        clean = confusion.diag().sum().item() / max(1, len(test))
        robust_images = min(settings.eval_images, len(test))
        chunks = math.ceil(robust_images / settings.eval_batch)
        robust = {}
        for e, eps in enumerate(settings.eval_eps):
            correct = 0
            for c in range(chunks):
                cancel.check()
                start, stop = c * settings.eval_batch, min(robust_images, (c + 1) * settings.eval_batch)
                x, y = test.images[start:stop].to(device), test.labels[start:stop].to(device)
                generator = torch.Generator(device=device).manual_seed(settings.seed * 1000 + c)
                adversarial = pgd(model, x, y, norm=settings.eval_norm, eps=eps,
                                  step_size=default_step_size(eps, settings.eval_steps), steps=settings.eval_steps,
                                  random_start=True, generator=generator)
                with torch.no_grad():
                    correct += (model(adversarial).argmax(1) == y).sum().item()
                yield Progress(e * chunks + c + 1, len(settings.eval_eps) * chunks,
                               f"PGD {settings.eval_norm.upper()} ε={eps:g}")
            robust[str(float(eps))] = correct / max(1, robust_images)
        yield Finished({"clean_accuracy": clean, "robust_accuracy": robust, "confusion": confusion.tolist()})

    return job


def _dataset_identity(dataset: Dataset, manifest: dict | None) -> str:
    digest = hashlib.sha256()
    if manifest is not None:
        digest.update(json.dumps({"settings": manifest["settings"], "counts": manifest.get("counts")},
                                 sort_keys=True).encode())
    else:
        digest.update(dataset.images.numpy().tobytes())
        digest.update(dataset.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def _resolve(entry) -> tuple[Dataset, dict | None]:
    if isinstance(entry, BuiltDataset):
        return entry.load(), entry.manifest
    if isinstance(entry, Dataset):
        return entry, None
    path = Path(entry).expanduser()
    dataset = load_built_dataset(path)
    return dataset, json.loads((path / "manifest.json").read_text())


def experiment_job(datasets: Mapping[str, Any], test: Dataset, *, settings: ExperimentSettings | None = None,
                   out: Path | str | None = None, device=None) -> JobFactory:
    """Ilyas et al.'s experiment: for each dataset (a BuiltDataset, a dataset folder, or a Dataset such
    as the real images as a baseline), train a standard model on it and evaluate it on the real test
    set. Rows are written to ``out`` (JSON) as they finish; rerunning with the same settings skips the
    rows already there.

    Events:
      Partial("row-started", {"dataset", "index", "rows", "train_images", "epochs"})
      Progress(rows done + fraction of the current row, rows, message)
      Partial("row", row)   a finished row: {"dataset", "train_images", "epochs", "clean_accuracy",
                            "robust_accuracy": {str(ε): acc}, "train_seconds", "eval_seconds", "stats", ...}
      Finished(results)     {"format", "settings", "test", "paper", "rows": [...]}
    """
    settings = settings or ExperimentSettings()
    if not datasets:
        raise ValueError("give at least one dataset to train on")
    out_path = Path(out).expanduser() if out else None

    def job(cancel: CancelToken):
        dev = torch.device(device or "cpu")
        results = {"format": EXPERIMENT_FORMAT, "settings": settings.to_dict(),
                   "test": {"dataset": test.name, "split": test.split, "images": len(test),
                            "robust_images": min(settings.eval_images, len(test)), "origin": test.source},
                   "paper": {"source": "Ilyas et al. 2019, CIFAR-10 (Fig. 2b, Table 1)",
                             "robust_eps_l2": PAPER_ROBUST_EPS, "rows": PAPER_CIFAR10},
                   "rows": []}
        previous = {}
        if out_path is not None and out_path.exists():
            old = json.loads(out_path.read_text())
            if old.get("format") == EXPERIMENT_FORMAT and old.get("settings") == results["settings"] \
                    and old.get("test") == results["test"]:
                previous = {(r["dataset"], r.get("identity")): r for r in old.get("rows", [])}
        rows = len(datasets)
        for index, (name, entry) in enumerate(datasets.items()):
            cancel.check()
            dataset, manifest = _resolve(entry)
            identity = _dataset_identity(dataset, manifest)
            epochs = settings.epochs_for(len(dataset))
            if (name, identity) in previous:
                row = previous[(name, identity)]
                results["rows"].append(row)
                yield Progress(index + 1, rows, f"{name}: kept from {out_path.name}")
                yield Partial("row", row)
                continue
            yield Partial("row-started", {"dataset": name, "index": index, "rows": rows,
                                          "train_images": len(dataset), "epochs": epochs})
            began = time.perf_counter()
            model = None
            for event in train_standard_job(dataset, settings, epochs=epochs, device=dev, name=name)(cancel):
                if isinstance(event, Finished):
                    model = event.result
                elif isinstance(event, Progress):
                    yield Progress(index + 0.8 * event.fraction, rows, f"{name}: {event.message}")
            train_seconds = time.perf_counter() - began
            began = time.perf_counter()
            evaluation = None
            for event in evaluate_job(model, test, settings)(cancel):
                if isinstance(event, Finished):
                    evaluation = event.result
                elif isinstance(event, Progress):
                    yield Progress(index + 0.8 + 0.2 * event.fraction, rows, f"{name}: {event.message}")
            row = {"dataset": name, "identity": identity, "train_images": len(dataset), "epochs": epochs,
                   **evaluation, "train_seconds": round(train_seconds, 1),
                   "eval_seconds": round(time.perf_counter() - began, 1),
                   "final_train_accuracy": model.meta.extra["history"][-1]["train_accuracy"],
                   "source": (manifest or {}).get("settings", {"origin": dataset.source}),
                   "stats": (manifest or {}).get("stats", {})}
            results["rows"].append(row)
            if out_path is not None:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                _write_json(out_path, results)
            yield Progress(index + 1, rows, f"{name}: done")
            yield Partial("row", row)
        if out_path is not None:
            _write_json(out_path, results)
        yield Finished(results)

    return job


def run_experiment(datasets: Mapping[str, Any], test: Dataset, *, settings: ExperimentSettings | None = None,
                   out: Path | str | None = None, device=None, cancel: CancelToken | None = None,
                   on_event=None) -> dict:
    """The experiment, synchronously (CLI, scripts); see :func:`experiment_job`."""
    return run_directly(experiment_job(datasets, test, settings=settings, out=out, device=device), cancel, on_event)


def real_images_of(built: BuiltDataset | Path | str, source: Dataset) -> Dataset:
    """The real images (with their true labels) that a constructed dataset was made from: the
    baseline row "D" of the table, trained on exactly the same source images."""
    path = built.path if isinstance(built, BuiltDataset) else Path(built).expanduser()
    data = load_built_dataset(path)
    if source.indices is None:
        positions = data.indices
    else:
        where = {int(original): position for position, original in enumerate(source.indices.tolist())}
        if any(int(i) not in where for i in data.indices):
            raise ValueError(f"the {source.split} split given lacks images that {path} was built from")
        positions = torch.tensor([where[int(i)] for i in data.indices])
    if len(positions) and int(positions.max()) >= len(source):
        raise ValueError(f"{path} was built from a larger {source.split} split than the one given")
    real = source.subset(positions)
    real.name = "D"
    return real


@dataclass
class ConstructionSettings:
    """How the four datasets are built (see the builders): ``count`` source images chosen with
    ``seed``; inversion ``steps``/``step_size``/``schedule`` from ``seeds``; targeted L2 PGD with ``eps``
    and ``pgd_steps`` for D_rand and D_det."""
    count: int = 10_000
    seed: int = 0
    chunk_size: int = 500
    seeds: str = "other-class"
    steps: int = 1000
    step_size: float = 0.1
    schedule: str = "constant"
    eps: float = 1.5
    pgd_steps: int = 50
    pgd_step_size: float | None = None
    dtype: str = "float16"


def paper_experiment_job(robust_model, standard_model, source: Dataset, test: Dataset, workdir: Path | str, *,
                         construction: ConstructionSettings | None = None,
                         settings: ExperimentSettings | None = None, baseline: bool = True,
                         kinds: Sequence[str] = DATASET_KINDS, out: Path | str | None = None,
                         device=None) -> JobFactory:
    """The whole of Ilyas et al.'s Sec. 3 experiment behind one button: build (or resume) D_R with the
    robust model, D_NR, D_rand and D_det with the standard one in ``workdir``, then train a standard
    model on each (and, with ``baseline``, on the same real images: row "D") and evaluate it on ``test``.

    Events: Partial("stage", {"stage", "index", "stages"}) as each build or the training starts;
    the stages' own events (Partial "chunk"/"resumed"/"complete" of the builders, "row-started"/"row"
    of the experiment); Progress over the whole run (each stage one unit); Finished(results) as
    :func:`experiment_job`. Everything resumes: rerun it after a cancel and it continues.
    """
    construction = construction or ConstructionSettings()
    settings = settings or ExperimentSettings()
    unknown = [k for k in kinds if k not in DATASET_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown dataset kinds {unknown}: choose from {', '.join(DATASET_KINDS)}")
    workdir = Path(workdir).expanduser()
    out = Path(out).expanduser() if out else workdir / "results.json"
    c = construction
    common = dict(count=c.count, chunk_size=c.chunk_size, seed=c.seed, dtype=c.dtype)
    inversion = dict(seeds=c.seeds, steps=c.steps, step_size=c.step_size, schedule=c.schedule)
    builders = {
        "robust": lambda: robust_dataset_job(robust_model, source, workdir / "D_R", **inversion, **common),
        "non-robust": lambda: non_robust_dataset_job(standard_model, source, workdir / "D_NR", **inversion, **common),
        "rand": lambda: relabeled_dataset_job(standard_model, source, workdir / "D_rand", mode="rand", eps=c.eps,
                                              steps=c.pgd_steps, step_size=c.pgd_step_size, **common),
        "det": lambda: relabeled_dataset_job(standard_model, source, workdir / "D_det", mode="det", eps=c.eps,
                                             steps=c.pgd_steps, step_size=c.pgd_step_size, **common),
    }
    stages = [DATASET_NAMES[k] for k in kinds] + ["experiment"]

    def job(cancel: CancelToken):
        built: dict[str, BuiltDataset] = {}
        for index, kind in enumerate(kinds):
            yield Partial("stage", {"stage": stages[index], "index": index, "stages": len(stages)})
            for event in builders[kind]()(cancel):
                if isinstance(event, Finished):
                    built[DATASET_NAMES[kind]] = event.result
                elif isinstance(event, Progress):
                    yield Progress(index + event.fraction, len(stages), event.message)
                else:
                    yield event
        datasets: dict[str, Any] = {}
        if baseline:
            datasets["D"] = real_images_of(next(iter(built.values())), source)
        datasets.update(built)
        yield Partial("stage", {"stage": "experiment", "index": len(kinds), "stages": len(stages)})
        for event in experiment_job(datasets, test, settings=settings, out=out, device=device)(cancel):
            if isinstance(event, Progress):
                yield Progress(len(kinds) + event.fraction, len(stages), event.message)
            else:
                yield event

    return job


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def format_experiment_table(results: dict, markdown: bool = False) -> str:
    """The table: our rows (clean and robust accuracy in %) beside the paper's CIFAR-10 figures,
    which are labelled as theirs."""
    eps_list = results["settings"]["eval_eps"]
    norm = results["settings"]["eval_norm"].upper()
    paper = results.get("paper", {}).get("rows", PAPER_CIFAR10)
    paper_eps = results.get("paper", {}).get("robust_eps_l2", PAPER_ROBUST_EPS)
    header = (["train on", "images", "epochs", "clean"] + [f"robust {norm} ε={e:g}" for e in eps_list]
              + ["paper (CIFAR-10): clean", f"paper: robust L2 ε={paper_eps:g}"])
    table = []
    for row in results["rows"]:
        theirs = paper.get(row["dataset"], {})
        table.append([row["dataset"], str(row["train_images"]), str(row["epochs"]), _percent(row["clean_accuracy"])]
                     + [_percent(row["robust_accuracy"].get(str(float(e)))) for e in eps_list]
                     + [_percent(theirs.get("clean")), _percent(theirs.get("robust"))])
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in table]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    test = results.get("test", {})
    lines.append(f"accuracies in % on the real {test.get('dataset', '')} test set ({test.get('images')} images; "
                 f"robust: {results['settings']['eval_steps']}-step PGD on the first {test.get('robust_images')}). "
                 f"Paper columns: Ilyas et al. 2019's CIFAR-10 figures, not ours.")
    return "\n".join(lines)
