"""The Attack and Experiments tabs' drawings: live PGD curves, robust-accuracy-vs-ε curves and the
transfer matrix. They only draw numbers the engine computed (``engine/attack_judge.py``,
``engine/robustness.py``); the panels decide what to show when."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QSplitter, QTableWidget, QTableWidgetItem, QWidget

from ..plots import Plot
from .attack_table import make_read_only, table_item

LOSS_COLOR = QColor(90, 60, 160)
TRUE_COLOR = QColor(46, 139, 87)
TARGET_COLOR = QColor(200, 55, 45)
RESTART_COLOR = QColor(150, 150, 150)
LOSS_NAMES = {"ce": "CE loss", "cw": "CW margin"}


class StepCurve(Plot):
    """One quantity of a running PGD attack against the step, restarts one after another (a gap and a
    dotted line between them). ``series`` names the curves this plot holds: {key: (legend, colour,
    dashed)}; the legend is the plot's title line, so it never hides a curve."""

    def __init__(self, y_label: str, series: dict[str, tuple[str, QColor, bool]],
                 y_range: tuple[float, float] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLabel("bottom", "PGD step")
        item.setLabel("left", y_label)
        self.showGrid(x=True, y=True, alpha=0.2)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._legend: dict[str, list] = {}   # key -> [text, colour, dashed, shown]
        for key, (text, color, dashed) in series.items():
            pen = pg.mkPen(color, width=2.5, style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
            self.curves[key] = self.plot([], [], pen=pen, connect="finite")
            self._legend[key] = [text, QColor(color), dashed, True]
        self.marker = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(30, 30, 30), pen=pg.mkPen(None))
        self.addItem(self.marker)
        self._fixed_y = y_range
        self._restart_lines: list[pg.InfiniteLine] = []
        self.setMinimumWidth(220)
        self.prepare(1)
        self._retitle()

    def prepare(self, total_steps: int, restarts: Sequence[int] = ()) -> None:
        """Empty curves on an x axis that already spans the whole attack (so the curve grows into it)."""
        for curve in self.curves.values():
            curve.setData([], [])
        self.marker.setData([], [])
        for line in self._restart_lines:
            self.removeItem(line)
        self._restart_lines = []
        for x in restarts:
            line = pg.InfiniteLine(x, angle=90, movable=False,
                                   pen=pg.mkPen(RESTART_COLOR, width=1, style=Qt.PenStyle.DotLine))
            self.addItem(line)
            self._restart_lines.append(line)
        self.setXRange(0, max(1, total_steps), padding=0.02)
        if self._fixed_y is not None:
            self.setYRange(*self._fixed_y, padding=0.02)
        else:
            self.enableAutoRange(axis="y")

    def set_series(self, key: str, x: np.ndarray, y: np.ndarray) -> None:
        curve = self.curves.get(key)
        if curve is not None:
            curve.setData(x, y)

    def set_legend(self, key: str, text: str) -> None:
        if key in self._legend:
            self._legend[key][0] = text
            self._retitle()

    def legend_text(self, key: str) -> str:
        return self._legend[key][0]

    def set_visible(self, key: str, visible: bool) -> None:
        """Show or hide a curve together with its legend entry."""
        curve = self.curves.get(key)
        if curve is None:
            return
        curve.setVisible(visible)
        self._legend[key][3] = visible
        self._retitle()

    def _retitle(self) -> None:
        parts = []
        for text, color, dashed, shown in self._legend.values():
            if shown:
                line = "╍╍" if dashed else "━━"
                parts.append(f"<span style='color:{color.name()}'><b>{line}</b></span>&nbsp;{_escape(text)}")
        self.set_title("&nbsp;&nbsp;&nbsp;".join(parts))

    def set_marker(self, x: float | None, y: float | None) -> None:
        if x is None or y is None or not math.isfinite(y):
            self.marker.setData([], [])
        else:
            self.marker.setData([x], [y])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class AttackCurves(QSplitter):
    """The Attack tab's two live curves side by side: the attack loss, and the probability of the true
    class (and of the target) against the PGD step over all restarts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.loss_plot = StepCurve("loss", {"loss": ("loss", LOSS_COLOR, False)})
        self.loss_plot.setObjectName("attack-loss")
        self.probability_plot = StepCurve("probability", {"true": ("P(true class)", TRUE_COLOR, False),
                                                          "target": ("P(target)", TARGET_COLOR, True)},
                                          y_range=(0.0, 1.0))
        self.probability_plot.setObjectName("attack-probability")
        self.probability_plot.set_visible("target", False)
        self.addWidget(self.loss_plot)
        self.addWidget(self.probability_plot)
        self.setChildrenCollapsible(False)

    def prepare(self, params, classes, label: int | None) -> None:
        """Empty curves for an attack of ``params`` (AttackParams; None: no attack) on an image of true
        class ``label``, with legends naming the loss and the classes."""
        steps = params.steps if params else 1
        restarts = params.restarts if params else 1
        boundaries = [r * steps for r in range(1, restarts)]
        self.loss_plot.prepare(steps * restarts, boundaries)
        self.probability_plot.prepare(steps * restarts, boundaries)
        if params is None:
            return
        smoothed = "smoothed " if params.smoothed else ""
        true_name = classes[label] if label is not None and label < len(classes) else "its class"
        targeted = params.target != "untargeted"
        towards = "target" if targeted else "true class"  # short: the legend fits a narrow lecture column
        self.loss_plot.set_legend("loss", f"{smoothed}{LOSS_NAMES[params.loss]} ({towards})")
        self.loss_plot.setLabel("left", f"loss ({'minimised' if targeted else 'maximised'})")
        self.probability_plot.set_legend("true", f"{smoothed}P({true_name}), true")
        self.probability_plot.set_visible("target", targeted)
        if targeted:
            text = (f"{smoothed}P({classes[params.target_class]}), target" if params.target == "class"
                    and params.target_class is not None and params.target_class < len(classes) else
                    f"{smoothed}P(target)")
            self.probability_plot.set_legend("target", text)

    def draw(self, steps: Sequence) -> None:
        """The curves through ``steps`` (the AttackStep of every iterate so far), a dot on the last."""
        # x = the step counted over all restarts; NaN between restarts breaks the line
        x, loss, p_true, p_target = [], [], [], []
        previous = None
        for s in steps:
            if previous is not None and s.restart != previous:
                for values in (x, loss, p_true, p_target):
                    values.append(np.nan)
            previous = s.restart
            x.append(s.restart * s.steps + s.step)
            loss.append(float(s.loss[0]))
            p_true.append(float(s.true_probability[0]))
            p_target.append(float(s.target_probability[0]) if s.target_probability is not None else np.nan)
        x = np.asarray(x, dtype=float)
        self.loss_plot.set_series("loss", x, np.asarray(loss))
        self.probability_plot.set_series("true", x, np.asarray(p_true))
        self.probability_plot.set_series("target", x, np.asarray(p_target))
        self.loss_plot.set_marker(x[-1], loss[-1])
        self.probability_plot.set_marker(x[-1], p_true[-1])

    def set_fonts(self, point_size: float) -> None:
        for plot in (self.loss_plot, self.probability_plot):
            plot.set_fonts(point_size)


class RobustnessPlot(Plot):
    """Robust accuracy against ε, one curve (with a dot per computed ε) per model, growing as the
    points arrive."""

    TOP = 1.38  # the y axis goes past 1 to leave room for the legend
    MIN_LINES = 12.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLabel("left", "robust accuracy")
        self.showGrid(x=True, y=True, alpha=0.2)
        # the legend sits in three columns in headroom above accuracy 1, where no curve can go
        self.legend = self.addLegend(offset=(60, 4), labelTextColor="k", colCount=3,
                                     brush=pg.mkBrush(255, 255, 255, 220))
        self.getAxis("left").setTicks([[(v, f"{v:g}") for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]])
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.setYRange(-0.03, self.TOP, padding=0)
        self.setMinimumWidth(300)
        self.style_legend(self.legend)

    def prepare(self, models: Sequence[tuple[str, str, QColor]], eps_values: Sequence[float], x_label: str,
              title: str) -> None:
        """One empty curve per model: (name as the points call it, legend text, colour)."""
        for curve in self.curves.values():
            self.removeItem(curve)
        self.legend.clear()
        self.curves = {}
        for name, text, color in models:
            self.curves[name] = self.plot([], [], pen=pg.mkPen(color, width=2.5), name=text, symbol="o",
                                          symbolSize=7, symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen("w"))
        self.getPlotItem().setLabel("bottom", x_label)
        top = max(eps_values) if len(eps_values) else 1.0
        self.setXRange(min(0.0, min(eps_values, default=0.0)), top if top > 0 else 1.0, padding=0.03)
        self.setYRange(-0.03, self.TOP, padding=0)
        self.set_title(title)
        self.style_legend(self.legend)

    def set_curve(self, name: str, eps: Sequence[float], accuracy: Sequence[float]) -> None:
        curve = self.curves.get(name)
        if curve is not None:
            curve.setData(np.asarray(eps, dtype=float), np.asarray(accuracy, dtype=float))

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.curves[name].getData()
        return (np.asarray([]) if x is None else x), (np.asarray([]) if y is None else y)


def success_color(rate: float) -> QColor:
    """White (0) to deep red (1): how often the attack works."""
    if rate != rate:  # NaN: no image was eligible
        return QColor(235, 235, 235)
    t = min(1.0, max(0.0, float(rate)))
    low, high = np.array([255, 255, 255]), np.array([190, 30, 45])
    r, g, b = (low + (high - low) * t).round().astype(int)
    return QColor(int(r), int(g), int(b))


class TransferMatrixTable(QTableWidget):
    """Rows: the model the adversarial examples were crafted on; columns: the model judging them;
    each cell the attack success rate, coloured white → red, filled in as the engine computes it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        make_read_only(self)
        self.setWordWrap(True)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(300, 160)
        self.names: list[str] = []
        self.rates: dict[tuple[str, str], float] = {}

    def prepare(self, names: Sequence[str], labels: Sequence[str], tooltips: Sequence[str] = ()) -> None:
        """An empty matrix for these models (``names`` as the cells call them, short ``labels`` for the
        headers, ``tooltips`` saying more)."""
        self.names = list(names)
        self.rates = {}
        self.clear()
        self.setRowCount(len(names))
        self.setColumnCount(len(names))
        tips = list(tooltips) or list(labels)
        for i, label in enumerate(labels):
            column = QTableWidgetItem(f"judged by\n{label}")
            column.setToolTip(f"judged by {tips[i]}")
            self.setHorizontalHeaderItem(i, column)
            row = QTableWidgetItem(f"crafted on {label}")
            row.setToolTip(f"adversarial examples crafted on {tips[i]}")
            self.setVerticalHeaderItem(i, row)
        for r in range(len(names)):
            for c in range(len(names)):
                self.setItem(r, c, table_item("…", "not computed yet", color=QColor(150, 150, 150),
                                         align=Qt.AlignmentFlag.AlignCenter))

    def set_cell(self, source: str, target: str, rate: float, fooled: int, eligible: int) -> None:
        if source not in self.names or target not in self.names:
            return
        r, c = self.names.index(source), self.names.index(target)
        self.rates[(source, target)] = rate
        text = "—" if rate != rate else f"{rate:.0%}"
        background = success_color(rate)
        dark = rate == rate and rate > 0.55
        where = "white box: the attack's own model" if r == c else "transfer: crafted on another model"
        tip = (f"{fooled} of {eligible} images that {target} classifies correctly are fooled by examples "
               f"crafted on {source} ({where})")
        self.setItem(r, c, table_item(text, tip, bold=r == c, color=QColor("white") if dark else QColor(20, 20, 20),
                                 background=background, align=Qt.AlignmentFlag.AlignCenter))

    def cell_text(self, source: str, target: str) -> str:
        item = self.item(self.names.index(source), self.names.index(target))
        return item.text() if item is not None else ""
