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

CERTIFY at n = 100,000 costs ten times n = 10,000 and dominates the run, while its sample count (n0 + n)
is known without running it. ``--largest-n-images K`` runs it on the first K images only; the others run
CERTIFY at n = 10,000 alone (the same samples, same seed). The summary gives n = 100,000's certified
accuracy on the images where it ran, and how many those are.

Rows go to ``--out``/sigma-S.jsonl as they finish (one JSON object per image); a rerun continues where a
run stopped, and ``--summary`` prints the table from whatever rows exist. Run one process per σ in
parallel (one torch thread each) on a multi-core machine:

    python bench/bench_anytime.py --images 200 --threads 1 --sigmas 0.25 &   # likewise 0.5, 1.0
    python bench/bench_anytime.py --images 200 --threads 1 --sigmas 0.25 --reverse &   # a second one per σ
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
    """The rows written so far, one per image (the first, should two processes have raced on one)."""
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows.setdefault(row["idx"], row)
    return list(rows.values())


def fixed_n_certificates(smooth: Smooth, image, idx: int, ns=FIXED_N) -> dict[int, tuple[int, float]]:
    """CERTIFY at every n of ``ns`` from one run: with the same seed and batch, the run at the largest n
    draws the smaller runs' samples first, so its running Clopper–Pearson bound at n = 10,000 *is*
    CERTIFY at n = 10,000 (checked by --check). {n: (prediction, radius)}."""
    found = {}
    for update in smooth.certify_steps(image, N0, max(ns), ALPHA, BATCH, generator=idx):
        if update.phase == "estimation" and update.drawn in ns:
            abstain = update.pA_lower < 0.5
            found[update.drawn] = (-1 if abstain else update.top_class, 0.0 if abstain else update.radius)
    return found


def certify_image(smooth: Smooth, image, idx: int, label: int, largest_n: bool = True) -> dict:
    """One row. Without ``largest_n`` the fixed-n run stops at the smaller n, and the row keeps only the
    larger n's sample count (n0 + n, known in advance)."""
    row = {"idx": idx, "label": label}
    ns = FIXED_N if largest_n else FIXED_N[:-1]
    began = time.process_time()
    fixed = fixed_n_certificates(smooth, image, idx, ns)
    seconds = time.process_time() - began
    for n in FIXED_N:
        row[f"fixed_{n}"] = {"samples": N0 + n}
        if n in fixed:
            row[f"fixed_{n}"].update(prediction=fixed[n][0], radius=fixed[n][1],
                                     cpu_s=seconds * (N0 + n) / (N0 + max(ns)))
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


def run(sigma: float, positions: list[int], out: Path, largest_n_images: int, reverse: bool = False) -> None:
    path = rows_path(out, sigma)
    test = load_dataset("fashion-mnist", "test")
    smooth = Smooth(load_model(model_name(sigma)), 10, sigma)
    out.mkdir(parents=True, exist_ok=True)
    order = list(enumerate(positions, 1))
    with path.open("a") as f:
        for count, position in (order[::-1] if reverse else order):
            idx, label = test.source_index(position), int(test.labels[position])
            if idx in {row["idx"] for row in read_rows(path)}:  # read again: another process may share the σ
                continue
            row = certify_image(smooth, test.images[position], idx, label, largest_n=count <= largest_n_images)
            print(json.dumps(row), file=f, flush=True)
            print(f"σ={sigma:g} {count}/{len(positions)} idx {idx}: "
                  + " ".join(f"R={r:g}:{row[f'anytime_{r:g}']['samples']}" for r in RADII), file=sys.stderr)


def fixed_accuracy(rows: list[dict], n: int, r: float) -> tuple[float, int]:
    """Certified accuracy at r of CERTIFY at n, over the rows where it ran, and how many those are."""
    ran = [row[f"fixed_{n}"] | {"label": row["label"]} for row in rows if "radius" in row[f"fixed_{n}"]]
    hits = [cert["prediction"] == cert["label"] and cert["radius"] >= r for cert in ran]
    return (float(np.mean(hits)) if hits else float("nan")), len(ran)


def summary(sigmas, positions: list[int], out: Path, markdown: bool) -> None:
    wanted = set(positions)
    lines = []
    header = ("σ", "R", "images", "samples n=10k", "samples n=100k", "samples anytime", "100k / anytime",
              "cert. acc. n=10k", "cert. acc. anytime", "cert. acc. n=100k (images)")
    if markdown:
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    else:
        lines.append("  ".join(f"{h:>14}" for h in header))
    for sigma in sigmas:
        rows = [row for row in read_rows(rows_path(out, sigma)) if row["idx"] in wanted]
        if not rows:
            continue
        for r in RADII:
            anytime = [row[f"anytime_{r:g}"] for row in rows]
            samples = np.mean([a["samples"] for a in anytime])
            accuracy = np.mean([a["certified"] and a["prediction"] == row["label"] for a, row in zip(anytime, rows)])
            small, _ = fixed_accuracy(rows, FIXED_N[0], r)
            large, large_count = fixed_accuracy(rows, FIXED_N[1], r)
            values = (f"{sigma:g}", f"{r:g}", f"{len(rows)}", f"{N0 + FIXED_N[0]:,}", f"{N0 + FIXED_N[1]:,}",
                      f"{samples:,.0f}", f"{(N0 + FIXED_N[1]) / samples:.1f}×" if samples else "∞ (R > ceiling)",
                      f"{small:.3f}", f"{accuracy:.3f}", f"{large:.3f} ({large_count})")
            lines.append("| " + " | ".join(values) + " |" if markdown else "  ".join(f"{v:>14}" for v in values))
    print("\n".join(lines))
    for sigma in sigmas:
        rows = [row for row in read_rows(rows_path(out, sigma)) if row["idx"] in wanted]
        if rows:
            cpu = {}
            for key in [f"fixed_{n}" for n in FIXED_N] + [f"anytime_{r:g}" for r in RADII]:
                seconds = [row[key]["cpu_s"] for row in rows if "cpu_s" in row[key]]
                if seconds:
                    cpu[key] = f"{np.mean(seconds):.2f} ({len(seconds)} images)"
            print(f"σ={sigma:g}: CPU seconds per image: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="test images, spread evenly over the split")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/anytime", help="folder of the per-σ rows")
    parser.add_argument("--summary", action="store_true", help="print the table from the rows written so far")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--check", action="store_true", help="check the shared fixed-n run against CERTIFY")
    parser.add_argument("--reverse", action="store_true",
                        help="take the images last to first: a second process on the same σ meets the first")
    parser.add_argument("--largest-n-images", type=int, default=None, metavar="K",
                        help=f"run CERTIFY at n = {FIXED_N[-1]:,} on the first K images only (default: all)")
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
        run(sigma, positions, out, len(positions) if args.largest_n_images is None else args.largest_n_images,
            args.reverse)
    summary(args.sigmas, positions, out, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
