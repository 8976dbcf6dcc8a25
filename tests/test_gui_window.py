"""The main window on Qt's offscreen platform: start, select, predict, remember, close."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app.window import MainWindow
from robustlens.engine.data import load_dataset
from robustlens.engine.models import load_checkpoint

from robustlens.engine.models import build_model, save_checkpoint, zoo_names


def model_keys_for_tests(folder):
    """The zoo when it is complete; otherwise two small checkpoints written to ``folder``."""
    if len(zoo_names()) >= 6:
        return list(zoo_names()), []
    torch.manual_seed(0)
    paths = []
    for name, meta in (("standard", {}), ("noise", {"kind": "noise", "sigma": 0.25})):
        path = str(folder / f"{name}.pt")
        save_checkpoint(build_model("fmnist-cnn", name=f"test/{name}", **meta), path)
        paths.append(path)
    return paths, paths


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    keys, files = model_keys_for_tests(tmp_path)
    win = MainWindow(settings=settings, models=keys, select=0, use_settings=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=30_000)
    win.expected_keys = keys
    yield win
    win.close()


def test_app_starts_with_gallery_and_models(window, qtbot):
    assert len(window.ctx.dataset) == 10_000
    assert window.gallery.model.rowCount() == 10_000
    assert [m.key for m in window.ctx.models] == window.expected_keys
    qtbot.waitUntil(lambda: window.strip.has_all_predictions("original"), timeout=30_000)


def test_selecting_a_thumbnail_shows_every_models_predictions(window, qtbot):
    row = 17
    rect = window.gallery.view.visualRect(window.gallery.model.index(row))
    qtbot.mouseClick(window.gallery.view.viewport(), Qt_LeftButton(), pos=rect.center())
    assert window.ctx.selection.index == row
    qtbot.waitUntil(lambda: window.strip.has_all_predictions("original")
                    and window.strip.predicted_for.get("original") == window.strip._generation["original"],
                    timeout=30_000)
    bars = window.strip.cards["original"].bars.rows()
    assert len(bars) == len(window.expected_keys)
    image = window.ctx.dataset.images[row:row + 1]
    for info in window.ctx.models:
        probs = window.strip.predictions["original"][info.key]
        model = load_checkpoint_for(info.key)
        with torch.no_grad():
            expected = torch.softmax(model(image), 1)[0].numpy()
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert abs(probs.sum() - 1) < 1e-4


def Qt_LeftButton():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def load_checkpoint_for(key: str):
    from robustlens.app.engine_thread import _load

    return _load(key, torch.device("cpu"))


def test_settings_are_remembered(qtbot, tmp_path):
    path = str(tmp_path / "settings.ini")
    keys, files = model_keys_for_tests(tmp_path)
    first = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat), models=keys, select=5,
                       use_settings=False)
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: first.ctx.selection is not None and first._models_ready, timeout=30_000)
    first.gallery.set_class_filter(first.ctx.dataset.labels[5].item())
    first.resize(700, 500)
    unticked = first.model_picker.checked_keys()[0]
    first.model_picker.list.item(0).setCheckState(Qt_Unchecked())
    first.close()
    assert not first.engine.thread_running

    second = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    qtbot.waitUntil(lambda: second.ctx.selection is not None and second._models_ready, timeout=30_000)
    assert second.ctx.selection.index == 5
    assert second.gallery.class_filter() == first.ctx.dataset.labels[5].item()
    assert (second.size().width(), second.size().height()) == (700, 500)
    assert unticked not in second.model_picker.checked_keys()
    assert set(second.model_picker.checked_keys()) == set(keys) - {unticked}
    second.close()


def Qt_Unchecked():
    from PySide6.QtCore import Qt

    return Qt.CheckState.Unchecked


def test_closing_the_window_stops_the_engine_thread(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), use_settings=False)
    qtbot.addWidget(win)
    win.show()
    thread = win.engine._thread
    assert thread.isRunning()
    win.close()
    assert thread.isFinished()
