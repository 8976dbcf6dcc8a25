"""The GUI's long experiments on a Ray cluster: jobs ``fn(cache, request)`` with the events of their
single-process twins, yielded by the Ray driver as blocks come back, so the same plots grow.

- :func:`ray_accuracy_curves_job`: certified accuracy against radius (``certify_jobs.accuracy_curves_job``
  with ``request.cluster``): blocks of images per noise model, a Partial("row") per image and model in the
  single job's order (image by image, every model), each image seeded ``seed + idx``;
- :func:`ray_robustness_curves_job`: robust accuracy against ε (``robustness.cached_robustness_curves_job``
  with ``request.cluster``): one Partial("curve_point") per (ε, model) in the single job's order;
- the Ilyas et al. pipeline builds its datasets' chunks on Ray through ``cluster_jobs.ray_chunk_runner``
  (``ilyas_experiment.ilyas_experiment_job`` with ``request.cluster``).

Cancelling checks the job's token about once a second while blocks are out; the blocks still running
are abandoned (their workers stopped).
"""

from __future__ import annotations

from .certify_jobs import (AccuracyRequest, AccuracyResult, _check_params, add_accuracy_row, default_radius_grid,
                           evenly_spaced)
from .cluster import Task, default_block, run_tasks
from .cluster_jobs import model_refs, ray_curve_points
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress
from .models import weights_sha256
from .robustness import RobustnessCurves, RobustnessRequest, batch_for


def _where(options) -> str:
    workers = f", {options.workers} workers" if options.workers else ""
    return f"on Ray ({options.address}{workers})"


def ray_accuracy_curves_job(cache, request: AccuracyRequest) -> JobFactory:
    """``accuracy_curves_job``'s events with the images certified by Ray workers."""
    params, options = request.params, request.cluster
    _check_params(params)

    def job(cancel: CancelToken):
        keys = list(request.model_keys)
        smooths = {key: cache.smooth(key) for key in keys}
        subset = request.dataset.subset(evenly_spaced(len(request.dataset), request.images))
        result = AccuracyResult(radii=default_radius_grid(smooths, request.n, params.alpha),
                                rows={key: [] for key in keys})
        specs = {key: dict(command="certify", model=key, weights_sha256=weights_sha256(cache.model(key).state_dict()),
                           classes=smooth.num_classes, sigma=float(smooth.sigma), n0=params.n0, n=request.n,
                           alpha=params.alpha, batch=params.batch, seed=params.seed, eager=not smooth.optimize,
                           threads=None, gpus=options.gpus_per_worker)
                 for key, smooth in smooths.items()}
        blocks: list[list[int]] = []

        def make_tasks(put, workers):
            size = options.block or default_block(len(subset), workers)
            blocks.extend(list(range(a, min(len(subset), a + size))) for a in range(0, len(subset), size))
            tasks = []
            for block in blocks:
                shipped = put(subset.images[block].numpy())
                indices = [subset.source_index(p) for p in block]
                tasks += [Task(specs[key], (indices, shipped), len(block)) for key in keys]
            return tasks

        total, done, arrived = len(subset) * len(keys), 0, {}
        yield Progress(0, total, f"starting Ray workers {_where(options)}")
        for number, results in run_tasks(options, make_tasks, lambda k: None, tick=cancel.check):
            block, model = divmod(number, len(keys))
            arrived[keys[model]] = results
            if len(arrived) < len(keys):
                continue
            for k, position in enumerate(blocks[block]):  # the single job's order: image by image, every model
                idx, label = subset.source_index(position), int(subset.labels[position])
                for key in keys:
                    prediction, radius, seconds = arrived[key][k]
                    row = add_accuracy_row(result, key, smooths[key].sigma, position, idx, label, prediction,
                                           radius, seconds)
                    done += 1
                    yield Partial("row", row)
                    yield Progress(done, total, f"{key}: image {position + 1}/{len(subset)} {_where(options)}")
            arrived = {}
        yield Finished(result)

    return job


def ray_robustness_curves_job(cache, request: RobustnessRequest) -> JobFactory:
    """``cached_robustness_curves_job``'s events with every (ε, model) point attacked by Ray workers."""
    options = request.cluster
    # robustness_curves_job's defaults, as the single-process section runs it
    attack = dict(steps=request.steps, relative_step=2.5, restarts=1, random_start="none", loss="ce", keep="best",
                  seed=0)

    def job(cancel: CancelToken):
        models = cache.models(request.keys)
        names = list(models)
        todo = [(float(eps), name) for eps in request.eps_values for name in names]
        total, done = len(todo), 0
        accuracy = {name: [] for name in names}
        yield Progress(0, total, f"starting Ray workers {_where(options)}")
        for point in ray_curve_points(options, model_refs(models), request.images, request.labels,
                                      norm=request.norm, attack=attack, batch=batch_for(request.steps), todo=todo,
                                      progress=lambda k: None, tick=cancel.check):
            accuracy[point.model].append(point.accuracy)
            done += 1
            yield Partial("curve_point", point)
            yield Progress(done, total, f"{point.model}: ε={point.eps:g} {_where(options)}")
        settings = dict(attack, attack="PGD, untargeted")
        yield Finished(RobustnessCurves(request.norm, [float(e) for e in request.eps_values], names, accuracy,
                                        len(request.images), settings))

    return job
