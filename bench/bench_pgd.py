"""PGD throughput and strength: robustlens against torchattacks, same models, same inputs, one process.

1. Speed: PGD steps per second (one step = one forward + one input-gradient pass over the batch) at
   batch 256 and 1,000, L∞ (torchattacks.PGD) and L2 (torchattacks.PGDL2), on the built-in standard
   and L2-robust models, one torch thread by default. Both start from the clean image (no random
   start), so both compute the same iterates, and the table gives the robust accuracy each reaches on
   the same images. Runs alternate between the contenders (in alternating order) and the best of a
   few repeats is kept; time is the process's CPU time by default (``--clock cpu``), which a busy
   shared machine disturbs far less than wall-clock time (with one thread the two agree on an idle
   machine). "ours" is ``pgd(...)`` (last iterate, as torchattacks); "ours·best" is ``attack(...)``,
   which also tracks the best iterate per sample. Our forward/backward runs in cache-sized
   sub-batches (``engine/attack_gradients.py``), with a ReLU before a 2×2 max-pooling moved after it and
   the pooling's gradient pass through PyTorch's channels-last kernel (``engine/pooling.py``), all with
   PyTorch's numbers. Measured on the 2-core machine (one thread): 1.41–1.58× torchattacks at batch
   256 and 2.09–2.46× at batch 1,000 with the machine to itself, 1.40–1.50× and 2.25–2.46× beside a
   torch job; with ``--retain-freed-memory`` (no page faults for either side) 1.33–1.47× and
   1.37–1.56× (README).
2. Strength: robust accuracy on the first test images under both attacks at the same ε, steps and
   step size, with and without random start (lower = stronger). Ours, as the experiments run it (no
   random start, best iterate), must be no weaker than the stronger torchattacks variant.

    .venv/bin/python bench/bench_pgd.py [--threads 1] [--images 500] [--models NAME_OR_PATH ...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import torch

from robustlens.engine.attack_jobs import AttackConfig, attack
from robustlens.engine.attacks import pgd
from robustlens.engine.data import load_dataset
from robustlens.engine.models import load_model, zoo_names

try:
    import torchattacks
except ImportError:  # pragma: no cover - the "dev" extra installs it
    sys.exit("torchattacks is not installed: pip install -e '.[dev]'")

DEFAULT_MODELS = ("fashion-mnist/standard", "fashion-mnist/l2-robust")
SETTINGS = {"linf": 0.1, "l2": 1.5}  # ε for the speed runs (the robust models' training radii)
# ε for the strength runs: where accuracy is neither ~100% nor ~0%, so differences show
STRENGTH_EPS = {"standard": {"linf": 0.02, "l2": 0.5}, "robust": {"linf": 0.1, "l2": 1.5}}
STEPS_AT_BATCH = {256: 10, 1000: 5}
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time


def retain_freed_memory() -> bool:
    """Have glibc serve large blocks from its heap and keep freed memory (``mallopt``), so that no buffer
    is freshly mapped, page-faulted and zeroed by the kernel. By default glibc maps blocks over a
    threshold (at most 32 MiB) afresh and unmaps them on free: torchattacks' whole-batch activations at
    batch 1,000 (100 MB per layer) pay that on every step, our cache-sized sub-batches do not. This
    setting takes that difference out of the ratio. False where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))


def short(name: str) -> str:
    return name.replace("__", "/").rsplit("/", 1)[-1].removesuffix(".pt")


def theirs(model, norm: str, eps: float, steps: int, random_start: bool = True):
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    return cls(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=random_start)


def ours(model, norm, eps, steps, images, labels):
    return pgd(model, images, labels, norm=norm, eps=eps, step_size=2.5 * eps / steps, steps=steps,
               random_start=False)


def ours_best(model, norm, eps, steps, images, labels):
    config = AttackConfig(norm=norm, eps=eps, steps=steps, random_start="none", keep="best")
    return attack(model, images, labels, config).adversarial


def timed(fn):
    began = clock()
    result = fn()
    return clock() - began, result


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


@torch.no_grad()
def accuracy(model, images, labels) -> float:
    return 100 * (model(images).argmax(1) == labels).float().mean().item()


def speed(models: dict, test, repeats: int, batches=tuple(STEPS_AT_BATCH)) -> None:
    print(f"\nPGD steps per second of {'CPU' if clock is time.process_time else 'wall-clock'} time "
          f"(higher is better; best of {repeats} runs; no random start for either, so the same iterates);"
          "\nacc: robust accuracy (%) on the batch under ours / torchattacks")
    header = (f"{'model':<14}{'norm':<6}{'batch':>6}{'steps':>6}{'ours':>8}{'ours·best':>11}{'torchattacks':>14}"
              f"{'ratio':>7}{'acc ours':>10}{'acc ta':>8}")
    print(header)
    print("-" * len(header))
    ratios = []
    for name, model in models.items():
        for norm, eps in SETTINGS.items():
            for batch in batches:
                steps = STEPS_AT_BATCH.get(batch, 10)
                x, y = test.images[:batch], test.labels[:batch]
                their = theirs(model, norm, eps, steps, random_start=False)
                runs = {"ours": lambda: ours(model, norm, eps, steps, x, y),
                        "best": lambda: ours_best(model, norm, eps, steps, x, y),
                        "theirs": lambda: their(x, y)}
                for fn in runs.values():  # warm-up (allocator, first-call overheads)
                    fn()
                timings = {k: float("inf") for k in runs}
                outputs = {}
                for repeat in range(repeats):  # interleaved, in alternating order: no contender always first
                    order = list(runs.items()) if repeat % 2 == 0 else list(runs.items())[::-1]
                    for key, fn in order:
                        seconds, outputs[key] = timed(fn)
                        timings[key] = min(timings[key], seconds)
                rate = {k: steps / t for k, t in timings.items()}
                ratio = rate["ours"] / rate["theirs"]
                ratios.append(ratio)
                print(f"{short(name):<14}{norm:<6}{batch:>6}{steps:>6}{rate['ours']:>8.2f}{rate['best']:>11.2f}"
                      f"{rate['theirs']:>14.2f}{ratio:>7.2f}{accuracy(model, outputs['ours'], y):>10.1f}"
                      f"{accuracy(model, outputs['theirs'], y):>8.1f}", flush=True)
    print(f"speed ratio ours/torchattacks: min {min(ratios):.2f}, geometric mean "
          f"{torch.tensor(ratios).log().mean().exp().item():.2f}  ({load()})")


def strength(models: dict, test, images: int, steps: int) -> bool:
    x, y = test.images[:images], test.labels[:images]
    print(f"\nRobust accuracy (%) on the first {images} test images, {steps} steps of 2.5·ε/steps "
          "(lower = stronger attack).\n  ours: no random start, best iterate (the experiments' default); "
          "ours·rs: uniform random start, best iterate;\n  torchattacks: its default random start; "
          "ta·no-rs: random_start=False; ratio: ours / the stronger torchattacks")
    header = f"{'model':<14}{'norm':<6}{'ε':>6}{'ours':>8}{'ours·rs':>9}{'torchattacks':>14}{'ta·no-rs':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    no_weaker = True
    for name, model in models.items():
        kind = "robust" if getattr(model.meta, "kind", "standard") == "adversarial" else "standard"
        for norm, eps in STRENGTH_EPS[kind].items():
            contenders = {
                "ours": lambda: attack(model, x, y, AttackConfig(norm=norm, eps=eps, steps=steps)).adversarial,
                "ours·rs": lambda: attack(model, x, y, AttackConfig(norm=norm, eps=eps, steps=steps,
                                                                    random_start="uniform")).adversarial,
                "theirs": lambda: theirs(model, norm, eps, steps)(x, y),
                "theirs·no-rs": lambda: theirs(model, norm, eps, steps, random_start=False)(x, y),
            }
            accuracy = {}
            for key, make in contenders.items():
                torch.manual_seed(0)
                adversarial = make()
                with torch.no_grad():
                    accuracy[key] = 100 * (model(adversarial).argmax(1) == y).float().mean().item()
            strongest_theirs = min(accuracy["theirs"], accuracy["theirs·no-rs"])
            no_weaker &= accuracy["ours"] <= strongest_theirs
            print(f"{short(name):<14}{norm:<6}{eps:>6g}{accuracy['ours']:>8.1f}{accuracy['ours·rs']:>9.1f}"
                  f"{accuracy['theirs']:>14.1f}{accuracy['theirs·no-rs']:>10.1f}"
                  f"{accuracy['ours'] / max(strongest_theirs, 1e-9):>8.2f}")
    print("ours is " + ("no weaker than torchattacks anywhere" if no_weaker else "WEAKER than torchattacks somewhere"))
    return no_weaker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20, help="PGD steps for the strength runs")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=list(STEPS_AT_BATCH),
                        help="batch sizes for the speed table")
    parser.add_argument("--no-strength", action="store_true", help="only the speed table")
    parser.add_argument("--clock", choices=CLOCKS, default="cpu", help="time measure for the speed table")
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="glibc keeps freed memory for reuse (mallopt), so neither side pays page faults")
    args = parser.parse_args()
    if args.retain_freed_memory and not retain_freed_memory():
        print("bench_pgd: --retain-freed-memory needs glibc's mallopt", file=sys.stderr)
        return 1
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    missing = [m for m in args.models if "/" in m and m not in zoo_names() and not m.endswith(".pt")]
    if missing:
        print(f"bench_pgd: models not built yet: {', '.join(missing)}", file=sys.stderr)
        return 1
    models = {name: load_model(name, device="cpu") for name in args.models}
    test = load_dataset("fashion-mnist", "test")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, torchattacks {torchattacks.__version__}, "
          f"{'freed memory retained, ' if args.retain_freed_memory else ''}{load()}")
    began = time.perf_counter()
    speed(models, test, args.repeats, args.batches)
    ok = args.no_strength or strength(models, test, args.images, args.steps)
    print(f"\n({time.perf_counter() - began:.0f} s, {load()})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
