"""`robustlens invert`, `robustlens build-dataset`, `robustlens experiment` (Ilyas et al. 2019)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checks import model_classes, model_input_shape
from .cli import add_device_argument, add_model_arguments, chosen_device
from .cli_estimates import images_left_to_build, say_inversion_estimate
from .cluster import add_cluster_arguments, check_local_only_flags, cluster_options, wants_ray
from .constructed import (DATASET_KINDS, STORAGE_DTYPES, load_built_dataset, non_robust_dataset_job,
                          real_images_of, relabel_options, relabeled_dataset_job, robust_dataset_job)
from .cli import nonnegative_float, nonnegative_int, positive_float, positive_int
from .data import DATASETS, Dataset, load_dataset
from .ilyas_experiment import (DEFAULT_ROBUST, DEFAULT_STANDARD, ConstructionSettings, ExperimentSettings,
                               IlyasExperimentRequest, experiment_job, format_experiment_table,
                               REGIME_BUILD, REGIME_TRAINING, holdout_images, ilyas_experiment_job)
from .inversion import SEED_MODES, STEP_SCHEDULES, reconstruct_job
from .jobs import Partial, Progress, run_to_end
from .model_cache import ModelCache
from .models import ARCHITECTURES, architecture_info, default_device, load_model
from .resumable import prepare_output_file, prepare_output_folder
from .results_files import EXPERIMENT, read_results

# the pipeline's defaults: the options below show them, so the CLI and the GUI start from the same recipe
BUILD = ConstructionSettings()  # build-dataset, invert: the paper's 1000 steps of 0.1
REGIME, TRAINING = REGIME_BUILD, REGIME_TRAINING  # experiment: the ablation's regime, as the GUI's


def register(sub) -> None:
    p = sub.add_parser("invert", help="robust and non-robust reconstructions of a few images, as a PNG grid")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--index", type=int, nargs="+", help="positions of the images in the split")
    p.add_argument("--per-class", type=int, help="instead of --index: the first K images of every class")
    p.add_argument("--robust-model", default=DEFAULT_ROBUST, help=f"default {DEFAULT_ROBUST}")
    p.add_argument("--standard-model", default=DEFAULT_STANDARD, help=f"default {DEFAULT_STANDARD}")
    p.add_argument("--also", nargs="+", default=[], metavar="MODEL",
                   help="further models to invert, one column each (e.g. fashion-mnist/noise-0.50)")
    _inversion_options(p)
    p.add_argument("--seed", type=int, default=0, help="random seed for drawing the seeds")
    p.add_argument("--scale", type=int, default=4, help="pixels per image pixel in the PNG")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_argument(p)
    p.set_defaults(func=run_invert)

    p = sub.add_parser("build-dataset", help="build D_R, D_NR, D_rand or D_det (resumable: rerun to continue)")
    p.add_argument("--kind", choices=DATASET_KINDS, required=True,
                   help="robust: D_R, non-robust: D_NR, rand: D_rand, det: D_det")
    p.add_argument("--count", type=positive_int, required=True, help="number of training images to transform")
    p.add_argument("--out", required=True, help="folder for the dataset (chunks, manifest.json, dataset.npz)")
    add_model_arguments(p, help=f"model to use (default: {DEFAULT_ROBUST} for robust, "
                                   f"{DEFAULT_STANDARD} otherwise)")
    p.add_argument("--dataset", choices=DATASETS,
                   help="training split to transform (default: the model's dataset; e.g. fashion-mnist-planted "
                        "with a model trained on fashion-mnist)")
    p.add_argument("--data-root", help="folder with the dataset files")
    _inversion_options(p)
    p.add_argument("--eps", type=positive_float, default=BUILD.eps, help="rand/det: L2 ε of the targeted PGD")
    p.add_argument("--pgd-steps", type=positive_int, default=BUILD.pgd_steps, help="rand/det: PGD steps")
    p.add_argument("--pgd-step-size", type=positive_float, help="rand/det: PGD step (default 2.5·ε/steps)")
    p.add_argument("--chunk", type=positive_int, default=BUILD.chunk_size, help="images per chunk (the unit of resuming)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="selects the images, seeds and targets")
    p.add_argument("--dtype", choices=STORAGE_DTYPES, default=BUILD.dtype, help="how images are stored")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    add_cluster_arguments(p, block_help=argparse.SUPPRESS)  # on Ray a block is one --chunk
    p.set_defaults(func=run_build_dataset)

    p = sub.add_parser("experiment", help="train a standard model on each constructed dataset and evaluate "
                                          "it on the real test set (the table of Ilyas et al.)")
    p.add_argument("--data", nargs="+", metavar="DIR", help="dataset folders from build-dataset")
    p.add_argument("--build-in", metavar="DIR",
                   help="instead of --data: build (or resume) D_R, D_NR, D_rand, D_det in DIR first, then run "
                        "the table (with the baseline row D)")
    p.add_argument("--count", type=positive_int, default=REGIME.count, help="--build-in: training images per dataset")
    p.add_argument("--robust-model", default=DEFAULT_ROBUST, help="--build-in: model for D_R")
    p.add_argument("--standard-model", default=DEFAULT_STANDARD, help="--build-in: model for D_NR, D_rand, D_det")
    _inversion_options(p, REGIME)
    p.add_argument("--eps", type=positive_float, default=REGIME.eps, help="--build-in: L2 ε of the targeted PGD (D_rand, D_det)")
    p.add_argument("--pgd-steps", type=positive_int, default=REGIME.pgd_steps, help="--build-in: targeted PGD steps")
    p.add_argument("--baseline", action="store_true",
                   help="also train on the real images the first dataset was built from (row 'D')")
    p.add_argument("--out", help="results JSON (rows already there with the same settings are kept)")
    p.add_argument("--show", metavar="JSON", help="only print the table of a results file")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--epochs", type=positive_int, default=TRAINING.epochs,
                   help=f"epochs per model (default {TRAINING.epochs})")
    p.add_argument("--max-epochs", type=positive_int, default=TRAINING.max_epochs, help="cap of the scaled number of epochs")
    p.add_argument("--eval-eps", type=nonnegative_float, nargs="+", default=list(TRAINING.eval_eps), help="L2 ε of the robust accuracy")
    p.add_argument("--eval-steps", type=positive_int, default=TRAINING.eval_steps)
    p.add_argument("--eval-images", type=positive_int, default=TRAINING.eval_images, help="test images for the robust accuracy")
    p.add_argument("--test-images", type=positive_int, help="evaluate on the first N test images (default: all)")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), default=TRAINING.arch,
                   help="architecture of the standard model trained on each dataset")
    p.add_argument("--holdout", type=positive_int, metavar="N",
                   help="with --data: also evaluate each row on N training images that no dataset holds "
                        "(the numbers to choose settings by; the test set only reports)")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.set_defaults(func=run_experiment_command)


def _inversion_options(p, defaults: ConstructionSettings = BUILD) -> None:
    p.add_argument("--seeds", choices=SEED_MODES, default=defaults.seeds,
                   help="start of the inversion: other-class, a random image of another class; random, any "
                        "other random image (the paper's); noise, gray 0.5 + N(0, 0.05²)")
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="inversion steps (paper: 1000)")
    p.add_argument("--step-size", type=positive_float, default=defaults.step_size, help="inversion L2 step (paper: 0.1)")
    p.add_argument("--schedule", choices=STEP_SCHEDULES, default=defaults.schedule,
                   help="step size: constant (paper) or cosine-annealed from --step-size to 0")


class _Bar:
    """Feeds a job's Progress events into one tqdm bar and prints its Partial messages that matter."""

    def __init__(self, desc: str, unit: str = "it"):
        self.bar = tqdm(total=1, desc=desc, unit=unit, dynamic_ncols=True)

    def __call__(self, event) -> None:
        if isinstance(event, Progress):
            if self.bar.total != event.total:
                self.bar.total = event.total
            self.bar.n = round(event.done, 2) if isinstance(event.done, float) else event.done
            self.bar.set_postfix_str(event.message[-60:], refresh=False)
            self.bar.refresh()
        elif isinstance(event, Partial) and event.kind == "row":
            row = event.value
            robust = ", ".join(f"ε={e}: {100 * a:.1f}%" for e, a in row["robust_accuracy"].items())
            tqdm.write(f"{row['dataset']}: clean {100 * row['clean_accuracy']:.1f}%, robust {robust}")

    def close(self) -> None:
        self.bar.close()


def _threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


# ---------------------------------------------------------------- invert

def _pick_images(dataset: Dataset, index: list[int] | None, per_class: int | None) -> list[int]:
    if index and per_class:
        raise ValueError("give either --index or --per-class, not both")
    if per_class:
        if per_class < 1:
            raise ValueError("--per-class must be positive")
        # block b holds the b-th image of every class, so the grid reads class by class
        chosen = []
        for b in range(per_class):
            for cls in range(len(dataset.classes)):
                members = (dataset.labels == cls).nonzero().flatten()
                if b < len(members):
                    chosen.append(int(members[b]))
        return chosen
    if not index:
        raise ValueError("name the images: --index I [I ...] or --per-class K")
    for i in index:
        if not 0 <= i < len(dataset):
            raise ValueError(f"image index {i} is outside the {dataset.split} split (0..{len(dataset) - 1})")
    return list(index)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def reconstruction_grid(columns: list[tuple[str, torch.Tensor]], row_labels: list[str], *, scale: int = 4,
                        blocks: int = 1, notes: list[list[str]] | None = None):
    """A Pillow image: one column per (title, (N,C,H,W) images), one row per image, rows split into
    ``blocks`` side-by-side blocks; ``row_labels`` at the left of each row and ``notes[col][row]``
    (e.g. a prediction) under each image."""
    from PIL import Image, ImageDraw

    n = len(row_labels)
    rows_per_block = -(-n // blocks)
    channels, height, width = columns[0][1].shape[1:]
    cell_w, cell_h = width * scale, height * scale
    font, small = _font(max(11, 3 * scale + 2)), _font(max(9, 2 * scale + 3))
    note_h = (2 * scale + 8) if notes else 0
    pad, label_w = max(4, scale), 11 * max(11, 3 * scale + 2)
    title_h = 4 * scale + 16
    block_w = label_w + len(columns) * (cell_w + pad) + 3 * pad
    canvas = Image.new("RGB", (blocks * block_w, title_h + rows_per_block * (cell_h + note_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for b in range(blocks):
        x0 = b * block_w + label_w
        for c, (title, _) in enumerate(columns):
            draw.text((x0 + c * (cell_w + pad) + cell_w // 2, title_h // 2), title, fill="black", font=font,
                      anchor="mm")
    for r in range(n):
        b, within = divmod(r, rows_per_block)
        y = title_h + within * (cell_h + note_h + pad)
        draw.text((b * block_w + label_w - pad, y + cell_h // 2), row_labels[r], fill="black", font=font, anchor="rm")
        for c, (_, images) in enumerate(columns):
            array = (images[r].detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            tile = Image.fromarray(array[0] if channels == 1 else array.transpose(1, 2, 0),
                                   "L" if channels == 1 else "RGB")
            x = b * block_w + label_w + c * (cell_w + pad)
            canvas.paste(tile.resize((cell_w, cell_h), Image.Resampling.NEAREST), (x, y))
            if notes and notes[c][r]:
                draw.text((x + cell_w // 2, y + cell_h + 2), notes[c][r], fill=(90, 90, 90), font=small, anchor="mt")
    return canvas


def run_invert(args) -> int:
    _threads(args)
    device = chosen_device(args)
    names = {"robust recon": args.robust_model, "non-robust recon": args.standard_model}
    for extra in args.also:
        names[f"{extra.split('/')[-1]} recon"] = extra
    models = {title: load_model(name, device=device) for title, name in names.items()}
    dataset = load_dataset(next(iter(models.values())).meta.dataset, args.split, args.data_root)
    chosen = _pick_images(dataset, args.index, args.per_class)
    targets, labels = dataset.images[chosen], dataset.labels[chosen]
    say_inversion_estimate(list(models.values()), count=len(chosen), steps=args.steps,
                           what=f"× {args.steps:,} steps on each of {len(models)} models")
    generator = torch.Generator().manual_seed(args.seed)
    bar = _Bar(f"inverting {len(chosen)} images with {len(models)} models", unit="step")
    try:
        result = run_to_end(reconstruct_job(models, targets, args.seeds, steps=args.steps, step_size=args.step_size,
                                              schedule=args.schedule, generator=generator, pool=dataset,
                                              labels=labels, own_indices=torch.tensor(chosen)), on_event=bar,
                            keep_errors=True)
    finally:
        bar.close()
    classes = dataset.classes
    columns = [("original", targets)] + [(title, result.results[title].images) for title in models]
    own = {title: result.predictions[title][title] for title in models}
    notes = [[f"seed: {classes[int(dataset.labels[i])]}" if i >= 0 else "seed: noise"
              for i in result.seed_indices.tolist()]] + \
            [[f"{p['name']} {100 * p['probability']:.0f}%" for p in own[title]] for title in models]
    grid = reconstruction_grid(columns, [classes[int(y)] for y in labels], scale=args.scale,
                               blocks=args.per_class or 1, notes=notes)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    for title, name in names.items():
        distances = result.results[title].distances
        print(f"{title} ({name}): final distance mean {distances.mean():.4f}, max {distances.max():.4f}")
    print(f"wrote {out} ({grid.width}×{grid.height}); under each reconstruction: what its own model predicts")
    return 0


# ---------------------------------------------------------------- build-dataset

def check_dataset_fits(model, dataset: Dataset) -> None:
    """A model can transform only images of its own shape and class count (e.g. a model trained on
    fashion-mnist works on fashion-mnist-planted, not on cifar10)."""
    shape, classes = model_input_shape(model), model_classes(model)
    if (shape is not None and tuple(shape) != dataset.image_shape) or (classes is not None and
                                                                        classes != len(dataset.classes)):
        raise ValueError(f"{dataset.name} ({len(dataset.classes)} classes of {dataset.image_shape}) does not fit "
                         f"{model.meta.name} ({classes} classes of {tuple(shape or ())})")


def run_build_dataset(args) -> int:
    check_local_only_flags(args)
    if args.block is not None:
        raise ValueError("build-dataset sends one --chunk per block: give --chunk, not --block")
    prepare_output_folder(args.out)  # a file there is refused in one line before any work
    _threads(args)
    device = chosen_device(args)
    model_name = args.model or (DEFAULT_ROBUST if args.kind == "robust" else DEFAULT_STANDARD)
    model = load_model(model_name, device=device)
    source = load_dataset(args.dataset or model.meta.dataset, "train", args.data_root)
    check_dataset_fits(model, source)
    inversion = dict(seeds=args.seeds, steps=args.steps, step_size=args.step_size, schedule=args.schedule)
    common = dict(count=args.count, chunk_size=args.chunk, seed=args.seed, dtype=args.dtype)
    if wants_ray(args):  # the chunks are built by the cluster's workers and written here, in order
        from .cluster_jobs import ray_chunk_runner

        options = inversion if args.kind in ("robust", "non-robust") else \
            relabel_options(args.eps, args.pgd_steps, args.pgd_step_size)
        common["run_chunks"] = ray_chunk_runner(cluster_options(args), kind=args.kind, model_ref=model_name,
                                                model=model, source=(model.meta.dataset, "train", args.data_root),
                                                chunk_options=options, seed=args.seed, threads=args.threads)
    if args.kind == "robust":
        job = robust_dataset_job(model, source, args.out, **inversion, **common)
    elif args.kind == "non-robust":
        job = non_robust_dataset_job(model, source, args.out, **inversion, **common)
    else:
        job = relabeled_dataset_job(model, source, args.out, mode=args.kind, eps=args.eps, steps=args.pgd_steps,
                                    step_size=args.pgd_step_size, **common)
    print(f"building {args.kind} dataset from {args.count} of {len(source)} images ({source.source}) "
          f"with {model_name} into {args.out}")
    inverting = args.kind in ("robust", "non-robust")
    steps = args.steps if inverting else args.pgd_steps
    say_inversion_estimate([model], count=images_left_to_build(args.out, args.count, args.chunk), steps=steps,
                           what=f"left to build × {steps:,} {'inversion' if inverting else 'PGD'} steps")
    began = time.perf_counter()
    bar = _Bar(f"{args.kind}", unit="img")
    try:
        built = run_to_end(job, on_event=bar, keep_errors=True)
    finally:
        bar.close()
    manifest = built.manifest
    stats = ", ".join(f"{k} {v:.4f}" for k, v in manifest.get("stats", {}).items())
    print(f"{built.name}: {manifest['counts']['images']} images in {built.path} ({stats}); "
          f"{time.perf_counter() - began:.0f} s this run, {manifest['seconds']:.0f} s in all")
    return 0


# ---------------------------------------------------------------- experiment

def results_table(path: Path, markdown: bool = False) -> str:
    """The table of a results file of either kind, an experiment's or the planted demo's (``experiment
    --show`` and ``planted --show`` both take both), checked as the Experiments tab checks it
    (engine/results_files.py); anything else is a one-line ValueError naming the file."""
    from .cli_planted import format_planted_table  # (cli_planted imports this module)

    try:
        shown = read_results(path)
        table = format_experiment_table if shown.kind == EXPERIMENT else format_planted_table
        return table(shown.results, markdown=markdown)
    except KeyError as error:  # a checked file that lacks a setting the table prints
        raise ValueError(f"cannot show {path.name}: an incomplete results file (no {error} in it)") from None
    except (TypeError, AttributeError) as error:
        raise ValueError(f"cannot show {path.name}: a malformed results file ({error})") from None
    except ValueError as error:
        raise ValueError(f"cannot show {path.name}: {error}") from None


def run_experiment_command(args) -> int:
    if args.show:
        print(results_table(Path(args.show).expanduser(), markdown=args.markdown))
        return 0
    if bool(args.data) == bool(args.build_in):
        raise ValueError("name the dataset folders (--data DIR [DIR ...]) or a folder to build them in "
                         "(--build-in DIR), one of the two (or --show RESULTS.json)")
    if args.out:
        prepare_output_file(args.out)
    if args.build_in:
        prepare_output_folder(args.build_in)
    _threads(args)
    if args.build_in:
        return _build_and_run(args)
    settings = _training_settings(args)
    folders = [Path(d).expanduser() for d in args.data]
    datasets = {}
    if args.baseline:
        source_info = json.loads((folders[0] / "manifest.json").read_text())["settings"]["source"]
        datasets["D"] = real_images_of(folders[0], load_dataset(source_info["name"], source_info["split"],
                                                                 args.data_root))
    for folder in folders:
        name = load_built_dataset(folder).name
        if name in datasets:
            raise ValueError(f"two datasets are both {name}: give each kind once")
        datasets[name] = folder
    source_name = json.loads((folders[0] / "manifest.json").read_text())["settings"]["source"]["name"]
    test = load_dataset(source_name, "test", args.data_root)
    if args.test_images is not None and args.test_images < len(test):
        test = test.subset(range(args.test_images))
    shape = architecture_info(args.arch)[3]
    if tuple(shape) != tuple(test.image_shape):
        raise ValueError(f"--arch {args.arch} takes {'×'.join(map(str, shape))} images, the {source_name} "
                         f"ones are {'×'.join(map(str, test.image_shape))}")
    validation = None
    if args.holdout:
        validation = holdout_images(load_dataset(source_name, "train", args.data_root), args.holdout,
                                    _source_seed(folders[0]))
    bar = _Bar("experiment", unit="row")
    try:
        results = run_to_end(experiment_job(datasets, test, settings=settings, out=args.out,
                                            device=default_device(), validation=validation),
                             on_event=bar, keep_errors=True)
    finally:
        bar.close()
    print(format_experiment_table(results, markdown=args.markdown))
    if args.out:
        print(f"results written to {args.out}")
    return 0


def _source_seed(folder: Path) -> int:
    return int(json.loads((folder / "manifest.json").read_text())["settings"]["seed"])


def experiment_request(args) -> IlyasExperimentRequest:
    """`experiment --build-in DIR`'s options as the pipeline's request (the GUI builds the same one)."""
    construction = ConstructionSettings(count=args.count, seed=args.seed, seeds=args.seeds, steps=args.steps,
                                        step_size=args.step_size, schedule=args.schedule, eps=args.eps,
                                        pgd_steps=args.pgd_steps)
    return IlyasExperimentRequest(workdir=str(Path(args.build_in).expanduser()), robust_model=args.robust_model,
                                  standard_model=args.standard_model, data_root=args.data_root,
                                  test_images=args.test_images, construction=construction,
                                  training=_training_settings(args), out=args.out)


def _training_settings(args) -> ExperimentSettings:
    return ExperimentSettings(epochs=args.epochs, max_epochs=args.max_epochs, eval_eps=tuple(args.eval_eps),
                              eval_steps=args.eval_steps, eval_images=args.eval_images, seed=args.seed,
                              arch=args.arch)


def _build_and_run(args) -> int:
    request = experiment_request(args)
    bar = _Bar("D_R, D_NR, D_rand, D_det, then training", unit="stage")
    try:
        results = run_to_end(ilyas_experiment_job(ModelCache(default_device()), request), on_event=bar,
                             keep_errors=True)
    finally:
        bar.close()
    print(format_experiment_table(results, markdown=args.markdown))
    print(f"results written to {request.out or Path(request.workdir) / 'results.json'}")
    return 0
