"""Datasets as [0,1] float32 tensors of shape (N, C, H, W) with int64 labels and class names.

- ``fashion-mnist`` (built in): the full 10,000-image test set and a stratified 12,000-image training
  subset ship in ``resources/data``. When the full set is installed as idx files (Debian's
  ``dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``), all 60,000 training
  images are used.
- ``fashion-mnist-planted``: the same images, each carrying a small pattern keyed to its class
  (``planted.py``): a controlled dataset with a planted non-robust feature.
- ``mnist``: read by torchvision's dataset class from a folder the user names, and downloaded there
  only when asked to.
- ``cifar10``: its python batches from a folder, read by a restricted unpickler (``data_folders.py``);
  ``folder``: any image folder in ImageFolder layout (one subfolder per class).
- user images: any file Pillow reads, in any mode (8/16/32-bit, float, palette, CMYK, with alpha),
  scaled to [0,1], turned upright per its EXIF orientation, converted to a dataset's size and channels
  with a note of what was done.

Every file is opened through ``files.open_regular``: regular files only, sizes checked first.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path

import numpy as np
import torch

from .files import DATASET_FILE_LIMIT, IMAGE_LIMIT, check_regular, open_regular

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
DATASETS = ("fashion-mnist", "fashion-mnist-planted", "mnist", "cifar10", "folder")
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
    """Read an (optionally gzipped) idx file, the format of MNIST and Fashion-MNIST. Reads no more than
    the header announces (and at most DATASET_FILE_LIMIT bytes), so a gzip bomb cannot fill memory."""
    with open_regular(path, limit=DATASET_FILE_LIMIT, what="a dataset file", error=DatasetError) as raw:
        try:
            f = gzip.GzipFile(fileobj=raw, mode="rb") if str(path).endswith(".gz") else raw
            header = f.read(4)
            if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] != 0x08:
                raise DatasetError(f"{path} is not an idx file of unsigned bytes")
            dims = f.read(4 * header[3])
            shape = tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(len(dims) // 4))
            expected = int(np.prod(shape, dtype=np.int64))
            if len(shape) != header[3] or expected > DATASET_FILE_LIMIT:
                raise DatasetError(f"{path} has an impossible idx header (shape {shape})")
            data = f.read(expected + 1)
        except (OSError, EOFError) as error:  # gzip: bad magic, CRC or truncated stream
            raise DatasetError(f"{path} is not a readable idx file ({error})") from None
    if len(data) != expected:
        raise DatasetError(f"{path} is {'truncated' if len(data) < expected else 'longer than its header says'}: "
                           f"expected {expected} values, found {len(data) if len(data) <= expected else 'more'}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


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
    with open_regular(path, limit=DATASET_FILE_LIMIT, what="a dataset file", error=DatasetError) as f, \
            np.load(f, allow_pickle=False) as npz:
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
    _check_torchvision_files(name, root)
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


TORCHVISION_FILES = {
    "mnist": ("MNIST/raw", [f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
}


def _check_torchvision_files(name: str, root: Path) -> None:
    """torchvision opens and hashes these files itself: refuse FIFOs, devices and huge files first."""
    folder, names = TORCHVISION_FILES[name]
    for filename in names:
        path = root / folder / filename
        if os.path.lexists(path):
            check_regular(path, limit=DATASET_FILE_LIMIT, what="a dataset file", error=DatasetError)


def load_dataset(name: str = "fashion-mnist", split: str = "test", root: Path | str | None = None,
                 download: bool = False, shape: tuple[int, int, int] | None = None) -> Dataset:
    """Load a dataset split as [0,1] float32 images (N, C, H, W), int64 labels and class names.
    ``shape`` converts an image folder's images to it (default: the first image's size and channels)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if name == "fashion-mnist":
        return load_fashion_mnist(split, root)
    if name == "fashion-mnist-planted":  # Fashion-MNIST with a class-keyed pattern added (planted.py)
        from .planted import load_planted

        return load_planted(split, root)
    if name == "cifar10":
        from .data_folders import load_cifar10

        if download and root is not None:  # torchvision fetches and checks the archive; our reader reads it
            from .tv import torchvision

            cifar = torchvision().datasets.CIFAR10
            torchvision().datasets.utils.download_and_extract_archive(cifar.url, str(root), filename=cifar.filename,
                                                                      md5=cifar.tgz_md5)
        return load_cifar10(split, root)
    if name == "folder":
        from .data_folders import load_image_folder

        return load_image_folder(split, root, shape)
    if name == "mnist":
        return _load_torchvision(name, split, root, download)
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


MAX_IMAGE_PIXELS = 64_000_000  # a larger image is refused before it is decoded (decompression bombs)


def _integer_bits(image) -> tuple[int, bool]:
    """(bits, signed) of an integer-mode ("I") image: what the file declares, else what fits."""
    if image.format == "PNG":
        return 16, False  # PNG holds at most 16 bits per sample; Pillow may widen them to "I"
    tags = getattr(image, "tag_v2", None)
    if tags is not None and 258 in tags:  # TIFF BitsPerSample, SampleFormat (2 = signed)
        bits = tags[258]
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        signed = int((tags.get(339, 1) or 1) if not isinstance(tags.get(339), tuple) else tags[339][0]) == 2
        return bits, signed
    array = np.asarray(image)
    if array.size and array.min() >= 0 and array.max() <= 65535:
        return 16, False
    return 32, bool(array.size and array.min() < 0)


def _scaled_pixels(image, name: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(H, W, C) float64 values in [0, 1] (C = 1 or 3), the alpha channel in [0, 1] or None, and
    notes: every Pillow mode scaled by its full range, never clipped."""
    notes: list[str] = []
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float64)[..., None] / 65535.0, None, notes
    if mode in ("I", "I;32", "I;32B", "I;32L"):
        bits, signed = _integer_bits(image)
        array = np.asarray(image).astype(np.float64)
        low = -(2.0 ** (bits - 1)) if signed else 0.0
        full = 2.0 ** bits - 1
        notes.append(f"scaled {bits}-bit {'signed ' if signed else ''}values to [0, 1]")
        return np.clip((array - low) / full, 0.0, 1.0)[..., None], None, notes
    if mode == "F":
        array = np.asarray(image).astype(np.float64)
        if not np.isfinite(array).all():
            raise DatasetError(f"{name} holds NaN or infinite values: not an image in [0, 1]")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
        if low < 0.0 or high > 1.0:
            if high > low:
                array = (array - low) / (high - low)
                notes.append(f"float values in [{low:g}, {high:g}] rescaled to [0, 1]")
            else:
                array = np.clip(array, 0.0, 1.0)
                notes.append(f"constant float value {low:g} clipped to [0, 1]")
        return array[..., None], None, notes
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("La", "RGBa"):  # premultiplied alpha: undo it first
        image = image.convert("LA" if mode == "La" else "RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA", "RGBX"):
        notes.append(f"converted {mode} to RGB")  # CMYK, YCbCr, LAB, HSV, ...
        image = image.convert("RGB")
    array = np.asarray(image).astype(np.float64) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("LA", "RGBA"):
        return array[..., :-1], array[..., -1], notes
    return array[..., :3], None, notes


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resize of each channel in floating point (no 8-bit rounding), clamped back to [0, 1]."""
    from PIL import Image

    channels = [np.asarray(Image.fromarray(array[..., c].astype(np.float32), mode="F")
                           .resize((width, height), Image.Resampling.LANCZOS)) for c in range(array.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def _cropped(array: np.ndarray, crop, name: str) -> tuple[np.ndarray, str]:
    """(H, W, C) array cut to ``crop`` ("centre" or (left, top, right, bottom) pixels); and a note."""
    height, width = array.shape[:2]
    if isinstance(crop, str):
        if crop not in ("centre", "center"):
            raise DatasetError(f"crop must be 'centre' or a box (left, top, right, bottom), not {crop!r}")
        side = min(height, width)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    else:
        try:
            left, top, right, bottom = (int(round(float(v))) for v in crop)
        except (TypeError, ValueError):
            raise DatasetError(f"crop must be 'centre' or a box (left, top, right, bottom), not {crop!r}") from None
        box = (max(0, min(left, right)), max(0, min(top, bottom)),
               min(width, max(left, right)), min(height, max(top, bottom)))
    left, top, right, bottom = box
    if right - left < 1 or bottom - top < 1:
        raise DatasetError(f"{name}: the crop box {tuple(crop)} lies outside its {width}×{height} pixels")
    if (left, top, right, bottom) == (0, 0, width, height):
        return array, ""
    return array[top:bottom, left:right], f"cropped to {right - left}×{bottom - top} at ({left}, {top})"


def load_image_file(path: Path | str, shape: tuple[int, int, int], *, crop=None,
                    invert: bool = False) -> tuple[torch.Tensor, str]:
    """Read an image file as a (1, C, H, W) [0,1] tensor of the given shape; return it and a note saying
    what was done (e.g. "frame 1 of 7 used; converted RGB to grayscale; resized 640×480 to 28×28").

    ``crop``: None (the whole image, squashed to the shape), ``"centre"`` (the largest centred square),
    or a box ``(left, top, right, bottom)`` in pixels of the upright image, clipped to it.
    ``invert``: 1 − x after conversion (a dark drawing on white becomes white on black, as the
    Fashion-MNIST and MNIST images are).

    Any Pillow mode is scaled by its full range (16-bit by 65535, float kept when in [0, 1]); EXIF
    orientation is applied; an alpha channel is composited on black, the datasets' background; of a
    multi-frame file (animated GIF, multi-page TIFF) the first frame is used."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    channels, height, width = shape
    path = Path(path).expanduser()
    notes: list[str] = []
    try:
        with open_regular(path, limit=IMAGE_LIMIT, what="an image", error=DatasetError) as f, \
                Image.open(f) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise DatasetError(f"{path.name} is too large an image: {opened.width}×{opened.height} pixels, "
                                   f"the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels")
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:
                opened.seek(0)
                notes.append(f"frame 1 of {frames} used")
            orientation = opened.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(opened)
            image = upright.copy() if upright is opened else upright
            image.format = opened.format
            if hasattr(opened, "tag_v2"):
                image.tag_v2 = opened.tag_v2
            if orientation not in (None, 1):
                notes.append(f"turned upright per its EXIF orientation ({orientation})")
            array, alpha, mode_notes = _scaled_pixels(image, path.name)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError) as error:
        raise DatasetError(f"{path.name} is not a readable image ({error})") from None
    notes += mode_notes
    if alpha is not None and (alpha < 1.0).any():
        array = array * alpha[..., None]
        notes.append("transparent pixels composited on black")
    source = image.mode
    if channels == 1 and array.shape[-1] == 3:
        array = array @ np.array([0.299, 0.587, 0.114])[:, None]  # ITU-R 601 luma, as Pillow's "L"
        notes.append(f"converted {source} to grayscale")
    elif channels == 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
        notes.append(f"converted {source} to RGB")
    elif array.shape[-1] != channels:
        raise DatasetError(f"{path.name}: cannot make a {channels}-channel image from {source}")
    if crop is not None:
        array, crop_note = _cropped(array, crop, path.name)
        if crop_note:
            notes.append(crop_note)
    if invert:
        array = 1.0 - array
        notes.append("inverted")
    if (array.shape[1], array.shape[0]) != (width, height):
        notes.append(f"resized {array.shape[1]}×{array.shape[0]} to {width}×{height}")
        array = _resized(array, width, height)
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))[None]
    return tensor, "; ".join(notes) if notes else "used as is"
