"""Ray throughput of certify on this machine: 1 and 2 local workers against one process, and the cost of a block.

Runs CERTIFY (Cohen et al. 2019) on the first --images Fashion-MNIST test images with the built-in noise model,
one torch thread everywhere, in rounds that interleave
  - local:  the single-process loop (engine/cluster_worker.smooth_image in this process), the baseline;
  - ray-1:  the same images in blocks of --block on 1 Ray worker (engine/cluster.WorkerPool.drive);
  - ray-2:  the same on 2 Ray workers;
  - the per-block overhead: the same images with a tiny n (--tiny-n) in blocks of 1 on 1 worker, minus the
    local loop at that n, per block — what a block costs beyond its images (ray.put of the images, the task
    round trip, the results back, the driver's bookkeeping).
Workers are started and warmed before the first round (start-up is printed separately: a one-off cost per
run). Each configuration keeps its best round, so a busy machine hurts all alike; the rows of every Ray run
are checked against the local ones. Prints ratios against the local baseline and the load (os.getloadavg).

    .venv/bin/python bench/bench_cluster.py [--images 16] [--n 2000] [--block 4] [--rounds 3] [--tiny-n 10]
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import ray
import torch

from robustlens.engine import cluster
from robustlens.engine.cluster_worker import smooth_image
from robustlens.engine.data import load_dataset
from robustlens.engine.models import load_model, weights_sha256
from robustlens.engine.smoothing import Smooth

MODEL = "fashion-mnist/noise-0.25"


def job_for(model, n: int, n0: int) -> dict:
    args = SimpleNamespace(model=MODEL, n0=n0, n=n, alpha=0.001, batch=1000, seed=0, eager=False, threads=1)
    return cluster.job_spec(args, model, model.meta.sigma, {"weights_sha256": weights_sha256(model.state_dict())})


COMPUTE: dict[str, float] = {}  # per configuration: the best round's summed per-image seconds (the time column)


def local(smooth, job, dataset, positions, name="local"):
    began = time.perf_counter()
    results = [smooth_image(smooth, job, dataset.images[p], dataset.source_index(p)) for p in positions]
    return _kept(name, time.perf_counter() - began, results)


def on_ray(pool, job, dataset, positions, block: int, workers: int, name="ray"):
    blocks = [positions[i:i + block] for i in range(0, len(positions), block)]
    began = time.perf_counter()
    tasks = [cluster.Task(job, ([dataset.source_index(p) for p in b], ray.put(dataset.images[b].numpy())), len(b))
             for b in blocks]
    results = [row for _, rows in pool.drive(tasks, workers, lambda k: None) for row in rows]
    return _kept(name, time.perf_counter() - began, results)


BEST: dict[str, float] = {}


def _kept(name, seconds, results):
    if seconds < BEST.get(name, float("inf")):
        BEST[name], COMPUTE[name] = seconds, sum(r[2] for r in results)
    return seconds, [r[:2] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--block", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny-n", type=int, default=10, help="n of the per-block overhead runs (n0 = 1)")
    options = parser.parse_args()

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    dataset = load_dataset("fashion-mnist", "test")
    model = load_model(MODEL, device="cpu")
    smooth = Smooth(model, len(model.meta.classes), model.meta.sigma)
    job, tiny = job_for(model, options.n, options.n0), job_for(model, options.tiny_n, 1)
    positions = list(range(options.images))

    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started_ray = time.perf_counter() - began
    pool = cluster.WorkerPool(ray, 0.0, 1.0, keep=True)
    began = time.perf_counter()
    on_ray(pool, tiny, dataset, positions[:2], 1, 2, "warm-up-ray")  # start and warm two workers (model loaded, graph built)
    started_workers = time.perf_counter() - began
    local(smooth, tiny, dataset, positions[:2], "warm-up")

    for _ in range(options.rounds):
        _, expected = local(smooth, job, dataset, positions)
        for name, workers in (("ray-1", 1), ("ray-2", 2)):
            _, rows = on_ray(pool, job, dataset, positions, options.block, workers, name)
            assert rows == expected, f"{name} rows differ from the single-process rows"
        local(smooth, tiny, dataset, positions, "local-tiny")
        on_ray(pool, tiny, dataset, positions, 1, 1, "ray-1-tiny-blocks-of-1")
    ray.shutdown()
    best = BEST

    per_image = best["local"] / options.images
    overhead = (best["ray-1-tiny-blocks-of-1"] - best["local-tiny"]) / options.images
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"one torch thread per process; best of {options.rounds} interleaved rounds")
    print(f"certify {options.images} images, n0={options.n0}, n={options.n}, blocks of {options.block}: "
          f"{per_image:.3f} s/image in one process")
    for name in ("ray-1", "ray-2"):
        print(f"  {name}: throughput {best['local'] / best[name]:.2f}× the single process "
              f"({best[name]:.2f} s vs {best['local']:.2f} s); per-image compute in the workers "
              f"{COMPUTE[name] / COMPUTE['local']:.2f}× the single process's")
    print(f"per-block overhead (blocks of 1 at n={options.tiny_n} on 1 worker, minus the local loop): "
          f"{overhead * 1000:.1f} ms per block = {overhead / per_image:.3f}× one image at n={options.n}")
    print(f"workers' forward: {pool.backend}; this process's: {smooth.backend}")
    print(f"one-off: ray.init {started_ray:.1f} s, two workers started and warmed {started_workers:.1f} s")


if __name__ == "__main__":
    main()
