"""`robustlens attack`: PGD on a few test images (PNGs of original, adversarial and perturbation),
robust accuracy against ε (``--curve``), and the transfer matrix between models (``--transfer``).

    robustlens attack --model fashion-mnist/standard --norm l2 --eps 1.5 --index 0 1 2 --out out/
    robustlens attack --curve --norm linf --eps 0 0.05 0.1 0.2 --max 1000 --out out/
    robustlens attack --transfer --norm l2 --eps 1.5 --max 1000 --out out/
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .cli import add_model_arguments
from .attack_jobs import AttackConfig, attack_job
from .attacks import KEEPS, LOSSES, NORMS, RANDOM_STARTS, TARGET_MODES
from .data import load_dataset
from .jobs import Partial, Progress, run_to_end
from .models import default_device, load_model, zoo_names
from .robustness import robustness_curves_job, save_result, transfer_matrix_job

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
    p.add_argument("--eps", type=float, nargs="+",
                   help="ε in [0,1]-pixel units (default L2 1.5, L∞ 0.1; --curve: a grid per norm)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-size", type=float, help="PGD step in [0,1]-pixel units (default RELATIVE_STEP·ε/steps)")
    p.add_argument("--relative-step", type=float, default=2.5,
                   help="step size as a multiple of ε/steps when --step-size is not given (default 2.5)")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--random-start", choices=RANDOM_STARTS,
                   help="random start (default none: with few steps starting at x is the stronger attack)")
    p.add_argument("--loss", choices=LOSSES, default="ce", help="cross-entropy or Carlini–Wagner margin")
    p.add_argument("--keep", choices=KEEPS, default="best", help="return the best or the last iterate")
    p.add_argument("--target", choices=TARGET_MODES, default="untargeted",
                   help="class: --target-class; random: any other class (D_rand); next: (y+1) mod C (D_det)")
    p.add_argument("--target-class", type=int)
    p.add_argument("--smooth-sigma", type=float,
                   help="attack the Gaussian-smoothed classifier with this σ (single images only)")
    p.add_argument("--smooth-samples", type=int, default=32, help="noise draws per PGD step for --smooth-sigma")
    p.add_argument("--index", type=int, nargs="+", default=[0, 1, 2, 3], help="test images to attack")
    p.add_argument("--max", type=int, default=1000, help="--curve/--transfer: the first MAX test images")
    p.add_argument("--batch", type=int, default=250, help="--curve/--transfer: images per PGD batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=8, help="PNG upscaling factor (nearest neighbour)")
    p.add_argument("--out", default="attack-results", help="folder for PNGs, TSV and JSON")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
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


def _single_eps(args) -> float:
    if args.eps and len(args.eps) > 1:
        raise ValueError("give one --eps (several only with --curve)")
    return args.eps[0] if args.eps else DEFAULT_EPS[args.norm]


def run_images(args, device) -> int:
    models = _models(args.model, device, default_all=False)
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
        result = run_to_end(attack_job(model, subset.images, subset.labels, config, judges=judges), on_event=on_event)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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


def run_curve(args, device) -> int:
    models = _models(args.model, device, default_all=True)
    subset = _test_subset(models, args)
    eps_values = args.eps if args.eps else DEFAULT_CURVE_EPS[args.norm]
    if args.target != "untargeted" or args.smooth_sigma:
        raise ValueError("--curve runs untargeted PGD on the models themselves (no --target, no --smooth-sigma)")
    if args.step_size is not None:
        raise ValueError("--curve uses a step size proportional to ε: give --relative-step, not --step-size")
    steps, relative = args.steps, args.relative_step
    job = robustness_curves_job(models, subset.images, subset.labels, norm=args.norm, eps_values=eps_values,
                                steps=steps, relative_step=relative, restarts=args.restarts,
                                random_start=args.random_start or "none", loss=args.loss, keep=args.keep,
                                batch_size=args.batch, seed=args.seed)
    began = time.perf_counter()
    bar, on_event = _progress_bar("robust accuracy")

    def show(event):
        on_event(event)
        if isinstance(event, Partial) and event.kind == "curve_point":
            p = event.value
            bar.write(f"  {p.model}  ε={p.eps:g}: {100 * p.accuracy:.1f}%")
    with bar:
        result = run_to_end(job, on_event=show)
    print(f"\nrobust accuracy (%) under PGD {NORM_LABEL[args.norm]} ({steps} steps, step {relative:g}·ε/steps, "
          f"{args.restarts} restart(s), random start: {result.settings['random_start']}) on the first {result.images} "
          f"test images:")
    header = ["model"] + [f"ε={e:g}" for e in result.eps]
    print(_table(header, [[m] + [f"{100 * a:.1f}" for a in result.accuracy[m]] for m in result.models]))
    paths = save_result(result, Path(args.out) / f"curve-{args.norm}")
    print(f"({time.perf_counter() - began:.0f} s) saved {', '.join(map(str, paths))}")
    return 0


def run_transfer(args, device) -> int:
    models = _models(args.model, device, default_all=True)
    subset = _test_subset(models, args)
    eps = _single_eps(args)
    if args.smooth_sigma:
        raise ValueError("--transfer attacks the models themselves (no --smooth-sigma)")
    relative = args.step_size * args.steps / eps if args.step_size is not None and eps > 0 else args.relative_step
    job = transfer_matrix_job(models, subset.images, subset.labels, norm=args.norm, eps=eps, steps=args.steps,
                              relative_step=relative, restarts=args.restarts,
                              random_start=args.random_start or "none", loss=args.loss, keep=args.keep,
                              target=args.target, target_class=args.target_class, batch_size=args.batch,
                              seed=args.seed)
    began = time.perf_counter()
    bar, on_event = _progress_bar("transfer matrix")
    with bar:
        result = run_to_end(job, on_event=on_event)
    print(f"\nattack success rate (%) of PGD {NORM_LABEL[args.norm]} ε={eps:g} ({args.steps} steps, {args.target}) "
          f"crafted on the row model, judged by the column model, over the images the column model classifies "
          f"correctly (of the first {result.images} test images):")
    header = ["source \\ target"] + result.models
    rows = [[src] + ["-" if r != r else f"{100 * r:.1f}" for r in row]
            for src, row in zip(result.models, result.success_rate)]
    print(_table(header, rows))
    paths = save_result(result, Path(args.out) / f"transfer-{args.norm}-eps{eps:g}")
    print(f"({time.perf_counter() - began:.0f} s) saved {', '.join(map(str, paths))}")
    return 0


def run_attack(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale < 1:
        raise ValueError("--scale must be at least 1")
    device = default_device()
    if args.curve:
        return run_curve(args, device)
    if args.transfer:
        return run_transfer(args, device)
    return run_images(args, device)
