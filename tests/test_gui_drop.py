"""Loading by hand, as people do it, on Qt's offscreen platform: files dropped on the window (a
checkpoint through the Open model loader, a picture through the Open image dialog, a dataset folder,
anything else refused in one line), and a dataset folder without its files answered with what to put
where, in the window's words."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDialog

from robustlens.app.image_dialog import OpenImageDialog
from robustlens.app.open_model_dialog import ArchitectureDialog
from robustlens.app.window import MainWindow
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.models import build_model

FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")]


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=["fashion-mnist/standard"], select=0, use_settings=False,
                     panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=30_000)
    yield win
    win.close()


def _mime(*paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drop(window, *paths) -> None:
    """What Qt delivers when files are dropped on the window: a drag entering, then the drop."""
    mime = _mime(*paths)
    with warnings.catch_warnings():  # PySide6 marks this constructor deprecated; Qt 6 has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()


def test_a_dropped_checkpoint_loads_and_one_that_lacks_its_architecture_asks_for_it(window, qtbot, tmp_path,
                                                                                     noise_checkpoint, monkeypatch):
    drop(window, noise_checkpoint)  # a robustlens checkpoint says everything itself: no dialog
    key = str(noise_checkpoint.resolve())
    qtbot.waitUntil(lambda: key in window.ctx.model_keys(), timeout=30_000)
    assert next(m for m in window.ctx.models if m.key == key).meta.sigma == 0.5
    source = build_model("fmnist-cnn").eval()
    plain = tmp_path / "weights.bin"  # no checkpoint suffix: read as one all the same
    torch.save(source.state_dict(), plain)
    asked = []

    def choose(dialog):
        asked.append(dialog.info.path)
        dialog.arch.setCurrentIndex(dialog.arch.findData("fmnist-cnn"))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ArchitectureDialog, "exec", choose)
    drop(window, plain)
    wanted = f"{plain.resolve()}::arch=fmnist-cnn"
    qtbot.waitUntil(lambda: wanted in window.ctx.model_keys(), timeout=30_000)
    assert asked == [str(plain.resolve())]  # the dialog opened with the dropped file filled in
    model = next(m for m in window.ctx.models if m.key == wanted)
    assert model.meta.arch == "fmnist-cnn"
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():  # the key the drop made loads the file's weights, not a fresh network's
        assert torch.allclose(ModelCache("cpu").model(wanted)(x), source(x), atol=1e-5)


def test_a_dropped_picture_opens_through_the_image_dialog(window, qtbot, tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    shown = []

    def accept(dialog):
        shown.append(dialog.readable)
        dialog.whole.setChecked(True)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(OpenImageDialog, "exec", accept)
    drop(window, path)
    qtbot.waitUntil(lambda: window.ctx.selection is not None and window.ctx.selection.source == "photo.png",
                    timeout=10_000)
    assert shown == [True]
    assert tuple(window.ctx.selection.image.shape) == (1, 1, 28, 28)
    assert "64×48 to 28×28" in window.ctx.selection.note


def test_anything_else_dropped_gets_one_line_saying_what_can_be_dropped(window, qtbot, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model, not a picture")
    before = (window.ctx.model_keys(), window.ctx.selection)
    drop(window, notes)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)
    text = window.banner.text.text()
    assert "notes.txt" in text and "picture" in text and "checkpoint" in text and "\n" not in text
    assert (window.ctx.model_keys(), window.ctx.selection) == before


def test_a_dropped_folder_of_colour_pictures_becomes_the_dataset(window, qtbot, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "pictures" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "pictures" / name / f"{i}.png")
    drop(window, tmp_path / "pictures")
    qtbot.waitUntil(lambda: window.ctx.dataset.name == "folder", timeout=30_000)
    assert window.ctx.dataset.classes == ("cat", "dog") and window.ctx.dataset.image_shape == (3, 32, 32)
    assert window.dataset_picker.combo.currentData() == "folder:test"


def test_a_cifar_folder_without_its_batches_says_what_to_put_where(window, qtbot, tmp_path):
    before = window.ctx.dataset
    window.load_dataset("cifar10", "test", "cifar10:test", str(tmp_path))
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30_000)
    text = window.banner.text.text()
    for words in (str(tmp_path), "cifar-10-batches-py/", "data_batch_1", "data_batch_5", "test_batch",
                  "batches.meta", "cifar-10-python.tar.gz", "Folder…", "Image folder…"):
        assert words in text, (words, text)
    assert "download" not in text and "--data-root" not in text and "root=" not in text
    assert window.ctx.dataset is before
    window.banner.hide()
    window.load_dataset("mnist", "test", "mnist:test", str(tmp_path))
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30_000)
    text = window.banner.text.text()
    assert "MNIST/raw/" in text and "t10k-images-idx3-ubyte" in text and "Folder…" in text
    assert "download" not in text


def test_a_window_started_on_an_image_folder_opens_it(qtbot, tmp_path):
    """``robustlens --dataset folder --data-root DIR --only-model KEY``: the window's own arguments."""
    from robustlens.app.main import build_parser

    args = build_parser().parse_args(["--dataset", "folder", "--data-root", str(tmp_path / "pictures"),
                                      "--only-model", "fashion-mnist/standard"])
    assert (args.dataset, args.data_root, args.only_model) == ("folder", str(tmp_path / "pictures"),
                                                               ["fashion-mnist/standard"])
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "pictures" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "pictures" / name / "0.png")
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     use_settings=False, dataset=args.dataset, data_root=args.data_root, models=args.only_model,
                     panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.ctx.dataset is not None and win._models_ready, timeout=30_000)
    assert win.ctx.dataset.name == "folder" and win.ctx.dataset.classes == ("cat", "dog")
    assert win.model_picker.checked_keys() == ["fashion-mnist/standard"]
    win.close()
