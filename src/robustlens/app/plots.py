"""The one plot base every panel's plots share: white, static (a lecture hall clicks, it does not
drag), axes that never rescale their labels by themselves, and fonts (axes, title, legend, text
items) that follow lecture mode through one call, :meth:`Plot.set_fonts`."""

from __future__ import annotations

import re

import pyqtgraph as pg
from PySide6.QtCore import QSize
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QWidget

from . import style

AXES = ("left", "bottom")
ALL_SIDES = ("left", "bottom", "right", "top")


def plain_axes(plot_item: pg.PlotItem) -> None:
    """No automatic SI prefix on any axis of ``plot_item`` (a radius of 0.5 stays 0.5, never "500
    (×0.001)"). Every plot of the app goes through here, :class:`Plot` and the Geometry figure alike."""
    for side in ALL_SIDES:
        axis = plot_item.getAxis(side)
        axis.enableAutoSIPrefix(False)


def spaced_ticks(axis: pg.AxisItem, point_size: float, length: float | None = None) -> None:
    """Fewer ticks as the font grows, and on a short axis (a narrow lecture column), so their labels
    never run into each other."""
    density = max(0.45, min(1.0, 9.0 / max(point_size, 1.0)))
    if length is not None and axis.orientation in ("bottom", "top"):
        density *= max(0.25, min(1.0, length / 640.0))
    axis.setTickDensity(density)


class Plot(pg.PlotWidget):
    """A white pyqtgraph plot without mouse panning, menus or SI-prefix axes (ε = 0.05 stays 0.05, not
    "50 (×0.001)"). ``MIN_LINES``: its minimum height in lines of its font, so lecture fonts get the
    room they need; ``SIZE_HINT``: its preferred size (modest, so a panel fits its window)."""

    MIN_LINES = 8.0
    SIZE_HINT = QSize(400, 240)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background="w")
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        for axis in AXES:
            self.getAxis(axis).setTextPen("k")
            self.getAxis(axis).setPen("k")
        plain_axes(self.getPlotItem())
        self._text_items: list[pg.TextItem] = []
        self._title = ""
        self._point_size = style.base_point_size()
        self.set_fonts(self._point_size)

    def sizeHint(self) -> QSize:
        return self.SIZE_HINT

    @property
    def point_size(self) -> float:
        return self._point_size

    def set_fonts(self, point_size: float) -> None:
        """Every text of the plot at ``point_size`` (the title a little larger)."""
        self._point_size = point_size
        font = style.sized_font(point_size)
        self.setMinimumHeight(int(QFontMetrics(font).height() * self.MIN_LINES))
        for axis in AXES:
            self.getAxis(axis).setStyle(tickFont=font)
            self.getAxis(axis).label.setFont(font)
            spaced_ticks(self.getAxis(axis), point_size, self.width() if self.isVisible() else None)
        if self._title:
            self.set_title(self._title)
        for item in self._text_items:
            item.setFont(font)
        legend = self.getPlotItem().legend
        if legend is not None:
            self.style_legend(legend)

    def style_legend(self, legend: pg.LegendItem) -> None:
        """A legend's labels at the plot's point size (their HTML carries pyqtgraph's 9pt otherwise)."""
        size = f"{self._point_size:.1f}pt"
        legend.opts["labelTextSize"] = size
        for _sample, label in legend.items:
            label.setText(label.text, size=size)
        legend.updateSize()

    def set_title(self, text: str) -> None:
        """The title, 1.2× the axes' text; lines separated by <br> get the room they need. A line wider
        than the plot breaks at a space (a narrow lecture column), never cut off."""
        self._title = text
        size = self._point_size * 1.2
        shown = self._wrapped_title(text, QFontMetrics(style.sized_font(size)))
        self.setTitle(shown, color="k", size=f"{size:.1f}pt")
        height = int(QFontMetrics(style.sized_font(size)).height() * (shown.count("<br>") + 1) + 10)
        self.getPlotItem().titleLabel.setMaximumHeight(height)
        self.getPlotItem().layout.setRowFixedHeight(0, height)

    MAX_TITLE_BREAKS = 3  # per line of the title as written

    def _wrapped_title(self, text: str, metrics: QFontMetrics) -> str:
        # the title sits over the view box alone: the plot's width less the left axis and some air
        room = self.width() - int(self.getAxis("left").width()) - 24

        def width(html: str) -> int:
            return metrics.horizontalAdvance(re.sub(r"<[^>]*>", "", html).replace("&nbsp;", " "))

        def split(line: str) -> list[str]:
            """``line`` as one or two lines: broken at the plain space (outside tags; &nbsp; keeps a
            legend's mark with its text) where the longer of the two is shortest."""
            spaces = [m.start() for m in re.finditer(" ", line)
                      if line.rfind("<", 0, m.start()) <= line.rfind(">", 0, m.start())]
            if width(line) <= room or not spaces:
                return [line]
            best = min(spaces, key=lambda at: max(width(line[:at]), width(line[at + 1:])))
            return [line[:best], line[best + 1:]]

        if room <= 0:
            return text
        lines = []
        for written in text.split("<br>"):
            parts = [written]
            for _ in range(self.MAX_TITLE_BREAKS):  # the widest part again, until every part fits
                widest = max(range(len(parts)), key=lambda i: width(parts[i]))
                pieces = split(parts[widest])
                if len(pieces) == 1:
                    break
                parts[widest:widest + 1] = pieces
            lines += parts
        return "<br>".join(lines)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event is None or event.oldSize().width() == event.size().width() or "_point_size" not in self.__dict__:
            return  # (pyqtgraph calls it without an event; or before __init__ is done)
        spaced_ticks(self.getAxis("bottom"), self._point_size, event.size().width())
        if self._title:
            self.set_title(self._title)

    def text_item(self, **options) -> pg.TextItem:
        """A text item in the plot whose font follows :meth:`set_fonts`."""
        item = pg.TextItem(**options)
        item.setFont(style.sized_font(self._point_size))
        self.addItem(item)
        self._text_items.append(item)
        return item
