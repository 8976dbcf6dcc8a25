"""The long runs that go on Ray besides certify / predict: the robustness curves, the transfer matrix and
the chunks of a constructed dataset (engine/cluster.py runs the blocks, engine/cluster_worker.py is what
a worker does with one).

Each driver here cuts the work into blocks, ships each block's images once, and puts the blocks' results
back together exactly as the single-process code would: a curve point is the mean of its images' robust
verdicts (``robustness.robust_block``) over the blocks in order, a transfer cell the sum of its blocks'
hits, a dataset chunk is written by the caller's builder in chunk order. Attack blocks are whole PGD
batches of the single run (each batch seeded by its first image), so every batch sees the same images.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import torch

from .cli import CLIError
from .cluster import ClusterOptions, Task, run_tasks
from .models import weights_sha256
from .robustness import CurvePoint, TransferMatrix, transfer_config, transfer_targets


def model_refs(models: Mapping[str, torch.nn.Module], refs: Mapping[str, str] | None = None) -> dict:
    """{name: (what a worker loads it by, its weights SHA-256)}; ``refs`` maps names that are not
    themselves zoo names or paths (default: the name)."""
    refs = refs or {}
    return {name: (str(refs.get(name, name)), weights_sha256(model.state_dict())) for name, model in models.items()}


def attack_blocks(total: int, batch: int, block: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each block: whole PGD batches (``block`` images, a multiple of ``batch``; default one
    batch), so every batch is the single run's."""
    size = block or batch
    if size % batch:
        raise CLIError(f"--block {size} is not a multiple of --batch {batch}: a block is whole PGD batches, so that "
                       f"each batch holds the images it holds in one process")
    return [(start, min(total, start + size)) for start in range(0, total, size)]


def _job(command: str, models, norm: str, attack: dict, batch: int, options: ClusterOptions, threads) -> dict:
    return dict(command=command, models=models, norm=norm, attack=attack, batch=batch, threads=threads,
                gpus=options.gpus_per_worker)


def ray_curve_points(options: ClusterOptions, refs: dict, images: torch.Tensor, labels: torch.Tensor, *,
                     norm: str, attack: dict, batch: int, todo: list[tuple[float, str]],
                     progress: Callable[[int], None], threads: int | None = None,
                     tick: Callable[[], None] | None = None) -> Iterator[CurvePoint]:
    """The robustness curves' points ``todo`` ((ε, model name) pairs) in that order, each the single run's
    ``robustness_curves_job`` point; ``refs`` from :func:`model_refs`; ``attack`` the job's PGD settings
    (steps, relative_step, restarts, random_start, loss, keep, seed); ``progress(k)``: k more images
    attacked; ``tick`` as ``cluster.run_tasks`` takes it."""
    spans = attack_blocks(len(images), batch, options.block)
    job = _job("curve", refs, norm, attack, batch, options, threads)

    def make_tasks(put, _workers):
        shipped = [(put(images[a:b].numpy()), put(labels[a:b].numpy())) for a, b in spans]
        return [Task(job, (name, float(eps), *shipped[k], a), b - a)
                for eps, name in todo for k, (a, b) in enumerate(spans)]

    verdicts: list = []
    for number, robust in run_tasks(options, make_tasks, progress, tick=tick):
        verdicts.append(torch.tensor(robust))  # a copy: what Ray hands back is read-only
        if len(verdicts) == len(spans):  # every block of this point is back
            eps, name = todo[number // len(spans)]
            robust = torch.cat(verdicts)
            verdicts = []
            yield CurvePoint(name, float(eps), robust.float().mean().item(), int(robust.sum()), len(robust))


def ray_transfer_matrix(options: ClusterOptions, models: Mapping[str, torch.nn.Module], refs: dict,
                        images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float, attack: dict,
                        batch: int, progress: Callable[[int], None], threads: int | None = None) -> TransferMatrix:
    """``transfer_matrix_job``'s matrix with each source's crafting spread over Ray workers in blocks;
    ``attack`` as :func:`robustness.transfer_config` takes it (target, target_class among them)."""
    names = list(models)
    targets = transfer_targets(models, images, labels, transfer_config(norm, eps, **attack))
    spans = attack_blocks(len(images), batch, options.block)
    job = _job("transfer", refs, norm, attack, batch, options, threads)

    def make_tasks(put, _workers):
        shipped = [(put(images[a:b].numpy()), put(labels[a:b].numpy()),
                    None if targets is None else put(targets[a:b].numpy())) for a, b in spans]
        return [Task(job, (source, float(eps), shipped[k][0], shipped[k][1], a, shipped[k][2]), b - a)
                for source in names for k, (a, b) in enumerate(spans)]

    fooled = [[0] * len(names) for _ in names]
    count = [[0] * len(names) for _ in names]
    for number, masks in run_tasks(options, make_tasks, progress):
        i = number // len(spans)
        for j, target in enumerate(names):
            hit, eligible = (torch.tensor(m) for m in masks[target])
            fooled[i][j] += int((hit & eligible).sum())
            count[i][j] += int(eligible.sum())
    rate = [[f / c if c else float("nan") for f, c in zip(frow, crow)] for frow, crow in zip(fooled, count)]
    settings = {key: attack[key] for key in ("steps", "relative_step", "restarts", "random_start", "loss", "keep",
                                             "target", "target_class", "seed")}
    return TransferMatrix(norm, float(eps), names, rate, fooled, count, len(images), settings)


def ray_chunk_runner(options: ClusterOptions, *, kind: str, model_ref: str, model, source: tuple,
                     chunk_options: dict, seed: int, threads: int | None = None,
                     progress: Callable[[int], None] = lambda k: None, tick: Callable[[], None] | None = None):
    """A ``run_chunks`` for ``constructed``'s builders: the chunks still to do built by Ray workers (each
    loads the model and the source split ``source`` = (name, split, data root) once), yielded in order."""
    job = dict(command="chunk", kind=kind, model=str(model_ref), weights_sha256=weights_sha256(model.state_dict()),
               source=tuple(source), options=dict(chunk_options), seed=seed, threads=threads,
               gpus=options.gpus_per_worker)

    def run_chunks(todo):
        tasks = [Task(job, (k, part.tolist()), len(part)) for k, part in todo]
        for number, (chunk, seconds) in run_tasks(options, lambda put, workers: tasks, progress, tick=tick):
            yield todo[number][0], chunk, seconds

    return run_chunks
