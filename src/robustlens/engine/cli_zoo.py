"""`robustlens train`, `robustlens zoo`, `robustlens evaluate`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .cli import (add_device_argument, add_model_arguments, chosen_device, nonnegative_float, positive_float,
                  positive_int)
from .cli_estimates import say_evaluate_estimate
from .data import DATASETS, load_dataset
from .evaluate import ATTACK_LABELS, ATTACKS, EvaluationResult, accuracy, evaluate_robustness
from .models import load_model, zoo_manifest
from .train import MODES, TrainConfig, train


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model: standard, PGD-adversarial or Gaussian-noise")
    p.add_argument("--mode", choices=MODES, default="standard")
    p.add_argument("--out", required=True, help="checkpoint file to write (resumes from OUT.state)")
    p.add_argument("--name", help="model name stored in the checkpoint (default DATASET/MODE)")
    p.add_argument("--arch", default="fmnist-cnn")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--norm", choices=("l2", "linf"), default="l2", help="adversarial: threat model")
    p.add_argument("--eps", type=positive_float, default=1.5, help="adversarial: ε in [0,1]-pixel units")
    p.add_argument("--steps", type=positive_int, default=7, help="adversarial: PGD steps per batch")
    p.add_argument("--step-size", type=positive_float, help="adversarial: PGD step (default 2.5·ε/steps)")
    p.add_argument("--sigma", type=positive_float, default=0.25, help="noise: Gaussian augmentation σ")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--no-resume", action="store_true", help="ignore OUT.state and start over")
    add_device_argument(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("zoo", help="list the built-in models with their accuracies")
    p.set_defaults(func=run_zoo)

    p = sub.add_parser("evaluate", help="clean and robust accuracy of a model on the test set (PGD, APGD, "
                                        "AutoAttack)")
    add_model_arguments(p, required=True, help="built-in name or checkpoint file")
    p.add_argument("--norm", choices=("l2", "linf"), default="l2", help="threat model (default l2)")
    p.add_argument("--eps", type=nonnegative_float, nargs="+", default=[1.0], help="ε values (default 1.0)")
    p.add_argument("--attack", choices=ATTACKS, default="pgd",
                   help="pgd: our PGD alone; apgd: also APGD-CE then APGD-T (100 steps each, torchattacks); "
                        "autoattack: also the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square). "
                        "Both are reported beside PGD (default pgd)")
    p.add_argument("--steps", type=positive_int, default=20, help="PGD steps (default 20)")
    p.add_argument("--restarts", type=positive_int, default=1, help="PGD restarts (default 1)")
    p.add_argument("--max", type=positive_int, default=1000,
                   help="first test images for the robust accuracy (default 1000)")
    p.add_argument("--dataset", choices=DATASETS, help="default: the model's dataset")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--sigma", type=positive_float, help="σ of a noise-trained model whose file does not say")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.set_defaults(func=run_evaluate)


def run_train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, "train", args.data_root)
    print(f"training on {len(dataset)} images from {dataset.source}")
    config = TrainConfig(arch=args.arch, mode=args.mode, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                         seed=args.seed, norm=args.norm, eps=args.eps, steps=args.steps,
                         step_size=args.step_size, sigma=args.sigma, name=args.name)
    result = train(config, dataset, Path(args.out), resume=not args.no_resume, device=chosen_device(args))
    print(f"saved {args.out} after {result.seconds:.0f} s of training")
    return 0


NORM_LABELS = {"l2": "L2", "linf": "L∞"}


def format_zoo_table(manifest: dict) -> str:
    models = manifest["models"]
    l2 = manifest.get("eval", {}).get("l2_eps", [])
    linf = manifest.get("eval", {}).get("linf_eps", [])
    header = ["model", "kind", "ε / σ", "clean"] + [f"L2 {e:g}" for e in l2] + [f"L∞ {e:g}" for e in linf]
    rows = []
    for name, m in models.items():
        param = (f"{NORM_LABELS[m['norm']]} ε={m['eps']:g}" if m["kind"] == "adversarial"
                 else f"σ={m['sigma']:g}" if m["kind"] == "noise" else "-")
        row = [name, m["kind"], param, f"{100 * m['clean_accuracy']:.1f}"]
        row += [f"{100 * m['robust_accuracy']['l2'][str(e)]:.1f}" for e in l2]
        row += [f"{100 * m['robust_accuracy']['linf'][str(e)]:.1f}" for e in linf]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_strong_table(manifest: dict) -> str:
    """The zoo's robust accuracies re-measured under a strong attack (the manifest's ``strong_attack``
    entries, written from `robustlens evaluate --attack apgd --json`), beside PGD-20 on the same images."""
    rows = []
    for name, m in manifest["models"].items():
        strong = m.get("strong_attack")
        if not isinstance(strong, dict):
            continue
        for norm, by_eps in (strong.get("robust_accuracy") or {}).items():
            for eps, value in by_eps.items():
                pgd = (strong.get("pgd_robust_accuracy") or {}).get(norm, {}).get(eps)
                rows.append([name, f"{NORM_LABELS.get(norm, norm)} {eps}",
                             "-" if pgd is None else f"{100 * pgd:.1f}", f"{100 * value:.1f}"])
    if not rows:
        return ""
    header = ["model", "ε", "PGD-20", "APGD-CE+APGD-T"]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_zoo(args) -> int:
    manifest = zoo_manifest()
    if not manifest["models"]:
        print("no built-in models installed")
        return 1
    print(format_zoo_table(manifest))
    ev = manifest.get("eval", {})
    if ev:
        print(f"\naccuracies in %; clean on the {ev.get('clean_images')} test images, robust under "
              f"PGD ({ev.get('steps')} steps, step 2.5·ε/steps, random start) on the first "
              f"{ev.get('robust_images')} test images")
    strong = format_strong_table(manifest)
    if strong:
        images = next((m["strong_attack"].get("images") for m in manifest["models"].values()
                       if isinstance(m.get("strong_attack"), dict)), None)
        print(f"\nconfirmed by a strong attack, on the first {images} test images (an image counts only if "
              f"it survives APGD-CE and then APGD-T, 100 steps each):\n{strong}")
    return 0


def run_evaluate(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=chosen_device(args), sigma=args.sigma)
    test = load_dataset(args.dataset or model.meta.dataset, "test", args.data_root, shape=model.meta.input_shape)
    subset = test.subset(range(min(args.max, len(test))))
    say_evaluate_estimate(model, subset, len(test), eps_values=args.eps, steps=args.steps, restarts=args.restarts,
                          attack=args.attack)
    began = time.perf_counter()
    say = (lambda text: None) if args.json else print
    clean = accuracy(model, test.images, test.labels)
    say(f"{args.model}: clean accuracy {100 * clean:.2f}% on {len(test)} test images")
    table = evaluate_robustness(model, subset.images, subset.labels, norm=args.norm, eps_values=args.eps,
                                attack=args.attack, steps=args.steps, restarts=args.restarts, seed=args.seed)
    labels = {"pgd": f"PGD-{args.steps}", "worst": "worst of both", **{k: v for k, v in ATTACK_LABELS.items()
                                                                       if k != "pgd"}}
    for eps in args.eps:
        cells = "  ".join(f"{labels[attack]} {100 * table[attack][eps]:.2f}%" for attack in table)
        say(f"  {NORM_LABELS[args.norm]} ε={eps:g}: robust accuracy {cells} on {len(subset)} images")
    seconds = time.perf_counter() - began
    if args.json:
        result = EvaluationResult(
            model=str(args.model), norm=args.norm, attack=args.attack, images=len(subset), clean_images=len(test),
            clean_accuracy=clean, pgd={"steps": args.steps, "restarts": args.restarts,
                                       "step_size": "2.5·ε/steps", "random_start": True, "seed": args.seed},
            robust_accuracy={attack: {f"{eps:g}": value for eps, value in by_eps.items()}
                             for attack, by_eps in table.items()}, seconds=round(seconds, 1))
        print(json.dumps(result.to_dict()))
    else:
        print(f"({seconds:.0f} s)")
    return 0
