"""Train the built-in zoo with `robustlens train` and write resources/models/manifest.json.

    python tools/build_zoo.py train NAME [NAME ...]   # one after another (run chains in parallel)
    python tools/build_zoo.py measure                 # accuracies, hashes -> manifest.json
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
        manifest["models"][name] = entry
        print(name, f"clean {entry['clean_accuracy']:.4f}", entry["robust_accuracy"], flush=True)
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2:])
    elif sys.argv[1] == "measure":
        measure()
