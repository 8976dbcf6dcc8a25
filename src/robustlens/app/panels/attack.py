"""The Attack tab: projected gradient descent (Madry et al. 2018) on the selected image, one step at a
time, then every loaded model judges the result.

F5 (or Run) attacks the selected image with the chosen model: the strip's "adversarial" and
"perturbation" cards follow the iterate live, the loss and the true-class probability grow step by
step, and at the end every loaded model — standard, adversarially trained, noise-trained, and the
smoothed classifier g of each noise model — classifies the clean and the adversarial image side by
side. An example crafted on one model that fools another is Ilyas et al.'s (2019, Sec. 5) point:
models share non-robust features, so adversarial examples transfer. Choosing a smoothed classifier as
the source runs PGD on the Monte-Carlo average of its softmax (expectation over transformation,
Salman et al. 2019); inside the certified L2 radius (Cohen et al. 2019) it cannot change g.

The panel builds an :class:`~robustlens.engine.attack_judge.AttackRequest` and draws the events of
``engine/attack_judge.py`` ``attack_and_judge_job``; the verdict table is ``attack_table.py``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QSizePolicy, QSplitter, QVBoxLayout, QWidget)

from robustlens.engine.attack_judge import AttackOutcome, AttackParams, AttackRequest, attack_and_judge_job

from .. import style
from ..context import AppContext
from ..controls import column, combo_box, double_spin_box, push_button, select, spin_box
from ..eps_control import DEFAULT_EPS, NORM_NAMES, NORM_SUBSCRIPTS, EpsControl, eps_maximum, norm_combo
from ..settings import Setting
from .attack_plots import AttackCurves
from .attack_table import NBSP, TransferTable, Verdicts, kind_text
from .attack_texts import LOSSES, RANDOM_STARTS, TARGETS, outcome_text, settings_text, step_text
from .base import Panel

SIDE_BY_SIDE_BELOW = 560  # a tab shorter than this (px) puts the curves beside the table
CURVES_FROM = {False: 800, True: 1100}  # ... one narrower than this (px) has no room for the curves


def _choices(pairs) -> tuple:
    return tuple(key for key, _text in pairs)


class _Column(QWidget):
    """A column whose wrapped texts do not ask for height-for-width layout: inside the window's scroll
    area that would lay the panel out at its preferred height and scroll, where the minimum fits."""

    def hasHeightForWidth(self) -> bool:
        return False


class AttackPanel(Panel):
    """PGD on the selected image, live; then every loaded model's verdict on the result."""

    # ε is remembered for each norm; a stored source or target class waits for its model or dataset
    SETTINGS = (
        Setting("source", "", help="the attacked model's key (chosen once it is loaded)"),
        Setting("source_smoothed", False, help="attack the smoothed classifier of the source"),
        Setting("norm", "linf", choices=tuple(NORM_NAMES), help="the threat model: the ball ‖δ‖ ≤ ε"),
        Setting("eps_linf", DEFAULT_EPS["linf"], 0.0, eps_maximum("linf"), help="L∞ ε"),
        Setting("eps_l2", DEFAULT_EPS["l2"], 0.0, eps_maximum("l2"), help="L2 ε"),
        Setting("steps", 20, 1, 2000, help="gradient steps per restart"),
        Setting("step_auto", True, help="Madry et al.'s choice: enough to cross the ball from a random start"),
        Setting("step_size", 2.5 * DEFAULT_EPS["linf"] / 20, 0.0, 10.0, step=0.001,
                help="the step size α (L∞: every pixel moves by α·sign(∇); L2: δ moves by α along ∇/‖∇‖₂)"),
        Setting("random_start", "none", choices=_choices(RANDOM_STARTS),
                help="random start of each restart: none (at x), uniform in the ε-ball, or on its sphere"),
        Setting("restarts", 1, 1, 50, help="independent runs; per image the best iterate of all is kept"),
        Setting("target", "untargeted", choices=_choices(TARGETS),
                help="untargeted: any wrong class; targeted: push towards a target class t"),
        Setting("target_class", 0, 0, 9999, help="the target class"),
        Setting("loss", "ce", choices=_choices(LOSSES),
                help="CE: cross-entropy; CW: Carlini–Wagner margin max_{j≠c} z_j − z_c. PGD climbs it "
                     "(untargeted) or descends it (targeted)"),
        Setting("samples", 32, 1, 512, help="noise draws per PGD step for the smoothed classifier's gradient"),
    )

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.params: AttackParams | None = None
        self.outcome: AttackOutcome | None = None
        self.state = "idle"                 # idle, running, finished, cancelled, failed
        self.attacked_selection = None
        self._eps = dict(DEFAULT_EPS)       # the last ε chosen for each norm
        self._wanted_source: tuple[str, bool] | None = None   # a stored source waiting for its model
        self._stored_source = ["", False]   # the source being restored (key, smoothed)
        self._wanted_class: int | None = None                 # a stored target class waiting for the dataset
        self._steps_seen: list = []         # AttackStep per iterate of the current run
        self._last_step = None
        self._last_snapshot = None          # (image, info) of the last live iterate
        self._judged_keys: list[str] = []
        self._source_text = ""
        self._dirty = False
        self._build()
        self._connect()
        self._refresh_sources()
        self._refresh_classes()
        self._update_step_size()
        self._update_visibility()
        self._redraw = QTimer(self)
        self._redraw.setInterval(40)        # the curves follow at most 25 times per second
        self._redraw.timeout.connect(self._draw_curves)
        self._show_status("Select an image, then press <b>F5</b> (or Run) to attack it.")

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        setting = {s.key: s for s in self.SETTINGS}
        self.source_box = combo_box((), "The model PGD attacks (white box). A smoothed classifier is attacked "
                                        "through the Monte-Carlo average of its softmax over Gaussian noise (EOT).",
                                    shrinking=True)
        self.samples_box = spin_box(setting["samples"])
        self.norm_box = norm_combo({"linf": "L∞ (each pixel ≤ ε)", "l2": "L2 (length ≤ ε)"}, shrinking=True)
        self.eps = EpsControl()
        self.step_box = double_spin_box(setting["step_size"], decimals=4)
        self.step_auto = QCheckBox("2.5·ε/steps")
        self.step_auto.setChecked(True)
        self.step_auto.setToolTip(setting["step_auto"].help)
        self.steps_box = spin_box(setting["steps"])
        self.start_box = combo_box(RANDOM_STARTS, setting["random_start"].help, shrinking=True)
        self.start_box.setMinimumContentsLength(7)
        self.restarts_box = spin_box(setting["restarts"])
        self.target_box = combo_box(TARGETS, setting["target"].help, shrinking=True)
        self.class_box = combo_box((), setting["target_class"].help, shrinking=True)
        self.loss_box = combo_box(LOSSES, setting["loss"].help, shrinking=True)
        self.loss_box.setMinimumContentsLength(3)
        self.run_button = push_button("Attack (F5)", "Run PGD on the selected image with these settings")
        self.cancel_button = push_button("Cancel", "Stop the attack (Esc)", enabled=False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(4)
        form.addRow("Source", self.source_box)
        self.samples_label = QLabel("EOT draws")
        form.addRow(self.samples_label, self.samples_box)
        form.addRow("Norm", self.norm_box)
        form.addRow("ε", self.eps)
        form.addRow("Step size", _row((self.step_box, 1), (self.step_auto, 0)))
        form.addRow("Steps", _row((self.steps_box, 1), (QLabel("restarts"), 0), (self.restarts_box, 1)))
        form.addRow("Start", _row((self.start_box, 3), (QLabel("loss"), 0), (self.loss_box, 2)))
        form.addRow("Target", self.target_box)
        self.class_label = QLabel("Target class")
        form.addRow(self.class_label, self.class_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        self.table_note = QLabel("")
        self.table_note.setObjectName("caption")
        self.table_note.setWordWrap(True)
        self.table_note.setTextFormat(Qt.TextFormat.RichText)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.status.setObjectName("attack-status")
        controls = _Column()
        controls_column = QVBoxLayout(controls)
        controls_column.setContentsMargins(0, 0, 0, 0)
        controls_column.setSpacing(6)
        controls_column.addLayout(form)
        controls_column.addLayout(buttons)
        # the running numbers and the verdict's explanation take the room left under the controls and
        # scroll there when it is short (lecture mode), rather than squeezing the controls
        texts = QWidget()
        texts_column = QVBoxLayout(texts)
        texts_column.setContentsMargins(0, 0, 4, 0)
        texts_column.setSpacing(6)
        texts_column.addWidget(self.status)
        texts_column.addWidget(self.table_note)
        texts_column.addStretch(1)
        self.texts = QScrollArea()
        self.texts.setWidget(texts)
        self.texts.setWidgetResizable(True)
        self.texts.setFrameShape(QFrame.Shape.NoFrame)
        self.texts.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.texts.setMinimumHeight(3 * self.status.fontMetrics().height())
        controls_column.addWidget(self.texts, 1)

        self.curves = AttackCurves()
        self.loss_plot, self.probability_plot = self.curves.loss_plot, self.curves.probability_plot
        self.table = TransferTable()
        self.table.setObjectName("attack-transfer")
        self.table_title = QLabel("<b>Every loaded model judges the adversarial image</b>")
        self.table_title.setWordWrap(True)  # a narrow column (the deck pane beside a lecture tab)
        verdicts = self.verdicts = column(self.table_title, (self.table, 1))
        self.texts_column = texts_column

        # controls | (curves side by side, over the verdicts)
        self.results = QSplitter(Qt.Orientation.Vertical)
        self.results.addWidget(self.curves)
        self.results.addWidget(verdicts)
        self.results.setChildrenCollapsible(False)
        self.results.setStretchFactor(0, 2)
        self.results.setStretchFactor(1, 3)
        self.results.setSizes([190, 260])
        # a layout, not a splitter: it keeps the controls at least as wide as they need when lecture
        # mode enlarges the fonts
        controls.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Expanding)
        self.results.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(8)
        layout.addWidget(controls)
        layout.addWidget(self.results, 1)

        self.ctx.register_exportable("Attack: loss per step", self.loss_plot)
        self.ctx.register_exportable("Attack: probability per step", self.probability_plot)
        self.ctx.register_exportable("Attack: transfer table", verdicts)

    def _connect(self) -> None:
        self.follow(selection=self._on_selection, models=lambda _m: self._refresh_sources(),
                    dataset=lambda _d: self._refresh_classes())
        self.norm_box.currentIndexChanged.connect(self._on_norm)
        self.eps.spin.valueChanged.connect(self._on_eps)
        self.eps.slider.valueChanged.connect(lambda _p: self._on_eps(self.eps.value()))
        self.steps_box.valueChanged.connect(lambda _v: self._update_step_size())
        self.step_auto.toggled.connect(lambda _on: self._update_step_size())
        self.source_box.currentIndexChanged.connect(lambda _i: self._update_visibility())
        self.target_box.currentIndexChanged.connect(lambda _i: self._update_visibility())
        self.run_button.clicked.connect(self.run)

    # ---------------------------------------------------------------- controls

    def _on_norm(self, _index: int) -> None:
        norm = self.norm_box.currentData()
        self.eps.set_norm(norm, self._eps[norm])
        self._update_step_size()

    def _on_eps(self, value: float) -> None:
        self._eps[self.eps.norm] = float(value)
        self._update_step_size()

    def _update_step_size(self) -> None:
        auto = self.step_auto.isChecked()
        self.step_box.setEnabled(not auto)
        if auto:
            self.step_box.setValue(2.5 * self.eps.value() / max(1, self.steps_box.value()))

    def _update_visibility(self) -> None:
        source = self.source_box.currentData()
        smoothed = bool(source and source[1])
        self.samples_box.setVisible(smoothed)
        self.samples_label.setVisible(smoothed)
        targeted_class = self.target_box.currentData() == "class"
        self.class_box.setVisible(targeted_class)
        self.class_label.setVisible(targeted_class)

    def _refresh_sources(self) -> None:
        """One entry per loaded model, and the smoothed classifier g of every noise model."""
        current = self.source_box.currentData()
        wanted = self._wanted_source or current
        self.source_box.blockSignals(True)
        try:
            self.source_box.clear()
            for info in self.ctx.models:
                kind = kind_text(info.meta)
                self.source_box.addItem(style.short_name(info) + (f"  ({kind})" if kind else ""), (info.key, False))
            for info in self.ctx.models_of_kind("noise"):
                if info.meta.sigma is not None:
                    self.source_box.addItem(f"smoothed g of {style.short_name(info)} (EOT)", (info.key, True))
            if not self.ctx.models:
                self.source_box.addItem("no model loaded", None)
            if wanted is not None and select(self.source_box, tuple(wanted)):
                if self._wanted_source is not None and tuple(self._wanted_source) == tuple(wanted):
                    self._wanted_source = None
            else:
                self._choose_default_source()
        finally:
            self.source_box.blockSignals(False)
        self._update_visibility()

    def _choose_default_source(self) -> None:
        """The first standard model (the one whose examples transfer best), else the first entry."""
        kinds = {m.key: m.meta.kind for m in self.ctx.models}
        standard = [i for i in range(self.source_box.count()) if self.source_box.itemData(i)
                    and not self.source_box.itemData(i)[1] and kinds.get(self.source_box.itemData(i)[0]) == "standard"]
        self.source_box.setCurrentIndex(standard[0] if standard else 0)

    def _refresh_classes(self) -> None:
        current = self.class_box.currentIndex()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for i, name in enumerate(self.ctx.classes):
            self.class_box.addItem(f"{i}: {name}", i)
        if self._wanted_class is not None and select(self.class_box, self._wanted_class):
            self._wanted_class = None
        elif 0 <= current < self.class_box.count():
            self.class_box.setCurrentIndex(current)
        self.class_box.blockSignals(False)

    def current_params(self) -> AttackParams | None:
        source = self.source_box.currentData()
        if not source:
            return None
        key, smoothed = source
        target = self.target_box.currentData()
        return AttackParams(source=key, smoothed=bool(smoothed), samples=self.samples_box.value(),
                            norm=self.norm_box.currentData(), eps=self.eps.value(),
                            step_size=None if self.step_auto.isChecked() else float(self.step_box.value()),
                            steps=self.steps_box.value(), random_start=self.start_box.currentData(),
                            restarts=self.restarts_box.value(), target=target,
                            target_class=self.class_box.currentData() if target == "class" else None,
                            loss=self.loss_box.currentData())

    def set_params(self, *, norm: str | None = None, eps: float | None = None, steps: int | None = None,
                   step_size: float | None = None, random_start: str | None = None, restarts: int | None = None,
                   target: str | None = None, target_class: int | None = None, loss: str | None = None,
                   source: str | None = None, smoothed: bool = False, samples: int | None = None) -> None:
        """Set the controls (tests, presets, stored settings); takes effect at the next run."""
        if norm is not None and not select(self.norm_box, norm):
            raise ValueError(f"unknown norm {norm!r}")
        if eps is not None:
            self.eps.set_value(float(eps))
            self._on_eps(self.eps.value())
        if steps is not None:
            self.steps_box.setValue(int(steps))
        if step_size is not None:
            self.step_auto.setChecked(False)
            self.step_box.setValue(float(step_size))
        if random_start is not None and not select(self.start_box, random_start):
            raise ValueError(f"unknown random start {random_start!r}")
        if restarts is not None:
            self.restarts_box.setValue(int(restarts))
        if target is not None and not select(self.target_box, target):
            raise ValueError(f"unknown target mode {target!r}")
        if target_class is not None:
            select(self.class_box, int(target_class))
        if loss is not None and not select(self.loss_box, loss):
            raise ValueError(f"unknown loss {loss!r}")
        if samples is not None:
            self.samples_box.setValue(int(samples))
        if source is not None:
            if not select(self.source_box, (source, bool(smoothed))):
                self._wanted_source = (source, bool(smoothed))  # chosen once the model is loaded
        self._update_step_size()
        self._update_visibility()

    # ---------------------------------------------------------------- runs


    def _on_selection(self, selection) -> None:
        """A new image: the old attack is for another picture (the strip has already cleared its cards)."""
        self.cancel_job("attack")
        self.outcome = None
        self.attacked_selection = None
        self.state = "idle"
        self.curves.prepare(None, (), None)
        self._steps_seen, self._dirty = [], False
        self.table.clear_rows()
        self.table_note.setText("")
        if selection is not None:
            self._show_status(f"{selection.source}: press <b>F5</b> (or Attack) to attack it.")

    def run(self) -> None:
        """Attack the selected image with the chosen settings (F5, the Attack button): latest wins."""
        selection = self.ctx.selection
        if selection is None:
            self._show_status("Nothing selected: click an image in the gallery first.", error=True)
            return
        params = self.current_params()
        if params is None:
            self._show_status("No model loaded: tick one under Models (or File → Open model…).", error=True)
            return
        shape = tuple(selection.image.shape[1:])
        info = next((m for m in self.ctx.models if m.key == params.source), None)
        if info is None:
            self._show_status(f"{params.source} is not loaded any more: choose another source.", error=True)
            return
        if tuple(info.meta.input_shape) != shape:
            self._show_status(f"{style.short_name(info)} takes {'×'.join(map(str, info.meta.input_shape))} images, "
                              f"this one is {'×'.join(map(str, shape))}.", error=True)
            return
        judges = [m.key for m in self.ctx.models if tuple(m.meta.input_shape) == shape]
        smooth_keys = [m.key for m in self.ctx.models_of_kind("noise") if m.key in judges and m.meta.sigma is not None]
        request = AttackRequest(params, selection.image, selection.label, tuple(judges), tuple(smooth_keys))
        self.params = params
        self.outcome = None
        self.attacked_selection = selection
        self.state = "running"
        self._judged_keys = judges
        self._last_snapshot = None
        self._steps_seen, self._dirty = [], False
        self.curves.prepare(params, self.ctx.classes, selection.label)
        self.table.clear_rows()
        self.table_note.setText(f"Waiting for the attack to finish; then {len(judges)} model(s)"
                                + (f" and {len(smooth_keys)} smoothed classifier(s)" if smooth_keys else "")
                                + " classify the clean and the adversarial image.")
        what = f"smoothed g of {style.short_name(info)}" if params.smoothed else style.short_name(info)
        self._source_text = what
        self._show_status(f"Attacking <b>{what}</b>: {selection.source} · {settings_text(params)}")
        self.run_engine("attack", attack_and_judge_job, request, label=f"PGD on {what}: {selection.source}",
                        keep_every=("attack_step",), on_partial=self._on_step, on_snapshot=self._show_snapshot,
                        on_done=self._finish, on_aborted=lambda _e: self._end("cancelled"),
                        on_failed=lambda event: self._end("failed", event.message), cancel_button=self.cancel_button)
        self._redraw.start()

    # ---------------------------------------------------------------- events (GUI thread: draw only)

    def _on_step(self, event) -> None:
        if event.kind == "attack_step":
            self._steps_seen.append(event.value)
            self._dirty = True

    def _show_snapshot(self, event) -> None:
        if event.kind != "attack":
            return
        info = event.info
        params = self.params
        sub = NORM_SUBSCRIPTS[params.norm]
        restart = f" (restart {info['restart'] + 1}/{params.restarts})" if params.restarts > 1 else ""
        norm_value = float(info["perturbation_norm"][0])
        self.ctx.set_strip_image("adversarial", event.image, f"step {info['step']}/{params.steps}{restart} · live",
                                 live=True)
        self.ctx.set_strip_image("perturbation", info["perturbation"],
                                 f"‖δ‖{sub}{NBSP}={NBSP}{norm_value:.3f} (ε{NBSP}={NBSP}{params.eps:.4g})", live=True)
        self._last_snapshot = (event.image, info)

    def _draw_curves(self) -> None:
        if not self._dirty:
            if self.state != "running":
                self._redraw.stop()
            return
        self._dirty = False
        if not self._steps_seen:
            return
        self.curves.draw(self._steps_seen)
        self._last_step = self._steps_seen[-1]
        if self.state == "running":
            self._show_status(step_text(self._last_step, self.params, self._source_text, self.ctx.class_name))

    def _finish(self, outcome: AttackOutcome) -> None:
        self.outcome = outcome
        self.state = "finished"
        self._dirty = True
        self._draw_curves()
        params = self.params
        sub = NORM_SUBSCRIPTS[outcome.norm]
        self.ctx.set_strip_image("adversarial", outcome.adversarial,
                                 f"PGD {NORM_NAMES[outcome.norm]} ε = {outcome.eps:.4g} on {self._source_text}",
                                 predictions=dict(outcome.adversarial_probs))
        other = f" · ‖δ‖₂{NBSP}={NBSP}{outcome.l2_value:.2f}" if outcome.norm != "l2" else ""
        self.ctx.set_strip_image("perturbation", outcome.perturbation,
                                 f"‖δ‖{sub}{NBSP}={NBSP}{outcome.norm_value:.3f}{NBSP}≤{NBSP}ε{other}")
        verdicts = Verdicts(outcome, params, self.ctx.models, self._judged_keys, self.ctx.class_name)
        rows = verdicts.rows()
        self.table.set_rows(rows)
        self.table_note.setText(verdicts.note(rows))
        if outcome.target is not None:
            smoothed = "smoothed " if params.smoothed else ""
            self.probability_plot.set_legend("target", f"{smoothed}P({self.ctx.class_name(outcome.target)}), target")
        self._show_status(outcome_text(outcome, params, self._source_text, self.ctx.class_name))

    def _end(self, state: str, message: str = "") -> None:
        self.state = state
        self._dirty = True
        self._draw_curves()
        last = self._last_step
        where = f" at step {last.step}/{last.steps}" if last is not None and self._steps_seen else ""
        if state == "cancelled":
            self._show_status(f"<b>Cancelled</b>{where}: the strip shows the last iterate drawn, judged as it is; "
                              "press F5 to attack again.")
            self.table_note.setText("Cancelled before the end: no transfer table.")
            if self._last_snapshot is not None and self.attacked_selection is self.ctx.selection:
                image, info = self._last_snapshot
                self.ctx.set_strip_image("adversarial", image, f"cancelled at step {info['step']}/{self.params.steps}")
        else:
            self._show_status(f"The attack failed: {message}", error=True)
            self.table_note.setText("")

    def _show_status(self, text: str, error: bool = False) -> None:
        color = f" style='color:{style.WRONG.name()}'" if error else ""
        self.status.setText(f"<span{color}>{text}</span>")

    # ---------------------------------------------------------------- lecture mode and settings

    def set_lecture_mode(self, on: bool) -> None:
        self.curves.set_fonts(style.point_size(on))
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self._arrange()

    def _arrange(self) -> None:
        """A short tab (a 720-line projector, a desktop window with the strip full): the two curves
        stack beside the verdict table, which gets the tab's whole height (every model and CERTIFY
        row, unscrolled), its explanation under it. A tall one: the curves side by side over the table."""
        tab = self.parentWidget()  # the scroll area's viewport: its size does not follow the panel's
        short = (tab.height() if tab is not None else self.height()) < SIDE_BY_SIDE_BELOW
        # short and narrow too (the deck pane beside a 720-line tab): the table needs the width, the
        # curves fold away (the strip still shows x + δ; the status line the loss)
        width = tab.width() if tab is not None else self.width()
        self.curves.setVisible(not (short and width < CURVES_FROM[bool(self.ctx.lecture_mode)]))
        if short == getattr(self, "_short", False):
            return
        self._short = short
        self.results.setOrientation(Qt.Orientation.Horizontal if short else Qt.Orientation.Vertical)
        self.curves.setOrientation(Qt.Orientation.Vertical if short else Qt.Orientation.Horizontal)
        self.results.setSizes([265, 685] if short else [190, 260])
        if short:
            self.verdicts.layout().addWidget(self.table_note)
        else:
            self.texts_column.insertWidget(1, self.table_note)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"norm": self.norm_box, "steps": self.steps_box, "step_auto": self.step_auto,
                "step_size": self.step_box, "random_start": self.start_box, "restarts": self.restarts_box,
                "target": self.target_box, "loss": self.loss_box, "samples": self.samples_box}

    def setting_value(self, key: str):
        if key in ("eps_linf", "eps_l2"):
            return self._eps[key[len("eps_"):]]
        if key in ("source", "source_smoothed"):
            source = self.source_box.currentData() or self._wanted_source or ("", False)
            return source[0] if key == "source" else bool(source[1])
        if key == "target_class":
            current = self.class_box.currentData()
            return int(current) if current is not None else (self._wanted_class or 0)
        return super().setting_value(key)

    def apply_setting(self, key: str, value) -> None:
        if key in ("eps_linf", "eps_l2"):
            norm = key[len("eps_"):]
            self._eps[norm] = float(value)
            if self.eps.norm == norm:
                self.eps.set_value(float(value))
        elif key == "source":
            self._stored_source[0] = str(value)
        elif key == "source_smoothed":
            self._stored_source[1] = bool(value)
        elif key == "target_class":
            if not select(self.class_box, int(value)):
                self._wanted_class = int(value)  # chosen once the dataset's classes are known
        else:
            super().apply_setting(key, value)

    def settings_applied(self) -> None:
        key, smoothed = self._stored_source
        self._stored_source = ["", False]
        if key:
            self.set_params(source=key, smoothed=smoothed)
        else:  # none stored, or reset
            self._wanted_source = None
            self._choose_default_source()
        self._update_step_size()
        self._update_visibility()


def _row(*widgets) -> QHBoxLayout:
    """Widgets side by side, each with its stretch factor: (widget, stretch), ..."""
    row = QHBoxLayout()
    row.setSpacing(4)
    for widget, stretch in widgets:
        row.addWidget(widget, stretch)
    return row

