"""Datasets as researchers keep them on disk, read without running anything a file contains:

- CIFAR-10's "python version" batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``,
  ``batches.meta``): pickles of a dict holding a uint8 array and lists. They are read by a restricted
  unpickler that resolves only numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``),
  so a replaced file holding code is refused instead of run (``pickle.load`` would run it);
- an image folder in torchvision's ImageFolder layout: one subfolder per class (sorted names are the
  classes, as in ImageFolder), PNG / JPEG / … files in each, read through ``data.load_image_file``
  (every Pillow mode, EXIF orientation, alpha). With ``train`` / ``test`` subfolders each is a split.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from .data import CIFAR10_CLASSES, Dataset, DatasetError, load_image_file
from .files import DATASET_FILE_LIMIT, read_regular

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_EXPECTED = f"{CIFAR10_FOLDER}/{{data_batch_1..5, test_batch, batches.meta}}"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_FOLDER_IMAGES = 100_000

# what numpy arrays pickle as (numpy < 2 writes numpy.core, numpy 2 numpy._core; CIFAR's files numpy.core)
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


def _reconstructor():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _Refused(pickle.UnpicklingError):
    """A global the restricted unpickler does not allow."""


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 writes bytes in a protocol-2 pickle (``_codecs.encode(text, 'latin1')``), and nothing else."""
    if encoding != "latin1" or not isinstance(text, str):
        raise _Refused(f"refused to decode with {encoding!r}")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, bytes and numpy arrays; any other global is refused. The
    original files are Python 2 pickles (strings as bytes); a batch re-pickled by Python 3 with
    protocol 2 spells bytes as ``_codecs.encode(…, 'latin1')``, which is allowed too."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) in _RECONSTRUCT:
            return _reconstructor()
        raise _Refused(f"refused to load {module}.{name}")


def read_pickled_batch(path: Path) -> dict:
    """A CIFAR batch file as a dict with str keys; DatasetError for anything but plain data and arrays."""
    data = read_regular(path, limit=DATASET_FILE_LIMIT, what="a dataset file", error=DatasetError)
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except _Refused as error:
        raise DatasetError(f"{path} is not a CIFAR-10 batch: {error} (the file holds more than data)") from None
    except Exception as error:  # noqa: BLE001 - truncated, not a pickle at all
        raise DatasetError(f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: "
                           f"{' '.join(str(error).split())[:100]})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 batch: it holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def cifar10_folder(root: Path | str) -> Path:
    """The folder holding the batches: ROOT/cifar-10-batches-py, or ROOT itself."""
    root = Path(root).expanduser()
    for folder in (root / CIFAR10_FOLDER, root):
        if (folder / "batches.meta").exists() or (folder / "test_batch").exists():
            return folder
    raise DatasetError(f"no CIFAR-10 batches in {root}: put the unpacked 'CIFAR-10 python version' "
                       f"(cifar-10-python.tar.gz) there, so that {root}/{CIFAR10_EXPECTED} exist, and choose {root}")


def load_cifar10(split: str, root: Path | str | None) -> Dataset:
    """CIFAR-10's python batches as (N, 3, 32, 32) images in [0, 1] with the file's class names."""
    if root is None:
        raise DatasetError(f"cifar10 needs a folder (--data-root DIR, or Folder… in the window) holding "
                           f"{CIFAR10_EXPECTED}")
    folder = cifar10_folder(root)
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").exists():
        names = read_pickled_batch(folder / "batches.meta").get("label_names")
        if isinstance(names, list) and names and all(isinstance(n, (bytes, str)) for n in names):
            classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    images, labels = [], []
    for name in CIFAR10_BATCHES[split]:
        path = folder / name
        if not path.exists():
            raise DatasetError(f"CIFAR-10 {split} batch {name} is missing from {folder} (expected {CIFAR10_EXPECTED})")
        batch = read_pickled_batch(path)
        data, batch_labels = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{path}: 'data' is not an N×3072 uint8 array (found "
                               f"{getattr(data, 'shape', type(data).__name__)})")
        if not isinstance(batch_labels, list) or len(batch_labels) != len(data) or not all(
                isinstance(v, int) and 0 <= v < len(classes) for v in batch_labels):
            raise DatasetError(f"{path}: 'labels' is not a list of {len(data)} class indices below {len(classes)}")
        images.append(data.reshape(-1, 3, 32, 32))  # each row: 1024 red, 1024 green, 1024 blue, row-major
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    stacked = np.ascontiguousarray(np.concatenate(images))
    return Dataset(name="cifar10", split=split, images=torch.from_numpy(stacked).float().div_(255.0),
                   labels=torch.from_numpy(np.concatenate(labels)), classes=classes, source=str(folder))


def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def _first_image_shape(path: Path) -> tuple[int, int, int]:
    """(channels, height, width) the first image sets for the folder: grayscale stays one channel."""
    from PIL import Image

    from .files import IMAGE_LIMIT, open_regular

    with open_regular(path, limit=IMAGE_LIMIT, what="an image", error=DatasetError) as f, Image.open(f) as image:
        channels = 1 if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3
        return channels, image.height, image.width


def load_image_folder(split: str, root: Path | str | None, shape: tuple[int, int, int] | None = None) -> Dataset:
    """An ImageFolder layout as a dataset. ``shape`` (C, H, W) converts every image to it; without it
    the first image's size and channels are used. ``Dataset.source`` says what was converted."""
    if root is None:
        raise DatasetError("an image folder needs a folder (--data-root DIR, or the dataset picker's Folder…) "
                           "with one subfolder of images per class")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    if (root / split).is_dir():
        root = root / split
    classes = _class_folders(root)
    files = [(path, label) for label, folder in enumerate(classes) for path in _image_files(folder)]
    if not files:
        raise DatasetError(f"no images in {root}: expected one subfolder per class (e.g. {root}/cat/1.png, "
                           f"{root}/dog/2.png) with {', '.join(s[1:] for s in IMAGE_SUFFIXES[:3])} … files")
    if len(files) > MAX_FOLDER_IMAGES:
        raise DatasetError(f"{root} holds {len(files)} images; the limit is {MAX_FOLDER_IMAGES}")
    shape = tuple(shape) if shape else _first_image_shape(files[0][0])
    images = torch.empty((len(files), *shape), dtype=torch.float32)
    converted = 0
    for i, (path, _) in enumerate(files):
        tensor, note = load_image_file(path, shape)
        images[i] = tensor[0]
        converted += note != "used as is"
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    note = f"; {converted} converted to {'×'.join(map(str, shape))}" if converted else ""
    return Dataset(name="folder", split=split, images=images, labels=labels,
                   classes=tuple(folder.name for folder in classes), source=f"{root} ({len(files)} images{note})")
