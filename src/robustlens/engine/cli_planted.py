"""`robustlens planted`: the planted-feature demo of Ilyas et al. 2019 (``planted_demo.py``), its table
and its figure."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .cli import nonnegative_int, positive_float, positive_int
from .cli_features import _Bar, _threads, results_table
from .ilyas_experiment import DEFAULT_ROBUST, ExperimentSettings
from .inversion import SEED_MODES, STEP_SCHEDULES
from .jobs import run_to_end
from .model_cache import ModelCache
from .models import default_device
from .planted_demo import PlantedDemoRequest, planted_demo_job
from .planted_figure import planted_figure
from .resumable import prepare_output_file, prepare_output_folder

DEFAULTS = PlantedDemoRequest(workdir="")


def register(sub) -> None:
    p = sub.add_parser("planted", help="the planted-feature demo: a standard model trained on Fashion-MNIST with "
                                       "a class pattern follows it; D_det follows it; D_R strips it "
                                       "(resumable: rerun to continue)")
    p.add_argument("--workdir", help="folder for the models and datasets (kept; a rerun reads them back)")
    p.add_argument("--out", help="results JSON (default WORKDIR/planted.json)")
    p.add_argument("--figure", metavar="PNG", help="also draw the figure: images, patterns, δ, D_R")
    p.add_argument("--show", metavar="JSON", help="only print the table of a results file")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--count", type=positive_int, default=DEFAULTS.count,
                   help="planted training images that D_det, D_R and the rows D are built from")
    p.add_argument("--model-images", type=positive_int, default=DEFAULTS.planted_model_images,
                   help="planted training images the planted model learns from (they include the --count ones)")
    p.add_argument("--robust-model", default=DEFAULT_ROBUST, help="model that builds D_R")
    p.add_argument("--seeds", choices=SEED_MODES, default=DEFAULTS.seeds,
                   help="D_R's inversion start (default noise: no seed image, so no seed's pattern)")
    p.add_argument("--steps", type=positive_int, default=DEFAULTS.steps, help="D_R inversion steps")
    p.add_argument("--step-size", type=positive_float, default=DEFAULTS.step_size, help="D_R inversion step")
    p.add_argument("--schedule", choices=STEP_SCHEDULES, default=DEFAULTS.schedule)
    p.add_argument("--eps", type=positive_float, default=DEFAULTS.eps,
                   help="L2 ε of D_det's targeted PGD and of the measured adversarial examples")
    p.add_argument("--pgd-steps", type=positive_int, default=DEFAULTS.pgd_steps, help="D_det's PGD steps")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS.training.epochs, help="epochs per model")
    p.add_argument("--test-images", type=positive_int, help="evaluate on the first N test images (default: all)")
    p.add_argument("--eval-images", type=positive_int, default=DEFAULTS.training.eval_images,
                   help="test images for the robust accuracy")
    p.add_argument("--eval-steps", type=positive_int, default=DEFAULTS.training.eval_steps,
                   help="PGD steps of the robust accuracy and of the measured untargeted attack")
    p.add_argument("--attack-images", type=positive_int, default=DEFAULTS.attack_images,
                   help="test images for the adversarial measures")
    p.add_argument("--no-baseline", action="store_true", help="skip the reference row D (no pattern)")
    p.add_argument("--seed", type=nonnegative_int, default=DEFAULTS.seed)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.set_defaults(func=run_planted)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def format_planted_table(results: dict, markdown: bool = False) -> str:
    """One row per model: clean and robust accuracy on the real test set, and on test images carrying a
    pattern: their own class's (accuracy) or another class c's (answers c / answers the true class)."""
    eps_list = results["settings"]["training"]["eval_eps"]
    header = (["train on", "images", "clean"] + [f"robust L2 ε={e:g}" for e in eps_list]
              + ["own pattern", "other pattern c: answers c", "switched to c", "answers y"])
    table = [[row["dataset"], "–" if row["train_images"] is None else str(row["train_images"]),
              _percent(row["clean_accuracy"])] + [_percent(row["robust_accuracy"].get(str(float(e)))) for e in eps_list]
             + [_percent(row["own_pattern_accuracy"]), _percent(row["follows_pattern"]),
                _percent(row.get("switched_to_pattern")), _percent(row["true_class"])]
             for row in results["rows"]]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table])
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    test = results["test"]
    lines.append(f"accuracies in % on the real {test['dataset']} test set ({test['images']} images; robust: "
                 f"{results['settings']['training']['eval_steps']}-step L2 PGD on the first {test['robust_images']})")
    for name, measures in results.get("adversarial", {}).items():
        for mode in ("untargeted", "targeted"):
            m = measures[mode]
            if "cos_reached_class_pattern" in m:
                lines.append(f"{name}, {mode} PGD ε={measures['eps']:g}: success {_percent(m['success'])}%, "
                             f"cos(δ, reached class's pattern) {m['cos_reached_class_pattern']:+.3f}, "
                             f"true class's {m['cos_true_class_pattern']:+.3f}, others {m['cos_other_patterns']:+.3f}; "
                             f"{_percent(m['span_energy_share'])}% of ‖δ‖² in the patterns' span "
                             f"(random: {_percent(m['random_direction_span_share'])}%)")
    for name, s in results.get("pattern_strength", {}).items():
        extra = (f", original class's {s['original_label_pattern']:+.3f} (readable {_percent(s['original_label_readable'])}%)"
                 if "original_label_pattern" in s else "")
        lines.append(f"{name}: component along the label's pattern {s['label_pattern']:+.3f}, other patterns "
                     f"{s['other_patterns']:+.3f}; label readable from the patterns {_percent(s['label_readable'])}%"
                     + extra)
    return "\n".join(lines)


def run_planted(args) -> int:
    if args.show:
        print(results_table(Path(args.show).expanduser(), markdown=args.markdown))
        return 0
    if not args.workdir:
        raise ValueError("name a folder for the models and datasets: --workdir DIR (or --show RESULTS.json)")
    prepare_output_folder(args.workdir)
    if args.out:
        prepare_output_file(args.out)
    if args.figure:
        prepare_output_file(args.figure)
    _threads(args)
    training = ExperimentSettings(epochs=args.epochs, seed=args.seed, eval_images=args.eval_images,
                                  eval_steps=args.eval_steps)
    request = PlantedDemoRequest(workdir=args.workdir, out=args.out, count=args.count, seed=args.seed,
                                 planted_model_images=args.model_images,
                                 robust_model=args.robust_model, seeds=args.seeds, steps=args.steps,
                                 step_size=args.step_size, schedule=args.schedule, eps=args.eps,
                                 pgd_steps=args.pgd_steps, training=training, test_images=args.test_images,
                                 attack_images=args.attack_images, baseline=not args.no_baseline)
    request.validate()
    cache = ModelCache(default_device())
    for key in (request.robust_model, *request.reference_models):  # a bad model: one line, before the bar
        cache.model(key)
    bar = _Bar("planted demo", unit="stage")
    try:
        results = run_to_end(planted_demo_job(cache, request), on_event=bar, keep_errors=True)
    finally:
        bar.close()
    print(format_planted_table(results, markdown=args.markdown))
    print(f"results written to {request.out or Path(request.workdir).expanduser() / 'planted.json'}")
    if args.figure:
        image = planted_figure(Path(args.workdir).expanduser(), device=torch.device(cache.device))
        image.save(Path(args.figure).expanduser())
        print(f"wrote {args.figure} ({image.width}×{image.height})")
    return 0
