"""Train the built-in zoo with `robustlens train` and write resources/models/manifest.json.

    python tools/build_zoo.py train NAME [NAME ...]   # one after another (run chains in parallel)
    python tools/build_zoo.py measure                 # accuracies, hashes -> manifest.json
    python tools/build_zoo.py strong RESULT.json ...  # `robustlens evaluate --attack apgd --json` results
                                                      # -> the manifest's strong_attack entries
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "robustlens" / "resources" / "models"
ROBUSTLENS = str(ROOT / ".venv" / "bin" / "robustlens")
L2_EPS = [0.5, 1.0, 1.5, 2.0]
LINF_EPS = [0.05, 0.1, 0.2]
ROBUST_IMAGES, PGD_STEPS = 1000, 20

ZOO = {
    "fashion-mnist/standard": "--mode standard --epochs 10",
    "fashion-mnist/l2-robust": "--mode adversarial --norm l2 --eps 1.5 --steps 5 --epochs 8",
    "fashion-mnist/linf-robust": "--mode adversarial --norm linf --eps 0.1 --steps 5 --epochs 8",
    "fashion-mnist/noise-0.25": "--mode noise --sigma 0.25 --epochs 10",
    "fashion-mnist/noise-0.50": "--mode noise --sigma 0.5 --epochs 10",
    "fashion-mnist/noise-1.00": "--mode noise --sigma 1.0 --epochs 10",
}


def command(name: str) -> str:
    out = f"src/robustlens/resources/models/{name.replace('/', '__')}.pt"
    return f"robustlens train {ZOO[name]} --seed 0 --name {name} --out {out}"


def train(names: list[str]) -> None:
    for name in names:
        args = shlex.split(command(name))[1:] + ["--threads", "1"]
        began = time.time()
        subprocess.run([ROBUSTLENS, *args], cwd=ROOT, check=True)
        print(f"{name}: {time.time() - began:.0f} s", flush=True)


def measure() -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from robustlens.engine.data import load_dataset
    from robustlens.engine.evaluate import accuracy, robust_accuracy
    from robustlens.engine.models import load_checkpoint

    test = load_dataset("fashion-mnist", "test")
    subset = test.subset(range(ROBUST_IMAGES))
    earlier = json.loads((MODELS / "manifest.json").read_text()) if (MODELS / "manifest.json").exists() else {}
    manifest = {"eval": {"clean_images": len(test), "robust_images": ROBUST_IMAGES, "steps": PGD_STEPS,
                         "l2_eps": L2_EPS, "linf_eps": LINF_EPS, "seed": 0},
                "models": {}}
    for name in ZOO:
        path = MODELS / f"{name.replace('/', '__')}.pt"
        model = load_checkpoint(path, device="cpu")
        meta = model.meta
        entry = {"file": path.name, "kind": meta.kind, "norm": meta.norm, "eps": meta.eps, "sigma": meta.sigma,
                 "arch": meta.arch, "train_command": command(name), "seed": 0,
                 "train_images": meta.extra.get("train_images"), "train_seconds": meta.extra.get("train_seconds"),
                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                 "clean_accuracy": accuracy(model, test.images, test.labels),
                 "robust_accuracy": {"l2": {}, "linf": {}}}
        for norm, grid in (("l2", L2_EPS), ("linf", LINF_EPS)):
            for eps in grid:
                torch.manual_seed(0)
                entry["robust_accuracy"][norm][str(eps)] = robust_accuracy(
                    model, subset.images, subset.labels, norm=norm, eps=eps, steps=PGD_STEPS)
        strong = earlier.get("models", {}).get(name, {}).get("strong_attack")
        if strong and strong.get("sha256", entry["sha256"]) == entry["sha256"]:
            entry["strong_attack"] = strong  # measured on these very weights: kept
        manifest["models"][name] = entry
        print(name, f"clean {entry['clean_accuracy']:.4f}", entry["robust_accuracy"], flush=True)
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


STRONG_COMMAND = "robustlens evaluate --model NAME --norm NORM --eps EPS --attack apgd --max 500 --threads 1 --json"


def record_strong(paths: list[str]) -> None:
    """Merge `robustlens evaluate --attack apgd --json` results into the models' ``strong_attack``
    entries (robust accuracy under APGD-CE + APGD-T and under PGD-20 on the same images, by norm and ε),
    which `robustlens zoo` prints."""
    from importlib.metadata import version

    manifest = json.loads((MODELS / "manifest.json").read_text())
    for path in paths:
        result = json.loads(Path(path).read_text())
        name, norm = result["model"], result["norm"]
        if result["attack"] != "apgd" or result["pgd"]["steps"] != PGD_STEPS:
            raise SystemExit(f"{path}: not an `evaluate --attack apgd` run with PGD-{PGD_STEPS}")
        entry = manifest["models"][name].setdefault("strong_attack", {
            "attack": f"APGD-CE then APGD-T (targets: 9 classes), 100 steps each, torchattacks "
                      f"{version('torchattacks')}, seed {result['pgd']['seed']}",
            "command": STRONG_COMMAND, "images": result["images"], "robust_accuracy": {}, "pgd_robust_accuracy": {}})
        if entry["images"] != result["images"]:
            raise SystemExit(f"{path}: {result['images']} images, the manifest's entry has {entry['images']}")
        for eps, value in result["robust_accuracy"]["apgd"].items():
            entry["robust_accuracy"].setdefault(norm, {})[eps] = value
            entry["pgd_robust_accuracy"].setdefault(norm, {})[eps] = result["robust_accuracy"]["pgd"][eps]
        print(f"{name} {norm} {eps}: PGD-{PGD_STEPS} {result['robust_accuracy']['pgd'][eps]:.3f}, "
              f"APGD-CE+APGD-T {result['robust_accuracy']['apgd'][eps]:.3f}")
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2:])
    elif sys.argv[1] == "measure":
        measure()
    elif sys.argv[1] == "strong":
        record_strong(sys.argv[2:])
