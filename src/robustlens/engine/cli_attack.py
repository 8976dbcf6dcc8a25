"""`robustlens attack`: PGD on a few test images (PNGs of original, adversarial and perturbation),
robust accuracy against ε (``--curve``), and the transfer matrix between models (``--transfer``).

    robustlens attack --model fashion-mnist/standard --norm l2 --eps 1.5 --index 0 1 2 --out out/
    robustlens attack --curve --norm linf --eps 0 0.05 0.1 0.2 --max 1000 --out out/
    robustlens attack --transfer --norm l2 --eps 1.5 --max 1000 --out out/
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .cli import add_model_arguments, chosen_device
from .cli_estimates import say_attack_estimate
from .attack_jobs import AttackConfig, attack_job
from .cli import nonnegative_float, nonnegative_int, positive_float, positive_int
from .attacks import KEEPS, LOSSES, NORMS, RANDOM_STARTS, TARGET_MODES
from .cluster import add_cluster_arguments, check_local_only_flags, cluster_options, wants_ray
from .data import load_dataset
from .jobs import Partial, Progress, run_to_end
from .models import load_model, weights_sha256, zoo_names
from .resumable import OutputRefused, ResumableTSV, prepare_output_folder
from .robustness import RobustnessCurves, robustness_curves_job, save_result, transfer_matrix_job

DEFAULT_EPS = {"linf": 0.1, "l2": 1.5}
NORM_LABEL = {"linf": "L∞", "l2": "L2"}
DEFAULT_CURVE_EPS = {"linf": [0, 0.02, 0.05, 0.1, 0.15, 0.2], "l2": [0, 0.5, 1.0, 1.5, 2.0, 3.0]}


def register(sub) -> None:
    p = sub.add_parser(
        "attack", help="PGD: attack test images and save PNGs, robust accuracy vs ε (--curve), transfer matrix "
                       "(--transfer)",
        description="PGD (L∞ or L2) on test images. Without --curve/--transfer: attack the images chosen by "
                    "--index with the first --model and save original/adversarial/perturbation PNGs.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--curve", action="store_true", help="robust accuracy against ε for every --model")
    mode.add_argument("--transfer", action="store_true", help="transfer matrix between the --model models")
    add_model_arguments(p, nargs="+", help="built-in names or checkpoint files (default: fashion-mnist/standard; "
                                              "with --curve/--transfer every built-in model)")
    p.add_argument("--norm", choices=NORMS, default="l2")
    p.add_argument("--eps", type=nonnegative_float, nargs="+",
                   help="ε in [0,1]-pixel units (default L2 1.5, L∞ 0.1; --curve: a grid per norm)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--step-size", type=nonnegative_float, help="PGD step in [0,1]-pixel units (default RELATIVE_STEP·ε/steps)")
    p.add_argument("--relative-step", type=positive_float, default=2.5,
                   help="step size as a multiple of ε/steps when --step-size is not given (default 2.5)")
    p.add_argument("--restarts", type=positive_int, default=1)
    p.add_argument("--random-start", choices=RANDOM_STARTS,
                   help="random start (default none: with few steps starting at x is the stronger attack)")
    p.add_argument("--loss", choices=LOSSES, default="ce", help="cross-entropy or Carlini–Wagner margin")
    p.add_argument("--keep", choices=KEEPS, default="best", help="return the best or the last iterate")
    p.add_argument("--target", choices=TARGET_MODES, default="untargeted",
                   help="class: --target-class; random: any other class (D_rand); next: (y+1) mod C (D_det)")
    p.add_argument("--target-class", type=nonnegative_int)
    p.add_argument("--smooth-sigma", type=positive_float,
                   help="attack the Gaussian-smoothed classifier with this σ (single images only)")
    p.add_argument("--smooth-samples", type=positive_int, default=32, help="noise draws per PGD step for --smooth-sigma")
    p.add_argument("--index", type=nonnegative_int, nargs="+", default=[0, 1, 2, 3], help="test images to attack")
    p.add_argument("--max", type=positive_int, default=1000, help="--curve/--transfer: the first MAX test images")
    p.add_argument("--batch", type=positive_int, default=250, help="--curve/--transfer: images per PGD batch")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--scale", type=positive_int, default=8, help="PNG upscaling factor (nearest neighbour)")
    p.add_argument("--out", default="attack-results",
                   help="folder for PNGs, TSV and JSON; --curve keeps each finished (model, ε) point in "
                        "curve-NORM.points.tsv and a rerun with the same settings continues from it")
    p.add_argument("--overwrite", action="store_true",
                   help="--curve: replace points of other settings; --transfer: replace a finished matrix")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    add_cluster_arguments(p, block_help="--curve/--transfer: images per block sent to a worker, whole --batch "
                                        "batches (default: one batch)")
    p.set_defaults(func=run_attack)


# ---------------------------------------------------------------- images

def _png(array: np.ndarray, path: Path, scale: int) -> None:
    """(C, H, W) array in [0,1] (C = 1 or 3) -> PNG, upscaled by ``scale``."""
    from PIL import Image

    pixels = np.clip(np.rint(np.asarray(array) * 255), 0, 255).astype(np.uint8)
    pixels = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
    image = Image.fromarray(pixels)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)


def perturbation_picture(delta: np.ndarray) -> tuple[np.ndarray, float]:
    """δ amplified to fill the colour range: grayscale δ through a blue–white–red diverging map
    (white = 0), colour δ as 0.5 + δ·gain per channel. Returns the (3, H, W) image and the gain."""
    peak = float(np.abs(delta).max())
    gain = 0.5 / peak if peak > 0 else 1.0
    if delta.shape[0] != 1:
        return np.clip(0.5 + delta * gain, 0, 1), gain
    s = np.clip(delta[0] * 2 * gain, -1, 1)  # in [-1, 1]
    pos, neg = np.clip(s, 0, 1), np.clip(-s, 0, 1)
    red = 1 - neg * 0.8
    green = 1 - np.abs(s) * 0.8
    blue = 1 - pos * 0.8
    return np.stack([red, green, blue]), gain


def _progress_bar(total_hint: str):
    bar = tqdm(total=1.0, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}", desc=total_hint, leave=False)

    def on_event(event):
        if isinstance(event, Progress):
            bar.n = event.fraction
            bar.set_description(event.message or total_hint, refresh=False)
            bar.refresh()
    return bar, on_event


def _models(names: list[str] | None, device, default_all: bool) -> dict:
    if not names:
        names = zoo_names() if default_all else ["fashion-mnist/standard"]
        if not names:
            raise ValueError("no built-in models installed: name models with --model")
    models = {name: load_model(name, device=device) for name in names}
    datasets = {m.meta.dataset for m in models.values()}
    if len(datasets) > 1:
        raise ValueError(f"the models are for different datasets ({', '.join(sorted(datasets))})")
    return models


def _check_target_class(args, models: dict) -> None:
    """--target-class against the models' classes, before any attack runs."""
    if args.target_class is None:
        return
    classes = len(next(iter(models.values())).meta.classes)
    if args.target_class >= classes:
        raise ValueError(f"argument --target-class: must be one of 0..{classes - 1} (the models have {classes} "
                         f"classes), got {args.target_class}")


def _single_eps(args) -> float:
    if args.eps and len(args.eps) > 1:
        raise ValueError("give one --eps (several only with --curve)")
    return args.eps[0] if args.eps else DEFAULT_EPS[args.norm]


def run_images(args, device) -> int:
    out = prepare_output_folder(args.out)
    models = _models(args.model, device, default_all=False)
    _check_target_class(args, models)
    name, model = next(iter(models.items()))
    test = load_dataset(model.meta.dataset, "test", args.data_root)
    bad = [i for i in args.index if not 0 <= i < len(test)]
    if bad:
        raise ValueError(f"image index {bad[0]} is outside the test set (0..{len(test) - 1})")
    eps = _single_eps(args)
    step_size = args.step_size if args.step_size is not None else args.relative_step * eps / max(1, args.steps)
    config = AttackConfig(norm=args.norm, eps=eps, step_size=step_size, steps=args.steps,
                          random_start=args.random_start or "none", restarts=args.restarts, target=args.target,
                          target_class=args.target_class, loss=args.loss, keep=args.keep,
                          smoothing_sigma=args.smooth_sigma, smoothing_samples=args.smooth_samples,
                          seed=args.seed).validate()
    subset = test.subset(args.index)
    judges = {n: m for n, m in models.items() if n != name}
    bar, on_event = _progress_bar(f"PGD on {name}")
    with bar:
        result = run_to_end(attack_job(model, subset.images, subset.labels, config, judges=judges), on_event=on_event,
                            keep_errors=True)
    classes = model.meta.classes
    what = f"smoothed (σ={config.smoothing_sigma:g}, {config.smoothing_samples} draws) " if config.smoothing_sigma else ""
    print(f"PGD {NORM_LABEL[config.norm]} ε={config.eps:g}, {config.steps} steps of {config.alpha:.4g}, "
          f"{config.restarts} restart(s), {config.target}, {config.loss} loss, against {what}{name}")
    records = []
    for k, idx in enumerate(args.index):
        stem = out / f"{idx:05d}"
        _png(result.original[k].numpy(), stem.with_name(stem.name + "-original.png"), args.scale)
        _png(result.adversarial[k].numpy(), stem.with_name(stem.name + "-adversarial.png"), args.scale)
        picture, gain = perturbation_picture(result.perturbation[k].numpy())
        _png(picture, stem.with_name(stem.name + "-perturbation.png"), args.scale)
        clean, adv = int(result.clean_predicted[k]), int(result.predicted[k])
        record = dict(index=idx, label=int(result.labels[k]), clean_prediction=clean,
                      clean_probability=float(result.clean_logits[k].softmax(0)[clean]),
                      adversarial_prediction=adv, adversarial_probability=float(result.probabilities[k, adv]),
                      target=None if result.targets is None else int(result.targets[k]),
                      perturbation_norm=float(result.perturbation_norm[k]), success=bool(result.success[k]),
                      perturbation_gain=gain,
                      transfer={n: int(j.predicted[k]) for n, j in result.judgments.items()})
        records.append(record)
        target = "" if record["target"] is None else f" (target {classes[record['target']]})"
        judged = "".join(f"; {n}: {classes[p]}" for n, p in record["transfer"].items())
        print(f"  #{idx}: {classes[record['label']]} -> clean {classes[clean]} {record['clean_probability']:.2f}, "
              f"adversarial {classes[adv]} {record['adversarial_probability']:.2f}{target}, "
              f"‖δ‖={record['perturbation_norm']:.3f}, {'success' if record['success'] else 'failed'}{judged}")
    (out / "attack.json").write_text(json.dumps({"model": name, "config": config.__dict__, "images": records},
                                                indent=2) + "\n")
    print(f"saved {3 * len(records)} PNGs (perturbation amplified, blue < 0 < red) and attack.json to {out}")
    return 0


# ---------------------------------------------------------------- experiments

def _test_subset(models: dict, args):
    dataset = next(iter(models.values())).meta.dataset
    test = load_dataset(dataset, "test", args.data_root)
    if args.max < 1:
        raise ValueError("--max must be at least 1")
    return test.subset(range(min(args.max, len(test))))


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


CURVE_POINT_COLUMNS = "model\tweights_sha256\teps\taccuracy\tcorrect\ttotal"


def run_curve(args, device) -> int:
    """Robust accuracy against ε, one (model, ε) point at a time: every finished point is a flushed row
    of OUT/curve-NORM.points.tsv, so a rerun with the same settings attacks only the missing points
    (each point is its own seeded job, the same as in one uninterrupted run) and then writes the
    curve files from all the points."""
    out = prepare_output_folder(args.out)
    models = _models(args.model, device, default_all=True)
    subset = _test_subset(models, args)
    eps_values = [float(e) for e in (args.eps if args.eps else DEFAULT_CURVE_EPS[args.norm])]
    if args.target != "untargeted" or args.smooth_sigma:
        raise ValueError("--curve runs untargeted PGD on the models themselves (no --target, no --smooth-sigma)")
    if args.step_size is not None:
        raise ValueError("--curve uses a step size proportional to ε: give --relative-step, not --step-size")
    steps, relative = args.steps, args.relative_step
    random_start = args.random_start or "none"
    attack = dict(steps=steps, relative_step=relative, restarts=args.restarts, random_start=random_start,
                  loss=args.loss, keep=args.keep, seed=args.seed)
    dataset = next(iter(models.values())).meta.dataset
    settings = dict(norm=args.norm, **attack, batch=args.batch, dataset=dataset, images=len(subset))
    hashes = {name: weights_sha256(model.state_dict()) for name, model in models.items()}
    began = time.perf_counter()
    points = ResumableTSV(out / f"curve-{args.norm}.points.tsv", CURVE_POINT_COLUMNS, settings,
                          tool="robustlens attack --curve", overwrite=args.overwrite,
                          key=lambda fields: (fields[0], float(fields[2])))
    with points:
        for (name, _), fields in points.rows.items():
            if name in hashes and fields[1] != hashes[name]:
                raise OutputRefused(f"{points.path} has points of another {name} (its weights differ): give "
                                    f"--overwrite to replace them, or another --out")
        todo = [(eps, name) for eps in eps_values for name in models if (name, eps) not in points.rows]
        if points.kept:
            print(f"resuming {points.path}: {len(eps_values) * len(models) - len(todo)} points already there are kept",
                  file=sys.stderr)
        if todo:  # the points left: ε = 0 costs a clean pass, each other ε a PGD run per model
            left = {name: models[name] for _, name in todo}
            say_attack_estimate(left, subset, eps_values=sorted({eps for eps, _ in todo}), steps=steps,
                                restarts=args.restarts, transfer=False)
        for point in _curve_points(args, models, subset, attack, todo):
            name, eps = point.model, point.eps
            points.append(f"{name}\t{hashes[name]}\t{eps!r}\t{point.accuracy!r}\t{point.correct}\t{point.total}")
            points.rows[(name, eps)] = [name, hashes[name], repr(eps), repr(point.accuracy), str(point.correct),
                                        str(point.total)]
            tqdm.write(f"  {name}  ε={eps:g}: {100 * point.accuracy:.1f}%")
    accuracy = {name: [float(points.rows[(name, eps)][3]) for eps in eps_values] for name in models}
    result = RobustnessCurves(args.norm, eps_values, list(models), accuracy, len(subset),
                              dict(attack, attack="PGD, untargeted"))
    print(f"\nrobust accuracy (%) under PGD {NORM_LABEL[args.norm]} ({steps} steps, step {relative:g}·ε/steps, "
          f"{args.restarts} restart(s), random start: {random_start}) on the first {result.images} "
          f"test images:")
    header = ["model"] + [f"ε={e:g}" for e in result.eps]
    print(_table(header, [[m] + [f"{100 * a:.1f}" for a in result.accuracy[m]] for m in result.models]))
    paths = save_result(result, out / f"curve-{args.norm}")
    print(f"({time.perf_counter() - began:.0f} s) saved {', '.join(map(str, paths))} (points in {points.path})")
    return 0


def _curve_points(args, models: dict, subset, attack: dict, todo: list[tuple[float, str]]):
    """The curve points ``todo`` ((ε, model) pairs) in order, one seeded job each: here, or with --ray
    in blocks of whole PGD batches on a cluster's workers (engine/cluster_jobs.py), the same points."""
    if wants_ray(args):
        from .cluster_jobs import model_refs, ray_curve_points

        bar = tqdm(total=len(todo) * len(subset), desc="robust accuracy on Ray", unit="img", dynamic_ncols=True,
                   leave=False)
        with bar:
            yield from ray_curve_points(cluster_options(args), model_refs(models), subset.images, subset.labels,
                                        norm=args.norm, attack=attack, batch=args.batch, todo=todo,
                                        progress=bar.update, threads=args.threads)
        return
    bar = tqdm(todo, desc="robust accuracy", unit="point", dynamic_ncols=True, leave=False)
    for eps, name in bar:
        bar.set_description(f"{name} {NORM_LABEL[args.norm]} ε={eps:g}")
        job = robustness_curves_job({name: models[name]}, subset.images, subset.labels, norm=args.norm,
                                    eps_values=[eps], batch_size=args.batch, **attack)
        yield next(e.value for e in _events(job) if isinstance(e, Partial) and e.kind == "curve_point")


def _events(job):
    """A job's events up to its end, its own exception raised as is (a ValueError stays one line)."""
    events = []
    run_to_end(job, on_event=events.append, keep_errors=True)
    return events


def run_transfer(args, device) -> int:
    """The transfer matrix; it is crafted source by source in one job, so it resumes as a whole: a
    finished matrix in OUT is never replaced without --overwrite."""
    out = prepare_output_folder(args.out)
    models = _models(args.model, device, default_all=True)
    _check_target_class(args, models)
    subset = _test_subset(models, args)
    eps = _single_eps(args)
    stem = out / f"transfer-{args.norm}-eps{eps:g}"
    finished = [p for p in (stem.with_name(stem.name + ".tsv"), stem.with_name(stem.name + ".json")) if p.exists()]
    if finished and not args.overwrite:
        raise OutputRefused(f"{finished[0]} already holds a transfer matrix: give --overwrite to replace it, "
                            f"or another --out")
    if args.smooth_sigma:
        raise ValueError("--transfer attacks the models themselves (no --smooth-sigma)")
    relative = args.step_size * args.steps / eps if args.step_size is not None and eps > 0 else args.relative_step
    attack = dict(steps=args.steps, relative_step=relative, restarts=args.restarts,
                  random_start=args.random_start or "none", loss=args.loss, keep=args.keep, target=args.target,
                  target_class=args.target_class, seed=args.seed)
    say_attack_estimate(models, subset, eps_values=[eps], steps=args.steps, restarts=args.restarts, transfer=True)
    began = time.perf_counter()
    if wants_ray(args):
        from .cluster_jobs import model_refs, ray_transfer_matrix

        with tqdm(total=len(models) * len(subset), desc="transfer matrix on Ray", unit="img", leave=False) as bar:
            result = ray_transfer_matrix(cluster_options(args), models, model_refs(models), subset.images,
                                         subset.labels, norm=args.norm, eps=eps, attack=attack, batch=args.batch,
                                         progress=bar.update, threads=args.threads)
    else:
        job = transfer_matrix_job(models, subset.images, subset.labels, norm=args.norm, eps=eps,
                                  batch_size=args.batch, **attack)
        bar, on_event = _progress_bar("transfer matrix")
        with bar:
            result = run_to_end(job, on_event=on_event, keep_errors=True)
    print(f"\nattack success rate (%) of PGD {NORM_LABEL[args.norm]} ε={eps:g} ({args.steps} steps, {args.target}) "
          f"crafted on the row model, judged by the column model, over the images the column model classifies "
          f"correctly (of the first {result.images} test images):")
    header = ["source \\ target"] + result.models
    rows = [[src] + ["-" if r != r else f"{100 * r:.1f}" for r in row]
            for src, row in zip(result.models, result.success_rate)]
    print(_table(header, rows))
    paths = save_result(result, stem)
    print(f"({time.perf_counter() - began:.0f} s) saved {', '.join(map(str, paths))}")
    return 0


def run_attack(args) -> int:
    check_local_only_flags(args)
    if wants_ray(args) and not (args.curve or args.transfer):
        raise ValueError("--ray runs --curve and --transfer (attacking a few images needs no cluster)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale < 1:
        raise ValueError("--scale must be at least 1")
    device = chosen_device(args)
    if args.curve:
        return run_curve(args, device)
    if args.transfer:
        return run_transfer(args, device)
    return run_images(args, device)
