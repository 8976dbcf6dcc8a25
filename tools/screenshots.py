"""Every screenshot under docs/, made by the app itself: one `robustlens --screenshot …` run per picture.

    python tools/screenshots.py                  every shot, into docs/ (make screenshot)
    python tools/screenshots.py attacks window   the shots whose path contains one of these words
    python tools/screenshots.py --list           the shots and their command lines
    python tools/screenshots.py --out /tmp/docs  write under another folder (docs/... beneath it)

Each shot starts a fresh offscreen window with default settings (``--screenshot`` never reads the
user's), so a picture depends only on its flags below. Nothing here reaches into a panel: what a
shot needs that the flags cannot say becomes a general flag of ``robustlens`` (``app/main.py``).
A tab's settings are given as ``--setting TAB/KEY=VALUE``, the keys the tab remembers.

The Geometry tab's pictures (panel grabs and an SVG export) come from docs/geometry/make_screenshots.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Shot:
    path: str                 # relative to the output folder
    flags: tuple[str, ...]    # robustlens flags besides --screenshot
    threads: int | None = None  # torch CPU threads (ROBUSTLENS_THREADS): for run times quoted in the docs
    timeout: float = 1800.0
    prepare: tuple[str, ...] = ()  # a tools/ script (and its arguments) that makes the files the flags name


def settings(tab: str, **values) -> tuple[str, ...]:
    return tuple(part for key, value in values.items() for part in ("--setting", f"{tab}/{key}={value}"))


# the Certify tab: test #4 (a shirt) at σ = 0.25, the certified-accuracy curves of every noise model
CERTIFY = ("--select", "4", "--tab", "Certify", *settings("Certify", sigma=0.25, accuracy_images=100, accuracy_n=1000),
           "--run", "--click", "Run all σ")
# the Certify tab in anytime mode: test #4 at σ = 0.25, at most n = 100,000 samples; one image (F5)
ANYTIME = ("--select", "4", "--tab", "Certify", *settings("Certify", sigma=0.25, mode="anytime", n=100_000),
           "--run")
# the Attack tab: L∞ PGD (ε = 0.1, 40 steps) on the standard model for test #4
ATTACK = ("--select", "4", "--tab", "Attack",
          *settings("Attack", source="fashion-mnist/standard", norm="linf", eps_linf=0.1, steps=40,
                    random_start="none", restarts=1, target="untargeted", loss="ce"), "--run")
# the Experiments tab's PGD sections: L∞, PGD-10 on 100 test images
CURVES = settings("Experiments", **{"section": "Robust accuracy vs ε", "robust-accuracy-vs/steps": 10,
                                    "robust-accuracy-vs/images": 100})
TRANSFER = settings("Experiments", **{"section": "Transfer matrix", "transfer-matrix/steps": 10,
                                      "transfer-matrix/images": 100})
# the Features tab: test #2 (a trouser) from another class's image, 1000 steps, with noise-0.50 as the third model
FEATURES = ("--select", "2", "--tab", "Features",
            *settings("Features", steps=1000, step_size=0.1, seed="other-class", auto=0,
                      extra_model="fashion-mnist/noise-0.50"), "--run")

# a researcher's own data and model: a colour ImageFolder and a CIFAR ResNet-20 noise model in Cohen et al.'s
# checkpoint layout, both made by tools/published_example.py (the model trained on the folder, σ = 0.25)
EXAMPLE = "build/published-example"
PUBLISHED = ("--dataset", "folder", "--data-root", f"{EXAMPLE}/images",
             "--only-model", f"{EXAMPLE}/models/cifar10/resnet20/noise_0.25/checkpoint.pth.tar",
             "--select", "2", "--tab", "Certify",
             *settings("Certify", sigma=0.25, n=10000, accuracy_images=20, accuracy_n=500),
             "--run", "--click", "Run all σ", "--settle")

# lecture mode at the two sizes of a lecture hall: each tab after its job, on test #4 (a shirt), with
# settings a CPU finishes in seconds (the Geometry grid at 21×21, the Features run at 300 steps)
LECTURE_TABS = {
    "certify": ("--tab", "Certify", "--run"),
    "attack": ATTACK,
    "features": ("--tab", "Features", *settings("Features", steps=300, seed="other-class",
                                                extra_model="fashion-mnist/noise-0.50"), "--run"),
    "geometry": ("--tab", "Geometry", *settings("Geometry", g_size=21, n=100), "--run"),
    "experiments": ("--tab", "Experiments", *settings("Experiments", **{
        "section": "Dataset experiments (Ilyas et al.)",
        "dataset-experiments-ilyas-et-al/results": "docs/features/results.json"})),
    "predictions": ("--tab", "Predictions"),
}
LECTURE = tuple(Shot(f"docs/lecture/tab-{name}-{size}.png",
                     ("--select", "4", *[f for f in flags if f not in ("--select", "4")], "--lecture", "--size", size,
                      "--settle"))
                for name, flags in LECTURE_TABS.items() for size in ("1920x1080", "1280x720"))

SHOTS = (
    Shot("docs/window.png", ("--select", "0", "--tab", "Features", "--run", "--settle")),
    Shot("docs/window-lecture.png", ("--lecture", "--hide", "gallery", "--tab", "Certify", "--settle")),
    Shot("docs/certify/panel-running.png", CERTIFY + ("--progress", "0.3")),
    Shot("docs/certify/panel-done.png", CERTIFY + ("--settle",)),
    Shot("docs/certify/anytime-running.png", ANYTIME + ("--progress", "0.3")),
    Shot("docs/certify/anytime-stopped.png", ANYTIME + ("--click-at", "0.3", "Stop", "--settle")),
    Shot("docs/attacks/panel-running.png", ATTACK + ("--progress", "0.45")),
    Shot("docs/attacks/panel-done.png", ATTACK + ("--settle",)),
    Shot("docs/attacks/experiments.png", ("--tab", "Experiments", *CURVES, "--run", "--settle")),
    Shot("docs/attacks/experiments-transfer.png", ("--tab", "Experiments", *TRANSFER, "--run", "--settle")),
    Shot("docs/features/panel-running.png", FEATURES + ("--progress", "0.33"), threads=1),
    Shot("docs/features/panel.png", FEATURES + ("--settle",), threads=1),
    Shot("docs/features/panel-experiments.png",
         ("--tab", "Experiments", *settings("Experiments", **{
             "section": "Dataset experiments (Ilyas et al.)",
             "dataset-experiments-ilyas-et-al/results": "docs/features/results.json"}))),
    Shot("docs/published/window-imagefolder.png", PUBLISHED, threads=1,
         prepare=("tools/published_example.py", EXAMPLE)),
    *LECTURE,
)


def command(shot: Shot, out: Path) -> list[str]:
    """The shot's command line, run in the checkout (the flags' paths are relative to it)."""
    target = shot.path if out.resolve() == ROOT else str(out.resolve() / shot.path)
    return [sys.executable, "-m", "robustlens", "--screenshot", target, *map(str, shot.flags),
            "--timeout", f"{shot.timeout:g}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="only the shots whose path contains one of these")
    parser.add_argument("--out", type=Path, default=ROOT, help="folder the docs/ paths are under (default: the checkout)")
    parser.add_argument("--list", action="store_true", help="print the shots' command lines and exit")
    args = parser.parse_args(argv)
    shots = [s for s in SHOTS if not args.words or any(word in s.path for word in args.words)]
    if not shots:
        print(f"screenshots: error: no shot matches {' '.join(args.words)}", file=sys.stderr)
        return 1
    failed = []
    for shot in shots:
        cmd = command(shot, args.out)
        if args.list:
            threads = f"ROBUSTLENS_THREADS={shot.threads} " if shot.threads else ""
            prepared = f"python {shlex.join(shot.prepare)} && " if shot.prepare else ""
            print(prepared + threads + shlex.join(["robustlens", *cmd[3:]]))
            continue
        if shot.prepare and subprocess.run([sys.executable, *shot.prepare], cwd=ROOT).returncode:
            failed.append(shot.path)
            continue
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        if shot.threads:
            env["ROBUSTLENS_THREADS"] = str(shot.threads)
        began = time.monotonic()
        code = subprocess.run(cmd, env=env, cwd=ROOT).returncode
        print(f"{shot.path}: {'saved' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - began:.0f} s",
              flush=True)
        if code:
            failed.append(shot.path)
    if failed:
        print(f"screenshots: {len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
