"""The Geometry tab: the decision regions around the selected image, base classifier f beside the smoothed
classifier g, with the certified disk, the attack point and the noise cloud (Cohen et al. 2019, Fig. 1,
computed on a real model).

The slice is the plane x + a·u + b·v (u along the attack's perturbation, v random and orthogonal, both of
unit L2 length), so both axes read in L2 distance, the units of ε, σ and R. Everything is computed by
``engine/geometry.py`` on the engine thread; this module draws what comes back.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QGridLayout, QLabel,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from robustlens.engine.geometry import (ABSTAIN, AttackPoint, BaseMap, CertifiedDisk, GeometryRequest,
                                        GeometryResult, NoiseCloud, SmoothedMap, geometry_job)
from robustlens.engine.jobs import Aborted, Failed, Finished, Partial, Progress

from ..context import AppContext
from ..export import FORMATS, export_widget
from ..style import LECTURE_FONT_SCALE, base_point_size

SLOT = "geometry"
# ten hues that stay apart from each other and from the light grey of "g abstains"
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79")
ABSTAIN_COLOR = "#d4d4d4"
PROVISIONAL_FADE = 0.55     # a point not yet sampled at this level shows its coarse neighbour, faded
ALPHA_CHOICES = (0.05, 0.01, 0.001, 0.0001)
SMOOTH_SIZES = (11, 21, 41, 81)
BASE_SIZES = (51, 101, 201)
DISK_PEN = pg.mkPen("#000000", width=2.5)
DISK_HALO = pg.mkPen("#ffffff", width=6)


def class_color(index: int) -> QColor:
    return QColor(CLASS_COLORS[index]) if index < len(CLASS_COLORS) else pg.intColor(index, hues=16)


def _palette(count: int) -> np.ndarray:
    """(count + 1, 4) uint8 RGBA: the classes, then the abstain grey."""
    colors = [class_color(i) for i in range(count)] + [QColor(ABSTAIN_COLOR)]
    return np.array([[c.red(), c.green(), c.blue(), 255] for c in colors], dtype=np.uint8)


def _labelled_spin(kind, minimum, maximum, value, step, tip, decimals=None):
    box = kind()
    box.setRange(minimum, maximum)
    if decimals is not None:
        box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


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
            plot.setLabel("bottom", "a = ⟨δ, u⟩ · toward the attack (L2)")
            plot.setLabel("left", "b = ⟨δ, v⟩ · random direction (L2)")
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
        self._maps = maps
        self._legend_samples: list = []
        self.title_points = 11.0
        self.set_classes(())

    def resizeEvent(self, event) -> None:
        # two equal halves: the grid layout would otherwise share space by its items' size hints
        maps = getattr(self, "_maps", None)
        if maps is not None:
            half = max(100.0, (self.width() - 30) / 2)
            for column in (0, 1):
                maps.layout.setColumnFixedWidth(column, half)
        super().resizeEvent(event)

    # ---------------------------------------------------------------- content

    def set_classes(self, classes) -> None:
        self.classes = tuple(classes)
        self.palette = _palette(max(1, len(self.classes)))
        self.legend.clear()
        self.legend.setColumnCount(max(5, len(self.classes)))  # a row of classes, a row of symbols
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
        self.captions[key].setVisible(bool(lines))

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
                self.plots[key].setTitle(title, color="k", size=f"{self.title_points:.0f}pt")

    def set_font_size(self, points: float) -> None:
        self.title_points = points * 1.2
        self.set_titles(*(self.plots[key].titleLabel.text or None for key in ("f", "g")))
        font = QFont()
        font.setPointSizeF(points)
        for plot in self.plots.values():
            for side in ("bottom", "left"):
                axis = plot.getAxis(side)
                axis.setStyle(tickFont=font)
                axis.label.setFont(font)
                axis.setTextPen("k")
                axis.setPen("k")
        for caption in self.captions.values():
            caption.setFont(font)
        self.legend.setLabelTextSize(f"{points:.0f}pt")
        self.set_classes(self.classes)


class GeometryPanel(QWidget):
    """A 2-D slice of input space through the selected image: where f and g decide what, and the
    certificate's disk, the attack and the noise in the same picture."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.handle = None
        self.result: GeometryResult | None = None
        self.disk: CertifiedDisk | None = None
        self.attack: AttackPoint | None = None
        self.cloud: NoiseCloud | None = None
        self.base: BaseMap | None = None
        self.smoothed: SmoothedMap | None = None
        self.sliced_selection = None
        self._stale = False
        self._request: GeometryRequest | None = None
        self._build()
        self._connect()
        self._refresh_models(ctx.models)
        self.figure.set_classes(ctx.classes)
        self._show_hint()

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        self.model_box = QComboBox()
        self.model_box.setToolTip("The base classifier f; g is its Gaussian smoothing at σ")
        self.sigma_box = _labelled_spin(QDoubleSpinBox, 0.01, 4.0, 0.25, 0.05,
                                        "σ: noise level of the smoothed classifier g (a noise model's own σ is "
                                        "picked when you choose it)", decimals=2)
        self.n_box = _labelled_spin(QSpinBox, 10, 100_000, 100, 50,
                                    "n: noise samples per grid point of g's map (PREDICT at each point)")
        self.alpha_box = QComboBox()
        for alpha in ALPHA_CHOICES:
            self.alpha_box.addItem(f"α = {alpha:g}", alpha)
        self.alpha_box.setCurrentIndex(ALPHA_CHOICES.index(0.001))
        self.alpha_box.setToolTip("PREDICT abstains unless a binomial test separates the top two classes at α; "
                                  "the certificate fails with probability at most α")
        self.g_size_box = QComboBox()
        for size in SMOOTH_SIZES:
            self.g_size_box.addItem(f"g: {size}×{size}", size)
        self.g_size_box.setCurrentIndex(SMOOTH_SIZES.index(41))
        self.g_size_box.setToolTip("g's final grid; it is refined coarse first (11×11, 21×21, ...)")
        self.f_size_box = QComboBox()
        for size in BASE_SIZES:
            self.f_size_box.addItem(f"f: {size}×{size}", size)
        self.f_size_box.setCurrentIndex(BASE_SIZES.index(101))
        self.extent_box = _labelled_spin(QDoubleSpinBox, 0.0, 50.0, 0.0, 0.25,
                                         "Half-width of the slice in L2 units (a, b ∈ [−extent, extent]); "
                                         "auto: the larger of 2R, 3σ and 1.25·‖x_adv − x‖₂", decimals=2)
        self.extent_box.setSpecialValueText("auto")
        self.eps_box = _labelled_spin(QDoubleSpinBox, 0.05, 20.0, 1.0, 0.25,
                                      "Without an adversarial image from the Attack tab: L2 PGD on f with this ε "
                                      "makes the attack point (and the direction u)", decimals=2)
        self.certify_n_box = _labelled_spin(QSpinBox, 100, 1_000_000, 10_000, 1000,
                                            "n for the certificate at x (CERTIFY, n0 = 100), when the Certify tab "
                                            "has none for this image, model and σ")
        self.cloud_check = QCheckBox("noise cloud")
        self.cloud_check.setChecked(True)
        self.cloud_check.setToolTip("Draws x + ε projected onto the plane, coloured by f(x + ε): g counts these votes")
        self.run_button = QPushButton("Slice (F5)")
        self.run_button.setToolTip("Compute both maps, the certificate and the attack point for the selected image")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the figure as PNG or SVG")

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        row0 = [("Model f", self.model_box), ("σ", self.sigma_box), ("n per point", self.n_box),
                (None, self.alpha_box), (None, self.g_size_box), (None, self.f_size_box)]
        row1 = [("Extent ±", self.extent_box), ("PGD ε (L2)", self.eps_box), ("n for R", self.certify_n_box),
                (None, self.cloud_check), (None, self.run_button), (None, self.cancel_button),
                (None, self.export_button)]
        self.status = QLabel("")
        self.status.setObjectName("caption")
        self.status.setWordWrap(True)
        for r, row in enumerate((row0, row1)):
            column = 0
            for text, widget in row:
                if text:
                    grid.addWidget(QLabel(text), r, column)
                column += 1
                grid.addWidget(widget, r, column)
                column += 1
        grid.setColumnStretch(1, 2)
        grid.addWidget(self.status, 0, 14, 2, 1)
        grid.setColumnStretch(14, 3)

        self.figure = SliceFigure()
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.figure, 1)
        layout.addWidget(self.summary)
        self.ctx.register_exportable("Geometry slice", self.figure)

    def _connect(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.export_dialog)
        self.model_box.currentIndexChanged.connect(self._on_model_chosen)
        self.cloud_check.toggled.connect(lambda on: self.figure.show_cloud(self.cloud, on))
        self.ctx.modelsChanged.connect(self._refresh_models)
        self.ctx.selectionChanged.connect(self._on_selection)
        self.ctx.datasetChanged.connect(lambda dataset: self.figure.set_classes(self.ctx.classes))
        self.ctx.stripChanged.connect(self._on_strip)
        self.ctx.lectureModeChanged.connect(self.set_lecture_mode)
        self.set_lecture_mode(self.ctx.lecture_mode)

    # ---------------------------------------------------------------- models and inputs

    def _refresh_models(self, models) -> None:
        current = self.model_box.currentData()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for info in models:
            self.model_box.addItem(info.label, info.key)
        keys = [info.key for info in models]
        if current in keys:
            self.model_box.setCurrentIndex(keys.index(current))
        else:  # prefer a noise-trained model: its smoothing is the one the theory is about
            noise = [i for i, info in enumerate(models) if info.meta.kind == "noise"]
            sigma_match = [i for i in noise if models[i].meta.sigma is not None
                           and math.isclose(models[i].meta.sigma, self.sigma_box.value())]
            self.model_box.setCurrentIndex((sigma_match or noise or [0])[0] if models else -1)
            self._on_model_chosen(self.model_box.currentIndex())
        self.model_box.blockSignals(False)
        self.run_button.setEnabled(bool(models))

    def _model_info(self):
        key = self.model_box.currentData()
        return next((info for info in self.ctx.models if info.key == key), None)

    def _on_model_chosen(self, _index: int) -> None:
        info = self._model_info()
        if info is not None and info.meta.kind == "noise" and info.meta.sigma:
            self.sigma_box.setValue(float(info.meta.sigma))

    def _certify_tab_disk(self, key: str, sigma: float) -> CertifiedDisk | None:
        """The Certify tab's certificate when it is for this very image, model and σ (then the disk
        drawn here is the one that tab shows); None otherwise."""
        panels = getattr(self.ctx.window, "panels", {}) or {}
        panel = panels.get("Certify")
        certificate = getattr(panel, "certificate", None)
        if certificate is None or getattr(panel, "certified_selection", None) is not self.ctx.selection:
            return None
        if not math.isclose(float(certificate.sigma), sigma, rel_tol=1e-6):
            return None
        chooser = getattr(panel, "model_for_sigma", None)
        info = chooser(sigma) if callable(chooser) else None
        if info is None or info.key != key:
            return None
        return CertifiedDisk.from_certificate(certificate, source="Certify tab")

    def _attack_image(self):
        """The Attack tab's adversarial image for the current selection (the strip clears it on every
        new selection), or None."""
        return self.ctx.strip_images.get("adversarial")

    # ---------------------------------------------------------------- running

    def request(self) -> GeometryRequest:
        key = self.model_box.currentData()
        sigma = float(self.sigma_box.value())
        adversarial = self._attack_image()
        return GeometryRequest(
            sigma=sigma, extent=float(self.extent_box.value()) or None,
            base_size=int(self.f_size_box.currentData()), smooth_size=int(self.g_size_box.currentData()),
            n=int(self.n_box.value()), alpha=float(self.alpha_box.currentData()),
            adversarial=adversarial, attack_source="Attack tab", attack_eps=float(self.eps_box.value()),
            certify_n=int(self.certify_n_box.value()),
            disk=self._certify_tab_disk(key, sigma) if key else None)

    def run(self) -> None:
        selection = self.ctx.selection
        info = self._model_info()
        if selection is None:
            self.status.setText("Select an image in the gallery first.")
            return
        if info is None:
            self.status.setText("No model loaded: tick one under Models.")
            return
        request = self.request()
        image, key = selection.image, info.key

        def job(engine, cancel):  # on the engine thread
            return geometry_job(engine.model(key), image, request)(cancel)

        self._request = request
        self.sliced_selection = selection
        self._stale = False
        self.result = self.disk = self.attack = self.cloud = self.base = self.smoothed = None
        self.figure.clear_content()
        self.figure.set_classes(self.ctx.classes or tuple(info.meta.classes))
        self.figure.set_titles(f"base classifier f · {info.label}",
                               f"smoothed g · σ={request.sigma:g}, n={request.n}, α={request.alpha:g}")
        self.summary.setText("")
        self.status.setText("Certifying x, then slicing…")
        self.cancel_button.setEnabled(True)
        where = f"#{selection.index}" if selection.index is not None else selection.source
        self.handle = self.ctx.submit_with_models(SLOT, job, on_event=self._on_event,
                                                  label=f"geometry slice through {where}")

    def cancel(self) -> None:
        self.ctx.cancel(SLOT)

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.status.setText(f"{event.message} · {100 * event.fraction:.0f}%")
        elif isinstance(event, Partial):
            self._on_partial(event.kind, event.value)
        elif isinstance(event, Finished):
            self.result = event.result
            self.cancel_button.setEnabled(False)
            self.status.setText("Done.")
            self._update_summary()
        elif isinstance(event, Aborted):
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelled: the maps show what was computed before.")
        elif isinstance(event, Failed):
            self.cancel_button.setEnabled(False)
            self.status.setText(f"Failed: {event.message}")

    def _class_name(self, index: int | None) -> str:
        if index is None:
            return "?"
        if index == ABSTAIN:
            return "abstains"
        classes = self.figure.classes
        return classes[index] if 0 <= index < len(classes) else str(index)

    def _on_partial(self, kind: str, value) -> None:
        if kind == "disk":
            self.disk = value
            self.figure.show_disk(value, self._class_name(value.cls))
        elif kind == "attack":
            self.attack = value
            where = f"★ x_adv at ‖δ‖₂ = {value.distance:.2f}"
            self.figure.show_attack(value, {"f": f"{where}: f = {self._class_name(value.base_class)}",
                                            "g": f"{where}: g = {self._class_name(value.smoothed_class)}"})
        elif kind == "extent":
            self.figure.set_extent(float(value))
        elif kind == "base-map":
            self.base = value
            self.figure.show_base(value)
        elif kind == "noise-cloud":
            self.cloud = value
            self.figure.show_cloud(value, self.cloud_check.isChecked())
        elif kind == "smoothed-map":
            self.smoothed = value
            self.figure.show_smoothed(value)
            request = self._request
            done = int(value.computed.sum())
            level = f"{value.size}×{value.size}" + (f" ({done}/{value.size ** 2})" if done < value.size ** 2 else "")
            self.figure.set_titles(g_title=f"smoothed g · σ={value.sigma:g}, n={value.n}, α={value.alpha:g} · "
                                           f"{level}" + ("" if request is None or value.size == request.smooth_size
                                                              else " · refining"))
        self._update_summary()

    def _update_summary(self) -> None:
        parts = []
        disk = self.disk
        if disk is not None:
            if disk.abstained:
                parts.append("<b>Certificate:</b> g abstains at x (no disk).")
            else:
                evidence = ""
                if disk.certificate is not None:
                    c = disk.certificate
                    evidence = f", pA ≥ {c.pA_lower:.4f} from n = {c.n:,}, α = {c.alpha:g}"
                parts.append(f"<b>Certified:</b> {self._class_name(disk.cls)} within R = {disk.radius:.3f} "
                             f"(σ = {disk.sigma:g}{evidence}; {disk.source}).")
        attack = self.attack
        if attack is not None:
            inside = disk is not None and not disk.abstained and attack.distance < disk.radius
            off = f", {attack.off_plane:.2f} off the plane" if attack.off_plane > 1e-3 else ""
            parts.append(f"<b>Attack</b> ({attack.source}): ‖x_adv − x‖₂ = {attack.distance:.3f}"
                         f" ({'inside' if inside else 'outside'} the disk{off}); "
                         f"f → {self._class_name(attack.base_class)}, "
                         f"g → {self._class_name(attack.smoothed_class)} (PREDICT, n = {attack.smoothed_n}).")
        result = self.result
        if result is not None and result.disk_check is not None:
            check = result.disk_check
            parts.append(f"<b>In the disk:</b> {check.checked} grid points of g: {check.agreeing} show the "
                         f"certified class, {check.abstained} abstain, {check.disagreeing} disagree.")
        if self.cloud is not None:
            parts.append(f"<b>Noise:</b> ‖ε‖₂ ≈ {float(np.mean(self.cloud.norms)):.2f} in {len(self.cloud.norms)} "
                         f"draws, yet only σ = {self.cloud.sigma:g} of it lies along each axis of this plane.")
        self.summary.setText("<br>".join(parts))

    # ---------------------------------------------------------------- reacting to the window

    def _show_hint(self) -> None:
        self.status.setText("Press Slice (F5) to compute the slice through the selected image.")

    def _on_selection(self, selection) -> None:
        if self.handle is not None and self.handle.running:
            self.cancel()
        self._stale = selection is not None
        if selection is not None and self.isVisible():
            self.run()
        else:
            self.figure.clear_content()
            self.summary.setText("")
            self._show_hint()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale and self.ctx.selection is not None and self.ctx.selection is not self.sliced_selection:
            self.run()

    def _on_strip(self, slot: str) -> None:
        if slot == "adversarial" and self.sliced_selection is self.ctx.selection and self._attack_image() is not None \
                and (self.attack is None or self.attack.source != "Attack tab"):
            self.status.setText("The Attack tab has a new x_adv: press Slice (F5) to slice through it.")

    def set_lecture_mode(self, on: bool) -> None:
        self.figure.set_font_size(base_point_size() * (LECTURE_FONT_SCALE if on else 1.0))

    # ---------------------------------------------------------------- export and settings

    def export(self, path: str | Path) -> Path:
        """Save the figure (both maps and the legend): .png at twice the screen size, or .svg."""
        return export_widget(self.figure, path)

    def export_dialog(self) -> None:
        path, selected = QFileDialog.getSaveFileName(self, "Export the geometry slice", "geometry-slice.png", FORMATS)
        if not path:
            return
        if not Path(path).suffix:
            path += ".svg" if "svg" in selected.lower() else ".png"
        try:
            self.ctx.info(f"Saved {self.export(path)}")
        except (OSError, ValueError) as error:
            self.ctx.error(str(error))

    def save_settings(self, settings) -> None:
        settings.setValue("sigma", self.sigma_box.value())
        settings.setValue("n", self.n_box.value())
        settings.setValue("alpha", self.alpha_box.currentData())
        settings.setValue("g_size", self.g_size_box.currentData())
        settings.setValue("f_size", self.f_size_box.currentData())
        settings.setValue("extent", self.extent_box.value())
        settings.setValue("eps", self.eps_box.value())
        settings.setValue("certify_n", self.certify_n_box.value())
        settings.setValue("cloud", self.cloud_check.isChecked())

    def restore_settings(self, settings) -> None:
        def number(name, kind, default):
            value = settings.value(name)
            return default if value is None else kind(value)

        self.sigma_box.setValue(number("sigma", float, self.sigma_box.value()))
        self.n_box.setValue(number("n", int, self.n_box.value()))
        self.extent_box.setValue(number("extent", float, self.extent_box.value()))
        self.eps_box.setValue(number("eps", float, self.eps_box.value()))
        self.certify_n_box.setValue(number("certify_n", int, self.certify_n_box.value()))
        for box, name, kind in ((self.alpha_box, "alpha", float), (self.g_size_box, "g_size", int),
                                (self.f_size_box, "f_size", int)):
            value = settings.value(name)
            if value is not None:
                position = box.findData(kind(value))
                if position < 0:
                    raise ValueError(f"{name} = {value} is not one of the choices")
                box.setCurrentIndex(position)
        cloud = settings.value("cloud")
        if cloud is not None:
            self.cloud_check.setChecked(str(cloud).lower() in ("true", "1"))
