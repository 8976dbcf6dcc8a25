"""Drawing predictions: compact per-model bars (the strip) and a full class-probability chart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

from . import style
from .plots import Plot


@dataclass
class PredictionRow:
    """One model's verdict on one image: ``probs`` (classes,) array, or a string (pending / why not)."""
    name: str
    tooltip: str
    probs: Any
    color: QColor


class PredictionBars(QWidget):
    """One line per model: its name, and a bar as long as its top probability, labelled
    'class  97%'. Green when the top class is the true class, red when not, blue when unknown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[PredictionRow] = []
        self._classes: tuple[str, ...] = ()
        self._true_label: int | None = None
        self._empty_text = ""
        self._compact = False
        self._compact_labels_above = False  # see set_compact
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def set_rows(self, rows: list[PredictionRow], classes, true_label: int | None) -> None:
        self._rows, self._classes, self._true_label = list(rows), tuple(classes), true_label
        self.setToolTip("\n".join(self._describe(r) for r in self._rows))
        self.updateGeometry()
        self.update()

    def set_empty_text(self, text: str) -> None:
        self._empty_text = text
        self.updateGeometry()
        self.update()

    def rows(self) -> list[PredictionRow]:
        return list(self._rows)

    def set_compact(self, on: bool, labels_above: bool = False) -> None:
        """Compact (the lecture strip): no names, a wide colour chip per model (the one palette says
        which model; the tooltip names them), tighter lines. ``labels_above``: where the bars have
        height to spare (not the strip), a class shown that does not fit beside its percentage goes on
        its own line (decided on the classes shown, so a bar that fits keeps its single line)."""
        self._compact = bool(on)
        self._compact_labels_above = bool(labels_above)
        self.updateGeometry()
        self.update()

    def _line_height(self) -> int:
        return int(QFontMetrics(self.font()).height() * (1.2 if self._compact else 1.35))

    def _names_beside_fit(self, width: int) -> bool:
        metrics = QFontMetrics(self.font())
        names = max(metrics.horizontalAdvance(r.name) for r in self._rows) + 12
        labels = max([metrics.horizontalAdvance(f"{c}  100%") for c in self._classes] or [60]) + 12
        return width - names - 6 >= labels

    def _two_lines(self, width: int) -> bool:
        """Names go on their own line above the bars when a name and a labelled bar don't fit side by
        side (compact: colour chips replace the names instead)."""
        if not self._rows or self._compact:
            return False
        return not self._names_beside_fit(width)

    def _chips_only(self, width: int) -> bool:
        return bool(self._rows) and self._compact and not self._names_beside_fit(width)

    def _bar_geometry(self, width: int) -> tuple[int, int, int]:
        """(name column width, bar left, bar width) at ``width``."""
        metrics = QFontMetrics(self.font())
        if self._chips_only(width):
            name_width, bar_left = 0, 12
        elif self._two_lines(width):
            name_width, bar_left = width - 8, 7
        else:
            name_width = max(metrics.horizontalAdvance(r.name) for r in self._rows) + 12
            bar_left = name_width + 4
        return name_width, bar_left, max(10, width - bar_left - 2)

    def _labels_above(self, width: int) -> bool:
        """The class name goes on its own line above its bar (the bar keeps the percentage) when
        'class  100%' would not fit on the bar: a name is never cut short. Not in the compact strip,
        whose height the lecture layout counts on (its cards are sized for the labels)."""
        if not self._rows or not self._classes or (self._compact and not self._compact_labels_above):
            return False
        metrics = QFontMetrics(self.font())
        if self._compact:  # room is short here: only for the labels shown, not for any class there is
            shown = [f"{self._class_name(int(np.argmax(r.probs)))}  {float(np.max(r.probs)):.0%}" for r in self._rows
                     if r.probs is not None and not isinstance(r.probs, str) and len(r.probs)]
            widest = max([metrics.horizontalAdvance(text) for text in shown] or [0])
        else:
            widest = max(metrics.horizontalAdvance(f"{c}  100%") for c in self._classes)
        return widest + 8 > self._bar_geometry(width)[2]

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        metrics = QFontMetrics(self.font())
        if not self._rows:
            if not self._empty_text:
                return 4
            box = metrics.boundingRect(0, 0, max(40, width), 10_000, int(Qt.TextFlag.TextWordWrap),
                                       self._empty_text)
            return box.height() + 4
        per_row = (self._line_height() + (metrics.height() if self._two_lines(width) else 0)
                   + (metrics.height() if self._labels_above(width) else 0))
        return len(self._rows) * per_row + 4

    def sizeHint(self) -> QSize:
        width = self.width() if self.width() > 0 else 220
        return QSize(220, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:
        return QSize(120, self.heightForWidth(max(120, self.width())))

    def resizeEvent(self, event) -> None:
        before, after = event.oldSize().width(), event.size().width()
        if (self._two_lines(before), self._labels_above(before)) != (self._two_lines(after), self._labels_above(after)):
            self.updateGeometry()
        super().resizeEvent(event)

    def _describe(self, row: PredictionRow) -> str:
        if isinstance(row.probs, str) or row.probs is None:
            return f"{row.tooltip}: {row.probs or ''}"
        top = np.argsort(row.probs)[::-1][:3]
        return f"{row.tooltip}: " + ", ".join(f"{self._class_name(i)} {row.probs[i]:.1%}" for i in top)

    def _class_name(self, index: int) -> str:
        return self._classes[index] if 0 <= index < len(self._classes) else str(index)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        metrics = QFontMetrics(self.font())
        if not self._rows:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
                             | Qt.TextFlag.TextWordWrap, self._empty_text)
            return
        line = self._line_height()
        two_lines = self._two_lines(self.width())
        name_height = metrics.height() if two_lines else 0
        label_height = metrics.height() if self._labels_above(self.width()) else 0
        chips = self._chips_only(self.width())
        name_width, bar_left, bar_width = self._bar_geometry(self.width())
        for i, row in enumerate(self._rows):
            top = i * (line + name_height + label_height) + 2
            # the model's colour chip and name (beside the bar, or above it when narrow)
            if chips:
                painter.fillRect(QRectF(0, top + 1, 9, line + label_height - 4), row.color)
            else:
                block = line + name_height + label_height
                painter.fillRect(QRectF(0, top + block * 0.2, 4, block * 0.6), row.color)
                painter.setPen(palette.color(QPalette.ColorRole.WindowText))
                name = metrics.elidedText(row.name, Qt.TextElideMode.ElideRight, name_width - 8)
                painter.drawText(QRectF(7, top, name_width - 7, (name_height or line) - (0 if two_lines else 2)),
                                 Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, name)
            top += name_height
            label_line = QRectF(bar_left + 2, top, bar_width - 2, label_height)
            top += label_height
            track = QRectF(bar_left, top + 1, bar_width, line - 4)
            painter.fillRect(track, palette.color(QPalette.ColorRole.AlternateBase))
            if isinstance(row.probs, str) or row.probs is None:
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                text = metrics.elidedText(str(row.probs or ""), Qt.TextElideMode.ElideRight, int(bar_width) - 6)
                painter.drawText(track.adjusted(4, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter, text)
                continue
            probs = np.asarray(row.probs, dtype=np.float64)
            best = int(np.argmax(probs))
            p = float(probs[best])
            if self._true_label is None:
                color = style.UNKNOWN
            else:
                color = style.CORRECT if best == self._true_label else style.WRONG
            # a light tint with dark text: the label reads the same wherever the bar ends
            fill = QColor(color)
            fill.setAlpha(110)
            painter.fillRect(QRectF(track.left(), track.top(), track.width() * p, track.height()), fill)
            edge = QColor(color)
            painter.fillRect(QRectF(track.left(), track.bottom() - 3, track.width() * p, 3), edge)
            percent = f"  {p:.0%}"
            if self._true_label is not None and best != self._true_label and 0 <= self._true_label < len(probs):
                percent += f" (true {probs[self._true_label]:.0%})"
                if metrics.horizontalAdvance(self._class_name(best) + percent) > bar_width - 8:
                    percent = f"  {p:.0%}"
            painter.setPen(palette.color(QPalette.ColorRole.WindowText))
            if label_height:  # the class on its own line, the bar keeps the percentage
                painter.drawText(label_line, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                                 metrics.elidedText(self._class_name(best), Qt.TextElideMode.ElideRight,
                                                    int(label_line.width())))
                painter.drawText(track.adjusted(5, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter,
                                 metrics.elidedText(percent.strip(), Qt.TextElideMode.ElideRight,
                                                    int(track.width()) - 7))
                continue
            # the class name gives way before the percentage does
            room = int(bar_width) - 8 - metrics.horizontalAdvance(percent)
            text = metrics.elidedText(self._class_name(best), Qt.TextElideMode.ElideRight, max(room, 12)) + percent
            painter.drawText(track.adjusted(5, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter, text)


class PredictionChart(Plot):
    """Every class's probability under every loaded model: horizontal grouped bars, class names on
    the left axis, one colour per model (the legend names them)."""

    MIN_LINES = 12.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[pg.BarGraphItem] = []
        # the legend sits in its own column right of the axes, so it never hides a bar; as the plot's
        # legend its labels follow set_fonts
        self._legend = pg.LegendItem(labelTextColor="k")
        self._legend.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.getPlotItem().layout.addItem(self._legend, 2, 3)
        self.getPlotItem().layout.setAlignment(self._legend, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.getPlotItem().legend = self._legend
        self.style_legend(self._legend)
        self.getPlotItem().setLabel("bottom", "probability")
        self.getViewBox().invertY(True)  # first class at the top, like a table
        self.setXRange(0, 1, padding=0.02)
        self.showGrid(x=True, y=False, alpha=0.25)
        self.getAxis("bottom").setTickSpacing(0.2, 0.1)

    def show_predictions(self, title: str, classes, rows: list[PredictionRow], true_label: int | None) -> None:
        for item in self._items:
            self.removeItem(item)
        self._items.clear()
        self._legend.clear()
        shown = [r for r in rows if not isinstance(r.probs, str) and r.probs is not None]
        classes = tuple(classes)
        if true_label is not None and 0 <= true_label < len(classes):
            ticks = [(i, f"{name}  ✓" if i == true_label else name) for i, name in enumerate(classes)]
        else:
            ticks = list(enumerate(classes))
        self.getAxis("left").setTicks([ticks])
        self.set_title(title)
        count = max(1, len(shown))
        height = 0.8 / count
        for m, row in enumerate(shown):
            probs = np.asarray(row.probs, dtype=np.float64)
            y = np.arange(len(probs)) - 0.4 + height * (m + 0.5)
            item = pg.BarGraphItem(x0=np.zeros(len(probs)), y=y, width=probs, height=height * 0.92,
                                   brush=row.color, pen=pg.mkPen(row.color.darker(130)))
            self.addItem(item)
            self._items.append(item)
            self._legend.addItem(item, row.tooltip)
        self.setYRange(-0.6, len(classes) - 0.4, padding=0)
        self.setXRange(0, 1, padding=0.02)
