"""Datasets as [0,1] float32 tensors of shape (N, C, H, W) with int64 labels and class names.

- ``fashion-mnist`` (built in): the full 10,000-image test set and a stratified 12,000-image training
  subset ship in ``resources/data``. When the full set is installed as idx files (Debian's
  ``dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``), all 60,000 training
  images are used.
- ``mnist`` and ``cifar10``: read by torchvision's dataset classes from a folder the user names, and
  downloaded there only when asked to.
- user images: any PNG/JPEG, converted to a dataset's size and channels with a note of what was done.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DATASETS = ("fashion-mnist", "mnist", "cifar10")
SPLITS = ("train", "test")


class DatasetError(Exception):
    """A dataset could not be found or read; the message says where it looked and what it expected."""


@dataclass
class Dataset:
    name: str
    split: str
    images: torch.Tensor  # float32, (N, C, H, W), in [0, 1]
    labels: torch.Tensor  # int64, (N,)
    classes: tuple[str, ...]
    source: str = ""
    indices: torch.Tensor | None = field(default=None, repr=False)  # positions in the source split

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, indices) -> "Dataset":
        indices = torch.as_tensor(indices, dtype=torch.long)
        base = self.indices if self.indices is not None else torch.arange(len(self))
        return Dataset(self.name, self.split, self.images[indices], self.labels[indices],
                       self.classes, self.source, base[indices])

    def source_index(self, i: int) -> int:
        """Index of item ``i`` in the original split (what the TSV outputs call ``idx``)."""
        return int(self.indices[i]) if self.indices is not None else int(i)


def _from_uint8(images: np.ndarray, labels: np.ndarray, **kwargs) -> Dataset:
    if images.ndim == 3:
        images = images[:, None]
    return Dataset(images=torch.from_numpy(np.require(images, requirements=["C", "W"])).float().div_(255.0),
                   labels=torch.from_numpy(labels.astype(np.int64)), **kwargs)


def read_idx(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) idx file, the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape)


def _idx_folder(root: Path | None, split: str) -> Path | None:
    for folder in ([Path(root)] if root else []) + [DEBIAN_FASHION_MNIST]:
        if all((folder / name).exists() for name in IDX_FILES[split]):
            return folder
    if root:
        raise DatasetError(f"no Fashion-MNIST {split} files in {root}: expected {', '.join(IDX_FILES[split])}")
    return None


def builtin_path(filename: str) -> Path:
    return Path(str(importlib_resources.files("robustlens.resources").joinpath("data", filename)))


def load_fashion_mnist(split: str, root: Path | str | None = None, builtin_only: bool = False) -> Dataset:
    folder = None if builtin_only else _idx_folder(Path(root) if root else None, split)
    if folder is not None:
        images_file, labels_file = IDX_FILES[split]
        return _from_uint8(read_idx(folder / images_file), read_idx(folder / labels_file),
                           name="fashion-mnist", split=split, classes=FASHION_MNIST_CLASSES,
                           source=f"{folder} (full {split} split)")
    path = builtin_path(f"fashion-mnist-{split}.npz")
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
        indices = torch.from_numpy(npz["indices"].astype(np.int64)) if "indices" in npz else None
    dataset = _from_uint8(images, labels, name="fashion-mnist", split=split,
                          classes=FASHION_MNIST_CLASSES, source=f"built-in ({len(labels)} images)")
    dataset.indices = indices
    return dataset


def _load_torchvision(name: str, split: str, root: Path | str | None, download: bool) -> Dataset:
    from .tv import torchvision

    datasets = torchvision().datasets
    if root is None:
        raise DatasetError(f"{name} needs a folder: pass root=FOLDER (or --data-root); "
                           "add download=True to fetch it there when online")
    root = Path(root).expanduser()
    train = split == "train"
    try:
        if name == "mnist":
            ds = datasets.MNIST(str(root), train=train, download=download)
            images, labels, classes = ds.data.numpy(), ds.targets.numpy(), MNIST_CLASSES
        else:
            ds = datasets.CIFAR10(str(root), train=train, download=download)
            images = ds.data.transpose(0, 3, 1, 2)  # NHWC -> NCHW
            labels, classes = np.asarray(ds.targets), CIFAR10_CLASSES
    except RuntimeError as error:  # torchvision: "Dataset not found. You can use download=True ..."
        expected = ("MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte" if name == "mnist"
                    else "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
        raise DatasetError(f"{name} not found in {root}: expected {root}/{expected} "
                           f"(or download=True on a machine with internet) [{error}]") from None
    return _from_uint8(images, labels, name=name, split=split, classes=classes, source=str(root))


def load_dataset(name: str = "fashion-mnist", split: str = "test", root: Path | str | None = None,
                 download: bool = False) -> Dataset:
    """Load a dataset split as [0,1] float32 images (N, C, H, W), int64 labels and class names."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if name == "fashion-mnist":
        return load_fashion_mnist(split, root)
    if name in ("mnist", "cifar10"):
        return _load_torchvision(name, split, root, download)
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def load_image_file(path: Path | str, shape: tuple[int, int, int]) -> tuple[torch.Tensor, str]:
    """Read a PNG/JPEG as a (1, C, H, W) [0,1] tensor of the given shape; return it and a note saying
    what conversion was done (e.g. "converted RGB to grayscale, resized 640×480 to 28×28")."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no such file: {path}")
    try:
        with Image.open(path) as opened:
            image = opened.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path.name} is not a readable image ({error})") from None
    notes = []
    mode = "L" if channels == 1 else "RGB"
    if image.mode != mode:
        notes.append(f"converted {image.mode} to {'grayscale' if mode == 'L' else 'RGB'}")
        image = image.convert(mode)
    if image.size != (width, height):
        notes.append(f"resized {image.size[0]}×{image.size[1]} to {width}×{height}")
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    tensor = torch.from_numpy(array.copy()).float().div_(255.0)[None]
    return tensor, "; ".join(notes) if notes else "used as is"
