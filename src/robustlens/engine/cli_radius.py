"""`robustlens certify --radius R --max-n N`: decide per image "certified at R or not" with the fewest
samples, and `robustlens analyze` for what it writes.

Each image runs the sequential test of ``engine/anytime.py`` (``decide_radius``) at level α: ĉA from n0
samples as in CERTIFY, then chunks cut at the looks of a confidence sequence for pA, stopping as soon as
the bound certifies R, as soon as R is out of reach (an anytime upper bound, or the ceiling within N), or
at N samples. The TSV (``idx label predict certified correct samples time``) goes through the same
resumable writer as certify's (``engine/resumable.py``), its settings line holding R, N and the schedule
of looks; certified accuracy at R is mean(certified and correct). With ``--ray`` the images are decided
by a cluster's workers (engine/cluster.py), each with the same seed, so the rows are the same.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .anytime import FIRST_LOOK, GROWTH, anytime_max_radius
from .certify_tsv import (DECISION_TOOL, DECISION_TSV_HEADER, decision_tsv_row, is_decision_tsv, read_certify_tsv,
                          read_decision_tsv)
from .cli import CLIError, nonnegative_float, positive_int
from .cli_estimates import say_smoothing_estimate


def add_radius_arguments(p) -> None:
    group = p.add_argument_group("radius decisions (anytime-valid, the fewest samples)")
    group.add_argument("--radius", type=nonnegative_float, metavar="R",
                       help="decide per image whether it is certified at L2 radius R, stopping as soon as the "
                            "anytime bound decides it (with --max-n; --n is then unused)")
    group.add_argument("--max-n", type=positive_int, metavar="N", help="the most estimation samples per image")


def run_radius_decisions(args, prepare, image_results) -> int:
    """``prepare``: cli_smoothing._prepare (model, smoothed classifier, images, the resumable table);
    ``image_results``: cli_smoothing.image_results (the decisions here, or with --ray on a cluster)."""
    if args.radius is None or args.max_n is None:
        raise CLIError("--radius and --max-n go together: give both to decide images at a radius")
    settings = {"mode": "radius decision", "radius": args.radius, "max_n": args.max_n, "n": None,
                "first_look": FIRST_LOOK, "growth": GROWTH}
    model, smooth, dataset, positions, out, table = prepare(args, columns=DECISION_TSV_HEADER, tool=DECISION_TOOL,
                                                            extra_settings=settings)
    ceiling = anytime_max_radius(smooth.sigma, args.max_n, args.alpha)
    if args.radius > ceiling:
        print(f"note: R = {args.radius:g} is above the anytime ceiling {ceiling:.3f} for max n = {args.max_n:,} "
              f"(σ = {smooth.sigma:g}, α = {args.alpha:g}): no image can be certified, each is decided at once",
              flush=True)
    began = time.perf_counter()
    outcomes = []
    with table:
        if table.kept:
            print(f"resuming {table.path}: {table.kept} of {len(positions)} rows already there are kept", flush=True)
        for fields in table.rows.values():  # idx label predict certified correct samples time
            outcomes.append((fields[3] == "1" and fields[4] == "1", int(fields[5])))
        todo = [p for p in positions if str(dataset.source_index(p)) not in table.rows]
        say_smoothing_estimate(args, smooth, dataset.images, todo)
        bar = tqdm(total=len(todo), desc=f"decide R={args.radius:g} σ={smooth.sigma:g}", unit="img",
                   dynamic_ncols=True)
        decisions = image_results(args, model, smooth, dataset, table, todo, bar, command="decide")
        for position, (prediction, certified, samples, seconds) in decisions:
            idx, label = dataset.source_index(position), int(dataset.labels[position])
            table.append(decision_tsv_row(idx, label, prediction, certified, samples, seconds))
            outcomes.append((certified and prediction == label, samples))
            bar.set_postfix(certified_acc=f"{np.mean([o[0] for o in outcomes]):.3f}",
                            samples=f"{np.mean([o[1] for o in outcomes]):,.0f}")
        bar.close()
    seconds = time.perf_counter() - began
    accuracy = np.mean([o[0] for o in outcomes]) if outcomes else 0.0
    samples = np.mean([o[1] for o in outcomes]) if outcomes else 0.0
    print(f"{len(todo)} images decided in {seconds:.1f} s at R = {args.radius:g} (σ = {smooth.sigma:g}, "
          f"n0 = {args.n0}, max n = {args.max_n:,}, α = {args.alpha:g}): certified accuracy at R {accuracy:.3f}, "
          f"{samples:,.0f} samples per image; wrote {out}")
    return 0


def analyze_decisions(args) -> list[Path]:
    """Print what the radius-decision TSVs among ``args.files`` say — certified accuracy at their R and
    samples per image — with every ordinary certify TSV's certified accuracy at the same R beside it.
    Returns the ordinary TSVs (``args.labels`` narrowed to them) for the radius table."""
    paths = [Path(f) for f in args.files]
    if args.labels and len(args.labels) != len(paths):
        raise CLIError(f"{len(args.labels)} labels for {len(paths)} files")
    labels = args.labels or [p.stem for p in paths]
    decided = [i for i, p in enumerate(paths) if p.is_file() and is_decision_tsv(p)]
    ordinary = [i for i in range(len(paths)) if i not in decided]
    if not decided:
        return paths, []
    others = [(labels[i], read_certify_tsv(paths[i])) for i in ordinary]
    print("radius decisions (certified at R = correct and certified; samples include the n0 selection samples):")
    tables = []
    for i in decided:
        table = read_decision_tsv(paths[i])
        if len(table) == 0:
            raise CLIError(f"{paths[i]}: no rows")
        tables.append(table)
        radius = "R = ?" if table.radius is None else f"R = {table.radius:g}"
        max_n = table.settings.get("max_n")
        print(f"{labels[i]}: {radius}, {len(table)} images, certified accuracy at R {table.certified_accuracy:.3f}, "
              f"{table.mean_samples:,.0f} samples per image (max n {max_n:,}), "
              f"abstained {int((table.prediction == -1).sum())}" if isinstance(max_n, int) else
              f"{labels[i]}: {radius}, {len(table)} images, certified accuracy at R {table.certified_accuracy:.3f}, "
              f"{table.mean_samples:,.0f} samples per image")
        if table.radius is not None:
            for label, other in others:
                print(f"    beside {label}: certified accuracy at R = {table.radius:g} "
                      f"{other.accuracy_at(table.radius)[0]:.3f} ({len(other)} images)")
    print()
    args.labels = [labels[i] for i in ordinary] if args.labels else None
    return [paths[i] for i in ordinary], tables
