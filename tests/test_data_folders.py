"""Datasets as published, from files written here in their exact formats: CIFAR-10's python batches
(read by a restricted unpickler that runs nothing) and an ImageFolder of PNG / JPEG files."""

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from robustlens.engine.data import CIFAR10_CLASSES, DatasetError, load_dataset
from robustlens.engine.data_folders import load_image_folder, read_pickled_batch

PER_BATCH = 12


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the CIFAR-10 files: protocol 2, every byte string (keys,
    names, the array's raw data) as a BINSTRING opcode, numpy's reconstructor as numpy.core.multiarray."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def cifar_pickle(obj) -> bytes:
    stream = io.BytesIO()
    Python2Pickler(stream, protocol=2).dump(obj)
    data = stream.getvalue()
    assert b"_codecs" not in data
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar_folder(root, seed=0):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=PER_BATCH)]
        (folder / name).write_bytes(cifar_pickle({
            b"batch_label": f"{name} of synthetic".encode(), b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(PER_BATCH)]}))
        batches[name] = (data, labels)
    (folder / "batches.meta").write_bytes(cifar_pickle({
        b"num_cases_per_batch": PER_BATCH, b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}))
    return folder, batches


def test_cifar10_batches_read_exactly_as_their_layout_says(tmp_path):
    _, batches = write_cifar_folder(tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    data, labels = batches["test_batch"]
    assert test.images.shape == (PER_BATCH, 3, 32, 32) and test.classes == CIFAR10_CLASSES
    assert test.labels.tolist() == labels
    # pixel (c, y, x) of image i is byte c·1024 + y·32 + x of row i
    for i, c, y, x in [(0, 0, 0, 0), (3, 1, 5, 31), (11, 2, 31, 7)]:
        assert test.images[i, c, y, x].item() == pytest.approx(data[i, c * 1024 + y * 32 + x] / 255.0)
    python3 = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)  # bytes as _codecs.encode(…)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(python3)
    assert torch.equal(load_dataset("cifar10", "test", tmp_path).images, test.images)
    train = load_dataset("cifar10", "train", tmp_path / "cifar-10-batches-py")  # the folder itself works too
    assert len(train) == 5 * PER_BATCH
    assert train.labels[PER_BATCH:2 * PER_BATCH].tolist() == batches["data_batch_2"][1]


class _Runs:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates the marker file if the pickle is ever run


def test_a_batch_holding_code_is_refused_and_never_run(tmp_path):
    folder, _ = write_cifar_folder(tmp_path)
    marker = tmp_path / "ran"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Runs(marker), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match="refused to load io.open"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 batch"):
        read_pickled_batch(folder / "test_batch")
    (folder / "test_batch").write_bytes(cifar_pickle({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DatasetError, match="not an N×3072 uint8 array"):
        load_dataset("cifar10", "test", tmp_path)


def test_a_missing_cifar_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", "test", tmp_path)
    message = str(error.value)
    assert "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}" in message
    assert "download=True" not in message and "CIFAR-10 python version" in message


def write_image_folder(root, size=32):
    """Two classes of colour PNGs (and a JPEG and a grayscale PNG) in ImageFolder layout."""
    rng = np.random.default_rng(1)
    pixels = {}
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{i}.png")
            pixels[(name, i)] = array
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(root / "dog" / "3.jpg")
    Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8), mode="L").save(root / "cat" / "9.png")
    return pixels


def test_an_image_folder_reads_classes_labels_and_exact_pixels(tmp_path):
    pixels = write_image_folder(tmp_path)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset("folder", "test", tmp_path)
    assert ds.classes == ("cat", "dog") and ds.images.shape == (8, 3, 32, 32)
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.allclose(ds.images[1], torch.from_numpy(pixels[("cat", 1)]).permute(2, 0, 1).float() / 255)
    gray = ds.images[3]  # cat/9.png: grayscale copied into three channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert "1 converted to 3×32×32" in ds.source
    small = load_image_folder("test", tmp_path, shape=(3, 16, 16))
    assert small.images.shape == (8, 3, 16, 16) and "8 converted" in small.source


def test_an_image_folder_with_splits_and_an_empty_one(tmp_path):
    write_image_folder(tmp_path / "train")
    write_image_folder(tmp_path / "test", size=8)
    assert load_dataset("folder", "train", tmp_path).images.shape[-1] == 32
    assert load_dataset("folder", "test", tmp_path).images.shape[-1] == 8
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images in .*one subfolder per class"):
        load_dataset("folder", "test", tmp_path / "empty")
    with pytest.raises(DatasetError, match="needs a folder"):
        load_dataset("folder", "test", None)


def test_certify_a_cohen_checkpoint_on_an_image_folder_writes_a_tsv(tmp_path):
    from test_published import CohenNormalizeLayer, cohen_checkpoint, randomised

    from robustlens.engine.architectures import CifarResNet
    from robustlens.engine.models import COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD

    write_image_folder(tmp_path / "images")
    checkpoint = tmp_path / "models" / "cifar10" / "resnet20" / "noise_0.25" / "checkpoint.pth.tar"
    cohen_checkpoint(checkpoint, "cifar_resnet20", randomised(CifarResNet(20)), COHEN_CIFAR10_MEAN,
                     COHEN_CIFAR10_STD)
    assert CohenNormalizeLayer  # the normaliser the file's state_dict leaves out
    out = tmp_path / "cert.tsv"
    done = subprocess.run([sys.executable, "-m", "robustlens", "certify", "--model", str(checkpoint), "--dataset",
                           "folder", "--data-root", str(tmp_path / "images"), "--sigma", "0.25", "--n", "200",
                           "--max", "3", "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr
    rows = [line for line in out.read_text().splitlines() if not line.startswith("#")]  # the settings line
    assert rows[0].split("\t")[:2] == ["idx", "label"] and len(rows) == 4


def _env():
    import os

    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
