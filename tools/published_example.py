"""A researcher's setup in miniature, for the screenshot of the window on their own data and model: a
colour image folder in torchvision's ImageFolder layout (``images/train``, ``images/test``, one
subfolder per class) and a CIFAR ResNet-20 trained on it with Gaussian noise (σ = 0.25), saved as
Cohen et al.'s ``train.py`` saves theirs (``models/cifar10/resnet20/noise_0.25/checkpoint.pth.tar``:
``{'epoch', 'arch', 'state_dict', 'optimizer'}``, the state_dict of ``Sequential(NormalizeLayer, net)``).

    python tools/published_example.py build/published-example     (what tools/screenshots.py runs)

The ten classes are coloured shapes (discs, squares, stripes, rings, checks) drawn at random places and
sizes over a random dark background with pixel noise: easy enough that five minutes of CPU training
give a model worth certifying, varied enough that the gallery is not ten copies. Nothing is rebuilt
when the files are there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = (("red-discs", "disc", (220, 40, 40)), ("blue-discs", "disc", (50, 90, 230)),
           ("green-squares", "square", (40, 190, 70)), ("yellow-squares", "square", (235, 210, 40)),
           ("blue-stripes", "stripes", (60, 110, 240)), ("orange-stripes", "stripes", (245, 140, 30)),
           ("yellow-rings", "ring", (240, 220, 60)), ("purple-rings", "ring", (160, 70, 210)),
           ("teal-checks", "checks", (30, 180, 170)), ("red-checks", "checks", (210, 50, 60)))
PER_CLASS = {"train": 60, "test": 16}
SIZE = 32
CHECKPOINT = Path("models/cifar10/resnet20/noise_0.25/checkpoint.pth.tar")


def draw(pattern: str, colour, rng: np.random.Generator) -> np.ndarray:
    """One 32×32 RGB picture of ``pattern`` in (a jittered) ``colour``."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    background = rng.uniform(10, 70, size=3)
    ink = np.clip(np.asarray(colour, dtype=np.float64) + rng.normal(0, 18, size=3), 0, 255)
    cy, cx = rng.uniform(10, 22, size=2)
    radius = rng.uniform(6, 11)
    if pattern == "disc":
        mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    elif pattern == "ring":
        distance = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        mask = np.abs(distance - radius) <= rng.uniform(1.5, 2.5)
    elif pattern == "square":
        mask = (np.abs(y - cy) <= radius * 0.8) & (np.abs(x - cx) <= radius * 0.8)
    elif pattern == "stripes":
        period = rng.uniform(5, 8)
        mask = ((x + y * rng.choice([-1, 1]) + rng.uniform(0, period)) % period) < period / 2
    else:  # checks
        cell = int(rng.integers(4, 7))
        mask = ((y // cell + x // cell) % 2) == 0
    image = np.where(mask[..., None], ink, background) + rng.normal(0, 10, size=(SIZE, SIZE, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, count in PER_CLASS.items():
        for name, pattern, colour in CLASSES:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(draw(pattern, colour, rng)).save(folder / split / name / f"{i:03d}.png")


def train_model(images: Path, out: Path, epochs: int) -> None:
    """cifar_resnet20 trained with Gaussian noise augmentation (Cohen et al.'s recipe, σ = 0.25) by
    ``robustlens.engine.train``, written in Cohen et al.'s checkpoint layout."""
    from robustlens.engine.data import load_dataset
    from robustlens.engine.train import TrainConfig, train

    torch.set_num_threads(1)
    dataset = load_dataset("folder", "train", images)
    config = TrainConfig(arch="cifar_resnet20", mode="noise", sigma=0.25, epochs=epochs, batch_size=50, lr=3e-3)
    model = train(config, dataset, progress=True).model.eval()
    state = {f"1.{key}": value for key, value in model.net.state_dict().items()}  # Sequential(NormalizeLayer, net)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epochs, "arch": "cifar_resnet20", "state_dict": state, "optimizer": {}}, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="published_example", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where images/ and models/ go")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    images, checkpoint = args.folder / "images", args.folder / CHECKPOINT
    if not (images / "test").is_dir():
        write_images(images)
    if not checkpoint.exists():
        train_model(images, checkpoint, args.epochs)
    print(f"{images} (ImageFolder, {len(CLASSES)} classes), {checkpoint} (Cohen et al.'s layout, σ = 0.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
