"""Check the certificate's geometry on the built-in noise model, for several test images.

For each image: CERTIFY at x (n0 = 100, n = 10,000, α = 0.001), an L2 PGD point (ε = 1) on the base
classifier, the plane through x along the attack, and the smoothed classifier's map on a grid of that
plane with PREDICT (n samples per point, the same α) at every point. Counts, for the grid points
strictly inside the certified disk, how many PREDICT answered and how many of those show the certified
class (Theorem 1 says all of them, up to PREDICT's own error rate α), and how many abstained.

    .venv/bin/python docs/geometry/make_report.py            # writes docs/geometry/results.{md,json}
    .venv/bin/python docs/geometry/make_report.py --images 0 5 9 --n 100 --grid 21
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustlens.engine.data import load_dataset
from robustlens.engine.geometry import GeometryRequest, geometry_job
from robustlens.engine.jobs import run_to_end
from robustlens.engine.model_cache import ModelCache

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-mnist/noise-0.25")
    parser.add_argument("--images", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--n", type=int, default=200, help="noise samples per grid point (PREDICT)")
    parser.add_argument("--grid", type=int, default=21, help="g's grid side (11, 21, 41, ...)")
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--certify-n", type=int, default=10_000)
    parser.add_argument("--eps", type=float, default=1.0, help="L2 PGD radius of the attack point")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cache = ModelCache("cpu")
    model = cache.model(args.model)
    sigma = float(model.meta.sigma)
    classes = model.meta.classes
    test = load_dataset("fashion-mnist", "test")
    rows = []
    began = time.perf_counter()
    for index in args.images:
        start = time.perf_counter()
        request = GeometryRequest(model_key=args.model, image=test.images[index], sigma=sigma, base_size=101,
                                  smooth_size=args.grid, n=args.n, alpha=args.alpha, certify_n=args.certify_n,
                                  attack_eps=args.eps, seed=index)
        result = run_to_end(geometry_job(cache, request))
        disk, check, attack = result.disk, result.disk_check, result.attack
        row = {
            "index": index, "label": classes[int(test.labels[index])],
            "certified": "abstain" if disk.abstained else classes[disk.cls], "radius": round(disk.radius, 4),
            "extent": round(result.extent, 4), "grid": args.grid, "n": args.n,
            "in_disk_points": check.checked if check else 0, "abstained": check.abstained if check else 0,
            "agreeing": check.agreeing if check else 0, "disagreeing": check.disagreeing if check else 0,
            "attack_distance": round(attack.distance, 4), "f_at_attack": classes[attack.base_class],
            "g_at_attack": "abstain" if attack.smoothed_class < 0 else classes[attack.smoothed_class],
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    total = {key: sum(r[key] for r in rows) for key in ("in_disk_points", "abstained", "agreeing", "disagreeing")}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"model": model.meta.name, "sigma": sigma, "alpha": args.alpha,
                                                    "certify_n": args.certify_n, "rows": rows, "total": total},
                                                   indent=1))
    lines = [f"Model {model.meta.name} (σ = {sigma:g}); CERTIFY n0 = 100, n = {args.certify_n:,}, α = {args.alpha:g}; "
             f"g on a {args.grid}×{args.grid} grid, PREDICT with n = {args.n} per point; attack: L2 PGD ε = {args.eps:g} "
             f"on f. {time.perf_counter() - began:.0f} s in all.", "",
             "| test image | label | certified | R | in-disk points | abstained | certified class | other class "
             "| ‖x_adv − x‖₂ | f(x_adv) | g(x_adv) |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['index']} | {r['label']} | {r['certified']} | {r['radius']:.3f} | {r['in_disk_points']} "
                     f"| {r['abstained']} | {r['agreeing']} | {r['disagreeing']} | {r['attack_distance']:.2f} "
                     f"| {r['f_at_attack']} | {r['g_at_attack']} |")
    lines.append(f"| **all** | | | | **{total['in_disk_points']}** | **{total['abstained']}** "
                 f"| **{total['agreeing']}** | **{total['disagreeing']}** | | | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
