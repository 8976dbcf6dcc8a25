"""The main window on Qt's offscreen platform: start, select, predict, remember, close."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, Qt

from helpers import write_small_checkpoints
from robustlens.app.window import MainWindow

from robustlens.engine.models import build_model, save_checkpoint, zoo_names


def model_keys_for_tests(folder):
    """The zoo when it is complete; otherwise two small checkpoints written to ``folder``."""
    if len(zoo_names()) >= 6:
        return list(zoo_names()), []
    paths = write_small_checkpoints(folder)
    return paths, paths


FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")]  # no other panel's jobs


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    keys, files = model_keys_for_tests(tmp_path)
    win = MainWindow(settings=settings, models=keys, select=0, use_settings=False, panels=FRAME_ONLY)
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
    qtbot.mouseClick(window.gallery.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
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


def load_checkpoint_for(key: str):
    """The model as the engine loads it, on the CPU (an independent copy for checking)."""
    from robustlens.engine.model_cache import load_by_key

    return load_by_key(key, torch.device("cpu"))


def test_settings_are_remembered(qtbot, tmp_path):
    path = str(tmp_path / "settings.ini")
    keys, files = model_keys_for_tests(tmp_path)
    first = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat), models=keys, select=5,
                       use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: first.ctx.selection is not None and first._models_ready, timeout=30_000)
    first.gallery.set_class_filter(first.ctx.dataset.labels[5].item())
    first.resize(700, 500)
    unticked = first.model_picker.checked_keys()[0]
    row = first.model_picker.keys().index(unticked)
    first.model_picker.list.item(row).setCheckState(Qt.CheckState.Unchecked)
    first.close()
    assert not first.engine.thread_running

    second = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat), panels=FRAME_ONLY)
    qtbot.addWidget(second)
    qtbot.waitUntil(lambda: second.ctx.selection is not None and second._models_ready, timeout=30_000)
    assert second.ctx.selection.index == 5
    assert second.gallery.class_filter() == first.ctx.dataset.labels[5].item()
    assert (second.size().width(), second.size().height()) == (700, 500)
    assert unticked not in second.model_picker.checked_keys()
    assert set(second.model_picker.checked_keys()) == set(keys) - {unticked}
    second.close()


def test_closing_the_window_stops_the_engine_thread(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), use_settings=False,
                     panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    thread = win.engine._thread
    assert thread.isRunning()
    win.close()
    assert thread.isFinished()


def test_dropped_image_is_converted_with_a_visible_note(window, qtbot, tmp_path, monkeypatch):
    from PIL import Image
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    from robustlens.app.image_dialog import OpenImageDialog

    def squashed_whole(dialog):  # the Open image dialog a drop opens: accepted with the whole picture
        dialog.whole.setChecked(True)
        return OpenImageDialog.DialogCode.Accepted

    monkeypatch.setattr(OpenImageDialog, "exec", squashed_whole)

    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.ctx.selection is not None and window.ctx.selection.source == "photo.png",
                    timeout=10_000)
    selection = window.ctx.selection
    assert selection.label is None and selection.index is None
    assert tuple(selection.image.shape) == (1, 1, 28, 28)
    assert "converted RGB to grayscale" in selection.note and "64×48 to 28×28" in selection.note
    assert window.banner.isVisible() and "photo.png" in window.banner.text.text()
    assert "converted RGB to grayscale" in window.strip.cards["original"].caption.text()
    qtbot.waitUntil(lambda: window.strip.has_all_predictions("original"), timeout=30_000)
    assert window.gallery.selected_index() is None


def test_a_bad_model_file_gives_a_clear_error_and_the_others_stay(window, qtbot, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    before = window.ctx.model_keys()
    window.open_model(str(bad))
    qtbot.waitUntil(lambda: window._models_ready and window.banner.isVisible(), timeout=30_000)
    text = window.banner.text.text()
    assert "broken.pt" in text and "not a readable checkpoint" in text
    assert window.ctx.model_keys() == before
    assert str(bad.resolve()) not in window.model_picker.keys()


def test_a_missing_dataset_folder_gives_a_clear_error_and_keeps_the_dataset(window, qtbot, tmp_path):
    before = window.ctx.dataset
    window.load_dataset("mnist", "test", "mnist:test", str(tmp_path))
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30_000)
    text = window.banner.text.text()
    assert "No MNIST files in" in text and str(tmp_path) in text and "Folder…" in text
    assert window.ctx.dataset is before
    assert window.dataset_picker.combo.currentData() == "fashion-mnist:test"


def test_export_panels_as_png_and_svg(window, qtbot, tmp_path):
    from PySide6.QtGui import QImage

    from robustlens.app.export import export_widget

    names = [name for name, _ in window.ctx.exportables()]
    assert "Image strip" in names and "Predictions chart" in names
    for _name, widget in window.ctx.exportables():  # each has a right-click Export…
        assert any(action.text().startswith("Export") for action in widget.actions())
    strip = export_widget(window.strip, tmp_path / "strip.png")
    image = QImage(str(strip))
    assert image.width() == 2 * window.strip.width() and image.height() == 2 * window.strip.height()
    chart = dict(window.ctx.exportables())["Predictions chart"]
    svg = export_widget(chart, tmp_path / "chart.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<path" in svg or "<polyline" in svg  # drawn as vectors, not a picture of the plot
    assert "probability" in svg  # the axis label is text
    chart_png = QImage(str(export_widget(chart, tmp_path / "chart.png")))
    assert chart_png.width() == 2 * chart.width()
    card_svg = export_widget(window.strip.cards["original"], tmp_path / "card.svg").read_text()
    assert "<svg" in card_svg and "<image" in card_svg  # the image itself is in the drawing
    with pytest.raises(ValueError):
        export_widget(window.strip, tmp_path / "strip.jpg")


def test_lecture_mode_scales_fonts_and_shortcuts_step_through_images(window, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from robustlens.app import style

    base = QApplication.font().pointSizeF()
    window.set_lecture_mode(True, full_screen=False)
    assert QApplication.font().pointSizeF() == pytest.approx(style.base_point_size() * style.LECTURE_FONT_SCALE)
    # the presenter layout (issue 12): the strip one compact row, the gallery a filmstrip under the tabs
    card = window.strip.cards["original"]
    qtbot.waitUntil(lambda: card.view.x() < card.bars.x(), timeout=5_000)  # the image beside its bars
    assert card.compact and window.strip.height() <= 240
    assert not window.left_column.isVisible() and window.gallery.parentWidget() is window.filmstrip
    start = window.ctx.selection.index
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert window.ctx.selection.index == start + 2
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert window.ctx.selection.index == start + 1
    runs = []
    window.ctx.runRequested.connect(lambda: runs.append(1))
    qtbot.keyClick(window, Qt.Key.Key_F5)
    assert runs == [1]
    film = window.filmstrip.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.filmstrip.isVisible() != film and not window.strip.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.filmstrip.isVisible() == film
    window.show_strip(True)
    window.set_lecture_mode(False)
    assert QApplication.font().pointSizeF() == pytest.approx(base)
    assert window.left_column.isVisible() and not window.filmstrip.isVisible()
    assert window.gallery.parentWidget() is window.gallery_box and not window.strip.cards["original"].compact
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert not window.left_column.isVisible()


def test_screenshot_command_saves_the_window_and_exits_0(tmp_path):
    import os
    import subprocess
    import sys

    from PySide6.QtGui import QImage

    out = tmp_path / "window.png"
    keys, files = model_keys_for_tests(tmp_path)
    extra = [arg for path in files for arg in ("--model", path)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "robustlens", "--screenshot", str(out), "--select", "4", *extra],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert image.width() >= 1440 and image.height() >= 900


def test_gallery_makes_thumbnails_only_for_what_is_shown(window, qtbot):
    """10,000 images open at once because only the visible thumbnails are ever drawn."""
    gallery = window.gallery
    qtbot.waitUntil(lambda: len(gallery.model._cache) > 0, timeout=10_000)
    visible = len(gallery.model._cache)
    assert 0 < visible < 300
    counts = np.bincount(window.ctx.dataset.labels.numpy(), minlength=10)
    gallery.set_class_filter(7)
    assert gallery.model.rowCount() == counts[7]
    shown = {int(window.ctx.dataset.labels[gallery.model.rows[r]]) for r in range(gallery.model.rowCount())}
    assert shown == {7}
    gallery.step(1)
    assert int(window.ctx.selection.label) == 7
    gallery.set_class_filter(None)
    assert gallery.model.rowCount() == 10_000


def test_without_models_the_window_says_how_to_get_some(qtbot, tmp_path):
    from robustlens.app.strip import NO_MODELS

    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), models=[],
                     select=2, use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.selection is not None, timeout=30_000)
    assert win.ctx.models == []
    assert win.strip.cards["original"].bars._empty_text == NO_MODELS
    assert "Open model" in NO_MODELS and "TODO" not in NO_MODELS
    qtbot.waitUntil(lambda: win._first_done, timeout=10_000)  # the screenshot mode would not hang
    win.close()


def test_setting_and_click_flags_reach_a_tab_through_its_own_settings_and_buttons(window):
    """What tools/screenshots.py asks of a tab goes through the flags: its declared settings, its buttons."""
    from PySide6.QtWidgets import QPushButton, QSpinBox, QVBoxLayout

    from robustlens.app.controls import spin_box
    from robustlens.app.main import _apply_settings, _click
    from robustlens.app.panels.base import Panel
    from robustlens.app.settings import Setting

    class Probe(Panel):
        SETTINGS = (Setting("n", 10, 1, 100),)

        def __init__(self, ctx):
            super().__init__(ctx)
            self.n_box: QSpinBox = spin_box(self.SETTINGS[0])
            self.button = QPushButton("&Go")
            self.clicks = 0
            self.button.clicked.connect(lambda: setattr(self, "clicks", self.clicks + 1))
            layout = QVBoxLayout(self)
            layout.addWidget(self.n_box)
            layout.addWidget(self.button)

        def setting_widgets(self):
            return {"n": self.n_box}

    probe = Probe(window.ctx)
    window.panels["Probe"] = probe
    window.tabs.setCurrentIndex(window.tabs.addTab(probe, "Probe"))
    assert _apply_settings(window, ["probe/n=42"]) is None and probe.n_box.value() == 42
    assert "maximum" in _apply_settings(window, ["Probe/n=1000"])
    assert "no setting 'm'" in _apply_settings(window, ["Probe/m=1"])
    assert "TAB/KEY=VALUE" in _apply_settings(window, ["Nowhere/n=1"])
    assert "TAB/KEY=VALUE" in _apply_settings(window, ["Probe=1"])
    assert _click(window.current_panel(), "go") and probe.clicks == 1
    assert not _click(window.current_panel(), "stop") and probe.clicks == 1


def test_click_at_wants_a_fraction_and_a_button(capsys):
    from robustlens.app.main import build_parser, main

    assert build_parser().parse_args(["--click-at", "0.3", "Stop"]).click_at == ["0.3", "Stop"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--screenshot", "x.png", "--click-at", "soon", "Stop"])
    assert exit_info.value.code == 2
    assert "--click-at: 'soon' is not a fraction" in capsys.readouterr().err


@pytest.mark.parametrize("width", [120, 150, 200, 260, 400])
def test_prediction_bars_never_cut_a_class_name_short(qtbot, width):
    """Each model's bar reads 'class  NN%'; where that does not fit on the bar (a narrow card beside
    the deck pane) the class takes its own line above the bar, whole, and the widget grows for it."""
    from PySide6.QtGui import QColor, QFontMetrics

    from robustlens.app.predictions import PredictionBars, PredictionRow
    from robustlens.engine.data import FASHION_MNIST_CLASSES as classes

    bars = PredictionBars()
    qtbot.addWidget(bars)
    probs = np.zeros(len(classes))
    probs[0] = 1.0  # "T-shirt/top  100%", the longest label
    bars.set_rows([PredictionRow("standard", "standard", probs, QColor("blue")),
                   PredictionRow("l2-robust", "l2-robust", probs, QColor("orange"))], classes, 0)
    metrics = QFontMetrics(bars.font())
    _, _, bar_width = bars._bar_geometry(width)
    if bars._labels_above(width):
        assert metrics.horizontalAdvance(classes[0]) <= bar_width - 2  # the name alone fits its line
        assert bars.heightForWidth(width) > bars.heightForWidth(2000)
    else:
        assert metrics.horizontalAdvance(f"{classes[0]}  100%") + 8 <= bar_width
    assert not bars._labels_above(2000)


@pytest.mark.parametrize("labels_above", [False, True])
def test_compact_bars_put_a_long_class_on_its_own_line_only_where_asked(qtbot, labels_above):
    """Compact bars (lecture mode) in the strip keep one line per model, its height counted on; under the
    Features tab's images (labels_above) a class that does not fit beside its percentage takes its own
    line instead of being cut to 'A… 100%'."""
    from PySide6.QtGui import QColor

    from robustlens.app.predictions import PredictionBars, PredictionRow
    from robustlens.engine.data import FASHION_MNIST_CLASSES as classes

    bars = PredictionBars()
    qtbot.addWidget(bars)
    probs = np.zeros(len(classes))
    probs[9] = 1.0  # "Ankle boot  100%"
    bars.set_rows([PredictionRow("standard", "standard", probs, QColor("blue"))], classes, 9)
    bars.set_compact(True, labels_above=labels_above)
    narrow = 90
    assert bars._labels_above(narrow) == labels_above
    assert (bars.heightForWidth(narrow) > bars.heightForWidth(2000)) == labels_above
    assert not bars._labels_above(2000)
