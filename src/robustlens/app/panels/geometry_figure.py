"""The Geometry tab's figure: the maps of the base classifier f and the smoothed classifier g side by
side in one slice of input space, with the certified disk, x, the attack point, the noise cloud and a
class legend (Cohen et al. 2019, Fig. 1, computed on a real model). It only draws what
``engine/geometry.py`` computed.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QResizeEvent

from robustlens.engine.geometry_maps import BaseMap, SmoothedMap
from robustlens.engine.geometry_overlays import AttackPoint, CertifiedDisk, NoiseCloud

from ..plots import plain_axes, spaced_ticks
from ..style import sized_font

# ten hues that stay apart from each other and from the light grey of "g abstains"
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79")
ABSTAIN_COLOR = "#d4d4d4"
PROVISIONAL_FADE = 0.55     # a point not yet sampled at this level shows its coarse neighbour, faded
DISK_PEN = pg.mkPen("#000000", width=2.5)
DISK_HALO = pg.mkPen("#ffffff", width=6)


def class_color(index: int) -> QColor:
    return QColor(CLASS_COLORS[index]) if index < len(CLASS_COLORS) else pg.intColor(index, hues=16)


def _palette(count: int) -> np.ndarray:
    """(count + 1, 4) uint8 RGBA: the classes, then the abstain grey."""
    colors = [class_color(i) for i in range(count)] + [QColor(ABSTAIN_COLOR)]
    return np.array([[c.red(), c.green(), c.blue(), 255] for c in colors], dtype=np.uint8)


class SliceFigure(pg.GraphicsLayoutWidget):
    """Two maps side by side (f and g) sharing their axes, the disk, x, the attack point, the noise
    cloud (on f's map: f's votes are what g counts), and a class legend underneath."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground("w")
        self.setObjectName("geometry-figure")
        self.classes: tuple[str, ...] = ()
        self.palette = _palette(10)
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.disks: dict[str, tuple[pg.PlotCurveItem, pg.PlotCurveItem]] = {}
        self.origins: dict[str, pg.ScatterPlotItem] = {}
        self.attacks: dict[str, pg.ScatterPlotItem] = {}
        self.captions: dict[str, pg.TextItem] = {}
        self.caption_lines: dict[str, dict[str, str]] = {}
        maps = self.addLayout(row=0, col=0)  # the two maps in their own row: equal halves
        for column, (key, title) in enumerate((("f", "base classifier f"), ("g", "smoothed classifier g"))):
            plot = maps.addPlot(row=0, col=column, title=title)
            plot.setAspectLocked(True)
            plot.setMenuEnabled(False)
            plain_axes(plot)
            # short: a rotated label's length is the plot's minimum height (720-line projectors)
            plot.setLabel("bottom", "a = ⟨δ, u⟩ → attack")
            plot.setLabel("left", "b = ⟨δ, v⟩ random")
            image = pg.ImageItem(axisOrder="col-major")
            plot.addItem(image)
            halo = pg.PlotCurveItem(pen=DISK_HALO)
            ring = pg.PlotCurveItem(pen=DISK_PEN)
            plot.addItem(halo)
            plot.addItem(ring)
            halo.setZValue(15)  # above the noise cloud (10): the disk must read through the draws
            ring.setZValue(16)
            origin = pg.ScatterPlotItem(symbol="o", size=11, useCache=False, brush=pg.mkBrush("w"), pen=pg.mkPen("k", width=2))
            attack = pg.ScatterPlotItem(symbol="star", size=24, useCache=False, brush=pg.mkBrush("#ffe600"),
                                        pen=pg.mkPen("k", width=1.6))
            plot.addItem(origin)
            plot.addItem(attack)
            origin.setZValue(20)
            attack.setZValue(21)
            # the numbers go in a box in the view's top-left corner (pixel coordinates of the view,
            # not data coordinates): it never covers x, the disk or the attack point, at any zoom
            caption = pg.TextItem("", color="k", anchor=(0, 0), fill=pg.mkBrush(255, 255, 255, 225),
                                  border=pg.mkPen("#888888"))
            caption.setParentItem(plot.getViewBox())
            caption.setPos(6, 6)
            caption.setZValue(30)
            self.plots[key], self.images[key], self.disks[key] = plot, image, (halo, ring)
            self.origins[key], self.attacks[key] = origin, attack
            self.captions[key], self.caption_lines[key] = caption, {}
        # same view on both maps: x and y linked would fight the locked aspect ratio, so link y and
        # let the aspect lock give x (the two plots have the same size)
        self.plots["g"].setYLink(self.plots["f"])
        # a white rim keeps every draw visible on every region colour, its fill is the draw's vote;
        # no symbol cache: drawn as paths, the points stay vectors in an SVG export
        self.cloud = pg.ScatterPlotItem(size=7, useCache=False, pen=pg.mkPen(255, 255, 255, 230, width=1.0))
        self.cloud.setZValue(10)
        self.plots["f"].addItem(self.cloud)
        self.legend = pg.LegendItem(colCount=10, labelTextColor="k", labelTextSize="9pt")
        self.addItem(self.legend, row=1, col=0)
        self.legend_beside = False
        self.compact = False
        self._titles = {key: title for key, title in (("f", "base classifier f"), ("g", "smoothed classifier g"))}
        self._maps = maps
        self._legend_samples: list = []
        self.title_points = 11.0
        self.set_classes(())

    def sizeHint(self) -> QSize:
        # modest (QGraphicsView's own is 640×480): the tab's scroll area gives a panel whose labels wrap
        # its preferred height, and a 720-line projector has ~400 px for the whole tab
        return QSize(800, 260)

    def resizeEvent(self, event) -> None:
        # two equal halves: the grid layout would otherwise share space by its items' size hints
        maps = getattr(self, "_maps", None)
        if maps is not None:
            legend = self.legend.boundingRect().width() + 12 if self.legend_beside else 0.0
            half = max(100.0, (self.width() - 30 - legend) / 2)
            for column in (0, 1):
                maps.layout.setColumnFixedWidth(column, half)
        super().resizeEvent(event)

    # ---------------------------------------------------------------- content

    def set_classes(self, classes) -> None:
        self.classes = tuple(classes)
        self.palette = _palette(max(1, len(self.classes)))
        self.legend.clear()
        # a row of classes, a row of symbols; large (lecture) fonts: four columns; beside the
        # maps (a wide, short screen): two columns
        if getattr(self, "legend_beside", False):
            columns = 2
        else:
            columns = max(5, len(self.classes)) if getattr(self, "title_points", 11.0) < 14 else 4
        self.legend.setColumnCount(columns)
        self._legend_samples = []

        def entry(name, **opts):
            sample = pg.PlotDataItem([0], [0], pen=None, **opts)
            self._legend_samples.append(sample)
            self.legend.addItem(sample, name)

        for index, name in enumerate(self.classes):
            entry(name, symbol="s", symbolSize=13, symbolBrush=class_color(index), symbolPen=None)
        entry("g abstains", symbol="s", symbolSize=13, symbolBrush=pg.mkBrush(ABSTAIN_COLOR),
              symbolPen=pg.mkPen("#999999"))
        entry("x (the image)", symbol="o", symbolSize=11, symbolBrush="w", symbolPen=pg.mkPen("k", width=2))
        entry("attack x_adv", symbol="star", symbolSize=17, symbolBrush="#ffe600", symbolPen="k")
        entry("certified disk", symbol="o", symbolSize=15, symbolBrush=pg.mkBrush(0, 0, 0, 0),
              symbolPen=pg.mkPen("k", width=2.5))
        entry("x+ε (f's vote)", symbol="o", symbolSize=8, symbolBrush="#777777", symbolPen="w")

    def clear_content(self) -> None:
        for key in ("f", "g"):
            self.images[key].clear()
            for curve in self.disks[key]:
                curve.setData([], [])
            self.origins[key].setData([], [])
            self.attacks[key].setData([], [])
            self.caption_lines[key] = {}
            self._show_caption(key)
        self.cloud.setData([], [])

    def set_extent(self, extent: float) -> None:
        for key in ("f", "g"):
            self.origins[key].setData([0.0], [0.0])
            self.plots[key].setRange(xRange=(-extent, extent), yRange=(-extent, extent), padding=0.02)

    def _place(self, key: str, rgba: np.ndarray, axis: np.ndarray) -> None:
        """Pixel (i, j) centred on (axis[i], axis[j]): the image spans one half-step beyond the grid."""
        step = float(axis[1] - axis[0]) if len(axis) > 1 else 1.0
        low = float(axis[0]) - step / 2
        self.images[key].setImage(rgba, autoLevels=False)
        self.images[key].setRect(QRectF(low, low, step * len(axis), step * len(axis)))

    def show_base(self, base: BaseMap) -> None:
        self._place("f", self.palette[np.clip(base.classes, 0, len(self.palette) - 2)], base.axis)

    def show_smoothed(self, smoothed: SmoothedMap) -> None:
        abstain = len(self.palette) - 1
        index = np.where(smoothed.computed & ~smoothed.significant, abstain,
                         np.clip(smoothed.classes, 0, abstain - 1))
        rgba = self.palette[index].copy()
        pending = ~smoothed.computed
        if pending.any():  # not sampled yet at this level: the coarse answer, faded toward white
            faded = rgba[pending, :3].astype(np.float32) * (1 - PROVISIONAL_FADE) + 255 * PROVISIONAL_FADE
            rgba[pending, :3] = faded.astype(np.uint8)
        self._place("g", rgba, smoothed.axis)

    def _show_caption(self, key: str) -> None:
        lines = [self.caption_lines[key][part] for part in ("disk", "attack") if self.caption_lines[key].get(part)]
        self.captions[key].setText("\n".join(lines))
        # lecture mode: a box of large type would cover x and the disk of a small map; the summary
        # beside the figure gives the same numbers (an export out of lecture mode keeps the box)
        self.captions[key].setVisible(bool(lines) and not self.compact)

    def show_disk(self, disk: CertifiedDisk, class_name: str) -> None:
        angles = np.linspace(0.0, 2 * math.pi, 241)
        for key in ("f", "g"):
            halo, ring = self.disks[key]
            if disk.abstained or disk.radius <= 0:
                halo.setData([], [])
                ring.setData([], [])
                self.caption_lines[key]["disk"] = "g abstains at x: no certified disk"
            else:
                xs, ys = disk.radius * np.cos(angles), disk.radius * np.sin(angles)
                halo.setData(xs, ys)
                ring.setData(xs, ys)
                self.caption_lines[key]["disk"] = f"◯ g certified {class_name} within R = {disk.radius:.2f}"
            self._show_caption(key)

    def show_attack(self, attack: AttackPoint, texts: dict[str, str]) -> None:
        a, b = attack.coordinates
        for key in ("f", "g"):
            self.attacks[key].setData([a], [b])
            self.caption_lines[key]["attack"] = texts[key]
            self._show_caption(key)

    def show_cloud(self, cloud: NoiseCloud | None, visible: bool = True) -> None:
        if cloud is None or not visible:
            self.cloud.setData([], [])
            return
        brushes = [pg.mkBrush(class_color(int(c))) for c in cloud.classes]
        self.cloud.setData(cloud.coordinates[:, 0], cloud.coordinates[:, 1], brush=brushes)

    def set_titles(self, f_title: str | None = None, g_title: str | None = None) -> None:
        for key, title in (("f", f_title), ("g", g_title)):
            if title is not None:
                self._titles[key] = title
                size = self.title_points
                if self.compact:  # a narrow half of a projector: the main detail on a second line
                    title = "<br>".join(title.split(" · ")[:2])  # (the rest is in the controls above)
                    size = self.title_points / 1.2
                self.plots[key].setTitle(title, color="k", size=f"{size:.0f}pt")

    def set_font_size(self, points: float) -> None:
        """Every text of the figure at ``points`` (``style.point_size``), the titles a little larger."""
        self.title_points = points * 1.2
        self.set_titles(*(self._titles.get(key) for key in ("f", "g")))
        font = sized_font(points)
        for plot in self.plots.values():
            for side in ("bottom", "left"):
                axis = plot.getAxis(side)
                axis.setStyle(tickFont=font)
                axis.label.setFont(font)
                axis.setTextPen("k")
                axis.setPen("k")
                spaced_ticks(axis, points)
        for caption in self.captions.values():
            caption.setFont(font)
        self.legend.setLabelTextSize(f"{points:.0f}pt")
        self.set_classes(self.classes)

    def set_compact(self, on: bool) -> None:
        """Lecture mode (large fonts, narrow maps): titles on short lines, no box of numbers inside the maps."""
        self.compact = bool(on)
        self.set_titles(self._titles.get("f"), self._titles.get("g"))
        for key in ("f", "g"):
            self._show_caption(key)

    def set_legend_beside(self, beside: bool) -> None:
        """The class legend right of the maps (lecture mode: 16:9 has width to spare) or under them."""
        if bool(beside) == self.legend_beside:
            return
        self.legend_beside = bool(beside)
        self.removeItem(self.legend)
        if beside:
            self.addItem(self.legend, row=0, col=1)
            self.ci.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)  # its own height, not the maps'
        else:
            self.addItem(self.legend, row=1, col=0)
        self.set_classes(self.classes)
        self.resizeEvent(QResizeEvent(self.size(), self.size()))
