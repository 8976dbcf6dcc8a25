"""File → Open model… on Qt's offscreen platform: a file that lacks its architecture (or σ) is asked
for it, and the model key the dialog returns loads, through the window's engine, the file's network."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog

from robustlens.app import open_model_dialog as dialog_module
from robustlens.app.open_model_dialog import ArchitectureDialog
from robustlens.app.window import MainWindow
from robustlens.engine.architectures import CifarResNet
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.models import COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD, build_model
from robustlens.engine.published import describe_model_file, split_model_key
from test_published import CohenNormalizeLayer, cohen_checkpoint, madry_checkpoint, randomised


def test_a_plain_state_dict_is_asked_its_architecture_and_sigma(qtbot, tmp_path):
    net = randomised(CifarResNet(20))
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    info = describe_model_file(path)
    assert (info.format, info.needs_arch, info.asks_sigma, info.sigma) == ("state_dict", True, True, None)
    dialog = ArchitectureDialog(info)
    qtbot.addWidget(dialog)
    labels = [dialog.arch.itemText(i) for i in range(dialog.arch.count())]
    assert "cifar_resnet110 — 3×32×32 input, 10 classes (cifar10)" in labels
    assert "resnet50 — 3×224×224 input, 1000 classes (imagenet)" in labels
    assert dialog.arch.isEnabled() and not dialog.noise.isChecked() and not dialog.sigma.isEnabled()
    dialog.arch.setCurrentIndex(dialog.arch.findData("cifar_resnet20"))
    dialog.noise.setChecked(True)
    dialog.sigma.setValue(0.5)
    key = dialog.model_key()
    assert split_model_key(key) == (str(path), "cifar_resnet20", 0.5)
    model = ModelCache("cpu").model(key)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(CohenNormalizeLayer(COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)(x)), atol=1e-5)
    assert model.meta.sigma == 0.5


def test_a_cohen_checkpoint_is_asked_only_its_sigma_prefilled_from_its_folder(qtbot, tmp_path):
    path = tmp_path / "cifar10" / "resnet20" / "noise_0.50" / "checkpoint.pth.tar"
    cohen_checkpoint(path, "cifar_resnet20", randomised(CifarResNet(20)), COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)
    info = describe_model_file(path)
    assert (info.format, info.arch, info.needs_arch, info.asks_sigma, info.sigma) == (
        "cohen", "cifar_resnet20", False, True, 0.5)
    dialog = ArchitectureDialog(info)
    qtbot.addWidget(dialog)
    assert not dialog.arch.isEnabled() and dialog.arch.currentData() == "cifar_resnet20"
    assert dialog.noise.isChecked() and dialog.sigma.value() == 0.5
    assert split_model_key(dialog.model_key()) == (str(path), None, 0.5)
    madry = tmp_path / "madry.pt"
    madry_checkpoint(madry, randomised(CifarResNet(20)), [0.5] * 3, [0.25] * 3)
    assert describe_model_file(madry).needs_arch
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert describe_model_file(tmp_path / "junk.pt").format == "unknown"


def test_the_window_opens_a_plain_state_dict_with_the_architecture_chosen(qtbot, tmp_path, monkeypatch):
    source = build_model("fmnist-cnn").eval()
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=["fashion-mnist/standard"], select=0, use_settings=False,
                     panels=[("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")])
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=30_000)
    monkeypatch.setattr(dialog_module.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))

    def choose(dialog):
        dialog.arch.setCurrentIndex(dialog.arch.findData("fmnist-cnn"))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ArchitectureDialog, "exec", choose)
    win.open_model_dialog()
    key = f"{path.resolve()}::arch=fmnist-cnn"
    assert key in win.model_picker.checked_keys()
    labels = [win.model_picker.list.item(i).text() for i in range(win.model_picker.list.count())]
    assert "plain.pt · fmnist-cnn" in labels
    qtbot.waitUntil(lambda: key in [m.key for m in win.ctx.models], timeout=30_000)
    info = next(m for m in win.ctx.models if m.key == key)
    assert info.meta.arch == "fmnist-cnn" and info.meta.name == "plain"
    monkeypatch.setattr(ArchitectureDialog, "exec", lambda dialog: QDialog.DialogCode.Rejected)
    count = win.model_picker.list.count()
    torch.save(source.state_dict(), tmp_path / "other.pt")
    monkeypatch.setattr(dialog_module.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "other.pt"), "")))
    win.open_model_dialog()  # cancelled: nothing added
    assert win.model_picker.list.count() == count
    win.close()
