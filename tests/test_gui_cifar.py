"""3×32×32 end to end on Qt's offscreen platform: a CIFAR-10 folder in the exact python-batch format
and an ImageFolder of 32×32 colour pictures, through the gallery (colour thumbnails), the strip, and
the Certify, Attack and Features (inversion) tabs, with CIFAR-shaped models as published: a random-
weight CIFAR ResNet-20 in Cohen et al.'s checkpoint format (σ from its folder name) and a plain
state_dict of another."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app.window import MainWindow
from robustlens.engine.architectures import CifarResNet
from robustlens.engine.model_cache import load_by_key
from robustlens.engine.models import COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD
from robustlens.engine.smoothing import Smooth
from test_data_folders import write_cifar_folder, write_image_folder
from test_published import calibrated, cohen_checkpoint

CERTIFY = {"n0": 10, "n": 100, "alpha": 0.001, "batch": 100, "seed": 3}


@pytest.fixture(scope="module")
def cifar_models(tmp_path_factory):
    """(Cohen et al.'s noise_0.25 checkpoint, a plain state_dict keyed with its architecture)."""
    folder = tmp_path_factory.mktemp("cifar-models")
    torch.manual_seed(0)
    cohen = folder / "cifar10" / "resnet20" / "noise_0.25" / "checkpoint.pth.tar"
    cohen_checkpoint(cohen, "cifar_resnet20", calibrated(CifarResNet(20), (3, 32, 32)), COHEN_CIFAR10_MEAN,
                     COHEN_CIFAR10_STD)
    plain = folder / "standard.pt"
    torch.save(calibrated(CifarResNet(20), (3, 32, 32)).state_dict(), plain)
    return str(cohen), f"{plain}::arch=cifar_resnet20"


@pytest.fixture
def window(qtbot, tmp_path, cifar_models):
    torch.set_num_threads(1)
    path = str(tmp_path / "settings.ini")
    settings = QSettings(path, QSettings.Format.IniFormat)
    for name, value in CERTIFY.items():
        settings.setValue(f"panels/Certify/{name}", value)
    settings.sync()
    win = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat), models=list(cifar_models), select=0)
    qtbot.addWidget(win)
    win.resize(1440, 920)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=60_000)
    yield win
    win.close()


def _show_tab(win, title: str) -> None:
    win.tabs.setCurrentIndex(list(win.panels).index(title))


@pytest.mark.parametrize("layout", ["cifar10", "folder"])
def test_colour_32x32_images_through_gallery_strip_certify_attack_and_invert(window, qtbot, tmp_path,
                                                                             cifar_models, layout):
    cohen, plain = cifar_models
    if layout == "cifar10":
        write_cifar_folder(tmp_path / "data")
    else:
        write_image_folder(tmp_path / "data")
    _show_tab(window, "Attack")  # Certify would start on the first image by itself
    window.load_dataset(layout, "test", f"{layout}:test", str(tmp_path / "data"))
    qtbot.waitUntil(lambda: window.ctx.dataset.name == layout, timeout=60_000)
    dataset = window.ctx.dataset
    assert dataset.image_shape == (3, 32, 32)
    # the gallery draws colour thumbnails of the images as they are
    thumbnail = window.gallery.model._thumbnail(1).toImage()
    assert not thumbnail.allGray()
    # the strip: the selected image and every model's predictions on it
    window.select_index(1)
    assert tuple(window.ctx.selection.image.shape) == (1, 3, 32, 32)
    qtbot.waitUntil(lambda: window.strip.has_all_predictions("original"), timeout=60_000)
    assert {m.key for m in window.ctx.models} == {cohen, plain}

    # Certify: Cohen et al.'s CERTIFY with σ from the checkpoint's folder, as the engine computes it
    _show_tab(window, "Certify")
    certify = window.panels["Certify"]
    certify.run()
    qtbot.waitUntil(lambda: certify.certificate is not None and certify.certified_selection is window.ctx.selection,
                    timeout=120_000)
    reference = Smooth.from_model(load_by_key(cohen, "cpu")).certify_detailed(
        dataset.images[1], CERTIFY["n0"], CERTIFY["n"], CERTIFY["alpha"], CERTIFY["batch"],
        generator=CERTIFY["seed"] + dataset.source_index(1))
    assert (certify.certificate.prediction, certify.certificate.radius) == (reference.prediction, reference.radius)
    assert certify.certificate.sigma == 0.25

    # Attack: PGD on the plain model, a colour adversarial image within ε of the original
    _show_tab(window, "Attack")
    attack = window.panels["Attack"]
    attack.set_params(source=plain, norm="linf", eps=0.03, steps=3, random_start="none", restarts=1,
                      target="untargeted", loss="ce")
    attack.run()
    qtbot.waitUntil(lambda: attack.state != "running", timeout=60_000)
    assert attack.state == "finished", attack.status.text()
    adversarial = np.asarray(window.ctx.strip_images["adversarial"])
    assert adversarial.shape[-3:] == (3, 32, 32)
    assert np.abs(adversarial - window.ctx.selection.image.numpy()).max() <= 0.03 + 1e-6

    # Features: both representations inverted into colour 3×32×32 reconstructions
    _show_tab(window, "Features")
    features = window.panels["Features"]
    features.set_params(auto=False, steps=4, step_size=0.1, seed_mode="other-class", draw=0, schedule="constant")
    features.set_model("robust", cohen)
    features.set_model("non_robust", plain)
    features.set_model("extra", "")
    features.run()
    qtbot.waitUntil(lambda: features.job_handle("features") is not None
                    and not features.job_handle("features").running, timeout=60_000)
    assert features.job_handle("features").state == "finished", features.status.text()
    for slot in ("robust", "non_robust"):
        assert np.asarray(window.ctx.strip_images[slot]).shape[-3:] == (3, 32, 32)
