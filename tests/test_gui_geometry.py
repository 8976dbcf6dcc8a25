"""The Geometry tab on Qt's offscreen platform: it fills both maps, draws the disk, the attack and the
cloud where the engine put them, exports, and cancels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from robustlens.app.panels.geometry import SLOT
from robustlens.app.panels.geometry_figure import CLASS_COLORS
from robustlens.app.window import MainWindow
from robustlens.engine.geometry_overlays import certified_disk
from robustlens.engine.model_cache import load_by_key
from robustlens.engine.models import build_model, save_checkpoint, zoo_file, zoo_names

NOISE_MODEL = "fashion-mnist/noise-0.25"
PANELS = [("Geometry", "robustlens.app.panels.geometry:GeometryPanel")]


def noise_model_key(folder) -> str:
    """The built-in noise model when the zoo has it; otherwise a small (untrained) noise-meta checkpoint."""
    if NOISE_MODEL in zoo_names():
        return NOISE_MODEL
    if zoo_file(NOISE_MODEL).exists():
        return str(zoo_file(NOISE_MODEL))
    torch.manual_seed(0)
    path = folder / "noise.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/noise", kind="noise", sigma=0.25), path)
    return str(path)


@pytest.fixture
def window(qtbot, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the engine thread shares a busy CPU: waiting OpenMP threads waste it
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=[noise_model_key(tmp_path)], select=3, use_settings=False,
                     panels=PANELS)
    qtbot.addWidget(win)
    win.resize(1400, 1100)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.selection is not None, timeout=120_000)
    yield win
    win.close()
    torch.set_num_threads(threads)


def small(panel, *, g_size=11, n=20, certify_n=500) -> None:
    panel.n_box.setValue(n)
    panel.g_size_box.setCurrentIndex(panel.g_size_box.findData(g_size))
    panel.f_size_box.setCurrentIndex(panel.f_size_box.findData(51))
    panel.certify_n_box.setValue(certify_n)
    panel.extent_box.setValue(1.5)


def test_panel_fills_both_maps_and_shows_the_disk(window, qtbot, tmp_path):
    panel = window.panels["Geometry"]
    assert panel.model_box.count() == 1 and panel.sigma_box.value() == pytest.approx(0.25)
    small(panel)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=300_000)
    result, figure = panel.result, panel.figure
    assert "Done" in panel.status.text()

    # both maps, each pixel in its class's colour (abstaining points of g in grey)
    f_image, g_image = figure.images["f"].image, figure.images["g"].image
    assert f_image.shape == (51, 51, 4) and g_image.shape == (11, 11, 4)
    palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in CLASS_COLORS])
    np.testing.assert_array_equal(f_image[..., :3], palette[result.base.classes])
    significant = result.smoothed.significant
    np.testing.assert_array_equal(g_image[significant][:, :3], palette[result.smoothed.classes[significant]])
    assert (g_image[~significant][:, :3] == 0xD4).all()
    # the maps cover exactly the requested square, one pixel per grid point
    bounds = figure.images["f"].mapRectToParent(figure.images["f"].boundingRect())
    step = 3.0 / 50
    assert bounds.left() == pytest.approx(-1.5 - step / 2) and bounds.width() == pytest.approx(3.0 + step)

    # the disk: a circle of the certified radius around x, on both maps (or the abstain note)
    disk = result.disk
    for key in ("f", "g"):
        xs, ys = figure.disks[key][1].getData()
        caption = figure.captions[key].toPlainText()
        if disk.abstained:
            assert len(xs) == 0 and "abstains" in caption
        else:
            np.testing.assert_allclose(np.hypot(xs, ys), disk.radius, rtol=1e-6)
            assert f"R = {disk.radius:.2f}" in caption
        assert f"‖δ‖₂ = {result.attack.distance:.2f}" in caption
        # the attack point lies on the u axis at its distance from x
        ax, ay = figure.attacks[key].getData()
        assert ax[0] == pytest.approx(result.attack.distance, abs=1e-3) and ay[0] == pytest.approx(0, abs=1e-3)
    assert len(figure.cloud.getData()[0]) == len(result.cloud.norms) == 300
    assert ("Certified" in panel.summary.text()) or ("abstains" in panel.summary.text())

    png, svg = panel.export(tmp_path / "slice.png"), panel.export(tmp_path / "slice.svg")
    assert not QImage(str(png)).isNull() and QImage(str(png)).width() >= figure.width()
    assert "<svg" in svg.read_text()[:2000]


def test_cancel_stops_the_slice_and_keeps_the_partial_map(window, qtbot):
    panel = window.panels["Geometry"]
    small(panel, g_size=81, n=2000, certify_n=200)  # far more work than the test waits for
    panel.run()
    qtbot.waitUntil(lambda: panel.smoothed is not None, timeout=300_000)
    assert panel.cancel_button.isEnabled()
    qtbot.mouseClick(panel.cancel_button, _left())
    qtbot.waitUntil(lambda: not panel.job_running(SLOT), timeout=60_000)
    assert panel.result is None
    assert "Cancelled" in panel.status.text()
    assert not panel.smoothed.complete
    assert panel.figure.images["g"].image is not None  # what was computed stays on screen
    assert not panel.cancel_button.isEnabled()


def test_the_disk_is_the_published_certificate_of_this_image_model_and_sigma(window, qtbot):
    """A certificate published for the selection, the model and σ is drawn, not computed again; one for
    another σ or another image is not."""
    panel, ctx = window.panels["Geometry"], window.ctx
    small(panel, n=10)
    key = panel.model_box.currentData()
    certificate = certified_disk(load_by_key(key, "cpu"), ctx.selection.image, sigma=0.25, n0=50, n=300,
                                 seed=7).certificate
    ctx.publish_certificate(ctx.selection, key, certificate)
    panel.run()
    assert panel.job_running(SLOT) and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.disk is not None, timeout=300_000)
    assert panel.disk.source == "Certify tab" and panel.disk.certificate is certificate
    assert panel.disk.radius == certificate.radius
    panel.cancel_job(SLOT)

    panel.sigma_box.setValue(0.5)  # the published certificate is for σ = 0.25
    assert panel.request(ctx.selection, key).disk is None
    panel.sigma_box.setValue(0.25)
    assert panel.request(ctx.selection, key).disk.certificate is certificate
    other = type(ctx.selection)(ctx.selection.image, ctx.selection.label, ctx.selection.index, "another")
    assert panel.request(other, key).disk is None  # not the very image the certificate is for


def _left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
