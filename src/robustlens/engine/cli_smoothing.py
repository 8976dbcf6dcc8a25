"""`robustlens certify`, `robustlens predict` and `robustlens analyze`: randomized smoothing headless.

certify / predict run CERTIFY / PREDICT (Cohen et al. 2019) over every ``--skip``-th image of a dataset
split and write the reference implementation's TSV (locuslab/smoothing ``certify.py`` / ``predict.py``),
one flushed line per image, after a ``#`` line with the run's settings (engine/resumable.py): a rerun with
the same settings keeps the rows and continues, so an interrupted run loses at most the image in progress.
``--shard I/K`` runs one slice for a Slurm array and ``--ray`` spreads the images over a Ray cluster, with the
same rows (engine/cluster.py). analyze reads certify TSVs and
prints certified accuracy at radii 0, 0.25, 0.5, … and draws the curves (one per file) into a PNG.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from .accelerate import PRECISIONS, precision_settings, tune_batch
from .cli import (CLIError, add_model_arguments, chosen_device, nonnegative_int, positive_float, positive_int,
                  positive_int_or_auto, probability)
from .cluster import (add_cluster_arguments, check_local_only_flags, job_spec, run_blocks, shard_positions,
                      shard_settings, shard_spec, wants_ray)
from .cluster_worker import smooth_image
from .data import DATASETS, SPLITS, load_dataset
from .models import load_model, weights_sha256
from .resumable import ResumableTSV, prepare_output_file
from .certify_tsv import PREDICT_TSV_HEADER, TSV_HEADER, certify_tsv_row, predict_tsv_row, read_certify_tsv
from .cli_estimates import say_smoothing_estimate
from .cli_radius import add_radius_arguments, analyze_decisions, run_radius_decisions
from .smoothing import Smooth
from .smoothing_bounds import certified_accuracy


def _add_run_arguments(p, certify: bool) -> None:
    add_model_arguments(p, required=True, help="built-in noise model (e.g. fashion-mnist/noise-0.25) or file")
    p.add_argument("--sigma", type=positive_float, help="noise level σ (default: the σ the model was trained with)")
    if certify:
        p.add_argument("--n0", type=positive_int, default=100, help="noise samples that select the top class")
    p.add_argument("--n", type=positive_int, default=100_000,
                   help="noise samples that " + ("bound pA" if certify else "vote"))
    p.add_argument("--alpha", type=probability, default=0.001, help="failure probability")
    p.add_argument("--batch", type=positive_int_or_auto, default="auto",
                   help="noise samples per chunk (memory is flat in n); auto: 1000 on the CPU, on CUDA the largest "
                        "doubling of 1000 that fits half the GPU's memory")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="run the base classifier in fp32, or under bf16 / fp16 autocast (faster on GPUs; the "
                        "certificate then holds for the model as run in that precision, and the TSV header "
                        "says so)")
    p.add_argument("--skip", type=positive_int, default=1, help="use every SKIP-th image of the split")
    p.add_argument("--max", type=positive_int, help="stop before this index of the split (default: the end)")
    p.add_argument("--out", required=True,
                   help="TSV file to write; a rerun with the same settings keeps its rows and continues")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out written with other settings (default: refuse)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--dataset", choices=DATASETS, help="default: the model's dataset")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="image idx is certified with seed SEED + idx")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--eager", action="store_true", help="run the model as is (no TorchScript optimization)")
    p.add_argument("--shard", type=shard_spec, metavar="I/K",
                   help="run only the I-th of K slices of the images (every K-th from the I-th, I = 0 … K-1; "
                        "e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT), to join with robustlens merge")
    add_cluster_arguments(p)


def register(sub) -> None:
    p = sub.add_parser("certify", help="certify L2 robustness of the smoothed classifier over a dataset split")
    _add_run_arguments(p, certify=True)
    add_radius_arguments(p)
    p.set_defaults(func=run_certify)

    p = sub.add_parser("predict", help="predict with the smoothed classifier (abstains when unsure)")
    _add_run_arguments(p, certify=False)
    p.set_defaults(func=run_predict)

    p = sub.add_parser("analyze", help="certified accuracy vs radius from certify TSVs (table and plot)")
    p.add_argument("files", nargs="+", metavar="FILE.tsv")
    p.add_argument("--step", type=positive_float, default=0.25, help="radius step of the table")
    p.add_argument("--max-radius", type=positive_float, help="largest radius in the table and plot")
    p.add_argument("--labels", nargs="+", help="one legend label per file (default: the file name, with σ "
                                               "spelled out when the name carries it: noise-0.25, sigma_0.5)")
    p.add_argument("--plot", help="PNG to write (default: certified_accuracy.png beside the first file)")
    p.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=run_analyze)


# ---------------------------------------------------------------- certify / predict


def _prepare(args, *, columns: str | None = None, tool: str | None = None, extra_settings: dict | None = None):
    """Model, smoothed classifier, the selected images, the output path and its ResumableTSV (not yet
    opened), every input checked first (the output path before anything slow). ``columns`` / ``tool``
    default to certify's or predict's; ``extra_settings`` are further settings a mode adds to
    :func:`run_settings` (a rerun resumes only if they are equal too)."""
    if args.n < 1 or getattr(args, "n0", 1) < 1 or (args.batch != "auto" and args.batch < 1) or args.skip < 1:
        raise CLIError("--n, --n0, --batch and --skip must be positive")
    if not 0 < args.alpha < 1:
        raise CLIError(f"--alpha must be in (0, 1), got {args.alpha}")
    out = prepare_output_file(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=chosen_device(args))
    sigma = args.sigma if args.sigma is not None else model.meta.sigma
    if sigma is None:
        raise CLIError(f"{args.model} was not trained with Gaussian noise: give --sigma")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise CLIError(f"--sigma must be a finite number above 0, got {sigma}")
    dataset = load_dataset(args.dataset or model.meta.dataset, args.split, args.data_root)
    if tuple(dataset.image_shape) != tuple(model.meta.input_shape):
        raise CLIError(f"{args.model} takes {model.meta.input_shape} images but {dataset.name} has "
                       f"{dataset.image_shape}")
    smooth = Smooth(model, len(model.meta.classes), sigma, optimize=not args.eager, precision=args.precision)
    _choose_batch(args, smooth, dataset)
    stop = len(dataset) if args.max is None else min(args.max, len(dataset))
    positions = list(range(0, stop, args.skip))  # the reference: i % skip == 0 and i < max
    # the existing --out is checked (same settings, or --overwrite) before anything is printed or run
    command = "certify" if hasattr(args, "n0") else "predict"
    settings = {**run_settings(args, model, sigma, dataset), **(extra_settings or {}),
                **shard_settings(getattr(args, "shard", None), len(positions))}
    positions = shard_positions(positions, getattr(args, "shard", None))
    table = ResumableTSV(out, columns or (TSV_HEADER if command == "certify" else PREDICT_TSV_HEADER), settings,
                         tool=tool or f"robustlens {command}", overwrite=args.overwrite)
    if model.meta.sigma is not None and abs(sigma - model.meta.sigma) > 1e-12:
        print(f"note: certifying at σ = {sigma:g} a model trained with σ = {model.meta.sigma:g}", file=sys.stderr)
    return model, smooth, dataset, positions, out, table


CPU_NOISE_BATCH = 1000  # --batch auto on the CPU: the chunk of the reference implementation


def _choose_batch(args, smooth: Smooth, dataset) -> None:
    """``--batch auto``: 1000 on the CPU (forwards run in cache-sized sub-batches anyway); on CUDA the
    largest doubling of 1000 whose forward fits (accelerate.tune_batch), probed on the first image."""
    if args.batch != "auto":
        return
    if smooth.device.type != "cuda" or len(dataset) == 0:
        args.batch = CPU_NOISE_BATCH
        return
    image = smooth._image(dataset.images[0])
    args.batch = tune_batch(smooth._forward_for(image), image, smooth.sigma, CPU_NOISE_BATCH,
                            max(CPU_NOISE_BATCH, getattr(args, "max_n", None) or args.n))
    print(f"--batch auto: {args.batch:,} noise samples per chunk on {smooth.device}", file=sys.stderr)


def run_settings(args, model, sigma: float, dataset) -> dict:
    """What decides the rows of a certify / predict output: a rerun keeps the rows only if all of it
    is equal (the model by name and weights SHA-256; the seed of image idx is SEED + idx)."""
    settings = dict(model=model.meta.name, weights_sha256=weights_sha256(model.state_dict()), sigma=float(sigma),
                    n=args.n, alpha=args.alpha, seed=args.seed, batch=args.batch, dataset=dataset.name,
                    split=dataset.split, source=dataset.source, skip=args.skip, max=args.max)
    if hasattr(args, "n0"):
        settings["n0"] = args.n0
    settings.update(precision_settings(getattr(args, "precision", "fp32")))
    return settings


def _resuming_note(table: ResumableTSV, total: int) -> None:
    if table.kept:
        print(f"resuming {table.path}: {table.kept} of {total} rows already there are kept", file=sys.stderr)


def image_results(args, model, smooth, dataset, table, todo, bar, command: str | None = None
                  ) -> Iterator[tuple[int, tuple]]:
    """(position, :func:`~robustlens.engine.cluster_worker.smooth_image`'s result) for each position of
    ``todo`` in order: here, one image after the other, or with --ray on a cluster's workers
    (engine/cluster.py); the same rows either way. ``command``: "decide" for radius decisions."""
    job = job_spec(args, model, smooth.sigma, table.settings, command)
    if wants_ray(args):
        report: dict = {}
        try:
            yield from run_blocks(args, job, dataset, todo, bar.update, report)
        except CLIError:
            bar.leave = False  # the error is the one line left on the terminal
            bar.close()
            raise
        if report.get("backend"):
            smooth.backend = f"{report['backend']} on {report['workers']} Ray workers"
        return
    for position in todo:
        yield position, smooth_image(smooth, job, dataset.images[position], dataset.source_index(position))
        bar.update(1)


def run_certify(args) -> int:
    check_local_only_flags(args)
    if getattr(args, "radius", None) is not None or getattr(args, "max_n", None) is not None:
        return run_radius_decisions(args, _prepare, image_results)
    model, smooth, dataset, positions, out, table = _prepare(args)
    began = time.perf_counter()
    radii, correct = [], []
    with table:
        _resuming_note(table, len(positions))
        todo = [p for p in positions if str(dataset.source_index(p)) not in table.rows]
        for fields in table.rows.values():  # idx label predict radius correct time
            radii.append(float(fields[3]))
            correct.append(fields[4] == "1")
        if not wants_ray(args):  # on a cluster the workers' speed decides, not this machine's
            say_smoothing_estimate(args, smooth, dataset.images, todo)
        bar = tqdm(total=len(todo), desc=f"certify σ={smooth.sigma:g}", unit="img", dynamic_ncols=True)
        for position, (prediction, radius, seconds) in image_results(args, model, smooth, dataset, table, todo, bar):
            idx, label = dataset.source_index(position), int(dataset.labels[position])
            table.append(certify_tsv_row(idx, label, prediction, radius, seconds))
            radii.append(radius)
            correct.append(prediction == label)
            bar.set_postfix(certified_acc0=f"{np.mean(correct):.3f}")
        bar.close()
    seconds = time.perf_counter() - began
    kept = f" ({table.kept} more kept from an earlier run)" if table.kept else ""
    print(f"{len(todo)} images certified in {seconds:.1f} s{kept} ({seconds / max(1, len(todo)):.2f} s/image, "
          f"n0={args.n0}, n={args.n}, α={args.alpha:g}, σ={smooth.sigma:g}, {smooth.backend}); "
          f"certified accuracy at r=0: {certified_accuracy(radii, correct, 0.0)[0]:.3f}; wrote {out}")
    return 0


def run_predict(args) -> int:
    check_local_only_flags(args)
    model, smooth, dataset, positions, out, table = _prepare(args)
    began = time.perf_counter()
    outcomes = []
    with table:
        _resuming_note(table, len(positions))
        todo = [p for p in positions if str(dataset.source_index(p)) not in table.rows]
        for fields in table.rows.values():  # idx label predict correct time
            outcomes.append((fields[3] == "1", fields[2] == "-1"))
        if not wants_ray(args):  # on a cluster the workers' speed decides, not this machine's
            say_smoothing_estimate(args, smooth, dataset.images, todo)
        bar = tqdm(total=len(todo), desc=f"predict σ={smooth.sigma:g}", unit="img", dynamic_ncols=True)
        for position, (prediction, _, seconds) in image_results(args, model, smooth, dataset, table, todo, bar):
            idx, label = dataset.source_index(position), int(dataset.labels[position])
            table.append(predict_tsv_row(idx, label, prediction, seconds))
            outcomes.append((prediction == label, prediction == -1))
            bar.set_postfix(acc=f"{np.mean([o[0] for o in outcomes]):.3f}")
        bar.close()
    seconds = time.perf_counter() - began
    right = sum(o[0] for o in outcomes)
    abstained = sum(o[1] for o in outcomes)
    kept = f" (and {table.kept} kept from an earlier run)" if table.kept else ""
    print(f"{len(todo)} images in {seconds:.1f} s{kept}: accuracy {right / max(1, len(outcomes)):.3f}, "
          f"abstained {abstained}; wrote {out}")
    return 0


# ---------------------------------------------------------------- analyze


def file_label(path: Path) -> str:
    """Legend label: the file name, with σ spelled out when the name carries it (noise-0.25, sigma_0.5)."""
    match = re.search(r"(?:sigma|noise)[-_=]?(\d+(?:\.\d+)?)", path.stem)
    return f"{path.stem} (σ = {float(match.group(1)):g})" if match else path.stem


def radius_table(tables, labels, radii) -> str:
    width = max(12, *(len(label) for label in labels))
    lines = ["radius".ljust(8) + "".join(label.rjust(width + 2) for label in labels)]
    for r in radii:
        lines.append(f"{r:<8.2f}" + "".join(f"{t.accuracy_at(r)[0]:.3f}".rjust(width + 2) for t in tables))
    return "\n".join(lines)


def _refuse_nonfinite_radii(path: Path, table) -> None:
    """A radius of inf or NaN is no certificate (σ = inf "certifies" any class at radius inf): name the
    file and the first such row rather than draw it or fail with an OverflowError."""
    bad = np.flatnonzero(~np.isfinite(table.radius))
    if len(bad):
        row = int(bad[0])
        raise CLIError(f"{path}: data row {row + 1} (idx {int(table.idx[row])}) has radius {table.radius[row]}, "
                       f"not a finite number ({len(bad)} of {len(table)} rows): was it certified with σ = inf?")


def run_analyze(args) -> int:
    paths, decisions = analyze_decisions(args)  # radius-decision TSVs: printed there, beside these
    if not paths:
        return 0
    tables = [read_certify_tsv(p) for p in paths]
    for path, table in zip(paths, tables):
        if len(table) == 0:
            raise CLIError(f"{path}: no rows")
        _refuse_nonfinite_radii(path, table)
    if args.labels and len(args.labels) != len(paths):
        raise CLIError(f"{len(args.labels)} labels for {len(paths)} files")
    if not args.step > 0:
        raise CLIError("--step must be positive")
    labels = args.labels or [file_label(p) for p in paths]
    top = args.max_radius if args.max_radius is not None else max(float(t.radius.max()) for t in tables)
    radii = np.arange(0.0, math.floor(top / args.step + 1e-9) * args.step + args.step / 2, args.step)
    print("certified accuracy (correct and certified radius ≥ r):")
    print(radius_table(tables, labels, radii))
    print()
    for label, table in zip(labels, tables):
        abstained = int((table.prediction == -1).sum())
        print(f"{label}: {len(table)} images, abstained {abstained} ({100 * abstained / len(table):.1f}%), "
              f"mean time {table.seconds.mean():.2f} s/image, total {table.seconds.sum():.0f} s")
    if not args.no_plot:
        plot_path = Path(args.plot) if args.plot else paths[0].parent / "certified_accuracy.png"
        plot_certified_accuracy(tables, labels, plot_path, max_radius=args.max_radius)
        print(f"wrote {plot_path}")
    return 0


# ---------------------------------------------------------------- the plot (Pillow only)

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _nice_step(span: float, target_ticks: int = 8) -> float:
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def step_curve(radii: np.ndarray, correct: np.ndarray, x_max: float) -> list[tuple[float, float]]:
    """Vertices of the exact step function r ↦ mean(correct & radius ≥ r) on [0, x_max]."""
    total = len(radii)
    kept = np.sort(radii[correct.astype(bool)])
    points = [(0.0, float((kept >= 0).sum()) / total)]
    for r in np.unique(kept):
        if r <= 0 or r > x_max:
            continue
        level_before = float((kept >= r).sum()) / total
        level_after = float((kept > r).sum()) / total
        points += [(float(r), level_before), (float(r), level_after)]
    points.append((x_max, float((kept >= x_max).sum()) / total if x_max > 0 else points[-1][1]))
    return points


def plot_certified_accuracy(tables, labels, path: Path, max_radius: float | None = None,
                            size: tuple[int, int] = (1000, 640)) -> None:
    """Certified accuracy vs radius, one step curve per table, drawn with Pillow's ImageDraw."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 95, 30, 60, 80
    x_max = max_radius if max_radius is not None else max(float(t.radius.max()) for t in tables) * 1.05
    x_max = max(x_max, 1e-3)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small, title_font = _font(18), _font(15), _font(21)

    def to_px(r: float, a: float) -> tuple[float, float]:
        return (left + (width - left - right) * r / x_max, height - bottom - (height - top - bottom) * a)

    # grid, ticks and tick labels
    x_step = _nice_step(x_max)
    for i in range(int(x_max / x_step + 1e-9) + 1):
        r = i * x_step
        x, _ = to_px(r, 0)
        draw.line([(x, top), (x, height - bottom)], fill=(228, 228, 228))
        draw.line([(x, height - bottom), (x, height - bottom + 6)], fill="black", width=2)
        draw.text((x, height - bottom + 10), f"{r:g}", fill="black", font=small, anchor="mt")
    for i in range(6):
        a = i / 5
        _, y = to_px(0, a)
        draw.line([(left, y), (width - right, y)], fill=(228, 228, 228))
        draw.line([(left - 6, y), (left, y)], fill="black", width=2)
        draw.text((left - 10, y), f"{a:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([left, top, width - right, height - bottom], outline="black", width=2)

    # axis labels and title
    draw.text(((left + width - right) / 2, height - 22), "radius (L2, [0,1]-pixel units)", fill="black",
              font=font, anchor="mm")
    label_image = Image.new("RGB", (320, 30), "white")
    ImageDraw.Draw(label_image).text((160, 15), "certified accuracy", fill="black", font=font, anchor="mm")
    rotated = label_image.rotate(90, expand=True)
    image.paste(rotated, (8, int((top + height - bottom) / 2 - rotated.height / 2)))
    draw.text(((left + width - right) / 2, 28), "Certified accuracy vs radius (randomized smoothing)",
              fill="black", font=title_font, anchor="mm")

    # curves
    for k, (table, label) in enumerate(zip(tables, labels)):
        points = [to_px(r, a) for r, a in step_curve(table.radius, table.correct, x_max)]
        draw.line(points, fill=PALETTE[k % len(PALETTE)], width=3, joint="curve")

    # legend, top right
    entries = [f"{label}  ({len(t)} images)" for label, t in zip(labels, tables)]
    text_width = max(draw.textlength(e, font=small) for e in entries)
    box_right, box_top = width - right - 12, top + 12
    box_left = box_right - text_width - 58
    draw.rectangle([box_left, box_top, box_right, box_top + 12 + 24 * len(entries)], fill="white",
                   outline=(160, 160, 160))
    for k, entry in enumerate(entries):
        y = box_top + 18 + 24 * k
        draw.line([(box_left + 10, y), (box_left + 42, y)], fill=PALETTE[k % len(PALETTE)], width=4)
        draw.text((box_left + 50, y), entry, fill="black", font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)

