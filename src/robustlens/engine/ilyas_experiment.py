"""Ilyas et al. 2019's experiment (Sec. 3): train a standard model on each constructed dataset (D_R,
D_NR, D_rand, D_det; ``constructed.py``) and on the real images they were made from (D), evaluate each
on the real test set, and tabulate the result beside the paper's CIFAR-10 figures.

:func:`ilyas_experiment_job` is the whole pipeline behind one settings object,
:class:`IlyasExperimentRequest`: the Experiments tab and ``robustlens experiment --build-in`` both
run it, so the same settings give the same table.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .attacks import pgd
from .constructed import (DATASET_KINDS, DATASET_NAMES, BuiltDataset, load_built_dataset, non_robust_dataset_job,
                          real_images_of, relabeled_dataset_job, robust_dataset_job, write_json)
from .cost import CostEstimate, announce, estimate_seconds
from .data import Dataset, load_dataset
from .evaluate import default_step_size
from .inversion import model_device
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress
from .train import optimization_step

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


@dataclass(frozen=True)
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
        device = model_device(model)
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


def holdout_images(source: Dataset, count: int, seed: int = 0) -> Dataset:
    """``count`` training images that no constructed dataset of up to ``len(source) - count`` images
    with the same ``seed`` contains: the *last* ``count`` positions of the seeded order whose first
    positions ``select_source_indices`` takes. Settings are chosen on these, never on the test set."""
    from .constructed import select_source_indices

    if not 1 <= count < len(source):
        raise ValueError(f"the held-out part must have between 1 and {len(source) - 1} images, got {count}")
    held = source.subset(select_source_indices(source, len(source), seed)[-count:])
    held.split = "train (held out)"
    return held


def _check_disjoint(datasets: Mapping[str, Dataset], validation: Dataset) -> None:
    held = set(validation.indices.tolist()) if validation.indices is not None else set()
    for name, dataset in datasets.items():
        if dataset.indices is not None and held.intersection(dataset.indices.tolist()):
            raise ValueError(f"{name} was built from images of the held-out part: choose fewer held-out "
                             "images or a smaller dataset")


def experiment_job(datasets: Mapping[str, Any], test: Dataset, *, settings: ExperimentSettings | None = None,
                   out: Path | str | None = None, device=None, validation: Dataset | None = None) -> JobFactory:
    """Ilyas et al.'s experiment: for each dataset (a BuiltDataset, a dataset folder, or a Dataset such
    as the real images as a baseline), train a standard model on it and evaluate it on the real test
    set. Rows are written to ``out`` (JSON) as they finish; rerunning with the same settings skips the
    rows already there. With ``validation`` (held-out training images, :func:`holdout_images`) each row
    is evaluated on them too, under ``row["validation"]``: the numbers to choose settings by.

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
        if validation is not None:
            results["validation"] = {"dataset": validation.name, "split": validation.split,
                                     "images": len(validation),
                                     "robust_images": min(settings.eval_images, len(validation))}
        previous = {}
        if out_path is not None and out_path.exists():
            old = json.loads(out_path.read_text())
            if old.get("format") == EXPERIMENT_FORMAT and old.get("settings") == results["settings"] \
                    and old.get("test") == results["test"] and old.get("validation") == results.get("validation"):
                previous = {(r["dataset"], r.get("identity")): r for r in old.get("rows", [])}
        rows = len(datasets)
        for index, (name, entry) in enumerate(datasets.items()):
            cancel.check()
            dataset, manifest = _resolve(entry)
            if validation is not None:
                _check_disjoint({name: dataset}, validation)
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
            held_out = None
            if validation is not None:
                for event in evaluate_job(model, validation, settings)(cancel):
                    if isinstance(event, Finished):
                        held_out = {k: v for k, v in event.result.items() if k != "confusion"}
                    elif isinstance(event, Progress):
                        yield Progress(index + 0.9, rows, f"{name}: held out, {event.message}")
            row = {"dataset": name, "identity": identity, "train_images": len(dataset), "epochs": epochs,
                   **evaluation, "train_seconds": round(train_seconds, 1),
                   "eval_seconds": round(time.perf_counter() - began, 1),
                   "final_train_accuracy": model.meta.extra["history"][-1]["train_accuracy"],
                   "source": (manifest or {}).get("settings", {"origin": dataset.source}),
                   "stats": (manifest or {}).get("stats", {})}
            if held_out is not None:
                row["validation"] = held_out
            results["rows"].append(row)
            if out_path is not None:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                write_json(out_path, results)
            yield Progress(index + 1, rows, f"{name}: done")
            yield Partial("row", row)
        if out_path is not None:
            write_json(out_path, results)
        yield Finished(results)

    return job


@dataclass(frozen=True)
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
                         device=None, chunk_runners: Callable[[CancelToken], Mapping[str, Any]] | None = None
                         ) -> JobFactory:
    """The whole of Ilyas et al.'s Sec. 3 experiment behind one button: build (or resume) D_R with the
    robust model, D_NR, D_rand and D_det with the standard one in ``workdir``, then train a standard
    model on each (and, with ``baseline``, on the same real images: row "D") and evaluate it on ``test``.

    Events: Partial("stage", {"stage", "index", "stages"}) as each build or the training starts;
    the stages' own events (Partial "chunk"/"resumed"/"complete" of the builders, "row-started"/"row"
    of the experiment); Progress over the whole run (each stage one unit); Finished(results) as
    :func:`experiment_job`. Everything resumes: rerun it after a cancel and it continues.
    ``chunk_runners(cancel)``: {kind: a ``run_chunks`` of engine/constructed.py} for kinds built elsewhere
    (a Ray cluster: :func:`ilyas_experiment_job` with ``request.cluster``).
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
        "robust": lambda run: robust_dataset_job(robust_model, source, workdir / "D_R", **inversion, **common,
                                                 run_chunks=run),
        "non-robust": lambda run: non_robust_dataset_job(standard_model, source, workdir / "D_NR", **inversion,
                                                         **common, run_chunks=run),
        "rand": lambda run: relabeled_dataset_job(standard_model, source, workdir / "D_rand", mode="rand", eps=c.eps,
                                                  steps=c.pgd_steps, step_size=c.pgd_step_size, **common,
                                                  run_chunks=run),
        "det": lambda run: relabeled_dataset_job(standard_model, source, workdir / "D_det", mode="det", eps=c.eps,
                                                 steps=c.pgd_steps, step_size=c.pgd_step_size, **common,
                                                 run_chunks=run),
    }
    stages = [DATASET_NAMES[k] for k in kinds] + ["experiment"]

    def job(cancel: CancelToken):
        built: dict[str, BuiltDataset] = {}
        runners = chunk_runners(cancel) if chunk_runners is not None else {}
        for index, kind in enumerate(kinds):
            yield Partial("stage", {"stage": stages[index], "index": index, "stages": len(stages)})
            for event in builders[kind](runners.get(kind))(cancel):
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


DEFAULT_ROBUST = "fashion-mnist/l2-robust"
DEFAULT_STANDARD = "fashion-mnist/standard"
# The real-data regime the ablation chose on held-out training images (tools/ablation.py,
# docs/features/ablation-*.json, README "Robust and non-robust features"): the defaults of the
# Experiments tab and of `robustlens experiment --build-in`. 2,000 images, D_R by 100 cosine-annealed
# inversion steps through fashion-mnist/l2-robust from the paper's seeds (any other image), the standard models
# the residual fmnist-resnet trained 10 epochs (the small CNN is not brittle enough on 2,000 images);
# robust accuracy at L2 ε = 1.0, where the model trained on the real images falls to 13 % (held out),
# and at the robust model's ε = 1.5.
REGIME_BUILD = ConstructionSettings(count=2000, seeds="random", steps=100, step_size=1.0, schedule="cosine")
REGIME_TRAINING = ExperimentSettings(epochs=10, arch="fmnist-resnet", eval_eps=(1.0, 1.5))


@dataclass(frozen=True)
class IlyasExperimentRequest:
    """Everything the pipeline is asked for, one set of defaults for the GUI and the CLI.

    ``robust_model`` builds D_R, ``standard_model`` D_NR, D_rand and D_det (model keys: zoo names or
    files). The datasets are built from the ``dataset``'s training split (None: the standard model's
    dataset) and evaluated on the first ``test_images`` of its test split (None: all of it); they and
    the results (``out``, default ``workdir/results.json``) are kept in ``workdir``.
    """
    workdir: str
    robust_model: str = DEFAULT_ROBUST
    standard_model: str = DEFAULT_STANDARD
    dataset: str | None = None
    data_root: str | None = None
    test_images: int | None = None
    construction: ConstructionSettings = REGIME_BUILD
    training: ExperimentSettings = REGIME_TRAINING
    baseline: bool = True
    kinds: tuple[str, ...] = DATASET_KINDS
    out: str | None = None
    cluster: Any = field(default=None, compare=False)  # a cluster.ClusterOptions: the datasets' chunks on Ray

    def recipe_name(self) -> str:
        """A folder name that differs whenever the datasets would: one folder per recipe, so a changed
        setting starts a new build instead of being refused by the one already there."""
        c = self.construction
        tails = "-".join(Path(key).stem if Path(key).is_absolute() else key.rsplit("/", 1)[-1]
                         for key in (self.robust_model, self.standard_model))
        return (f"{self.dataset or 'model-dataset'}-{c.count}images-{c.steps}steps-a{c.step_size:g}-{c.schedule}-"
                f"{c.seeds}-pgd{c.eps:g}x{c.pgd_steps}-{tails}")


def pipeline_estimate(robust, standard, shape, test_images: int, request: IlyasExperimentRequest) -> CostEstimate:
    """What the whole pipeline costs from scratch (a resumed one costs less), per source image: the
    inversions of D_R and D_NR (``steps`` forward-and-backward passes each), the PGD of D_rand and D_det
    (``pgd_steps`` each), and a forward-and-backward pass per epoch of each trained model; plus each
    model's evaluation, PGD at every ε on ``eval_images`` test images."""
    c, t = request.construction, request.training
    kinds = set(request.kinds)

    def gradient(model) -> float:
        return estimate_seconds(model, shape, 0, gradient_passes=1, batch_size=c.chunk_size)

    per_image = sum(c.steps * gradient(robust if kind == "robust" else standard)
                    for kind in kinds & {"robust", "non-robust"})
    per_image += sum(c.pgd_steps * gradient(standard) for kind in kinds & {"rand", "det"})
    rows = len(kinds) + int(request.baseline)
    per_image += rows * t.epochs_for(c.count) * gradient(standard)  # the trained models: the standard one's arch
    evaluation = rows * len(t.eval_eps) * min(t.eval_images, test_images) * t.eval_steps * gradient(standard)
    return CostEstimate(per_image + evaluation / max(1, c.count), c.count, "image",
                        f"{c.count:,} images: {len(kinds)} datasets built, {rows} models trained and attacked")


def ilyas_experiment_job(cache, request: IlyasExperimentRequest) -> JobFactory:
    """The pipeline of :func:`paper_experiment_job` from model keys and a dataset name: ``cache`` is a
    :class:`~robustlens.engine.model_cache.ModelCache` (the GUI's engine thread's, or the CLI's own).
    Events and result as :func:`paper_experiment_job`, after Partial("estimate", CostEstimate)."""
    if not request.workdir:
        raise ValueError("name a folder to build the datasets in")

    def job(cancel: CancelToken):
        robust, standard = cache.model(request.robust_model), cache.model(request.standard_model)
        name = request.dataset or standard.meta.dataset
        source = load_dataset(name, "train", request.data_root)
        test = load_dataset(name, "test", request.data_root)
        if request.test_images is not None and request.test_images < len(test):
            test = test.subset(range(request.test_images))
        if request.construction.count > len(source):
            raise ValueError(f"the {name} training set has {len(source):,} images, "
                             f"fewer than {request.construction.count:,}")
        yield announce(pipeline_estimate(robust, standard, source.image_shape, len(test), request))
        runners = None
        if request.cluster is not None:
            models = {"robust": (request.robust_model, robust)}
            models.update((kind, (request.standard_model, standard)) for kind in ("non-robust", "rand", "det"))
            runners = partial(_ray_chunk_runners, request, models, name)
        yield from paper_experiment_job(robust, standard, source, test, request.workdir,
                                        construction=request.construction, settings=request.training,
                                        baseline=request.baseline, kinds=request.kinds, out=request.out,
                                        device=cache.device, chunk_runners=runners)(cancel)

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


def _ray_chunk_runners(request: IlyasExperimentRequest, models: dict, dataset: str, cancel: CancelToken) -> dict:
    """{kind: the chunks of that dataset built by Ray workers} (engine/cluster_jobs.py)."""
    from .cluster_jobs import ray_chunk_runner
    from .constructed import relabel_options

    c = request.construction
    inversion = dict(seeds=c.seeds, steps=c.steps, step_size=c.step_size, schedule=c.schedule)
    pgd = relabel_options(c.eps, c.pgd_steps, c.pgd_step_size)
    return {kind: ray_chunk_runner(request.cluster, kind=kind, model_ref=key, model=model,
                                   source=(dataset, "train", request.data_root),
                                   chunk_options=inversion if kind in ("robust", "non-robust") else pgd,
                                   seed=c.seed, tick=cancel.check)
            for kind, (key, model) in models.items()}
