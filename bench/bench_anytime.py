"""Radius decisions with an anytime-valid CERTIFY against fixed-n CERTIFY: samples per image and certified
accuracy at R.

For each built-in noise model (certified at the σ it was trained with) and the same test images (every
``--skip``-th of the Fashion-MNIST test split, image idx seeded with idx), at α = 0.001 and n0 = 100:
- fixed n:  Cohen et al.'s CERTIFY at n = 10,000 and n = 100,000: one radius per image, certified at R when
            it is correct and its radius is ≥ R; it costs n0 + n samples per image. Both come from one
            streamed run at n = 100,000 (its first 10,000 samples are the n = 10,000 run's; ``--check``).
- anytime:  ``engine/anytime.py`` ``decide_radius`` for each R = 0.25, 0.5, 1.0 with max_n = 100,000: the
            sequential test stops as soon as the confidence sequence certifies R or shows R out of reach.
Printed per σ and R: mean samples per image (selection included) of each, the ratio of n = 100,000's to
the anytime decision's, and certified accuracy at R of all three (same α, same images).

Rows go to ``--out``/sigma-S.jsonl as they finish (one JSON object per image); a rerun continues where a
run stopped, and ``--summary`` prints the table from whatever rows exist. Run one process per σ in
parallel (one torch thread each) on a multi-core machine:

    python bench/bench_anytime.py --images 200 --threads 1 --sigmas 0.25 &   # likewise 0.5, 1.0
    python bench/bench_anytime.py --images 200 --summary [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robustlens.engine.anytime import decide_radius
from robustlens.engine.data import load_dataset
from robustlens.engine.models import load_model
from robustlens.engine.smoothing import Smooth

SIGMAS = (0.25, 0.5, 1.0)
RADII = (0.25, 0.5, 1.0)
FIXED_N = (10_000, 100_000)
N0, ALPHA, MAX_N, BATCH = 100, 0.001, 100_000, 1000


def model_name(sigma: float) -> str:
    return f"fashion-mnist/noise-{sigma:.2f}"


def rows_path(out: Path, sigma: float) -> Path:
    return out / f"sigma-{sigma:g}.jsonl"


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fixed_n_certificates(smooth: Smooth, image, idx: int) -> dict[int, tuple[int, float]]:
    """CERTIFY at every n of FIXED_N from one run: with the same seed and batch, the run at the largest n
    draws the smaller runs' samples first, so its running Clopper–Pearson bound at n = 10,000 *is*
    CERTIFY at n = 10,000 (checked by --check). {n: (prediction, radius)}."""
    found = {}
    for update in smooth.certify_steps(image, N0, max(FIXED_N), ALPHA, BATCH, generator=idx):
        if update.phase == "estimation" and update.drawn in FIXED_N:
            abstain = update.pA_lower < 0.5
            found[update.drawn] = (-1 if abstain else update.top_class, 0.0 if abstain else update.radius)
    return found


def certify_image(smooth: Smooth, image, idx: int, label: int) -> dict:
    row = {"idx": idx, "label": label}
    began = time.process_time()
    fixed = fixed_n_certificates(smooth, image, idx)
    seconds = time.process_time() - began
    for n in FIXED_N:
        row[f"fixed_{n}"] = {"prediction": fixed[n][0], "radius": fixed[n][1], "samples": N0 + n,
                             "cpu_s": seconds * (N0 + n) / (N0 + max(FIXED_N))}
    for r in RADII:
        began = time.process_time()
        decision = decide_radius(smooth, image, r, N0, MAX_N, ALPHA, BATCH, generator=idx)
        row[f"anytime_{r:g}"] = {"prediction": decision.prediction, "certified": decision.certified,
                                 "samples": decision.samples, "cpu_s": time.process_time() - began,
                                 "stop": decision.certificate.stop_reason.split(":")[0]}
    return row


def check(sigma: float, count: int = 2) -> None:
    """The shared run gives CERTIFY's own answer at every n of FIXED_N (same seed)."""
    test = load_dataset("fashion-mnist", "test")
    smooth = Smooth(load_model(model_name(sigma)), 10, sigma)
    for idx in range(count):
        fixed = fixed_n_certificates(smooth, test.images[idx], idx)
        for n in FIXED_N:
            alone = smooth.certify(test.images[idx], N0, n, ALPHA, BATCH, generator=idx)
            assert alone == fixed[n], (idx, n, alone, fixed[n])
    print(f"σ={sigma:g}: CERTIFY at n = {', '.join(map(str, FIXED_N))} equals the shared run on {count} images")


def run(sigma: float, positions: list[int], out: Path) -> None:
    path = rows_path(out, sigma)
    done = {row["idx"] for row in read_rows(path)}
    test = load_dataset("fashion-mnist", "test")
    smooth = Smooth(load_model(model_name(sigma)), 10, sigma)
    out.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for count, position in enumerate(positions, 1):
            idx, label = test.source_index(position), int(test.labels[position])
            if idx in done:
                continue
            row = certify_image(smooth, test.images[position], idx, label)
            print(json.dumps(row), file=f, flush=True)
            print(f"σ={sigma:g} {count}/{len(positions)} idx {idx}: "
                  + " ".join(f"R={r:g}:{row[f'anytime_{r:g}']['samples']}" for r in RADII), file=sys.stderr)


def summary(sigmas, positions: list[int], out: Path, markdown: bool) -> None:
    wanted = set(positions)
    lines = []
    header = ("σ", "R", "images", "samples n=10k", "samples n=100k", "samples anytime", "100k / anytime",
              "cert. acc. n=10k", "cert. acc. n=100k", "cert. acc. anytime")
    if markdown:
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    else:
        lines.append("  ".join(f"{h:>14}" for h in header))
    for sigma in sigmas:
        rows = [row for row in read_rows(rows_path(out, sigma)) if row["idx"] in wanted]
        if not rows:
            continue
        labels = np.array([row["label"] for row in rows])
        for r in RADII:
            def fixed_accuracy(n):
                return np.mean([(row[f"fixed_{n}"]["prediction"] == row["label"]) and row[f"fixed_{n}"]["radius"] >= r
                                for row in rows])
            anytime = [row[f"anytime_{r:g}"] for row in rows]
            samples = np.mean([a["samples"] for a in anytime])
            accuracy = np.mean([a["certified"] and a["prediction"] == label for a, label in zip(anytime, labels)])
            values = (f"{sigma:g}", f"{r:g}", f"{len(rows)}", f"{N0 + FIXED_N[0]:,}", f"{N0 + FIXED_N[1]:,}",
                      f"{samples:,.0f}", f"{(N0 + FIXED_N[1]) / samples:.1f}×" if samples else "∞ (R > ceiling)",
                      f"{fixed_accuracy(FIXED_N[0]):.3f}", f"{fixed_accuracy(FIXED_N[1]):.3f}", f"{accuracy:.3f}")
            lines.append("| " + " | ".join(values) + " |" if markdown else "  ".join(f"{v:>14}" for v in values))
    print("\n".join(lines))
    for sigma in sigmas:
        rows = [row for row in read_rows(rows_path(out, sigma)) if row["idx"] in wanted]
        if rows:
            cpu = {key: np.mean([row[key]["cpu_s"] for row in rows])
                   for key in [f"fixed_{n}" for n in FIXED_N] + [f"anytime_{r:g}" for r in RADII]}
            print(f"σ={sigma:g}: CPU seconds per image: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="test images, spread evenly over the split")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/anytime", help="folder of the per-σ rows")
    parser.add_argument("--summary", action="store_true", help="print the table from the rows written so far")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--check", action="store_true", help="check the shared fixed-n run against CERTIFY")
    args = parser.parse_args(argv)
    skip = 10_000 // args.images
    positions = list(range(0, skip * args.images, skip))
    out = Path(args.out)
    if args.summary:
        summary(args.sigmas, positions, out, args.markdown)
        return 0
    torch.set_num_threads(args.threads)
    if args.check:
        for sigma in args.sigmas:
            check(sigma)
        return 0
    for sigma in args.sigmas:
        run(sigma, positions, out)
    summary(args.sigmas, positions, out, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
