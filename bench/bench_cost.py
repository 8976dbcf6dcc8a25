"""How close the window's cost estimates (engine/cost.py) come to the time the work then takes.

For each job below, in one process with one torch thread: the estimate from the short probe, then the
job itself timed, in rounds (estimate and job alternate, so the machine's load is shared between
them); the table gives the estimate over the measured time per round. Jobs: CERTIFY (Cohen et al.
2019) on Fashion-MNIST test images with the zoo's noise-0.25 model and on 3×32×32 images with a
random-weight CIFAR ResNet-20; the Experiments tab's robust-accuracy curve (PGD-20) of the zoo's
standard model. A fresh model per round: no remembered probe rate.

    .venv/bin/python bench/bench_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from robustlens.engine.architectures import CifarResNet
from robustlens.engine.cost import certify_estimate
from robustlens.engine.data import load_dataset
from robustlens.engine.models import build_model, load_model
from robustlens.engine.robustness import curves_estimate, robustness_curves
from robustlens.engine.smoothing import Smooth


def cifar_model():
    """cifar_resnet20 with random weights and the batch-norm statistics of one random batch (a deep
    random network with unit running variances overflows)."""
    model = build_model("cifar_resnet20", sigma=0.25, kind="noise")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(32, 3, 32, 32))
    return model.eval()


def certify_round(model, images, n: int, batch: int) -> tuple[float, float]:
    smooth = Smooth.from_model(model)
    smooth.prepare(tuple(images.shape[1:]))  # the traced forward, built before either is timed
    estimate = certify_estimate(smooth, images[:1], n0=100, n=n, batch_size=batch, images=len(images)).seconds
    start = time.perf_counter()
    for i, image in enumerate(images):
        smooth.certify(image, 100, n, 0.001, batch, generator=i)
    return estimate, time.perf_counter() - start


def curve_round(model, images, labels, eps_values, steps: int) -> tuple[float, float]:
    models = {"standard": model}
    estimate = curves_estimate(models, len(images), tuple(images.shape[1:]), eps_values, steps, 250).seconds
    start = time.perf_counter()
    robustness_curves(models, images, labels, norm="l2", eps_values=eps_values, steps=steps, batch_size=250,
                      keep="last")  # keep="last": every image attacked every step, as the estimate assumes
    return estimate, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = load_dataset("fashion-mnist", "test")
    cifar_images = torch.rand(2, 3, 32, 32)
    jobs = {
        "certify, Fashion-MNIST noise-0.25, 3 images, n = 10,000":
            lambda: certify_round(load_model("fashion-mnist/noise-0.25"), test.images[:3], 10_000, 1000),
        "certify, CIFAR ResNet-20, 2 images, n = 2,000":
            lambda: certify_round(cifar_model(), cifar_images, 2_000, 200),
        "robust accuracy vs ε, standard, 250 images, PGD-20 at 2 ε":
            lambda: curve_round(load_model("fashion-mnist/standard"), test.images[:250], test.labels[:250],
                                [0, 0.5, 1.5], 20),
    }
    print(f"{'job':60s} {'estimate':>9s} {'measured':>9s} {'ratio':>6s}")
    for _ in range(args.rounds):
        for name, run in jobs.items():
            estimate, measured = run()
            print(f"{name:60s} {estimate:8.1f}s {measured:8.1f}s {estimate / measured:6.2f}", flush=True)


if __name__ == "__main__":
    main()
