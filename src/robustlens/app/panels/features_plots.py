"""The Features panel's drawings: one column per image (seed, original, reconstructions) and the
representation-distance curves. They only draw what ``engine/inversion.py`` computed; the panel
(``features.py``) decides what to show when."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..imaging import ImageView, to_qimage
from ..plots import Plot
from ..predictions import PredictionBars, PredictionRow
from ..strip import COMPACT_BARS_SCALE

DISTANCE_LABEL = "‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂"
LEGEND_TWO_COLUMNS_FROM = 400   # px: a narrower distance plot lists its curves in one column
SMALLEST_SHOWN = 1e-6   # a log axis cannot show 0; a distance this small is "reached" for the eye


def log_ticks(low: float, high: float, most: int = 6) -> list[tuple[float, str]]:
    """(log10 value, text) ticks at 1, 2, 5 × 10^k within [low, high] (at least the two ends' decades)."""
    low, high = max(low, 1e-12), max(high, low * 1.0001)
    first, last = int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1
    candidates = [m * 10.0 ** k for k in range(first, last + 1) for m in (1, 2, 5)]
    inside = [v for v in candidates if low / 1.25 <= v <= high * 1.25]
    if len(inside) < 2:
        inside = [v for v in candidates if v <= low][-1:] + [v for v in candidates if v >= high][:1]
    for mantissas in ((1, 2, 5), (1, 5), (1,)):
        kept = [v for v in inside if round(v / 10 ** np.floor(np.log10(v) + 1e-9)) in mantissas]
        if 2 <= len(kept) <= most:
            inside = kept
            break
    else:
        decades = [v for v in inside if round(v / 10 ** np.floor(np.log10(v) + 1e-9)) == 1] or inside
        inside = decades[::int(np.ceil(len(decades) / most))]
    return [(float(np.log10(v)), f"{v:g}") for v in inside]


class ImageColumn(QFrame):
    """A titled image (crisp pixels, as large as the column allows), a caption and, for a
    reconstruction, the inverted models' predictions on it."""

    def __init__(self, title: str, hint: str, color: QColor | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.title.setWordWrap(True)
        self._title_style = "font-weight: bold;"  # a style sheet keeps the window's (lecture) font size
        self.view = ImageView(hint, minimum=84)
        self.caption = QLabel("")
        self.caption.setObjectName("caption")
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.bars = PredictionBars()
        self.bars.setObjectName("features-column-bars")
        self.bars.setMinimumWidth(72)  # five columns must fit beside the plot; the bars elide their text
        layout = QVBoxLayout(self)
        layout.setContentsMargins(5, 5, 5, 5)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.bars)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.set_color(color)

    def set_color(self, color: QColor | None) -> None:
        """A coloured rule under the title ties the column to its curve in the distance plot."""
        rule = "" if color is None else f" border-bottom: 3px solid {QColor(color).name()}; padding-bottom: 2px;"
        self.title.setStyleSheet(self._title_style + rule)

    def set_title(self, title: str) -> None:
        self.title.setText(title)

    def set_image(self, image, caption: str | None = None) -> None:
        self.view.set_image(None if image is None else to_qimage(image))
        if caption is not None:
            self.caption.setText(caption)

    def clear(self, hint: str | None = None) -> None:
        self.view.set_image(None)
        if hint is not None:
            self.view.set_hint(hint)
        self.caption.setText("")
        self.bars.set_rows([], (), None)
        self.bars.set_empty_text("")

    def set_predictions(self, rows: list[PredictionRow], classes: Sequence[str], true_label: int | None) -> None:
        self.bars.set_rows(rows, classes, true_label)

    def set_prediction_note(self, text: str) -> None:
        self.bars.set_rows([], (), None)
        self.bars.set_empty_text(text)

    def has_image(self) -> bool:
        return self.view.has_image

    def set_image_minimum(self, side: int) -> None:
        self.view.setMinimumSize(side, side)

    def set_compact(self, on: bool) -> None:
        """Lecture mode: the models' colour chips instead of their names above the bars (one line per
        model, as in the strip; the tooltip names them) a little smaller than the lecture font, as in the
        strip, so three models fit under a 720-line image and a narrow column keeps the class names."""
        self.bars.set_compact(on, labels_above=True)  # the column has height to spare: no class cut short
        font = QFont(self.font())
        if on:
            font.setPointSizeF(font.pointSizeF() * COMPACT_BARS_SCALE)
        self.bars.setFont(font if on else QFont())


class DistancePlot(Plot):
    """d(x_r) against the step, one curve per inverted model, on a log axis (the distance falls by
    orders of magnitude for a standard model and far less for a robust one)."""

    MIN_LINES = 12.0
    SIZE_HINT = QSize(340, 240)  # modest: the tab sits in a scroll area, which gives a panel its preferred height

    def __init__(self, parent: QWidget | None = None) -> None:
        # below the axes, in two columns: inside the plot it would hide the curves it names
        self.legend = pg.LegendItem(colCount=2, labelTextColor="k", verSpacing=-6, horSpacing=4)
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLogMode(x=False, y=True)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", "step")
        item.setLabel("left", DISTANCE_LABEL)
        self.set_title("Representation distance d")  # short: a long title widens the plot past its widget
        item.layout.addItem(self.legend, 4, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}   # d at each step
        self.lowest: dict[str, pg.PlotDataItem] = {}   # lowest d so far
        self.names: dict[str, str] = {}
        self._faint_sample = pg.PlotDataItem([], [], pen=pg.mkPen(QColor(110, 110, 110), width=1))
        self._steps = 1
        self.setMinimumWidth(220)
        self._update_ticks()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event is not None:  # a narrow plot (lecture fonts, the deck pane beside): the legend in one column
            columns = 1 if event.size().width() < LEGEND_TWO_COLUMNS_FROM else 2
            if self.legend.columnCount != columns:
                self.legend.setColumnCount(columns)

    def reset(self, series: list[tuple[str, str, QColor]], steps: int) -> None:
        """New curves ``(key, legend name, colour)`` for a run of ``steps`` steps (the x axis spans them
        from the start, so the curves grow to the right). Each model gets a faint line, d at every step
        (with a constant α it zigzags once it is within about α of the optimum), and a bold one, the
        lowest d so far: the iterate the panel shows."""
        for curve in list(self.curves.values()) + list(self.lowest.values()):
            self.removeItem(curve)
        self.legend.clear()
        self.curves, self.lowest, self.names = {}, {}, {}
        for key, name, color in series:
            faint = QColor(color)
            faint.setAlpha(90)
            self.curves[key] = self.plot([], [], pen=pg.mkPen(faint, width=1))
            self.lowest[key] = self.plot([], [], pen=pg.mkPen(QColor(color), width=2.5))
            self.legend.addItem(self.lowest[key], name)
            self.names[key] = name
        if series:
            self.legend.addItem(self._faint_sample, "faint: each step")
        self._steps = max(1, int(steps))
        self.setXRange(0, self._steps, padding=0.02)
        self.enableAutoRange(axis="y")
        self.style_legend(self.legend)
        self._update_ticks()

    def set_curve(self, key: str, values: Sequence[float], lowest: Sequence[float] | None = None) -> None:
        curve = self.curves.get(key)
        if curve is None:
            return
        y = np.maximum(np.asarray(values, dtype=np.float64), SMALLEST_SHOWN)
        curve.setData(np.arange(len(y)), y)
        if lowest is not None:
            y = np.maximum(np.asarray(lowest, dtype=np.float64), SMALLEST_SHOWN)
            self.lowest[key].setData(np.arange(len(y)), y)
        self._update_ticks()

    def _update_ticks(self) -> None:
        """Log-axis ticks at 1, 2, 5 × 10^k, thinned to at most six: pyqtgraph labels every minor
        tick of a log axis spanning less than a decade, and "2 3 4 5 6 7 8" run into each other."""
        values = [c.yData for c in list(self.curves.values()) + list(self.lowest.values())
                  if c.yData is not None and len(c.yData)]
        if values:
            low, high = float(min(v.min() for v in values)), float(max(v.max() for v in values))
        else:  # an empty plot: the same thinned ticks over the range it shows
            bottom, top = self.getViewBox().viewRange()[1]
            low, high = 10.0 ** bottom, 10.0 ** top
        self.getAxis("left").setTicks([log_ticks(low, high)])

    def curve_data(self, key: str, lowest: bool = False) -> np.ndarray:
        curve = (self.lowest if lowest else self.curves).get(key)
        if curve is None or curve.yData is None:
            return np.zeros(0)
        return np.asarray(curve.yData)

    def set_fonts(self, point_size: float) -> None:
        super().set_fonts(point_size)
        self.style_legend(self.legend)  # below the axes, so not the plot item's own legend
