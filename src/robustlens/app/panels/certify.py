"""The Certify tab: click an image and watch randomized smoothing (Cohen, Rosenfeld, Kolter 2019) certify it.

Every click in the gallery (every ``selectionChanged``), a click on a strip image (the adversarial example,
a reconstruction), F5 or the Certify button runs CERTIFY on the engine thread with
the noise model trained at the chosen σ: the class histogram of the noise samples grows live, the
Clopper–Pearson lower bound on pA tightens and moves along the radius curve R(pA) = σ Φ⁻¹(pA), and the
verdict appears — a class and its certified L2 radius, or ABSTAIN and why. A few draws x + ε and two
bars to scale (‖ε‖₂ ≈ σ√d against R) make the lecture's point that the certified ball is tiny next to
the noise. A second job certifies a test subset with every loaded noise model and draws certified
accuracy against radius, one curve per σ, as the rows come in (``certify_accuracy.py``).

The jobs are ``engine/certify_jobs.py``'s; the words are ``certify_verdicts.py``'s, the drawings
``certify_plots.py``'s. This module builds requests, picks the noise model for σ and routes events.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from robustlens.engine.anytime import AnytimeCertificate
from robustlens.engine.certify_jobs import (NOISE_SHOWN, AccuracyRequest, CertifyParams, PrepareRequest,
                                            accuracy_curves_job, prepare_smooths_job)
from robustlens.engine.smoothing import Certificate, CertifyUpdate, NoiseSamples
from robustlens.engine.smoothing_bounds import max_certifiable_radius, radius_curve
from robustlens.engine.zoo import catalogue

from .. import style
from ..context import STRIP_SLOTS, AppContext, ModelInfo, Selection
from ..controls import column, combo_box, labelled_row, set_widget_value, setting_combo, spin_box
from ..settings import Setting
from . import certify_verdicts as verdicts
from .base import Panel
from .certify_accuracy import IMAGES, SAMPLES, AccuracySection
from .certify_anytime import MODE, AnytimeMode
from .certify_layout import STACKED_SHARES, Columns, ColumnsLayout
from .certify_plots import ClassHistogram, NoiseSampleStrip, NoiseVsRadius, RadiusCurvePlot, titled, verdict_label

SIGMA_CHOICES = (0.25, 0.5, 1.0)        # the built-in noise models' σ
ALPHA_CHOICES = (0.05, 0.01, 0.001, 0.0001)
CLICK_TO_CERTIFY = "Click an image in the gallery (or press F5) to certify it."


def _same_sigma(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


class CertifyPanel(ColumnsLayout, AnytimeMode, Panel):
    """Randomized smoothing, one image at a time, live (fixed n or anytime); and certified accuracy vs
    radius per σ."""

    SETTINGS = (
        Setting("sigma", SIGMA_CHOICES[0], 0.001, 100.0,
                help="Noise level σ of the smoothed classifier: picks the noise model trained at that σ"),
        Setting("n0", 100, 1, 100_000, step=10, help="n0: noise samples that choose the top class ĉA"),
        Setting("n", 10_000, 1, 1_000_000, step=1000,
                help="n: noise samples that bound pA (the certificate's evidence)"),
        Setting("alpha", 0.001, choices=ALPHA_CHOICES, help="α: the certificate is wrong with probability at most α"),
        Setting("batch", 1000, 1, 100_000, step=100,
                help="noise samples drawn per chunk (memory, and how often the histogram updates)"),
        Setting("seed", 0, 0, 99_999, help="image idx is certified with seed SEED + idx (as the CLI)"),
        IMAGES,
        SAMPLES,
        MODE,
    )

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.params: CertifyParams | None = None
        self.certificate: Certificate | None = None
        self.certified_selection = None       # the Selection the current run / certificate is for
        self.model_info: ModelInfo | None = None  # the noise model of the current run
        self.noise: NoiseSamples | None = None
        self._verdict_html = ""
        self._stale = False                   # a selection arrived while the tab was hidden
        self._run_when_loaded = False         # a run waits for its noise model to load
        self._build()
        self._connect()
        self._refresh_sigma_choices()
        self._update_model_status()
        self._update_curve()
        self._update_lengths()
        self._show_idle(CLICK_TO_CERTIFY)
        self._update_accuracy_hint()

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        settings = {s.key: s for s in self.SETTINGS}
        self.sigma_box = combo_box((), settings["sigma"].help, shrinking=True)
        self.sigma_box.setMinimumContentsLength(11)
        self.model_note = QLabel("")
        self.model_note.setObjectName("caption")
        self.model_note.setWordWrap(True)  # under the verdict in lecture mode: a narrow column
        self.load_button = QPushButton("Load")
        self.load_button.hide()
        self.n0_box = spin_box(settings["n0"])
        self.n_box = spin_box(settings["n"])
        self.alpha_box = setting_combo(settings["alpha"])
        self.batch_box = spin_box(settings["batch"])
        self.seed_box = spin_box(settings["seed"])
        self.run_button = QPushButton("Certify (F5)")
        self.run_button.setToolTip("Certify the selected image with these settings")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self._build_anytime()

        controls = labelled_row((("σ", self.sigma_box), ("n0", self.n0_box), ("n", self.n_box), ("α", self.alpha_box),
                                 ("batch", self.batch_box), ("seed", self.seed_box)), stretch=False)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)
        controls.addStretch(1)
        self.controls = controls
        self._build_rows()

        # column 1: the verdict and the evidence
        self.verdict = verdict_label()
        self.verdict.setObjectName("certify-verdict")
        self._fit_verdict()
        self.histogram = ClassHistogram()
        self.histogram.setObjectName("certify-histogram")
        self.evidence_column = evidence = column(self.verdict, self.model_row, (self.histogram, 1))

        # column 2: the noise and the radius
        self.noise_strip = NoiseSampleStrip(NOISE_SHOWN)
        self.lengths = NoiseVsRadius()
        self.lengths.setObjectName("certify-lengths")
        self.radius_plot = RadiusCurvePlot()
        self.radius_plot.setObjectName("certify-radius-curve")
        self.noise_box = titled("Noise draws x + ε, their class and ‖ε‖₂", self.noise_strip)
        self.geometry_column = geometry = column(self.noise_box, self.lengths, (self.radius_plot, 1),
                                                 (self.bounds_plot, 1))
        # lecture mode (wide and short): the histogram and the radius curve (or the bounds) get columns
        # of their own
        self.histogram_column = column()
        self.curve_column = column()

        # column 3: certified accuracy vs radius, every noise model
        self.accuracy = AccuracySection()

        # text that changes with every run must never widen the panel (the window would grow with it)
        for label in (self.verdict, self.model_note):
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            label.setSizePolicy(policy)
        self.split = Columns(Qt.Orientation.Horizontal)
        for widget in (evidence, self.histogram_column, geometry, self.curve_column, self.accuracy):
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            self.split.addWidget(widget)
        self.histogram_column.hide()
        self.curve_column.hide()
        self.split.setChildrenCollapsible(False)
        self.split.setSizes(list(STACKED_SHARES))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addWidget(self.mode_row)
        layout.addWidget(self.split, 1)

        self.ctx.register_exportable("Certify: noise-sample histogram", self.histogram)
        self.ctx.register_exportable("Certify: radius curve", self.radius_plot)
        self.ctx.register_exportable("Certify: anytime and fixed-n bounds", self.bounds_plot)
        self._apply_mode(controls)
        self.ctx.register_exportable("Certify: noise vs certified radius", self.lengths)
        self.ctx.register_exportable("Certify: noise samples", self.noise_box)
        self.ctx.register_exportable("Certify: certified accuracy vs radius", self.accuracy.plot)

    def _connect(self) -> None:
        ctx = self.ctx
        ctx.selectionChanged.connect(self._on_selection)
        ctx.modelsChanged.connect(self._on_models)
        ctx.datasetChanged.connect(lambda _d: self._on_selection(ctx.selection, run=False))
        if ctx.strip is not None:
            ctx.strip.slotClicked.connect(self._on_strip_clicked)
        self.sigma_box.activated.connect(self._on_sigma_chosen)
        self.n_box.valueChanged.connect(lambda _v: self._on_parameters_changed())
        self.alpha_box.currentIndexChanged.connect(lambda _i: self._on_parameters_changed())
        self.mode_box.activated.connect(self._on_mode_chosen)
        for box in (self.n0_box, self.batch_box, self.seed_box):
            box.valueChanged.connect(lambda _v: self._mark_outdated())
        self.run_button.clicked.connect(lambda: self.run())  # clicked(bool) must not reach run(subject)
        self.load_button.clicked.connect(self._load_missing_model)
        self.accuracy.run_button.clicked.connect(self.run_accuracy)
        self.accuracy.images_box.valueChanged.connect(lambda _v: self._update_accuracy_hint())

    # ---------------------------------------------------------------- settings

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"n0": self.n0_box, "n": self.n_box, "alpha": self.alpha_box, "batch": self.batch_box,
                "seed": self.seed_box, "accuracy_images": self.accuracy.images_box,
                "accuracy_n": self.accuracy.n_box, "mode": self.mode_box}

    def setting_value(self, key: str):
        return self.sigma() if key == "sigma" else super().setting_value(key)

    def apply_setting(self, key: str, value) -> None:
        if key == "sigma":
            self.set_sigma(value)
        else:
            super().apply_setting(key, value)

    def settings_applied(self) -> None:
        self._apply_mode(self.controls)
        self._update_curve()
        self._update_lengths()
        self._update_accuracy_hint()

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
        return next((e.name for e in catalogue()
                     if e.dataset == dataset and e.name not in loaded and e.trained_at_sigma(sigma)), None)

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
        """Load the built-in model (the window ticks it under Models), or let the user open a checkpoint;
        the waiting click is certified once it is loaded."""
        key = self.load_button.property("model_key") or ""
        self._run_when_loaded = True
        if not key:
            self.ctx.open_model_file()
            return
        self.model_note.setText(f"loading {key}…")
        self.load_button.hide()
        self.ctx.load_models([key])

    def _prepare_noise_models(self) -> None:
        """Build the noise models' fast forward now, on the engine thread, so the first click certifies
        at full speed."""
        models = tuple((m.key, tuple(m.meta.input_shape)) for m in self.ctx.models_of_kind("noise"))
        if models:
            self.run_engine("certify-prepare", prepare_smooths_job, PrepareRequest(models),
                            label="preparing the noise models")

    def _on_sigma_chosen(self, _index: int) -> None:
        self._update_model_status()
        self._update_curve()
        self._update_lengths()
        if self.ctx.selection is not None:
            self.run()  # the shown evidence is for another σ: certify again, latest wins

    def _on_mode_chosen(self, _index: int) -> None:
        self._apply_mode(self.controls)
        self._update_lengths()
        if self.ctx.selection is not None and self.isVisible():
            self.run()  # the other mode's evidence: certify again, latest wins

    def _on_models(self, _models) -> None:
        self._update_accuracy_hint()
        self._prepare_noise_models()
        self._refresh_sigma_choices()
        self._update_model_status()
        has_model = self.model_for_sigma(self.sigma()) is not None
        running = self.job_running("certify")
        if has_model and (self._run_when_loaded or self.certificate is None) and self.ctx.selection is not None \
                and not running:
            self._run_when_loaded = False
            if self.isVisible():
                self.run()
            else:
                self._stale = True
        elif not has_model and self.ctx.selection is not None and not running:
            self._show_no_model()

    # ---------------------------------------------------------------- parameters

    def current_params(self) -> CertifyParams:
        return CertifyParams(sigma=self.sigma(), n0=self.n0_box.value(), n=self.n_box.value(),
                             alpha=float(self.alpha_box.currentData()), batch=self.batch_box.value(),
                             seed=self.seed_box.value(), mode=self.mode_box.currentData())

    def set_params(self, *, n0: int | None = None, n: int | None = None, alpha: float | None = None,
                   batch: int | None = None, seed: int | None = None) -> None:
        """Set the controls (tests, presets); takes effect at the next run. ValueError for an α that is
        not one of the choices."""
        for box, value in ((self.n0_box, n0), (self.n_box, n), (self.alpha_box, alpha), (self.batch_box, batch),
                           (self.seed_box, seed)):
            if value is not None:
                set_widget_value(box, value)

    def _on_parameters_changed(self) -> None:
        self._update_curve()
        self._update_lengths()
        self._mark_outdated()

    def _mark_outdated(self) -> None:
        if self.certificate is not None and self.params is not None and self.params != self.current_params():
            self._set_note(verdicts.OUTDATED_NOTE)

    # ---------------------------------------------------------------- selection and runs

    def _on_selection(self, selection, run: bool = True) -> None:
        self.cancel_job("certify")
        self.certificate = None
        self.noise = None
        self.certified_selection = None
        self._reset_evidence(selection)
        if selection is None:
            self._show_idle(CLICK_TO_CERTIFY)
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
        label = selection.label if selection is not None else None
        self.histogram.set_classes(self.ctx.classes, label, self.n_box.value())
        self.radius_plot.set_point(None)
        self.radius_plot.set_general(None, None)
        self._reset_anytime()
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
            self.cancel_job("certify")
            self._run_when_loaded = True
            self._reset_evidence(selection)
            self._show_no_model()
            return
        shape = tuple(selection.image.shape[1:])
        if tuple(info.meta.input_shape) != shape:
            self.cancel_job("certify")
            self._reset_evidence(selection)
            self._show_idle(f"{style.short_name(info)} takes {'×'.join(map(str, info.meta.input_shape))} images, "
                            f"this one is {'×'.join(map(str, shape))}: choose a dataset the model was trained on.",
                            error=True)
            return
        index = selection.index
        source_index = self.ctx.dataset.source_index(index) if (index is not None and self.ctx.dataset) else 0
        self._reset_evidence(selection)
        function, request = self._certify_job(info.key, selection.image, source_index, params)
        self.params = params
        self.certificate = None
        self.certified_selection = selection
        self.model_info = info
        self._set_verdict(verdicts.certifying_html(selection.source, params))
        self.run_engine("certify", function, request,
                        label=f"certifying {selection.source} (σ = {params.sigma:g}, {params.mode})",
                        on_partial=self._on_partial, on_done=self._show_certificate,
                        on_aborted=lambda _e: self._set_verdict(verdicts.CANCELLED_HTML, verdicts.CANCELLED_NOTE),
                        on_failed=lambda e: self._show_idle(f"Certification failed: {e.message}", error=True),
                        on_end=self._anytime_ended, cancel_button=self.cancel_button)
        self._anytime_started()

    def show_estimate(self, slot: str, estimate) -> None:
        if slot == "certify-accuracy":
            self.accuracy.show_estimate(estimate)

    def run_accuracy(self) -> None:
        """Certify an evenly spaced test subset with every loaded noise model; curves grow per row."""
        dataset = self.ctx.dataset
        if dataset is None:
            self.accuracy.refuse("No dataset loaded yet.")
            return
        models = [m for m in self.ctx.models_of_kind("noise")
                  if tuple(m.meta.input_shape) == tuple(dataset.image_shape)]
        if not models:
            self.accuracy.refuse(f"No noise model for {'×'.join(map(str, dataset.image_shape))} images is "
                                 "loaded: tick noise-0.25 / -0.50 / -1.00 under Models.", error=True)
            return
        models.sort(key=lambda m: (m.meta.sigma, m.source != "zoo"))
        request = AccuracyRequest(tuple(m.key for m in models), dataset, self.accuracy.images_box.value(),
                                  self.accuracy.n_box.value(), self.current_params(),
                                  cluster=self.ctx.cluster_options())
        count = min(request.images, len(dataset))
        self.accuracy.begin(models, count, request.n, request.params.alpha, loaded=self.ctx.models)
        where = "" if request.cluster is None else f" on Ray ({request.cluster.address})"
        self.run_engine("certify-accuracy", accuracy_curves_job, request, keep_every=("row",),
                        label=f"certified accuracy: {count} images × {len(models)} σ{where}",
                        on_partial=lambda event: self.accuracy.add_row(event.value),
                        on_done=lambda _result: self.accuracy.finished(),
                        on_aborted=lambda _event: self.accuracy.aborted(),
                        on_failed=lambda event: self.accuracy.failed(event.message),
                        cancel_button=self.accuracy.cancel_button)

    def show_replay(self, rows) -> None:
        """The deck's shipped certify runs (engine.deck_file.ReplayRow, read when the deck loaded) as the
        accuracy curves, each in the colour of the loaded noise model at its σ; Run all σ reruns here."""
        palette = style.model_colors(self.ctx.models)
        curves = []
        for row in rows:
            model = next((m for m in self.ctx.models_of_kind("noise")
                          if row.sigma is not None and m.meta.sigma == row.sigma), None)
            color = QColor(palette.get(model.key, QColor("#7f7f7f"))) if model is not None else QColor("#7f7f7f")
            label = f"{row.sigma:g}" if row.sigma is not None else row.name
            curves.append((row.name, label, color, np.asarray(row.curve_radii), np.asarray(row.curve_accuracy)))
        if curves:
            images = " / ".join(f"{count:,}" for count in sorted({row.images for row in rows}))
            self.accuracy.show_shipped(curves, f"{images} images")

    def _update_accuracy_hint(self) -> None:
        self.accuracy.show_hint(len(self.ctx.models_of_kind("noise")), self.job_running("certify-accuracy"))

    # ---------------------------------------------------------------- the verdict

    def _set_verdict(self, html: str, note: str = "") -> None:
        self._verdict_html = html
        self._set_note(note)

    def _set_note(self, note: str) -> None:
        """A grey line under the verdict (running evidence, stale settings, cancellation)."""
        grey = self.palette().color(self.palette().ColorRole.PlaceholderText).name()
        self.verdict.setText(self._verdict_html + (f"<br><span style='color:{grey}'>{note}</span>" if note else ""))

    def _show_idle(self, text: str, error: bool = False) -> None:
        self._set_verdict(verdicts.idle_html(text, error))

    def _show_no_model(self) -> None:
        sigma = self.sigma()
        self._set_verdict(verdicts.no_model_html(sigma, self._zoo_model_for(sigma),
                                                 [m.meta.sigma for m in self.ctx.models_of_kind("noise")]))

    def _true_label(self) -> int | None:
        return self.certified_selection.label if self.certified_selection is not None else None

    # ---------------------------------------------------------------- certify events (GUI thread: draw only)

    def _on_partial(self, event) -> None:
        if event.kind == "noise":
            self._show_noise(event.value)
        elif event.kind == "counts":
            self._show_update(event.value)

    def _show_noise(self, noise: NoiseSamples) -> None:
        self.noise = noise
        captions = [f"{self.ctx.class_name(int(c))}\n‖ε‖ {norm:.2f}"
                    for c, norm in zip(noise.predictions, noise.noise_norms)]
        self.noise_strip.set_samples(noise.display, captions)
        self._update_lengths()

    def _show_update(self, update: CertifyUpdate) -> None:
        title, note = verdicts.update_texts(update, self.params.n, self.ctx.class_name)
        self._set_note(note)
        if update.phase == "estimation":
            self.radius_plot.set_point(update.pA_lower, update.radius, final=update.certificate is not None)
            self._show_anytime_update(update)
        self.histogram.show_counts(update.counts, update.phase_total, update.top_class, self._true_label(), title)

    def _show_certificate(self, cert: Certificate) -> None:
        self.certificate = cert
        label = self._true_label()
        self.histogram.show_counts(cert.counts, cert.n, cert.top_class, label, f"n = {cert.n:,} noise samples")
        self.radius_plot.set_point(cert.pA_lower, cert.radius, final=True)
        self.radius_plot.set_general(cert.pA_lower_simultaneous, cert.radius_general)
        html = verdicts.anytime_certificate_html if isinstance(cert, AnytimeCertificate) else verdicts.certificate_html
        self._set_verdict(html(cert, label, self.ctx.class_name, self.params.seed))
        self._update_lengths()
        self.ctx.publish_certificate(self.certified_selection, self.model_info.key, cert)

    # ---------------------------------------------------------------- the radius curve and the lengths

    def _certificate_at_sigma(self, sigma: float) -> Certificate | None:
        cert = self.certificate
        return cert if cert is not None and _same_sigma(cert.sigma, sigma) else None

    def _update_curve(self) -> None:
        params = self.current_params()
        # dense near pA = 1, where R(pA) climbs steeply
        p_values = np.concatenate([np.linspace(0.5, 0.99, 200), 1 - np.logspace(-2, -7, 200)])
        self.radius_plot.set_curve(params.sigma, p_values, radius_curve(params.sigma, p_values),
                                   max_certifiable_radius(params.sigma, params.n, params.alpha),
                                   params.n, params.alpha)
        self._update_ceilings(params)
        cert = self._certificate_at_sigma(params.sigma)
        if cert is not None:
            self.radius_plot.set_point(cert.pA_lower, cert.radius, final=True)
            self.radius_plot.set_general(cert.pA_lower_simultaneous, cert.radius_general)
        else:
            self.radius_plot.set_point(None)
            self.radius_plot.set_general(None, None)

    def _update_lengths(self) -> None:
        params = self.current_params()
        shape = self.ctx.dataset.image_shape if self.ctx.dataset is not None else (1, 28, 28)
        self.lengths.set_lengths(*verdicts.lengths(params, int(np.prod(shape)),
                                                   self._certificate_at_sigma(params.sigma)))

    # ---------------------------------------------------------------- lecture mode

    def set_lecture_mode(self, on: bool) -> None:
        size = style.point_size(on)
        for plot in (self.histogram, self.radius_plot, self.bounds_plot):
            plot.set_fonts(size)
        self.accuracy.set_fonts(size)
        self.noise_strip.set_thumbnail_size(64 if on else 56)
        self._arrange()
        self._fit_verdict()
        self.lengths.updateGeometry()

    def _fit_verdict(self) -> None:
        """Room for the longest verdict, so the histogram below does not jump when it arrives."""
        self.verdict.setMinimumHeight(int(self.verdict.fontMetrics().height() * 7.6))
