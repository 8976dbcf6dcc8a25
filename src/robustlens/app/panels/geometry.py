"""The Geometry tab: the decision regions around the selected image, base classifier f beside the smoothed
classifier g, with the certified disk, the attack point and the noise cloud (Cohen et al. 2019, Fig. 1,
computed on a real model).

The slice is the plane x + a·u + b·v (u along the attack's perturbation, v random and orthogonal, both of
unit L2 length), so both axes read in L2 distance, the units of ε, σ and R. Everything is computed by
``engine/geometry.py`` on the engine thread; the figure (``geometry_figure.py``) draws what comes back.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from robustlens.engine.geometry import GeometryRequest, GeometryResult, geometry_job
from robustlens.engine.geometry_maps import BaseMap, SmoothedMap
from robustlens.engine.geometry_overlays import AttackPoint, CertifiedDisk, NoiseCloud
from robustlens.engine.smoothing import ABSTAIN

from ..context import AppContext
from ..controls import combo_box, double_spin_box, setting_combo, spin_box
from ..export import FORMATS, export_widget
from ..settings import Setting
from ..style import point_size
from .base import Panel
from .geometry_figure import SliceFigure

SLOT = "geometry"
ALPHA_CHOICES = (0.05, 0.01, 0.001, 0.0001)
SMOOTH_SIZES = (11, 21, 41, 81)
BASE_SIZES = (51, 101, 201)
LEGEND_BESIDE_FROM = 1150  # lecture mode: from this tab width (px) the class legend sits beside the maps


class GeometryPanel(Panel):
    """A 2-D slice of input space through the selected image: where f and g decide what, and the
    certificate's disk, the attack and the noise in the same picture."""

    SETTINGS = (
        Setting("sigma", 0.25, 0.01, 4.0, step=0.05,
                help="σ: noise level of the smoothed classifier g (a noise model's own σ is picked when you "
                     "choose it)"),
        Setting("n", 100, 10, 100_000, step=50,
                help="n: noise samples per grid point of g's map (PREDICT at each point)"),
        Setting("alpha", 0.001, choices=ALPHA_CHOICES,
                help="PREDICT abstains unless a binomial test separates the top two classes at α; "
                     "the certificate fails with probability at most α"),
        Setting("g_size", 41, choices=SMOOTH_SIZES, help="g's final grid; it is refined coarse first (11×11, 21×21, ...)"),
        Setting("f_size", 101, choices=BASE_SIZES),
        Setting("extent", 0.0, 0.0, 50.0, step=0.25,
                help="Half-width of the slice in L2 units (a, b ∈ [−extent, extent]); "
                     "auto: the larger of 2R, 3σ and 1.25·‖x_adv − x‖₂"),
        Setting("eps", 1.0, 0.05, 20.0, step=0.25,
                help="Without an adversarial image from the Attack tab: L2 PGD on f with this ε "
                     "makes the attack point (and the direction u)"),
        Setting("certify_n", 10_000, 100, 1_000_000, step=1000,
                help="n for the certificate at x (CERTIFY, n0 = 100), when the Certify tab "
                     "has none for this image, model and σ"),
        Setting("cloud", True, help="Draws x + ε projected onto the plane, coloured by f(x + ε): g counts these votes"),
        Setting("auto", False, help="Slice whenever another image is selected (while this tab is shown); "
                                    "unticked, F5 or Slice starts it"),
    )

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
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
        setting = {s.key: s for s in self.SETTINGS}
        self.model_box = combo_box((), "The base classifier f; g is its Gaussian smoothing at σ")
        self.model_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # models arrive later
        self.sigma_box = double_spin_box(setting["sigma"], decimals=2)
        self.n_box = spin_box(setting["n"])
        self.alpha_box = setting_combo(setting["alpha"], text=lambda alpha: f"α = {alpha:g}")
        self.g_size_box = setting_combo(setting["g_size"], text=lambda size: f"g: {size}×{size}")
        self.f_size_box = setting_combo(setting["f_size"], text=lambda size: f"f: {size}×{size}")
        self.extent_box = double_spin_box(setting["extent"], decimals=2)
        self.extent_box.setSpecialValueText("auto")
        self.eps_box = double_spin_box(setting["eps"], decimals=2)
        self.certify_n_box = spin_box(setting["certify_n"])
        self.cloud_check = QCheckBox("noise cloud")
        self.cloud_check.setChecked(setting["cloud"].default)
        self.cloud_check.setToolTip(setting["cloud"].help)
        self.auto_check = QCheckBox("on click")
        self.auto_check.setChecked(setting["auto"].default)
        self.auto_check.setToolTip(setting["auto"].help)

        self.run_button = QPushButton("Slice (F5)")
        self.run_button.setToolTip("Compute both maps, the certificate and the attack point for the selected image")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the figure as PNG or SVG")

        self.status = QLabel("")
        self.status.setObjectName("caption")
        self.status.setWordWrap(True)
        labelled = [("Model f", self.model_box), ("σ", self.sigma_box), ("n per point", self.n_box),
                    (None, self.alpha_box), (None, self.g_size_box), (None, self.f_size_box),
                    ("Extent ±", self.extent_box), ("PGD ε (L2)", self.eps_box), ("n for R", self.certify_n_box),
                    (None, self.cloud_check), (None, self.auto_check), (None, self.run_button),
                    (None, self.cancel_button), (None, self.export_button)]
        self._controls = [(QLabel(text) if text else None, widget) for text, widget in labelled]
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(4)

        self.figure = SliceFigure()
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.summary.setObjectName("geometry-verdict")
        # lecture mode: the status and the summary in a column beside the figure (a 16:9 screen has
        # width to spare, not height); on a desktop under it
        self.side = QWidget()
        self.side.setMinimumWidth(260)
        self.side_layout = QVBoxLayout(self.side)
        self.side_layout.setContentsMargins(0, 0, 0, 0)
        self.body = QHBoxLayout()
        self.body.setSpacing(8)
        self.body.addWidget(self.figure, 3)
        self.body.addWidget(self.side, 1)
        self.side.hide()
        layout = QVBoxLayout(self)
        layout.setSpacing(4)
        layout.addLayout(self.grid)
        layout.addLayout(self.body, 1)
        self._layout = layout
        self._arrange(False)
        self.ctx.register_exportable("Geometry slice", self.figure)

    def _connect(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.export_button.clicked.connect(self.export_dialog)
        self.model_box.currentIndexChanged.connect(self._on_model_chosen)
        self.cloud_check.toggled.connect(lambda on: self.figure.show_cloud(self.cloud, on))
        self.ctx.modelsChanged.connect(self._refresh_models)
        self.ctx.selectionChanged.connect(self._on_selection)
        self.ctx.datasetChanged.connect(lambda dataset: self.figure.set_classes(self.ctx.classes))
        self.ctx.stripChanged.connect(self._on_strip)
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

    def _certify_tab_disk(self, selection, key: str, sigma: float) -> CertifiedDisk | None:
        """The Certify tab's certificate when it is for this very image, model and σ (then the disk
        drawn here is the one that tab shows); None otherwise."""
        certificate = self.ctx.certificate_for(selection, key)
        if certificate is None or not math.isclose(float(certificate.sigma), sigma, rel_tol=1e-6):
            return None
        return CertifiedDisk.from_certificate(certificate, source="Certify tab")

    def _attack_image(self):
        """The Attack tab's adversarial image for the current selection (the strip clears it on every
        new selection), or None."""
        return self.ctx.strip_images.get("adversarial")

    # ---------------------------------------------------------------- running

    def request(self, selection, key: str) -> GeometryRequest:
        """The slice's parameters as the controls show them now, for ``selection`` under model ``key``."""
        sigma = float(self.sigma_box.value())
        return GeometryRequest(
            model_key=key, image=selection.image, sigma=sigma, extent=float(self.extent_box.value()) or None,
            base_size=int(self.f_size_box.currentData()), smooth_size=int(self.g_size_box.currentData()),
            n=int(self.n_box.value()), alpha=float(self.alpha_box.currentData()),
            adversarial=self._attack_image(), attack_source="Attack tab", attack_eps=float(self.eps_box.value()),
            certify_n=int(self.certify_n_box.value()), disk=self._certify_tab_disk(selection, key, sigma))

    def run(self) -> None:
        selection = self.ctx.selection
        info = self._model_info()
        if selection is None:
            self.status.setText("Select an image in the gallery first.")
            return
        if info is None:
            self.status.setText("No model loaded: tick one under Models.")
            return
        request = self.request(selection, info.key)
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
        where = f"#{selection.index}" if selection.index is not None else selection.source
        self.run_engine(SLOT, geometry_job, request, label=f"geometry slice through {where}",
                        on_partial=self._on_partial, on_progress=self._on_progress, on_done=self._on_done,
                        on_aborted=self._on_aborted, on_failed=self._on_failed, cancel_button=self.cancel_button)

    def _on_progress(self, event) -> None:
        self.status.setText(f"{event.message} · {100 * event.fraction:.0f}%")

    def _on_done(self, result: GeometryResult) -> None:
        self.result = result
        self.status.setText("Done.")
        self._update_summary()

    def _on_aborted(self, _event) -> None:
        self.status.setText("Cancelled: the maps show what was computed before.")

    def _on_failed(self, event) -> None:
        self.status.setText(f"Failed: {event.message}")

    def _class_name(self, index: int | None) -> str:
        if index is None:
            return "?"
        if index == ABSTAIN:
            return "abstains"
        classes = self.figure.classes
        return classes[index] if 0 <= index < len(classes) else str(index)

    def _on_partial(self, event) -> None:
        kind, value = event.kind, event.value
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
        if self.job_running(SLOT):
            self.cancel_job(SLOT)
        self._stale = selection is not None and self.auto_check.isChecked()
        if self._stale and self.isVisible():
            self.run()
        else:
            self.figure.clear_content()
            self.summary.setText("")
            self._show_hint()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale and self.auto_check.isChecked() and self.ctx.selection is not None \
                and self.ctx.selection is not self.sliced_selection:
            self.run()

    def _on_strip(self, slot: str) -> None:
        if slot == "adversarial" and self.sliced_selection is self.ctx.selection and self._attack_image() is not None \
                and (self.attack is None or self.attack.source != "Attack tab"):
            self.status.setText("The Attack tab has a new x_adv: press Slice (F5) to slice through it.")

    def set_lecture_mode(self, on: bool) -> None:
        self.figure.set_font_size(point_size(on))
        self.figure.set_compact(on)
        self._place_legend()
        self._arrange(on)

    def _place_legend(self) -> None:
        """Lecture mode on a wide tab: the class legend beside the maps (16:9 has width to spare); a
        narrower one (the deck pane beside it), or a desktop: under them."""
        tab = self.parentWidget()  # the scroll area's viewport: its width does not follow the panel's
        width = tab.width() if tab is not None else self.width()
        self.figure.set_legend_beside(bool(self.ctx.lecture_mode) and width >= LEGEND_BESIDE_FROM)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.oldSize().width() != event.size().width():
            self._place_legend()

    # the controls' rows: two long ones on a desktop; in lecture mode (large fonts) three shorter ones,
    # so the row fits a 1280-px projector even with the deck pane beside the tabs
    ROWS = {False: (6, 8), True: (4, 5, 5)}

    def _arrange(self, lecture: bool) -> None:
        grid = self.grid
        for label, widget in self._controls:
            for item in (label, widget):
                if item is not None:
                    grid.removeWidget(item)
        for column in range(grid.columnCount()):
            grid.setColumnStretch(column, 0)
        controls = iter(self._controls)
        for row, count in enumerate(self.ROWS[lecture]):
            line = QHBoxLayout()
            line.setSpacing(6)
            for _ in range(count):
                label, widget = next(controls)
                if label is not None:
                    line.addWidget(label)
                line.addWidget(widget)
                line.addSpacing(4)
            line.addStretch(1)
            old = grid.itemAtPosition(row, 0)
            if old is not None:
                grid.removeItem(old)
            grid.addLayout(line, row, 0)
        for row in range(len(self.ROWS[lecture]), grid.rowCount()):
            old = grid.itemAtPosition(row, 0)
            if old is not None:
                grid.removeItem(old)
        # the status and the summary: beside the figure (lecture) or above and under it (desktop)
        while self.side_layout.count():
            self.side_layout.takeAt(0)
        for widget in (self.status, self.summary):
            self._layout.removeWidget(widget)
        if lecture:
            self.side_layout.addWidget(self.status)
            self.side_layout.addWidget(self.summary)
            self.side_layout.addStretch(1)
        else:
            self._layout.insertWidget(1, self.status)  # its own line under the controls: rows stay short
            self._layout.addWidget(self.summary)
        self.side.setVisible(lecture)

    # ---------------------------------------------------------------- export and settings

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"sigma": self.sigma_box, "n": self.n_box, "alpha": self.alpha_box,
                "g_size": self.g_size_box, "f_size": self.f_size_box, "extent": self.extent_box,
                "eps": self.eps_box, "certify_n": self.certify_n_box, "cloud": self.cloud_check,
                "auto": self.auto_check}

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
