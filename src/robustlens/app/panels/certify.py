"""The Certify tab: click an image and watch randomized smoothing (Cohen, Rosenfeld, Kolter 2019) certify it.

Every click in the gallery (every ``selectionChanged``), a click on a strip image (the adversarial example,
a reconstruction), F5 or the Certify button runs CERTIFY on the engine thread with
the noise model trained at the chosen σ: the class histogram of the noise samples grows live, the
Clopper–Pearson lower bound on pA tightens and moves along the radius curve R(pA) = σ Φ⁻¹(pA), and the
verdict appears — a class and its certified L2 radius, or ABSTAIN and why. A few draws x + ε and two
bars to scale (‖ε‖₂ ≈ σ√d against R) make the lecture's point that the certified ball is tiny next to
the noise. A second job certifies a test subset with every loaded noise model and draws certified
accuracy against radius, one curve per σ, as the rows come in.

All numbers come from ``engine/smoothing.py``; this module only asks for them and draws them.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                               QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget)

from robustlens.engine.jobs import Aborted, Failed, Finished, Partial, Progress
from robustlens.engine.smoothing import (ABSTAIN, Certificate, CertifyUpdate, NoiseSamples, Smooth,
                                         certified_accuracy, certified_accuracy_job, certify_job,
                                         expected_noise_norm, max_certifiable_radius, radius_curve)
from robustlens.engine.zoo import catalogue

from .. import style
from ..context import STRIP_SLOTS, AppContext, ModelInfo, Selection
from .certify_plots import (AccuracyPlot, ClassHistogram, NoiseSampleStrip, NoiseVsRadius, RadiusCurvePlot,
                            titled, verdict_label)

SIGMA_CHOICES = (0.25, 0.5, 1.0)        # the built-in noise models' σ
ALPHA_CHOICES = (0.05, 0.01, 0.001, 0.0001)
NOISE_SHOWN = 4                          # draws x + ε in the strip
NOISE_SEED_OFFSET = 7_919                # the displayed draws use their own generator, apart from CERTIFY's
ACCURACY_RADII = (0.0, 0.25, 0.5, 1.0)
# distinct hues for the σ curves (the σ trade-off must read at a glance from the back row)
ACCURACY_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")

# Smoothed classifiers by model, so the traced fast path is built once per model. Touched only by jobs,
# that is only on the engine thread.
_SMOOTHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def smooth_for(model) -> Smooth:
    """The engine's Smooth for a noise-trained model (σ from its meta), cached per model."""
    smooth = _SMOOTHS.get(model)
    if smooth is None:
        smooth = Smooth.from_model(model)
        _SMOOTHS[model] = smooth
    return smooth


@dataclass(frozen=True)
class CertifyParams:
    """What one certify run was asked for (captured when it starts: widgets may change meanwhile)."""
    sigma: float
    n0: int
    n: int
    alpha: float
    batch: int
    seed: int


def _spin(minimum: int, maximum: int, value: int, step: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSingleStep(step)
    box.setGroupSeparatorShown(True)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


def _same_sigma(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def _sigma_of_zoo_entry(name: str, info: dict) -> float | None:
    """σ of a built-in model from its manifest entry, or from its name (fashion-mnist/noise-0.50) while the
    manifest does not list it yet."""
    if info.get("sigma") is not None:
        return float(info["sigma"])
    tail = name.rsplit("/", 1)[-1]
    if tail.startswith("noise-"):
        try:
            return float(tail[len("noise-"):])
        except ValueError:
            return None
    return None


class CertifyPanel(QWidget):
    """Randomized smoothing, one image at a time, live; and certified accuracy vs radius per σ."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.handle = None                    # the current certify job
        self.accuracy_handle = None           # the current certified-accuracy job
        self.params: CertifyParams | None = None
        self.certificate: Certificate | None = None
        self.certified_selection = None       # the Selection the current run / certificate is for
        self.noise: NoiseSamples | None = None
        self.accuracy_rows: dict[str, list] = {}
        self._accuracy_started = 0.0
        self._accuracy_total = 0
        self._accuracy_sigmas: dict[str, str] = {}   # model key -> its σ as text (colour key, table)
        self._verdict_html = ""
        self._run_id = 0                      # events of an older run (cancelled, not replaced) are ignored
        self._stale = False                   # a selection arrived while the tab was hidden
        self._run_when_loaded = False         # a run waits for its noise model to load
        self._build()
        self._connect()
        self._refresh_sigma_choices()
        self._update_model_status()
        self._update_curve()
        self._update_lengths()
        self._show_idle("Click an image in the gallery (or press F5) to certify it.")
        self._update_accuracy_hint()

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        self.sigma_box = QComboBox()
        self.sigma_box.setToolTip("Noise level σ of the smoothed classifier: picks the noise model trained at that σ")
        self.sigma_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sigma_box.setMinimumContentsLength(11)
        self.model_note = QLabel("")
        self.model_note.setObjectName("caption")
        self.load_button = QPushButton("Load")
        self.load_button.hide()
        self.n0_box = _spin(1, 100_000, 100, 10, "n0: noise samples that choose the top class ĉA")
        self.n_box = _spin(1, 1_000_000, 10_000, 1000, "n: noise samples that bound pA (the certificate's evidence)")
        self.alpha_box = QComboBox()
        for alpha in ALPHA_CHOICES:
            self.alpha_box.addItem(f"{alpha:g}", alpha)
        self.alpha_box.setCurrentIndex(ALPHA_CHOICES.index(0.001))
        self.alpha_box.setToolTip("α: the certificate is wrong with probability at most α")
        self.batch_box = _spin(1, 100_000, 1000, 100, "noise samples drawn per chunk (memory, and how often the "
                                                      "histogram updates)")
        self.seed_box = _spin(0, 99_999, 0, 1, "image idx is certified with seed SEED + idx (as the CLI)")
        self.run_button = QPushButton("Certify (F5)")
        self.run_button.setToolTip("Certify the selected image with these settings")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)

        controls = QHBoxLayout()
        controls.setSpacing(4)
        for text, widget in (("σ", self.sigma_box), ("n0", self.n0_box), ("n", self.n_box), ("α", self.alpha_box),
                             ("batch", self.batch_box), ("seed", self.seed_box)):
            label = QLabel(text)
            label.setBuddy(widget)
            controls.addWidget(label)
            controls.addWidget(widget)
            controls.addSpacing(8)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)
        controls.addStretch(1)
        status = QHBoxLayout()
        status.setSpacing(6)
        status.addWidget(self.model_note, 1)
        status.addWidget(self.load_button)

        # column 1: the verdict and the evidence
        self.verdict = verdict_label()
        self.verdict.setObjectName("certify-verdict")
        self._fit_verdict()
        self.histogram = ClassHistogram()
        self.histogram.setObjectName("certify-histogram")
        evidence = QWidget()
        column = QVBoxLayout(evidence)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.verdict)
        column.addWidget(self.histogram, 1)

        # column 2: the noise and the radius
        self.noise_strip = NoiseSampleStrip(NOISE_SHOWN)
        self.lengths = NoiseVsRadius()
        self.lengths.setObjectName("certify-lengths")
        self.radius_plot = RadiusCurvePlot()
        self.radius_plot.setObjectName("certify-radius-curve")
        geometry = QWidget()
        column = QVBoxLayout(geometry)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        self.noise_box = titled("Noise draws x + ε, their class and ‖ε‖₂", self.noise_strip)
        column.addWidget(self.noise_box)
        column.addWidget(self.lengths)
        column.addWidget(self.radius_plot, 1)

        # column 3: certified accuracy vs radius, every noise model
        self.accuracy_images_box = _spin(1, 10_000, 100, 50, "test images to certify (evenly spaced through the "
                                                             "dataset)")
        self.accuracy_n_box = _spin(10, 100_000, 1000, 500, "n per image for this curve (n0, α, batch and seed "
                                                              "as above)")
        self.accuracy_run = QToolButton()
        self.accuracy_run.setText("Run")
        self.accuracy_run.setText("Run all σ")
        self.accuracy_run.setToolTip("Certify the subset with every loaded noise model; the curves grow live")
        self.accuracy_cancel = QToolButton()
        self.accuracy_cancel.setText("Cancel")
        self.accuracy_cancel.setEnabled(False)
        self.accuracy_plot = AccuracyPlot()
        self.accuracy_plot.setObjectName("certify-accuracy")
        self.accuracy_status = QLabel("")
        self.accuracy_status.setObjectName("caption")
        self.accuracy_status.setWordWrap(True)
        self.accuracy_table = QLabel("")
        self.accuracy_table.setTextFormat(Qt.TextFormat.RichText)
        accuracy = QGroupBox("Certified accuracy vs radius")
        column = QVBoxLayout(accuracy)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(4)
        row = QHBoxLayout()
        for text, widget in (("images", self.accuracy_images_box), ("n", self.accuracy_n_box)):
            row.addWidget(QLabel(text))
            row.addWidget(widget)
        row.addStretch(1)
        column.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.accuracy_run)
        row.addWidget(self.accuracy_cancel)
        row.addStretch(1)
        column.addLayout(row)
        column.addWidget(self.accuracy_plot, 1)
        column.addWidget(self.accuracy_table)
        column.addWidget(self.accuracy_status)

        # text that changes with every run must never widen the panel (the window would grow with it)
        for label in (self.verdict, self.model_note, self.accuracy_table, self.accuracy_status):
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            label.setSizePolicy(policy)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        for widget in (evidence, geometry, accuracy):
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            self.split.addWidget(widget)
        self.split.setChildrenCollapsible(False)
        self.split.setSizes([320, 360, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addLayout(status)
        layout.addWidget(self.split, 1)

        self.ctx.register_exportable("Certify: noise-sample histogram", self.histogram)
        self.ctx.register_exportable("Certify: radius curve", self.radius_plot)
        self.ctx.register_exportable("Certify: noise vs certified radius", self.lengths)
        self.ctx.register_exportable("Certify: noise samples", self.noise_box)
        self.ctx.register_exportable("Certify: certified accuracy vs radius", self.accuracy_plot)

    def _connect(self) -> None:
        ctx = self.ctx
        ctx.selectionChanged.connect(self._on_selection)
        ctx.modelsChanged.connect(self._on_models)
        ctx.datasetChanged.connect(lambda _d: self._on_selection(ctx.selection, run=False))
        ctx.lectureModeChanged.connect(self.set_lecture_mode)
        ctx.cancelRequested.connect(self._after_cancel)
        if getattr(ctx, "strip", None) is not None:
            ctx.strip.slotClicked.connect(self._on_strip_clicked)
        self.sigma_box.activated.connect(self._on_sigma_chosen)
        self.n_box.valueChanged.connect(lambda _v: self._on_parameters_changed())
        self.alpha_box.currentIndexChanged.connect(lambda _i: self._on_parameters_changed())
        for box in (self.n0_box, self.batch_box, self.seed_box):
            box.valueChanged.connect(lambda _v: self._mark_outdated())
        self.run_button.clicked.connect(lambda: self.run())  # clicked(bool) must not reach run(subject)
        self.cancel_button.clicked.connect(lambda: self.ctx.cancel("certify"))
        self.load_button.clicked.connect(self._load_missing_model)
        self.accuracy_run.clicked.connect(self.run_accuracy)
        self.accuracy_cancel.clicked.connect(lambda: self.ctx.cancel("certify-accuracy"))
        self.accuracy_images_box.valueChanged.connect(lambda _v: self._update_accuracy_hint())

    # ---------------------------------------------------------------- σ and its model

    def sigma(self) -> float:
        value = self.sigma_box.currentData()
        return float(value) if value is not None else SIGMA_CHOICES[0]

    def set_sigma(self, sigma: float) -> None:
        """Choose σ (adding it to the list when a loaded model or a setting brings a new one)."""
        self._refresh_sigma_choices(extra=sigma)
        for i in range(self.sigma_box.count()):
            if _same_sigma(self.sigma_box.itemData(i), sigma):
                self.sigma_box.setCurrentIndex(i)
                break
        self._update_model_status()
        self._update_curve()
        self._update_lengths()

    def _refresh_sigma_choices(self, extra: float | None = None) -> None:
        current = self.sigma_box.currentData()
        values = list(SIGMA_CHOICES)
        for info in self.ctx.models_of_kind("noise"):
            if info.meta.sigma is not None and not any(_same_sigma(info.meta.sigma, v) for v in values):
                values.append(float(info.meta.sigma))
        for value in (extra, current):
            if value is not None and not any(_same_sigma(value, v) for v in values):
                values.append(float(value))
        values.sort()
        self.sigma_box.blockSignals(True)
        try:
            self.sigma_box.clear()
            for value in values:
                loaded = self.model_for_sigma(value) is not None
                self.sigma_box.addItem(f"{value:g}" + ("" if loaded else "  (no model)"), value)
            target = current if current is not None else SIGMA_CHOICES[0]
            for i, value in enumerate(values):
                if _same_sigma(value, target):
                    self.sigma_box.setCurrentIndex(i)
        finally:
            self.sigma_box.blockSignals(False)

    def model_for_sigma(self, sigma: float) -> ModelInfo | None:
        """The loaded noise model trained at σ (a built-in one first)."""
        matches = [m for m in self.ctx.models_of_kind("noise") if _same_sigma(m.meta.sigma, sigma)]
        matches.sort(key=lambda m: m.source != "zoo")
        return matches[0] if matches else None

    def _zoo_model_for(self, sigma: float) -> str | None:
        """A built-in noise model at σ for the current dataset that is not loaded, if the zoo has one."""
        dataset = self.ctx.dataset.name if self.ctx.dataset is not None else "fashion-mnist"
        loaded = set(self.ctx.model_keys())
        for name, info in ((e.name, e.manifest) for e in catalogue()):
            if (name.startswith(dataset + "/") and name not in loaded
                    and _same_sigma(_sigma_of_zoo_entry(name, info), sigma)):
                return name
        return None

    def _update_model_status(self) -> None:
        sigma = self.sigma()
        info = self.model_for_sigma(sigma)
        if info is not None:
            self.model_note.setText(f"model: {style.short_name(info)} (trained with noise σ = {info.meta.sigma:g})")
            self.model_note.setStyleSheet("")
            self.load_button.hide()
            return
        self.model_note.setStyleSheet(f"color: {style.WRONG.name()};")
        zoo = self._zoo_model_for(sigma)
        if zoo is not None:
            self.model_note.setText(f"No noise model with σ = {sigma:g} is loaded.")
            self.load_button.setText(f"Load {zoo.split('/')[-1]}")
            self.load_button.setProperty("model_key", zoo)
        else:
            self.model_note.setText(f"No noise model with σ = {sigma:g} is loaded, and the zoo has none: "
                                    "open a noise-trained checkpoint.")
            self.load_button.setText("Open model…")
            self.load_button.setProperty("model_key", "")
        self.load_button.show()

    def _load_missing_model(self) -> None:
        """Tick the built-in model in the window's model list (it loads on the engine thread), or let the
        user open a checkpoint file."""
        window = self.ctx.window
        key = self.load_button.property("model_key") or ""
        self._run_when_loaded = True
        if not key:
            if window is not None and hasattr(window, "open_model_dialog"):
                window.open_model_dialog()
            return
        picker = getattr(window, "model_picker", None)
        if picker is None:
            self.ctx.error(f"Cannot load {key} from here: tick it under Models")
            return
        picker.refresh_zoo()
        for i in range(picker.list.count()):
            item = picker.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                item.setCheckState(Qt.CheckState.Checked)  # the picker tells the window, which loads it
                self.model_note.setText(f"loading {key}…")
                self.load_button.hide()
                return
        self.ctx.error(f"{key} is not in the model list")

    def _prepare_noise_models(self) -> None:
        """Build the noise models' fast forward now, on the engine thread, so the first click certifies
        at full speed."""
        todo = [(m.key, tuple(m.meta.input_shape)) for m in self.ctx.models_of_kind("noise")]
        if not todo:
            return

        def job(engine, cancel):
            for done, (key, shape) in enumerate(todo):
                cancel.check()
                yield Progress(done, len(todo), f"preparing {key}")
                smooth_for(engine.model(key)).prepare(shape)

        self.ctx.submit_with_models("certify-prepare", job, label="preparing the noise models")

    def _on_sigma_chosen(self, _index: int) -> None:
        self._update_model_status()
        self._update_curve()
        self._update_lengths()
        if self.ctx.selection is not None:
            self.run()  # the shown evidence is for another σ: certify again, latest wins

    def _update_accuracy_hint(self) -> None:
        if any(self.accuracy_rows.values()) or (self.accuracy_handle is not None and self.accuracy_handle.running):
            return
        count = len(self.ctx.models_of_kind("noise"))
        if count:
            self.accuracy_plot.set_hint(f"Run all σ: {self.accuracy_images_box.value()} test images\n"
                                        f"× {count} noise model{'s' if count != 1 else ''}, one curve each")
        else:
            self.accuracy_plot.set_hint("no noise model loaded")

    def _on_models(self, _models) -> None:
        self._update_accuracy_hint()
        self._prepare_noise_models()
        self._refresh_sigma_choices()
        self._update_model_status()
        has_model = self.model_for_sigma(self.sigma()) is not None
        if has_model and (self._run_when_loaded or self.certificate is None) and self.ctx.selection is not None \
                and not (self.handle is not None and self.handle.running):
            self._run_when_loaded = False
            if self.isVisible():
                self.run()
            else:
                self._stale = True
        elif not has_model and self.ctx.selection is not None and not (self.handle and self.handle.running):
            self._show_no_model()

    # ---------------------------------------------------------------- parameters

    def current_params(self) -> CertifyParams:
        return CertifyParams(sigma=self.sigma(), n0=self.n0_box.value(), n=self.n_box.value(),
                             alpha=float(self.alpha_box.currentData()), batch=self.batch_box.value(),
                             seed=self.seed_box.value())

    def set_params(self, *, n0: int | None = None, n: int | None = None, alpha: float | None = None,
                   batch: int | None = None, seed: int | None = None) -> None:
        """Set the controls (tests, presets); takes effect at the next run."""
        for box, value in ((self.n0_box, n0), (self.n_box, n), (self.batch_box, batch), (self.seed_box, seed)):
            if value is not None:
                box.setValue(int(value))
        if alpha is not None:
            self._set_alpha(float(alpha))

    def _set_alpha(self, alpha: float) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"α must be in (0, 1), got {alpha}")
        position = next((i for i in range(self.alpha_box.count())
                         if math.isclose(self.alpha_box.itemData(i), alpha)), -1)
        if position < 0:
            self.alpha_box.addItem(f"{alpha:g}", alpha)
            position = self.alpha_box.count() - 1
        self.alpha_box.setCurrentIndex(position)

    def _on_parameters_changed(self) -> None:
        self._update_curve()
        self._update_lengths()
        self._mark_outdated()

    def _mark_outdated(self) -> None:
        if self.certificate is not None and self.params is not None and self.params != self.current_params():
            self._set_note("Settings changed since this certificate: F5 certifies again.")

    # ---------------------------------------------------------------- selection and runs

    def _on_selection(self, selection, run: bool = True) -> None:
        self._run_id += 1
        self.ctx.cancel("certify")
        self.certificate = None
        self.noise = None
        self.certified_selection = None
        self._reset_evidence(selection)
        if selection is None:
            self._show_idle("Click an image in the gallery (or press F5) to certify it.")
            return
        if not run:
            self._show_idle("Click an image (or press F5) to certify it.")
            return
        if self.isVisible():
            self.run()
        else:
            self._stale = True
            self._show_idle("Certifies when this tab is shown.")

    def _on_strip_clicked(self, slot: str) -> None:
        """A click on a strip card certifies the image shown there (e.g. the adversarial example: is the
        smoothed classifier still certain of it?). The perturbation card shows δ, not an image."""
        selection = self.ctx.selection
        image = self.ctx.strip_images.get(slot)
        if not self.isVisible() or selection is None or image is None or slot == "perturbation":
            return
        if slot == "original":
            self.run()
            return
        title = STRIP_SLOTS[slot][0].lower()
        self.run(Selection(image=image, label=selection.label, index=selection.index,
                           source=f"{title} of {selection.source}"))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._stale = False
            if self.ctx.selection is not None:
                self.run()

    def _reset_evidence(self, selection) -> None:
        classes = self.ctx.classes
        label = selection.label if selection is not None else None
        self.histogram.set_classes(classes, label, self.n_box.value())
        self.radius_plot.set_point(None)
        self.radius_plot.set_general(None, None)
        self.noise_strip.set_samples(None, [])
        self._update_lengths()

    def run(self, subject: Selection | None = None) -> None:
        """Certify the selected image (F5, the Certify button, every click), or ``subject`` (a strip
        image clicked while this tab shows): latest wins."""
        selection = subject if subject is not None else self.ctx.selection
        self._stale = False
        if selection is None:
            self._show_idle("Nothing selected: click an image in the gallery first.")
            return
        params = self.current_params()
        info = self.model_for_sigma(params.sigma)
        if info is None:
            self._run_id += 1
            self.ctx.cancel("certify")
            self._run_when_loaded = True
            self._reset_evidence(selection)
            self._show_no_model()
            return
        shape = tuple(selection.image.shape[1:])
        if tuple(info.meta.input_shape) != shape:
            self._reset_evidence(selection)
            self._show_idle(f"{style.short_name(info)} takes {'×'.join(map(str, info.meta.input_shape))} images, "
                            f"this one is {'×'.join(map(str, shape))}: choose a dataset the model was trained on.",
                            error=True)
            return
        index = selection.index
        source_index = self.ctx.dataset.source_index(index) if (index is not None and self.ctx.dataset) else 0
        seed = params.seed + source_index
        key, image = info.key, selection.image

        def job(engine, cancel):  # on the engine thread
            smooth = smooth_for(engine.model(key))
            yield Partial("noise", smooth.noise_samples(image, NOISE_SHOWN, generator=seed + NOISE_SEED_OFFSET))
            yield from certify_job(smooth, image, n0=params.n0, n=params.n, alpha=params.alpha,
                                   batch_size=params.batch, generator=seed)(cancel)

        self._reset_evidence(selection)
        self.params = params
        self.certificate = None
        self.certified_selection = selection
        self.model_info = info
        self._certifying_head = (f"<span style='font-size:x-large'><b>Certifying…</b></span><br>"
                                 f"{selection.source} · σ = {params.sigma:g} · n0 = {params.n0:,} · "
                                 f"n = {params.n:,} · α = {params.alpha:g}")
        self._set_verdict(self._certifying_head)
        self._run_id += 1
        run_id = self._run_id

        def on_event(event):
            if run_id == self._run_id:
                self._on_certify_event(event)

        self.handle = self.ctx.submit_with_models("certify", job, on_event=on_event,
                                                  label=f"certifying {selection.source} (σ = {params.sigma:g})")
        self.cancel_button.setEnabled(True)

    def _set_verdict(self, html: str, note: str = "") -> None:
        self._verdict_html = html
        self._set_note(note)

    def _set_note(self, note: str) -> None:
        """A grey line under the verdict (running evidence, stale settings, cancellation)."""
        grey = self.palette().color(self.palette().ColorRole.PlaceholderText).name()
        self.verdict.setText(self._verdict_html + (f"<br><span style='color:{grey}'>{note}</span>" if note else ""))

    def _show_idle(self, text: str, error: bool = False) -> None:
        color = f" style='color:{style.WRONG.name()}'" if error else ""
        self._set_verdict(f"<span{color}>{text}</span>")
        self.cancel_button.setEnabled(False)

    def _show_no_model(self) -> None:
        sigma = self.sigma()
        zoo = self._zoo_model_for(sigma)
        how = (f"press <b>Load {zoo.split('/')[-1]}</b> above (or tick it under Models)" if zoo else
               "open a noise-trained checkpoint (File → Open model…)")
        others = [f"{m.meta.sigma:g}" for m in self.ctx.models_of_kind("noise")]
        also = f" Loaded noise models have σ = {', '.join(others)}." if others else ""
        self._show_idle(f"<b>No noise model with σ = {sigma:g} is loaded</b>, so nothing can be certified at this σ: "
                        f"{how}.{also}", error=True)

    def _after_cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.accuracy_cancel.setEnabled(False)

    # ---------------------------------------------------------------- certify events (GUI thread: draw only)

    def _class_name(self, index: int) -> str:
        classes = self.ctx.classes
        return classes[index] if 0 <= index < len(classes) else f"class {index}"

    def _on_certify_event(self, event) -> None:
        selection = self.certified_selection
        label = selection.label if selection is not None else None
        if isinstance(event, Partial) and event.kind == "noise":
            self._show_noise(event.value)
        elif isinstance(event, Partial) and event.kind == "counts":
            self._show_update(event.value, label)
        elif isinstance(event, Finished):
            self._show_certificate(event.result, label)
            self.cancel_button.setEnabled(False)
        elif isinstance(event, Aborted):
            self._set_verdict("<span style='font-size:x-large'><b>Cancelled</b></span>",
                              "The counts below are partial evidence, not a certificate.")
            self.cancel_button.setEnabled(False)
        elif isinstance(event, Failed):
            self._show_idle(f"Certification failed: {event.message}", error=True)

    def _show_noise(self, noise: NoiseSamples) -> None:
        self.noise = noise
        captions = [f"{self._class_name(int(c))}\n‖ε‖ {norm:.2f}"
                    for c, norm in zip(noise.predictions, noise.noise_norms)]
        self.noise_strip.set_samples(noise.display, captions)
        self._update_lengths()

    def _show_update(self, update: CertifyUpdate, label: int | None) -> None:
        if update.phase == "selection":
            title = f"Selection (n0): {update.drawn:,} / {update.phase_total:,}"
            self._set_note(f"n0 = {update.phase_total:,} samples pick the top class ĉA; "
                           f"{self.params.n:,} fresh ones then bound pA.")
        else:
            title = f"Estimation: {update.drawn:,} / {update.phase_total:,}"
            n_a = int(update.counts[update.top_class])
            radius = "abstain so far" if update.pA_lower is None or update.pA_lower < 0.5 else \
                f"R = {update.radius:.3f}"
            self._set_note(f"so far: {n_a:,} of {update.drawn:,} are {self._class_name(update.top_class)} → "
                           f"pA ≥ {update.pA_lower:.4f}, {radius} (the certificate uses all n)")
            self.radius_plot.set_point(update.pA_lower, update.radius, final=update.certificate is not None)
        self.histogram.show_counts(update.counts, update.phase_total, update.top_class, label, title)

    def _show_certificate(self, cert: Certificate, label: int | None) -> None:
        self.certificate = cert
        params = self.params
        top = self._class_name(cert.top_class)
        self.histogram.show_counts(cert.counts, cert.n, cert.top_class, label,
                                   f"n = {cert.n:,} noise samples")
        self.radius_plot.set_point(cert.pA_lower, cert.radius, final=True)
        self.radius_plot.set_general(cert.pA_lower_simultaneous, cert.radius_general)
        confidence = f"{100 * (1 - cert.alpha):.6g}%"
        if cert.prediction == ABSTAIN:
            head = (f"<span style='font-size:x-large; color:{style.WRONG.name()}'><b>ABSTAIN</b></span><br>"
                    f"<b>pA lower bound {cert.pA_lower:.4f} &lt; 0.5</b>: only {cert.nA:,} of {cert.n:,} noise "
                    f"samples gave {top} (the n0 samples' top class)")
        else:
            right = ""
            if label is not None:
                right = ("✓ the true class" if cert.prediction == label
                         else f"✗ the true class is {self._class_name(label)}")
            color = style.CORRECT if label is None or cert.prediction == label else style.WRONG
            head = (f"<span style='font-size:x-large; color:{color.name()}'><b>{top}</b> · "
                    f"certified R = {cert.radius:.3f}</span><br>{right}")
        general = f"R = {cert.radius_general:.3f}" if cert.radius_general > 0 else "nothing certified"
        paper = "nothing certified" if cert.abstained else f"R = {cert.radius:.3f}"
        body = (f"<br>nA = {cert.nA:,} of n = {cert.n:,} noise samples"
                f"<br>pA ≥ {cert.pA_lower:.4f} ({confidence} Clopper–Pearson)"
                f"<br>paper: {paper} with pB = 1 − pA"
                f"<br>general: {general}, Bonferroni pB ≤ {cert.pB_upper:.4f}"
                f"<br>ceiling {cert.max_radius:.3f} · {cert.seconds:.1f} s · seed {params.seed}")
        self._set_verdict(f"{head}{body}")
        self._update_lengths()

    # ---------------------------------------------------------------- the radius curve and the lengths

    def _update_curve(self) -> None:
        params = self.current_params()
        # dense near pA = 1, where R(pA) climbs steeply
        p_values = np.concatenate([np.linspace(0.5, 0.99, 200), 1 - np.logspace(-2, -7, 200)])
        self.radius_plot.set_curve(params.sigma, p_values, radius_curve(params.sigma, p_values),
                                   max_certifiable_radius(params.sigma, params.n, params.alpha),
                                   params.n, params.alpha)
        cert = self.certificate
        if cert is not None and _same_sigma(cert.sigma, params.sigma):
            self.radius_plot.set_point(cert.pA_lower, cert.radius, final=True)
            self.radius_plot.set_general(cert.pA_lower_simultaneous, cert.radius_general)
        else:
            self.radius_plot.set_point(None)
            self.radius_plot.set_general(None, None)

    def _image_dim(self) -> int:
        shape = self.ctx.dataset.image_shape if self.ctx.dataset is not None else (1, 28, 28)
        return int(np.prod(shape))

    def _update_lengths(self) -> None:
        params = self.current_params()
        sigma = params.sigma
        dim = self._image_dim()
        expected = expected_noise_norm(sigma, dim)
        noise_text = f"noise ‖ε‖₂ ≈ σ√d = {sigma:g}·√{dim} = {expected:.2f}"
        ceiling = max_certifiable_radius(sigma, params.n, params.alpha)
        cert = self.certificate
        if cert is None or not _same_sigma(cert.sigma, sigma):
            radius, radius_text = None, f"certified radius R: —  (at most {ceiling:.2f}, dashed)"
            footer = "R = σ Φ⁻¹(pA) = O(σ), while ‖ε‖₂ = O(σ√d)."
        elif cert.abstained:
            radius, radius_text = 0.0, "certified radius R = 0 (abstained)"
            footer = "Abstained: no radius is certified."
        else:
            radius = cert.radius
            radius_text = f"certified radius R = {radius:.3f}  (dashed: ceiling {cert.max_radius:.2f})"
            footer = (f"A typical noise draw is {expected / radius:.0f}× longer than R."
                      if radius > 0 else "")
        self.lengths.set_lengths(expected, noise_text, radius, radius_text, ceiling, footer)

    # ---------------------------------------------------------------- certified accuracy vs radius

    def run_accuracy(self) -> None:
        """Certify an evenly spaced test subset with every loaded noise model; curves grow per row."""
        dataset = self.ctx.dataset
        if dataset is None:
            self.accuracy_status.setText("No dataset loaded yet.")
            return
        models = [m for m in self.ctx.models_of_kind("noise")
                  if tuple(m.meta.input_shape) == tuple(dataset.image_shape)]
        if not models:
            self.accuracy_status.setText(f"No noise model for {'×'.join(map(str, dataset.image_shape))} images is "
                                         "loaded: tick noise-0.25 / -0.50 / -1.00 under Models.")
            self.accuracy_status.setStyleSheet(f"color: {style.WRONG.name()};")
            return
        self.accuracy_status.setStyleSheet("")
        models.sort(key=lambda m: (m.meta.sigma, m.source != "zoo"))
        params = self.current_params()
        count = min(self.accuracy_images_box.value(), len(dataset))
        n = self.accuracy_n_box.value()
        stride = max(1, len(dataset) // count)
        positions = list(range(0, stride * count, stride))[:count]
        keys = [m.key for m in models]
        sigmas = [f"{m.meta.sigma:g}" for m in models]
        # two models at one σ (a built-in one and a file) are told apart by name
        self._accuracy_sigmas = {m.key: text if sigmas.count(text) == 1 else f"{text} ({style.short_name(m)})"
                                 for m, text in zip(models, sigmas)}
        top = max(max_certifiable_radius(m.meta.sigma, n, params.alpha) for m in models)
        colors = [QColor(ACCURACY_COLORS[i % len(ACCURACY_COLORS)]) for i in range(len(models))]
        self.accuracy_plot.reset([(m.key, self._accuracy_sigmas[m.key], color) for m, color in zip(models, colors)],
                                 top, f"{count} images, n = {n:,}")
        self.accuracy_rows = {key: [] for key in keys}
        self._accuracy_total = count * len(keys)
        self._accuracy_started = time.monotonic()
        self.accuracy_table.setText("")
        self.accuracy_plot.set_hint("certifying the first image…")
        self.accuracy_status.setText(f"certifying {count} images with {len(keys)} noise model(s)…")

        def job(engine, cancel):  # on the engine thread
            smooths = {key: smooth_for(engine.model(key)) for key in keys}
            subset = dataset.subset(positions)
            yield from certified_accuracy_job(smooths, subset, n0=params.n0, n=n, alpha=params.alpha,
                                              batch_size=params.batch, seed=params.seed)(cancel)

        self.accuracy_handle = self.ctx.submit_with_models(
            "certify-accuracy", job, on_event=self._on_accuracy_event, keep_every=("row",),
            label=f"certified accuracy: {count} images × {len(keys)} σ")
        self.accuracy_cancel.setEnabled(True)

    def _on_accuracy_event(self, event) -> None:
        if isinstance(event, Partial) and event.kind == "row":
            row = event.value
            self.accuracy_rows.setdefault(row.model, []).append(row)
            self.accuracy_plot.set_curve(row.model, row.radii, row.accuracy)
            done = sum(len(rows) for rows in self.accuracy_rows.values())
            self.accuracy_status.setText(f"running: {done} / {self._accuracy_total} certificates · "
                                         f"{time.monotonic() - self._accuracy_started:.0f} s")
            self._update_accuracy_table()
        elif isinstance(event, Finished):
            elapsed = time.monotonic() - self._accuracy_started
            done = sum(len(rows) for rows in self.accuracy_rows.values())
            self.accuracy_status.setText(f"done: {done} certificates in {elapsed:.1f} s "
                                         "(abstentions count as wrong)")
            self.accuracy_cancel.setEnabled(False)
        elif isinstance(event, Aborted):
            self.accuracy_status.setText("cancelled: the curves show the images certified so far")
            self.accuracy_cancel.setEnabled(False)
        elif isinstance(event, Failed):
            self.accuracy_status.setText(f"failed: {event.message}")
            self.accuracy_cancel.setEnabled(False)

    def _update_accuracy_table(self) -> None:
        head = "".join(f"<th align='right'>&nbsp;&nbsp;{'r = ' if r == 0 else ''}{r:g}</th>" for r in ACCURACY_RADII)
        lines = [f"<tr><th align='left'>σ</th><th align='right'>&nbsp;&nbsp;images</th>{head}</tr>"]
        for i, (key, rows) in enumerate(self.accuracy_rows.items()):
            if not rows:
                continue
            values = certified_accuracy([r.radius for r in rows], [r.correct for r in rows], ACCURACY_RADII)
            cells = "".join(f"<td align='right'>&nbsp;{v:.0%}</td>" for v in values)
            color = ACCURACY_COLORS[i % len(ACCURACY_COLORS)]
            lines.append(f"<tr><td><span style='color:{color}'>■</span> {self._accuracy_sigmas.get(key, key)}</td>"
                         f"<td align='right'>{len(rows)}</td>{cells}</tr>")
        self.accuracy_table.setText("<table cellspacing='0' cellpadding='1'>" + "".join(lines) + "</table>")

    # ---------------------------------------------------------------- lecture mode and settings

    def set_lecture_mode(self, on: bool) -> None:
        size = style.base_point_size() * (style.LECTURE_FONT_SCALE if on else 1.0)
        for plot in (self.histogram, self.radius_plot, self.accuracy_plot):
            plot.set_fonts(size)
        self.noise_strip.set_thumbnail_size(72 if on else 56)
        self._fit_verdict()
        self.lengths.updateGeometry()

    def _fit_verdict(self) -> None:
        """Room for the longest verdict, so the histogram below does not jump when it arrives."""
        self.verdict.setMinimumHeight(int(self.verdict.fontMetrics().height() * 7.6))

    def save_settings(self, settings) -> None:
        params = self.current_params()
        for key, value in (("sigma", params.sigma), ("n0", params.n0), ("n", params.n), ("alpha", params.alpha),
                           ("batch", params.batch), ("seed", params.seed),
                           ("accuracy_images", self.accuracy_images_box.value()),
                           ("accuracy_n", self.accuracy_n_box.value())):
            settings.setValue(key, value)

    def restore_settings(self, settings) -> None:
        """Restore the controls; a value that does not parse raises ValueError (the window reports it)."""
        def number(key, kind):
            value = settings.value(key)
            if value is None:
                return None
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key} = {value!r} is not a number") from None

        sigma = number("sigma", float)
        if sigma is not None:
            if not sigma > 0:
                raise ValueError(f"σ = {sigma} must be positive")
            self.set_sigma(sigma)
        self.set_params(n0=number("n0", int), n=number("n", int), batch=number("batch", int),
                        seed=number("seed", int))
        alpha = number("alpha", float)
        if alpha is not None:
            self._set_alpha(alpha)
        for key, box in (("accuracy_images", self.accuracy_images_box), ("accuracy_n", self.accuracy_n_box)):
            value = number(key, int)
            if value is not None:
                box.setValue(value)
        self._update_curve()
        self._update_lengths()
