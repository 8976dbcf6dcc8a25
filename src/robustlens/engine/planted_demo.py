"""The planted-feature demo: Ilyas et al. 2019's predictions on a dataset where they must hold.

On ``fashion-mnist-planted`` (``planted.py``: every training image carries a small pattern p_y keyed
to its class) the demo runs the paper's pipeline with the project's own builders and trainer:

1. train the standard model (the zoo's recipe, ``ilyas_experiment.train_standard_job``) on planted
   training images: row "D_planted";
2. build D_det from ``count`` of those images with that model (targeted L2 PGD to t = (y + 1) mod C,
   relabelled t: ``constructed.relabeled_dataset_job``) and D_R with the robust model (representation
   inversion: ``constructed.robust_dataset_job``);
3. train a standard model on D_det, on D_R and, for reference, on the same ``count`` images without
   the pattern (row "D");
4. evaluate every model as the experiment does (``ilyas_experiment.evaluate_job``: clean and PGD robust
   accuracy on the real, unplanted test set) and on test images carrying a pattern: their own class's
   (``own_pattern_accuracy``) or another class c's (``follows_pattern``: the share answering c;
   ``true_class``: the share still answering y; ``switched_to_pattern``). The zoo's standard and robust models, trained on
   unplanted images, are evaluated the same way as references;
5. measure the pattern in perturbations and images (``planted_measures.py``).

Everything lands in ``workdir`` (models, datasets) and resumes: rerun the same request and finished
stages are read back.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .constructed import relabeled_dataset_job, robust_dataset_job, select_source_indices, write_json
from .data import Dataset, load_dataset
from .ilyas_experiment import DEFAULT_ROBUST, DEFAULT_STANDARD, ExperimentSettings, evaluate_job, train_standard_job
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress
from .models import load_checkpoint, save_checkpoint
from .planted import BASE_NAME, DEFAULT_SPEC, class_patterns, planted_dataset, planted_norms
from .planted_measures import adversarial_alignment, dataset_pattern_strength, pattern_following

DEMO_FORMAT = "robustlens-planted-demo"


@dataclass(frozen=True)
class PlantedDemoRequest:
    """The demo's settings. ``count`` planted training images (chosen with ``seed``, as build-dataset
    chooses them); D_R by ``steps`` inversion steps from ``seeds`` with ``robust_model``; D_det by
    targeted L2 PGD of radius ``eps`` in ``pgd_steps``; models trained with ``training``; test measures
    on the first ``test_images`` real test images (None: all), adversarial ones on ``attack_images``. The
planted model itself is trained on ``planted_model_images`` planted images (None: the whole planted
training split), chosen the same way, so the ``count`` images are among them (the first ``count`` of
the same seeded order)."""
    workdir: str
    count: int = 2_000
    planted_model_images: int | None = 10_000
    seed: int = 0
    chunk_size: int = 500
    robust_model: str = DEFAULT_ROBUST
    reference_models: tuple[str, ...] = (DEFAULT_STANDARD, DEFAULT_ROBUST)
    seeds: str = "noise"
    steps: int = 100
    step_size: float = 1.0
    schedule: str = "cosine"
    eps: float = 1.5
    pgd_steps: int = 50
    training: ExperimentSettings = field(default_factory=lambda: ExperimentSettings(epochs=10, eval_images=500))
    test_images: int | None = None
    attack_images: int = 500
    baseline: bool = True
    out: str | None = None

    def validate(self) -> None:
        """Refuse, in one line, settings the demo cannot run with (before any work)."""
        if not self.workdir:
            raise ValueError("name a folder for the models and datasets")
        if self.count < 20:
            raise ValueError(f"the demo needs at least 20 training images, got {self.count}")
        if self.planted_model_images is not None and self.planted_model_images < self.count:
            raise ValueError(f"the planted model must learn from at least the {self.count} images D_det and D_R "
                             f"are built from, not {self.planted_model_images}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["training"] = self.training.to_dict()
        d["reference_models"] = list(self.reference_models)
        for key in ("workdir", "out"):
            d.pop(key)
        return d


def _identity(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _trained_model(path: Path, dataset: Dataset, settings: ExperimentSettings, identity: str, device,
                   cancel: CancelToken, name: str):
    """A standard model trained on ``dataset`` (the experiment's trainer), kept at ``path``: a rerun
    with the same ``identity`` reads it back instead of training again. Yields events, returns the model."""
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True).get("identity")
        except Exception:  # noqa: BLE001 - an unreadable model (a crash while saving) is trained again
            stored = None
        if stored == identity:
            yield Progress(1, 1, f"{name}: model read back from {path.name}")
            return load_checkpoint(path, device=device)
    model = None
    for event in train_standard_job(dataset, settings, epochs=settings.epochs_for(len(dataset)), device=device,
                                    name=name)(cancel):
        if isinstance(event, Finished):
            model = event.result
        else:
            yield event
    save_checkpoint(model, path, identity=identity)
    return model


def _stage(events, index: float, stages: int, width: float = 1.0):
    """Forward a stage's events with its Progress mapped onto [index, index + width] of the whole run;
    returns the stage's result: its Finished event's, or the generator's return value."""
    result = None
    iterator = iter(events)
    while True:
        try:
            event = next(iterator)
        except StopIteration as stop:
            return result if stop.value is None else stop.value
        if isinstance(event, Finished):
            result = event.result
        elif isinstance(event, Progress):
            yield Progress(index + width * event.fraction, stages, event.message)
        else:
            yield event


def planted_model_stage(request: PlantedDemoRequest, planted_train: Dataset, device, cancel: CancelToken):
    """Train (or read back from ``workdir/models/D_planted.pt``) the standard model on the planted
    training images. Yields events; returns the model."""
    if request.planted_model_images is None:
        fit = planted_train
    else:
        fit = planted_train.subset(select_source_indices(planted_train, request.planted_model_images, request.seed))
    fit.name = "D_planted"
    identity = _identity({"images": len(fit), "seed": request.seed, "patterns": DEFAULT_SPEC.to_dict(),
                          "training": request.training.to_dict(), "rows": "D_planted"})
    model = yield from _trained_model(Path(request.workdir).expanduser() / "models" / "D_planted.pt", fit,
                                      request.training, identity, device, cancel, "D_planted")
    return model, len(fit)


def planted_demo_job(cache, request: PlantedDemoRequest) -> JobFactory:
    """The whole demo (see the module docstring). ``cache``: a ModelCache for the robust and reference
    models. Events: Partial("stage", {"stage", "index", "stages"}), the builders' and trainer's events,
    Partial("row", row) per evaluated model, Progress over the run; Finished(results), also written
    to ``request.out`` (default ``workdir/planted.json``)."""
    workdir = Path(request.workdir).expanduser()
    out = Path(request.out).expanduser() if request.out else workdir / "planted.json"
    request.validate()
    stage_names = ["D_planted", "D_det", "D_R", "models", "evaluation", "measures"]
    stages = len(stage_names)

    def job(cancel: CancelToken):
        device = torch.device(cache.device)
        began = time.perf_counter()
        # a model that does not load is refused before hours of work, not after
        robust = cache.model(request.robust_model)
        references = [(key, cache.model(key)) for key in request.reference_models]
        clean_train = load_dataset(BASE_NAME, "train")
        planted_train = planted_dataset(clean_train)  # = load_dataset(PLANTED_NAME, "train"), read once
        test = load_dataset(BASE_NAME, "test")
        if request.test_images is not None and request.test_images < len(test):
            test = test.subset(range(request.test_images))
        if request.count > len(planted_train):
            raise ValueError(f"the planted training set has {len(planted_train):,} images, fewer than {request.count:,}")
        patterns = class_patterns(DEFAULT_SPEC)
        positions = select_source_indices(planted_train, request.count, request.seed)  # build-dataset's choice
        planted_images = planted_train.subset(positions)
        planted_images.name = "D_planted"
        clean_images = clean_train.subset(positions)
        clean_images.name = "D"
        settings = request.training
        base_identity = {"count": request.count, "seed": request.seed, "patterns": DEFAULT_SPEC.to_dict(),
                         "training": settings.to_dict()}
        models_dir = workdir / "models"

        def stage(index):
            return Partial("stage", {"stage": stage_names[index], "index": index, "stages": stages})

        yield stage(0)
        planted_model, planted_model_images = yield from _stage(
            planted_model_stage(request, planted_train, device, cancel), 0, stages)

        yield stage(1)
        common = dict(count=request.count, chunk_size=request.chunk_size, seed=request.seed)
        built_det = yield from _stage(relabeled_dataset_job(
            planted_model, planted_train, workdir / "D_det", mode="det", eps=request.eps, steps=request.pgd_steps,
            **common)(cancel), 1, stages)
        yield stage(2)
        built_r = yield from _stage(robust_dataset_job(
            robust, planted_train, workdir / "D_R", seeds=request.seeds, steps=request.steps,
            step_size=request.step_size, schedule=request.schedule, **common)(cancel), 2, stages)
        det, dr = built_det.load(), built_r.load()

        yield stage(3)
        trained = {"D_planted": planted_model}
        train_sets = {"D_det": (det, built_det.manifest["settings"]), "D_R": (dr, built_r.manifest["settings"])}
        if request.baseline:
            train_sets["D"] = (clean_images, {"rows": "D"})
        for k, (name, (dataset, construction)) in enumerate(train_sets.items()):
            identity = _identity({**base_identity, "rows": name, "construction": construction})
            trained[name] = yield from _stage(_trained_model(models_dir / f"{name}.pt", dataset, settings, identity,
                                                             device, cancel, name),
                                              3 + k / len(train_sets), stages, 1 / len(train_sets))

        yield stage(4)
        generator = torch.Generator().manual_seed(request.seed)
        other = (test.labels + torch.randint(1, len(test.classes), test.labels.shape, generator=generator)) \
            % len(test.classes)  # a class other than y, uniform: the pattern that disagrees with the image
        rows = []
        evaluated = list(trained.items()) + references
        for k, (name, model) in enumerate(evaluated):
            evaluation = yield from _stage(evaluate_job(model, test, settings)(cancel), 4 + k / len(evaluated), stages,
                                           1 / len(evaluated))
            following = pattern_following(model, test, patterns, other)
            size = {"D_planted": planted_model_images, "D": len(clean_images), "D_det": len(det), "D_R": len(dr)}.get(name)
            row = {"dataset": name if name in trained else f"{name} (zoo, unplanted)",
                   "reference": name not in trained, "train_images": size,
                   "epochs": settings.epochs_for(size) if size is not None else None,
                   **evaluation, **following}
            rows.append(row)
            yield Partial("row", row)
            yield Progress(4 + (k + 1) / len(evaluated), stages, f"{name} evaluated")

        yield stage(5)
        attack_test = test.subset(range(min(request.attack_images, len(test))))
        adversarial = {name: adversarial_alignment(model, attack_test, patterns, eps=request.eps,
                                                   steps=settings.eval_steps, seed=request.seed)
                       for name, model in [("D_planted", planted_model), (DEFAULT_STANDARD, cache.model(DEFAULT_STANDARD))]}
        strengths = {"D (unplanted images)": dataset_pattern_strength(clean_images.images, clean_images.labels, patterns),
                     "D_planted": dataset_pattern_strength(planted_images.images, planted_images.labels, patterns),
                     "D_R": dataset_pattern_strength(dr.images, dr.labels, patterns),
                     "D_det": dataset_pattern_strength(det.images, det.labels, patterns,
                                                       original=torch.from_numpy(_original_labels(built_det)))}
        carried = planted_norms(clean_images.images, clean_images.labels, patterns)
        results = {
            "format": DEMO_FORMAT,
            "settings": request.to_dict(),
            "patterns": {**DEFAULT_SPEC.to_dict(), "largest_pixel": round(patterns.abs().max().item(), 4),
                         "carried_norm_mean": round(carried.mean().item(), 4),
                         "carried_norm_min": round(carried.min().item(), 4),
                         "carried_norm_max": round(carried.max().item(), 4)},
            "test": {"dataset": test.name, "split": test.split, "images": len(test), "origin": test.source,
                     "robust_images": min(settings.eval_images, len(test)),
                     "other_pattern": "class y + k mod 10, k uniform in 1..9 (seed)"},
            "rows": rows,
            "adversarial": adversarial,
            "pattern_strength": strengths,
            "datasets": {"D_det": built_det.manifest.get("stats", {}), "D_R": built_r.manifest.get("stats", {})},
            "seconds": round(time.perf_counter() - began, 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, results)
        yield Progress(stages, stages, f"results written to {out}")
        yield Finished(results)

    return job


def _original_labels(built) -> np.ndarray:
    """D_det's labels before relabelling (the images' true classes)."""
    with np.load(Path(built.path) / "dataset.npz") as npz:
        return npz["original_labels"].astype(np.int64)
