import numpy as np
import pytest
import torch
from PIL import Image

from robustlens.engine.data import (FASHION_MNIST_CLASSES, DatasetError, load_dataset, load_fashion_mnist,
                                    load_image_file)


def check_dataset(ds, n):
    assert len(ds) == n
    assert ds.images.dtype == torch.float32 and ds.images.shape == (n, 1, 28, 28)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    assert ds.images.max() == 1.0  # uint8 255 maps to exactly 1, not 255
    assert set(ds.labels.tolist()) == set(range(10))
    assert ds.classes == FASHION_MNIST_CLASSES


def test_builtin_test_split_is_the_full_test_set(fmnist_test):
    check_dataset(fmnist_test, 10_000)
    assert torch.bincount(fmnist_test.labels).tolist() == [1000] * 10


def test_builtin_train_subset_is_stratified_and_matches_the_source_indices():
    train = load_fashion_mnist("train", builtin_only=True)
    check_dataset(train, 12_000)
    assert torch.bincount(train.labels).tolist() == [1200] * 10
    assert len(set(train.indices.tolist())) == 12_000
    full = load_dataset("fashion-mnist", "train")
    if len(full) == 60_000:  # Debian's dataset-fashion-mnist installed: the subset is a true subset
        picked = train.indices[:50]
        assert torch.equal(full.images[picked], train.images[:50])
        assert torch.equal(full.labels[picked], train.labels[:50])


def test_subset_keeps_source_indices(fmnist_test):
    sub = fmnist_test.subset([5, 7, 9])
    assert [sub.source_index(i) for i in range(3)] == [5, 7, 9]
    assert torch.equal(sub.subset([2]).images[0], fmnist_test.images[9])


def test_unknown_dataset_and_split_and_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet", "test")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("fashion-mnist", "validation")
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_dataset("mnist", "test", root=tmp_path)
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_image_file_is_converted_to_the_dataset_shape_with_a_note(tmp_path):
    rgb = np.zeros((60, 40, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    x, note = load_image_file(tmp_path / "red.png", (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert "grayscale" in note and "40×60 to 28×28" in note
    assert abs(x.mean().item() - 0.299) < 0.01  # ITU-R 601 luma of pure red
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_image_file(tmp_path / "junk.png", (1, 28, 28))
    with pytest.raises(DatasetError, match="no such file"):
        load_image_file(tmp_path / "absent.png", (1, 28, 28))
