"""The constructed datasets of Ilyas et al. 2019 on disk: D_R and D_NR (Sec. 3.1: each training image
replaced by the inversion of a robust / a standard model's representation of it, label kept) and
D_rand and D_det (Sec. 3.2: each image pushed by targeted L2 PGD on a standard model toward a class t
and relabelled t), with their file format and resumable builders.

A dataset folder holds ``chunks/chunk-k.npz`` as they are built, ``manifest.json`` (settings, chunks
done, statistics) and, once complete, ``dataset.npz``. A rerun with the same settings resumes where the
last run stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .attacks import pgd
from .data import Dataset
from .evaluate import default_step_size
from .inversion import SEED_MODES, inversion_steps, make_seeds, model_device, step_size_at
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress

RELABEL_MODES = ("rand", "det")
DATASET_KINDS = ("robust", "non-robust", "rand", "det")
DATASET_NAMES = {"robust": "D_R", "non-robust": "D_NR", "rand": "D_rand", "det": "D_det"}
STORAGE_DTYPES = ("float16", "uint8")
MANIFEST_FORMAT = "robustlens-features-dataset"

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


def write_json(path: Path, payload: dict) -> None:
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
# run_chunks(todo) for chunks built elsewhere (a Ray cluster: engine/cluster_jobs.py): ``todo`` is the list of
# (chunk k, its source positions) still to build, in order; it yields (k, the chunk's dict, seconds) in that order
ChunkRunner = Callable[[list[tuple[int, torch.Tensor]]], Iterator[tuple[int, dict, float]]]


def chunk_generator(seed: int, chunk: int) -> torch.Generator:
    """Chunk k's own random stream: a resumed chunk, or one built on another machine, draws exactly what
    it would have drawn in one uninterrupted local build."""
    return _chunk_generator(seed, chunk)


def build_chunk(make_chunk: ChunkMaker, k: int, part: torch.Tensor, seed: int,
                cancel: CancelToken | None = None) -> dict:
    """Chunk k of a build run to its end without its progress events (what a cluster worker runs)."""
    chunk = None
    for event in make_chunk(k, part, chunk_generator(seed, k), cancel or CancelToken()):
        if isinstance(event, dict):
            chunk = event
    return chunk


def _build_job(out: Path | str, kind: str, model, source: Dataset, *, count: int, chunk_size: int, seed: int,
               dtype: str, settings: dict, make_chunk: ChunkMaker, run_chunks: ChunkRunner | None = None
               ) -> JobFactory:
    """Shared machinery of the four builders: chunks, manifest, resume, events.

    The images to transform are fixed up front (``select_source_indices``); chunk k covers positions
    [k·chunk_size, (k+1)·chunk_size) of that list and is written as ``chunks/chunk-k.npz`` before the
    manifest records it. A rerun with the same settings skips every chunk already on disk, so a crash
    or a cancel after chunk k resumes at chunk k+1 without duplicating or losing images.
    ``make_chunk(k, images_positions, generator, cancel)`` yields events and finally a dict with
    "images" (tensor), "labels" and optional extra per-image arrays. With ``run_chunks`` the chunks are
    built there instead (each chunk with its own generator, so the same bytes) and written here in order.
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
        write_json(manifest_path, manifest)
        done = sum(c["count"] for c in manifest["chunks"])
        if done:
            yield Progress(done, count, f"{name}: resuming with {done}/{count} images done")
            yield Partial("resumed", {"dataset": name, "done": done, "count": count})
        todo = [(k, positions[k * chunk_size:(k + 1) * chunk_size]) for k in range(chunks) if k not in done_chunks]

        def built_here():
            for k, part in todo:
                cancel.check()
                began = time.perf_counter()
                for event in make_chunk(k, part, _chunk_generator(seed, k), cancel):
                    if isinstance(event, dict):
                        yield k, event, time.perf_counter() - began
                    elif isinstance(event, Progress):  # within-chunk progress, in images of the whole build
                        yield Progress(done + event.fraction * len(part), count, f"{name}: {event.message}")
                    else:
                        yield event

        for item in (built_here() if run_chunks is None else run_chunks(todo)):
            if not isinstance(item, tuple):
                yield item
                continue
            cancel.check()
            k, chunk, seconds = item
            part = positions[k * chunk_size:(k + 1) * chunk_size]
            arrays = {key: np.asarray(value) for key, value in chunk.items() if key not in ("images", "summary")}
            _write_npz(chunk_path(k), images=_encode(chunk["images"], dtype),
                       source_indices=source_indices[k * chunk_size:(k + 1) * chunk_size].numpy(), **arrays)
            summary = {"index": k, "count": len(part), "seconds": round(seconds, 2)}
            summary.update({key: value for key, value in chunk.get("summary", {}).items()})
            manifest["chunks"].append(summary)
            manifest["chunks"].sort(key=lambda c: c["index"])
            manifest["seconds"] = round(manifest.get("seconds", 0.0) + seconds, 2)
            write_json(manifest_path, manifest)
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
    write_json(out / "manifest.json", manifest)
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
                       dtype: str = "float16", schedule: str = "constant",
                       run_chunks: ChunkRunner | None = None) -> JobFactory:
    """D_R: each source image x replaced by the inversion of the *robust* model's representation of
    x from a seed, keeping x's label. Pass the adversarially trained model."""
    settings = _inversion_settings(seeds, steps, step_size, schedule)
    return _build_job(out, "robust", model, source, count=count, chunk_size=chunk_size, seed=seed, dtype=dtype,
                      settings=settings, run_chunks=run_chunks,
                      make_chunk=_inversion_chunk_maker(model, source, seeds=seeds, steps=steps, step_size=step_size,
                                                         schedule=schedule))


def non_robust_dataset_job(model, source: Dataset, out: Path | str, *, count: int, seeds: str = "other-class",
                           steps: int = 1000, step_size: float = 0.1, chunk_size: int = 500, seed: int = 0,
                           dtype: str = "float16", schedule: str = "constant",
                           run_chunks: ChunkRunner | None = None) -> JobFactory:
    """D_NR: the same inversion with a *standard* model's representation."""
    settings = _inversion_settings(seeds, steps, step_size, schedule)
    return _build_job(out, "non-robust", model, source, count=count, chunk_size=chunk_size, seed=seed,
                      dtype=dtype, settings=settings, run_chunks=run_chunks,
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


def relabel_options(eps: float = 1.5, steps: int = 50, step_size: float | None = None,
                    batch_size: int = 250) -> dict:
    """The targeted PGD of D_rand / D_det as :func:`chunk_maker` takes it (the step size resolved)."""
    if not (eps > 0 and math.isfinite(eps)) or steps < 1:
        raise ValueError("targeted PGD needs ε > 0 and steps ≥ 1")
    return dict(eps=eps, steps=steps, step_size=step_size if step_size is not None else default_step_size(eps, steps),
                batch_size=batch_size)


def _relabel_chunk_maker(model, source: Dataset, *, mode: str, eps: float, steps: int, step_size: float,
                         batch_size: int) -> ChunkMaker:
    num_classes = len(getattr(getattr(model, "meta", None), "classes", source.classes))
    device = model_device(model)

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

    return make_chunk


def chunk_maker(kind: str, model, source: Dataset, options: dict) -> ChunkMaker:
    """The chunk builder of a ``kind`` of dataset: ``options`` are the inversion's (seeds, steps, step_size,
    schedule) for robust / non-robust, :func:`relabel_options` for rand / det. A cluster worker builds
    its chunks with the one a local build uses."""
    if kind in ("robust", "non-robust"):
        return _inversion_chunk_maker(model, source, **options)
    if kind not in RELABEL_MODES:
        raise ValueError(f"unknown dataset kind {kind!r}: choose one of {', '.join(DATASET_KINDS)}")
    return _relabel_chunk_maker(model, source, mode=kind, **options)


def relabeled_dataset_job(model, source: Dataset, out: Path | str, *, mode: str, count: int, eps: float = 1.5,
                          steps: int = 50, step_size: float | None = None, chunk_size: int = 500, seed: int = 0,
                          dtype: str = "float16", batch_size: int = 250,
                          run_chunks: ChunkRunner | None = None) -> JobFactory:
    """D_rand / D_det: targeted L2 PGD on a *standard* model pushes x toward t (min CE(f(x'), t),
    ‖x' − x‖₂ ≤ ε), and the image is stored with label t (the paper keeps every image, reached or not;
    the manifest reports how many reached t)."""
    if mode not in RELABEL_MODES:
        raise ValueError(f"unknown relabelling mode {mode!r}: choose one of {', '.join(RELABEL_MODES)}")
    options = relabel_options(eps, steps, step_size, batch_size)
    settings = {"method": "targeted L2 PGD on the standard model, relabelled with the target "
                          "(Ilyas et al. 2019, Sec. 3.2)",
                "mode": mode, "norm": "l2", "eps": eps, "steps": steps, "step_size": options["step_size"],
                "random_start": False, "loss": "ce"}
    return _build_job(out, mode, model, source, count=count, chunk_size=chunk_size, seed=seed, dtype=dtype,
                      settings=settings, make_chunk=chunk_maker(mode, model, source, options), run_chunks=run_chunks)


def real_images_of(built: BuiltDataset | Path | str, source: Dataset) -> Dataset:
    """The real images (with their true labels) that a constructed dataset was made from: the
    baseline row "D" of the table, trained on exactly the same source images."""
    path = built.path if isinstance(built, BuiltDataset) else Path(built).expanduser()
    data = load_built_dataset(path)
    real = source.subset(positions_in(source, data.indices, path))
    real.name = "D"
    return real


def positions_in(source: Dataset, source_indices: torch.Tensor, built_path: Path) -> torch.Tensor:
    """Where the images a constructed dataset records (``source_indices``: their indices in the whole
    split) lie in ``source``: the same numbers for a whole split, their positions in a subset that
    keeps its images' indices (the built-in 12,000-image Fashion-MNIST)."""
    if source.indices is None:
        positions = source_indices
    else:
        where = {int(original): position for position, original in enumerate(source.indices.tolist())}
        if any(int(i) not in where for i in source_indices):
            raise ValueError(f"the {source.split} split given lacks images that {built_path} was built from")
        positions = torch.tensor([where[int(i)] for i in source_indices], dtype=torch.long)
    if len(positions) and int(positions.max()) >= len(source):
        raise ValueError(f"{built_path} was built from a larger {source.split} split than the one given")
    return positions

