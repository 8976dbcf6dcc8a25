"""Lecture mode as a projector shows it: at 1280×720 every tab's plots and verdicts lie wholly inside
the window, nothing scrolls (the Attack tab's judge table after an attack too, and every tab of the
default desktop window with the strip full); no axis anywhere rescales itself with an SI prefix; every
model has one colour in every panel."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QRect, QSettings, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QApplication, QLabel, QScrollArea, QTableWidget

from robustlens.app import style
from robustlens.app.panels import PANELS
from robustlens.app.plots import Plot
from robustlens.app.window import MainWindow
from robustlens.engine.models import zoo_names

ZOO = ["fashion-mnist/standard", "fashion-mnist/l2-robust", "fashion-mnist/linf-robust",
       "fashion-mnist/noise-0.25", "fashion-mnist/noise-0.50", "fashion-mnist/noise-1.00"]


def zoo_keys() -> list[str]:
    names = set(zoo_names())
    keys = [k for k in ZOO if k in names]
    if len(keys) < 4:
        pytest.skip("needs the built-in zoo")
    return keys


@pytest.fixture
def lecture_window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=zoo_keys(), select=3, use_settings=False, panels=PANELS)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.set_lecture_mode(True, full_screen=False)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.selection is not None
                    and win.strip.has_all_predictions("original"), timeout=120_000)
    yield win
    win.cancel_jobs()
    win.close()


def fill_strip(win) -> None:
    """Every strip slot filled (the tallest the compact row gets), predictions given, no jobs."""
    image = win.ctx.selection.image[0]
    predictions = win.strip.predictions["original"]
    for slot in ("robust", "non_robust", "adversarial"):
        win.ctx.set_strip_image(slot, image, "L∞ ε=0.1 · ‖δ‖∞=0.100", predictions=predictions)
    win.ctx.set_strip_image("perturbation", image - 0.5, "‖δ‖₂ = 1.43")


def window_rect(widget, win) -> QRect:
    return QRect(widget.mapTo(win, QPoint(0, 0)), widget.size())


def shown(widget, win) -> bool:
    return widget.isVisibleTo(win) and widget.width() > 0 and widget.height() > 0


def scroll_bars_shown(win) -> list[str]:
    bars = []
    for area in win.findChildren(QAbstractScrollArea):
        if not shown(area, win) or area is win.gallery.view or area.objectName() == "messages":
            continue
        for name, bar in (("vertical", area.verticalScrollBar()), ("horizontal", area.horizontalScrollBar())):
            if bar.isVisible() and bar.maximum() > bar.minimum():
                bars.append(f"{type(area).__name__} {area.objectName()!r}: {name}")
    return bars


@pytest.mark.parametrize("title", [t for t, _ in PANELS])
def test_each_tab_fits_a_projector_in_lecture_mode(lecture_window, qtbot, title):
    win = lecture_window
    fill_strip(win)
    # 720 lines: the pickers fold away, the filmstrip starts folded (Ctrl+1 opens it), PgDown steps
    assert not win.left_column.isVisible() and not win.filmstrip.isVisible()
    assert win.gallery.parentWidget() is win.filmstrip and not win.gallery_action.isChecked()
    assert win.strip.isVisible() and win.strip.height() <= 240
    problems = tab_problems(win, qtbot, title)
    assert not problems, "\n".join(problems)


def test_attack_verdicts_fit_a_projector_after_an_attack(lecture_window, qtbot):
    """After an attack every loaded model's row and each noise model's CERTIFY row are on screen at
    720 lines: the table shows all its rows without a scroll bar, wholly inside the window."""
    win = lecture_window
    attack = win.panels["Attack"]
    win.tabs.setCurrentIndex([win.tabs.tabText(i) for i in range(win.tabs.count())].index("Attack"))
    attack.steps_box.setValue(2)
    attack.run()
    qtbot.waitUntil(lambda: attack.state == "finished", timeout=120_000)
    qtbot.waitUntil(lambda: win.strip.has_all_predictions("adversarial"), timeout=120_000)
    table = attack.table
    assert table.rowCount() >= len(win.ctx.models)  # one row per model, and more for g
    problems = tab_problems(win, qtbot, "Attack")
    rows_height = sum(table.rowHeight(r) for r in range(table.rowCount()))
    if rows_height > table.viewport().height():
        problems.append(f"the judge table's {table.rowCount()} rows need {rows_height} px, "
                        f"it shows {table.viewport().height()}")
    assert not problems, "\n".join(problems)


def test_each_tab_fits_the_default_window_with_the_strip_full(qtbot, tmp_path):
    """Out of lecture mode, at the default 1440×920 with every strip slot filled (the strip at its
    tallest), each tab still shows its plots and verdicts without a scroll bar: a short tab is laid out
    in columns."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=zoo_keys(), select=3, use_settings=False, panels=PANELS)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.selection is not None
                    and win.strip.has_all_predictions("original"), timeout=120_000)
    assert (win.width(), win.height()) == (1440, 920) and not win.ctx.lecture_mode
    fill_strip(win)
    problems = []
    for title, _target in PANELS:
        problems += tab_problems(win, qtbot, title)
    win.cancel_jobs()
    win.close()
    assert not problems, "\n".join(problems)


def tab_problems(win, qtbot, title) -> list[str]:
    """What keeps tab ``title`` from fitting the window: scroll bars, plots or verdicts outside it."""
    window_area = win.rect()
    problems = []
    win.tabs.setCurrentIndex([win.tabs.tabText(i) for i in range(win.tabs.count())].index(title))
    for _ in range(5):
        QApplication.processEvents()
    qtbot.wait(50)
    panel = win.current_panel()
    scroll: QScrollArea = win.tabs.currentWidget()
    viewport = window_rect(scroll.viewport(), win)
    if scroll_bars_shown(win):
        problems.append(f"{title}: scroll bars {scroll_bars_shown(win)}")
    if panel.height() > scroll.viewport().height() + 1:
        problems.append(f"{title}: the panel ({panel.height()} px) is taller than its tab "
                        f"({scroll.viewport().height()} px)")
    plots = [p for p in panel.findChildren(pg.GraphicsView) if shown(p, win)]
    verdicts = [w for w in panel.findChildren(QLabel) + panel.findChildren(QTableWidget)
                if shown(w, win) and ("verdict" in w.objectName() or isinstance(w, QTableWidget))]
    if not plots:
        problems.append(f"{title}: no plot on screen")
    for widget in plots + verdicts:
        rect = window_rect(widget, win)
        where = f"{title}: {type(widget).__name__} {widget.objectName()!r} at {rect}"
        if not window_area.contains(rect):
            problems.append(where + " leaves the window")
        elif not viewport.contains(rect):
            problems.append(where + " leaves its tab")
    for plot in plots:
        if plot.height() < 110:
            problems.append(f"{title}: a plot squashed to {plot.height()} px")
    return problems


def axes(win) -> list[pg.AxisItem]:
    found = []
    for view in win.findChildren(pg.GraphicsView):
        scene = view.scene()
        if scene is not None:
            found += [item for item in scene.items() if isinstance(item, pg.AxisItem)]
    return found


def test_no_axis_uses_an_si_prefix(lecture_window, qtbot):
    win = lecture_window
    every = axes(win)
    assert len(every) >= 8
    for axis in every:
        assert not axis.autoSIPrefix, f"{axis.orientation} axis of {axis.labelText!r} rescales itself"
        # drawn with tiny and huge ranges, the label never grows "(×0.001)" and ticks keep their values
        for low, high in ((0.0, 0.0005), (0.0, 5e5)):
            axis.setRange(low, high)
            assert axis.autoSIPrefixScale == 1.0
            assert "x0.0" not in axis.labelString() and "×0.0" not in axis.labelString()


def pen_colour(item) -> str:
    return pg.mkPen(item.opts["pen"]).color().name()


def drawn_colours(win, qtbot) -> dict[str, dict[str, str]]:
    """Every place a model's colour is drawn, read off the drawn items: {place: {model key: colour}}.
    The jobs behind them run small (2 steps, 2 images) on the real zoo models."""
    models = win.ctx.models
    by_name = {style.short_name(m): m.key for m in models}
    by_label = {m.label: m.key for m in models}
    places = {"strip bars": {by_name[r.name]: r.color.name() for r in win.strip.cards["original"].bars.rows()}}

    predictions = win.panels["Predictions"]
    predictions.refresh()
    chart = predictions.chart
    places["Predictions chart"] = {by_label[label.text]: pg.mkBrush(item.opts["brush"]).color().name()
                                   for item, (_sample, label) in zip(chart._items, chart._legend.items)}

    attack = win.panels["Attack"]
    attack.steps_box.setValue(2)
    attack.run()
    qtbot.waitUntil(lambda: attack.state == "finished", timeout=120_000)
    table = attack.table
    places["Attack transfer table"] = {
        by_label[table.item(r, 0).toolTip()]: table.item(r, 0).data(Qt.ItemDataRole.DecorationRole).name()
        for r in range(table.rowCount()) if table.item(r, 0).toolTip() in by_label}

    features = win.panels["Features"]
    features.set_params(steps=2)
    features.run()
    qtbot.waitUntil(lambda: not features.job_running("features"), timeout=120_000)
    places["Features distance plot"] = {key: pen_colour(curve) for key, curve in features.plot.lowest.items()
                                        if key in by_label.values()}

    section = win.panels["Experiments"].sections["Robust accuracy vs ε"]
    section.steps_box.setValue(1)
    section.images_box.setValue(2)
    section.eps_edit.setText("0, 0.1")
    section.run()
    qtbot.waitUntil(lambda: section.plot.curves and not section.job_running("robustness"), timeout=120_000)
    places["Experiments robust accuracy"] = {key: pen_colour(c) for key, c in section.plot.curves.items()}

    certify = win.panels["Certify"]
    certify.cancel_job("certify")
    certify.accuracy.images_box.setValue(certify.accuracy.images_box.minimum())
    certify.accuracy.n_box.setValue(certify.accuracy.n_box.minimum())
    certify.run_accuracy()
    qtbot.waitUntil(lambda: bool(certify.accuracy.plot.curves), timeout=120_000)
    places["Certify accuracy curves"] = {key: pen_colour(c) for key, c in certify.accuracy.plot.curves.items()}
    return places


def test_each_model_has_one_colour_in_every_panel(lecture_window, qtbot):
    win = lecture_window
    expected = {k: v.name() for k, v in style.model_colors(win.ctx.models).items()}
    assert len(set(expected.values())) == len(expected), "two models share a colour"
    places = drawn_colours(win, qtbot)
    for place, mapping in places.items():
        assert len(mapping) >= 2, (place, mapping)
        for key, colour in mapping.items():
            assert colour == expected[key], f"{place}: {key} drawn {colour}, in the strip {expected[key]}"


def test_palette_tells_kinds_and_files_apart(lecture_window):
    win = lecture_window
    colours = style.model_colors(win.ctx.models)
    # Okabe–Ito: every colour far from every other (a washed-out projector still tells them apart)
    rgb = np.array([[c.red(), c.green(), c.blue()] for c in colours.values()], dtype=float)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert distances[~np.eye(len(rgb), dtype=bool)].min() > 60
    for info in win.ctx.models:
        assert style.short_name(info) == info.key.split("/")[-1]


FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel"),
              ("Features", "robustlens.app.panels.features:FeaturesPanel")]


def test_messages_float_clear_on_success_and_stay_in_the_log(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=zoo_keys()[:1], select=0, use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.strip.has_all_predictions("original"), timeout=60_000)
    # the window's first layout passes (the gallery sizing to its thumbnails) end before the banner shows
    where = lambda: win.strip.mapTo(win, QPoint(0, 0))  # noqa: E731
    settled = []
    qtbot.wait(300)
    qtbot.waitUntil(lambda: settled.append(where()) or settled[-3:] == [settled[-1]] * 3, timeout=10_000)
    strip_at = where()
    win.banner.show_message("info", "a note")
    QApplication.processEvents()
    assert win.banner.isVisible() and win.strip.mapTo(win, QPoint(0, 0)) == strip_at  # nothing moved
    assert win.banner.parentWidget() is win.centralWidget().widget(1)  # floats over the centre column
    win.banner.show_message("error", "x failed: boom", clears_on_success=True)
    features = win.panels["Features"]
    features.set_params(steps=2)
    features.run()
    qtbot.waitUntil(lambda: not win.banner.isVisible(), timeout=60_000)  # the next success clears it
    assert [text for _t, _level, text in win.banner.log][-2:] == ["a note", "x failed: boom"]
    assert "x failed: boom" in win.banner.log_text()
    # Edit → Reset settings: every tab's declared settings back to their defaults
    features.set_params(steps=7, auto=True)
    win.reset_settings_action.trigger()
    assert features.setting_value("steps") == 1000 and features.setting_value("auto") is False
    win.close()


def test_getting_started_shows_once_and_never_in_a_screenshot(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    for shown_before in (False, True):
        win = MainWindow(settings=settings, models=[], use_settings=True, panels=FRAME_ONLY[:1])
        qtbot.addWidget(win)
        win.show()
        qtbot.wait(200)
        dialog = getattr(win, "getting_started_dialog", None)
        assert (dialog is not None and dialog.isVisible()) is (not shown_before)
        win.close()
    # --screenshot starts with use_settings=False: the page never covers a screenshot
    win = MainWindow(settings=QSettings(str(tmp_path / "t.ini"), QSettings.Format.IniFormat), models=[],
                     use_settings=False, panels=FRAME_ONLY[:1])
    qtbot.addWidget(win)
    win.show()
    qtbot.wait(200)
    assert getattr(win, "getting_started_dialog", None) is None
    win.close()
