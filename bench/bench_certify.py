"""Certification throughput and memory: robustlens' CERTIFY against the paper's plain loop and ART, one process.

1. Speed (printed second): noise samples per second of a full CERTIFY (n0 = 100 selection samples + n estimation samples)
   of one test image with the built-in noise model, at batch sizes 100, 400, 1000 and 2000, for
   - ours:       robustlens.engine.smoothing.Smooth.certify (in-place noise into one preallocated buffer,
                 inference_mode, forward sub-batches of 256, frozen oneDNN TorchScript when it reproduces
                 the model, bincount);
   - ours-eager: the same without the TorchScript graph (``optimize=False``), to show what it buys;
   - reference:  the paper's algorithm as a plain loop, as in locuslab/smoothing code/core.py (repeat the
                 image, add randn noise, argmax, count with a Python loop), under torch.no_grad;
   - ART:        adversarial-robustness-toolbox's PyTorchRandomizedSmoothing.certify on the same model.
   Methods alternate inside each repeat and the best repeat is kept, so a busy machine hurts all alike;
   samples per second of CPU time are printed too, since on a shared machine wall time mostly measures
   the neighbours.
2. Memory at n = 100,000 (batch 1000; measured first, smallest user first, so ru_maxrss growth means something): peak resident memory above the level before the run (RSS sampled
   every 2 ms by a thread), the tracemalloc peak (numpy and Python allocations; torch's CPU allocator is
   invisible to it) and the growth of ru_maxrss.

    .venv/bin/python bench/bench_certify.py [--model NAME_OR_FILE] [--threads N] [--n 5000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import threading
import time
import tracemalloc

import numpy as np
import torch
from scipy.stats import beta, norm

from robustlens.engine.data import load_dataset
from robustlens.engine.models import load_model, zoo_names
from robustlens.engine.smoothing import Smooth

DEFAULT_MODEL = "fashion-mnist/noise-0.25"
BATCH_SIZES = (100, 400, 1000, 2000)
N0, ALPHA = 100, 0.001


class ReferenceSmooth:
    """The paper's CERTIFY as written in locuslab/smoothing code/core.py (CPU instead of 'cuda')."""

    ABSTAIN = -1

    def __init__(self, base_classifier, num_classes, sigma):
        self.base_classifier, self.num_classes, self.sigma = base_classifier, num_classes, sigma

    def certify(self, x, n0, n, alpha, batch_size):
        self.base_classifier.eval()
        counts_selection = self._sample_noise(x, n0, batch_size)
        c_a_hat = counts_selection.argmax().item()
        counts_estimation = self._sample_noise(x, n, batch_size)
        n_a = counts_estimation[c_a_hat].item()
        p_a_bar = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0  # = proportion_confint(..., "beta")[0]
        if p_a_bar < 0.5:
            return self.ABSTAIN, 0.0
        return c_a_hat, self.sigma * norm.ppf(p_a_bar)

    def _sample_noise(self, x, num, batch_size):
        with torch.no_grad():
            counts = np.zeros(self.num_classes, dtype=int)
            for _ in range(math.ceil(num / batch_size)):
                this_batch_size = min(batch_size, num)
                num -= this_batch_size
                batch = x.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(batch) * self.sigma
                predictions = self.base_classifier(batch + noise).argmax(1)
                counts += self._count_arr(predictions.cpu().numpy(), self.num_classes)
            return counts

    @staticmethod
    def _count_arr(arr, length):
        counts = np.zeros(length, dtype=int)
        for idx in arr:
            counts[idx] += 1
        return counts


def make_art(model, sigma, num_classes, shape):
    """ART's randomized-smoothing classifier on the same model, or (None, why not)."""
    try:
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
    except Exception as error:  # noqa: BLE001 - any import failure means: skip ART
        return None, f"not importable ({type(error).__name__}: {error})"
    art = PyTorchRandomizedSmoothing(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=shape,
                                     nb_classes=num_classes, device_type="cpu",
                                     sample_size=N0, scale=sigma, alpha=ALPHA)
    note = "ART 1.20 PyTorchRandomizedSmoothing.certify"
    try:
        import statsmodels  # noqa: F401 - ART's Clopper-Pearson bound comes from statsmodels
    except ImportError:
        # same number, from scipy: proportion_confint(k, n, 2α, "beta")[0] is the α-quantile of Beta(k, n−k+1)
        art._lower_confidence_bound = lambda k, n: float(beta.ppf(art.alpha, k, n - k + 1)) if k > 0 else 0.0
        note += " (statsmodels is not installed: its bound computed with the identical scipy beta quantile)"
    return art, note


def methods(model, sigma, num_classes, shape, use_art: bool):
    ours = Smooth(model, num_classes, sigma)
    eager = Smooth(model, num_classes, sigma, optimize=False)
    reference = ReferenceSmooth(model, num_classes, sigma)
    runs = {
        "ours": lambda x, n, b: ours.certify(x, N0, n, ALPHA, b),
        "ours-eager": lambda x, n, b: eager.certify(x, N0, n, ALPHA, b),
        "reference": lambda x, n, b: reference.certify(x.unsqueeze(0), N0, n, ALPHA, b),
    }
    notes = {}
    if use_art:
        art, notes["ART"] = make_art(model, sigma, num_classes, shape)
        if art is not None:
            runs["ART"] = lambda x, n, b: art.certify(x.unsqueeze(0).numpy(), n=n, batch_size=b)
    return runs, notes, ours


def throughput(runs, x, n, batch_sizes, repeats):
    """Best samples per second of wall time and per second of this process's CPU time (the second is what
    a busy, shared machine does not distort: it counts only the time the run was actually scheduled)."""
    wall = {name: {} for name in runs}
    cpu = {name: {} for name in runs}
    for _ in range(repeats):
        for batch in batch_sizes:
            for name, run in runs.items():
                began, began_cpu = time.perf_counter(), time.process_time()
                run(x, n, batch)
                seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
                wall[name][batch] = max(wall[name].get(batch, 0.0), (N0 + n) / seconds)
                cpu[name][batch] = max(cpu[name].get(batch, 0.0), (N0 + n) / cpu_seconds)
    return wall, cpu


def print_table(title, best, runs, batch_sizes):
    print(title)
    others = [m for m in runs if m != "ours"]
    print(f"{'batch':>6}" + "".join(f"{m:>12}" for m in runs) + "".join(f"{'ours/' + m:>17}" for m in others))
    for batch in batch_sizes:
        row = f"{batch:>6}" + "".join(f"{best[m][batch]:>12,.0f}" for m in runs)
        row += "".join(f"{best['ours'][batch] / best[m][batch]:>16.2f}×" for m in others)
        print(row)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(run, x, n, batch):
    """(seconds, CPU seconds, peak RSS above the start, tracemalloc peak, ru_maxrss growth) of one run."""
    start = rss_bytes()
    peak = [start]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    sampler.start()
    began, began_cpu = time.perf_counter(), time.process_time()
    run(x, n, batch)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    stop.set()
    sampler.join()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak[0] = max(peak[0], rss_bytes())
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return seconds, cpu_seconds, peak[0] - start, traced_peak, max_after - max_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"noise model (default {DEFAULT_MODEL}) or checkpoint file")
    parser.add_argument("--sigma", type=float, help="default: the model's training σ")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--n", type=int, default=5_000, help="estimation samples per timed CERTIFY")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--memory-batch", type=int, default=1000)
    parser.add_argument("--no-art", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.model or DEFAULT_MODEL
    if args.model is None and DEFAULT_MODEL not in zoo_names():
        print(f"note: {DEFAULT_MODEL} is not built yet; pass --model CHECKPOINT to bench another noise model")
        return 1
    model = load_model(name, device="cpu")
    sigma = args.sigma or model.meta.sigma or 0.25
    num_classes = len(model.meta.classes)
    x = load_dataset(model.meta.dataset, "test").images[0]
    runs, notes, ours = methods(model, sigma, num_classes, tuple(x.shape), not args.no_art)
    for run in runs.values():  # warm-up: tracing, first-call allocations, ART's setup
        run(x, 200, 200)

    print(f"model {name} (σ = {sigma:g}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; ours runs as {ours.backend}")
    for method, note in notes.items():
        print(f"{method}: {note}")
    print(f"\nmemory of one CERTIFY at n = {args.memory_n:,}, batch {args.memory_batch} "
          "(MiB above the start of the run):")
    print(f"{'method':<12}{'seconds':>9}{'CPU s':>9}{'peak RSS':>10}{'tracemalloc':>13}{'ru_maxrss':>11}")
    mib = 1 / 2 ** 20
    for method, run in runs.items():  # smallest first: ru_maxrss only grows
        if method == "ours-eager":
            continue
        seconds, cpu_seconds, rss, traced, maxrss = peak_memory(run, x, args.memory_n, args.memory_batch)
        print(f"{method:<12}{seconds:>9.1f}{cpu_seconds:>9.1f}{rss * mib:>10.1f}"
              f"{traced * mib:>13.1f}{maxrss * mib:>11.1f}")
    wall, cpu = throughput(runs, x, args.n, args.batch_sizes, args.repeats)
    what = f"CERTIFY with n0 = {N0}, n = {args.n:,}, best of {args.repeats}"
    print_table(f"\nnoise samples per second of wall time ({what}):", wall, runs, args.batch_sizes)
    print_table(f"\nnoise samples per second of CPU time ({what}):", cpu, runs, args.batch_sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
