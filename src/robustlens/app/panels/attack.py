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

All numbers come from ``engine/attacks.py`` and ``engine/smoothing.py``; this module asks for them and
draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame, QGridLayout, QHBoxLayout,
                               QLabel, QPushButton, QScrollArea, QSizePolicy, QSlider, QSpinBox, QSplitter,
                               QVBoxLayout, QWidget)

from robustlens.engine.attacks import AttackConfig, attack_job, judge, perturbation_norm
from robustlens.engine.jobs import Aborted, Failed, Finished, Partial, Progress, Snapshot
from robustlens.engine.smoothing import ABSTAIN, Smooth

from .. import style
from ..context import AppContext
from .attack_plots import LOSS_COLOR, TARGET_COLOR, TRUE_COLOR, StepCurve, TransferTable

NORM_NAMES = {"linf": "L∞", "l2": "L2"}
NBSP = "\u00a0"  # keeps "‖δ‖ = 0.10" on one line in wrapped captions
NORM_SUBSCRIPTS = {"linf": "∞", "l2": "₂"}
# the ε slider in each norm's own units: (step, positions). L∞ 0 – 77/255 ≈ 0.30 in 1/255 steps (one
# grey level of an 8-bit image), L2 0 – 5 in steps of 0.05 (28×28 images have ‖x‖₂ up to 28).
EPS_SLIDER = {"linf": (1 / 255, 77), "l2": (0.05, 100)}
DEFAULT_EPS = {"linf": 0.1, "l2": 1.5}   # the ε the built-in robust models were trained at
RANDOM_STARTS = (("none", "none"), ("uniform", "uniform"), ("sphere", "sphere"))
TARGETS = (("untargeted", "untargeted"), ("class", "a chosen class"),
           ("random", "random other (D_rand)"), ("next", "(y + 1) mod C (D_det)"))
LOSSES = (("ce", "CE"), ("cw", "CW"))
LOSS_NAMES = {"ce": "cross-entropy", "cw": "CW margin"}
# the smoothed classifiers' verdicts: CERTIFY (Cohen et al.) on the clean and on the adversarial image
SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, SMOOTH_SEED = 100, 1000, 0.001, 0


@dataclass(frozen=True)
class AttackParams:
    """What one attack was asked for (captured when it starts: the widgets may change meanwhile).
    ``step_size`` None means 2.5·ε/steps (Madry et al.)."""
    source: str                       # model key
    smoothed: bool                    # attack the smoothed classifier of ``source`` (a noise model)
    samples: int                      # noise draws per step for the smoothed attack
    norm: str
    eps: float
    step_size: float | None
    steps: int
    random_start: str
    restarts: int
    target: str
    target_class: int | None
    loss: str
    seed: int = 0

    def config(self, sigma: float | None) -> AttackConfig:
        return AttackConfig(norm=self.norm, eps=float(self.eps), step_size=self.step_size, steps=int(self.steps),
                            random_start=self.random_start, restarts=int(self.restarts), target=self.target,
                            target_class=self.target_class if self.target == "class" else None, loss=self.loss,
                            smoothing_sigma=sigma if self.smoothed else None, smoothing_samples=int(self.samples),
                            seed=self.seed).validate()


@dataclass
class SmoothedVerdict:
    """CERTIFY's answers for the smoothed classifier g of one noise model, clean and adversarial."""
    sigma: float
    clean_prediction: int
    clean_radius: float
    clean_pA: float
    adversarial_prediction: int
    adversarial_radius: float
    adversarial_pA: float


@dataclass
class AttackOutcome:
    """An attack and every loaded model's verdict, ready to draw (numbers and numpy arrays only)."""
    adversarial: np.ndarray            # (1, C, H, W)
    perturbation: np.ndarray           # (1, C, H, W): adversarial − original
    norm: str
    eps: float
    norm_value: float                  # ‖δ‖ in the attack's norm
    l2_value: float                    # ‖δ‖₂ (what the smoothed classifiers' certificates speak of)
    label: int                         # the true class, or the source's clean prediction for a file
    label_known: bool
    target: int | None
    success: bool                      # on the attacked classifier
    source_probability: np.ndarray     # the attacked classifier's probabilities on the adversarial image
    clean_probs: dict[str, np.ndarray] = field(default_factory=dict)        # model key -> (classes,)
    adversarial_probs: dict[str, np.ndarray] = field(default_factory=dict)
    smoothed: dict[str, SmoothedVerdict] = field(default_factory=dict)      # noise model key -> verdict


def inference_mode_off(events):
    """Advance a job's event iterator with torch's inference mode off at every step.

    Jobs share the engine thread, and a job suspended inside ``torch.inference_mode()`` (a smoothing
    job yields its counts there) leaves the thread in inference mode for whichever job runs next;
    PGD needs gradients, so each of its steps is run under an explicit ``inference_mode(False)``."""
    import torch

    iterator = iter(events)
    while True:
        with torch.inference_mode(False):
            try:
                event = next(iterator)
            except StopIteration:
                return
        yield event


def attack_and_judge_job(engine, cancel, *, params: AttackParams, image, label: int | None, judge_keys: list[str],
                         smooth_keys: list[str]):
    """Runs on the engine thread: the streaming PGD job, then the clean and adversarial predictions of
    every model in ``judge_keys`` and CERTIFY for the smoothed classifier of every noise model in
    ``smooth_keys``. Ends with ``Finished(AttackOutcome)``."""
    import torch

    source = engine.model(params.source)
    judges = engine.models(judge_keys)
    x = torch.as_tensor(image, dtype=torch.float32)
    x = x[None] if x.dim() == 3 else x
    label_known = label is not None
    if label is None:  # a user's file: attack the class the source model sees
        label = int(judge({"source": source}, x)["source"].predicted[0])
    sigma = getattr(source.meta, "sigma", None) if params.smoothed else None
    if params.smoothed and sigma is None:
        raise ValueError(f"{params.source} was not trained with Gaussian noise: it has no smoothed classifier")
    config = params.config(sigma)
    result = None
    for event in inference_mode_off(attack_job(source, x, torch.tensor([label]), config, judges=judges)(cancel)):
        if isinstance(event, Finished):
            result = event.result
            break
        yield event
    clean = judge(judges, result.original)
    delta = result.perturbation
    outcome = AttackOutcome(
        adversarial=result.adversarial.numpy(), perturbation=delta.numpy(), norm=config.norm, eps=config.eps,
        norm_value=float(result.perturbation_norm[0]), l2_value=float(perturbation_norm(delta, "l2")[0]),
        label=label, label_known=label_known,
        target=None if result.targets is None else int(result.targets[0]), success=bool(result.success[0]),
        source_probability=result.probabilities[0].numpy(),
        clean_probs={k: v.probabilities[0].numpy() for k, v in clean.items()},
        adversarial_probs={k: v.probabilities[0].numpy() for k, v in result.judgments.items()})
    for i, key in enumerate(smooth_keys):
        cancel.check()
        yield Progress(i, len(smooth_keys), f"smoothed classifier of {key.split('/')[-1]}: CERTIFY, n = {SMOOTH_N:,}")
        smooth = Smooth.from_model(engine.model(key), optimize=False)
        before = smooth.certify_detailed(result.original, SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, generator=SMOOTH_SEED)
        cancel.check()
        after = smooth.certify_detailed(result.adversarial, SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, generator=SMOOTH_SEED)
        outcome.smoothed[key] = SmoothedVerdict(smooth.sigma, before.prediction, before.radius, before.pA_lower,
                                                after.prediction, after.radius, after.pA_lower)
    yield Finished(outcome)


class EpsControl(QWidget):
    """ε in the norm's own units: a slider (L∞ in 1/255 steps, L2 in 0.05 steps) and the exact value,
    with the value in grey levels for L∞."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.norm = "linf"
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("ε, the radius of the ball the perturbation stays in")
        self.spin = QDoubleSpinBox()
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip("ε exactly, in [0,1]-pixel units of the chosen norm")
        self.units = QLabel("")
        self.units.setObjectName("caption")
        self.units.setMinimumWidth(self.units.fontMetrics().horizontalAdvance("= 25.5/255") + 4)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(4)
        layout.setVerticalSpacing(2)
        layout.addWidget(self.spin, 0, 0)
        layout.addWidget(self.units, 0, 1)
        layout.addWidget(self.slider, 1, 0, 1, 2)
        layout.setColumnStretch(1, 1)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self.set_norm("linf", DEFAULT_EPS["linf"])

    def set_norm(self, norm: str, value: float) -> None:
        step, positions = EPS_SLIDER[norm]
        self.norm = norm
        for widget in (self.slider, self.spin):
            widget.blockSignals(True)
        self.slider.setRange(0, positions)
        self.slider.setPageStep(max(1, positions // 10))
        self.spin.setDecimals(4 if norm == "linf" else 3)
        self.spin.setRange(0.0, step * positions)
        self.spin.setSingleStep(step)
        for widget in (self.slider, self.spin):
            widget.blockSignals(False)
        self.set_value(value)

    def set_value(self, value: float) -> None:
        self.spin.setValue(float(value))
        self._from_spin(self.spin.value())

    def value(self) -> float:
        return float(self.spin.value())

    def _from_slider(self, position: int) -> None:
        step, _ = EPS_SLIDER[self.norm]
        self.spin.blockSignals(True)
        self.spin.setValue(position * step)
        self.spin.blockSignals(False)
        self._show_units()

    def _from_spin(self, value: float) -> None:
        step, _ = EPS_SLIDER[self.norm]
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(value / step)))
        self.slider.blockSignals(False)
        self._show_units()

    def _show_units(self) -> None:
        value = self.value()
        self.units.setText(f"= {value * 255:.3g}/255" if self.norm == "linf" else "")


class _Column(QWidget):
    """A column whose wrapped texts do not ask for height-for-width layout: inside the window's scroll
    area that would lay the panel out at its preferred height and scroll, where the minimum fits."""

    def hasHeightForWidth(self) -> bool:
        return False


def _spin(minimum: int, maximum: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


def _combo(choices, tip: str) -> QComboBox:
    box = _shrinking_combo()
    for key, text in choices:
        box.addItem(text, key)
    box.setToolTip(tip)
    return box


def _shrinking_combo() -> QComboBox:
    """A combo box that may be narrower than its longest entry (the list still shows it in full)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(10)
    return box


def _select(box: QComboBox, data) -> bool:
    """Choose the item whose data equals ``data`` (compared in Python: tuples are data here too)."""
    position = next((i for i in range(box.count()) if box.itemData(i) == data), -1)
    if position >= 0:
        box.setCurrentIndex(position)
    return position >= 0


class AttackPanel(QWidget):
    """PGD on the selected image, live; then every loaded model's verdict on the result."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.handle = None                  # the current attack job
        self.params: AttackParams | None = None
        self.outcome: AttackOutcome | None = None
        self.state = "idle"                 # idle, running, finished, cancelled, failed
        self.attacked_selection = None
        self._run_id = 0                    # events of an older run are ignored
        self._eps = dict(DEFAULT_EPS)       # the last ε chosen for each norm
        self._wanted_source: tuple[str, bool] | None = None   # a stored source waiting for its model
        self._steps_seen: list = []         # AttackStep per iterate of the current run
        self._last_step = None
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
        self.source_box = _shrinking_combo()
        self.source_box.setToolTip("The model PGD attacks (white box). A smoothed classifier is attacked through "
                                   "the Monte-Carlo average of its softmax over Gaussian noise (EOT).")
        self.samples_box = _spin(1, 512, 32, "noise draws per PGD step for the smoothed classifier's gradient")
        self.norm_box = _combo((("linf", "L∞ (each pixel ≤ ε)"), ("l2", "L2 (length ≤ ε)")),
                               "the threat model: the ball ‖δ‖ ≤ ε")
        self.eps = EpsControl()
        self.step_box = QDoubleSpinBox()
        self.step_box.setDecimals(4)
        self.step_box.setRange(0.0, 10.0)
        self.step_box.setSingleStep(0.001)
        self.step_box.setKeyboardTracking(False)
        self.step_box.setToolTip("the step size α (L∞: every pixel moves by α·sign(∇); L2: δ moves by α along ∇/‖∇‖₂)")
        self.step_auto = QCheckBox("2.5·ε/steps")
        self.step_auto.setChecked(True)
        self.step_auto.setToolTip("Madry et al.'s choice: enough to cross the ball from a random start")
        self.steps_box = _spin(1, 2000, 20, "gradient steps per restart")
        self.start_box = _combo(RANDOM_STARTS, "random start of each restart: none (at x), uniform in the ε-ball, "
                                               "or on its sphere")
        self.start_box.setMinimumContentsLength(7)
        self.restarts_box = _spin(1, 50, 1, "independent runs; per image the best iterate of all is kept")
        self.target_box = _combo(TARGETS, "untargeted: any wrong class; targeted: push towards a target class t")
        self.class_box = _shrinking_combo()
        self.class_box.setToolTip("the target class")
        self.loss_box = _combo(LOSSES, "CE: cross-entropy; CW: Carlini–Wagner margin max_{j≠c} z_j − z_c. PGD climbs "
                                       "it (untargeted) or descends it (targeted)")
        self.loss_box.setMinimumContentsLength(3)
        self.run_button = QPushButton("Attack (F5)")
        self.run_button.setToolTip("Run PGD on the selected image with these settings")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the attack (Esc)")
        self.cancel_button.setEnabled(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(4)
        form.addRow("Source", self.source_box)
        self.samples_label = QLabel("EOT draws")
        form.addRow(self.samples_label, self.samples_box)
        form.addRow("Norm", self.norm_box)
        form.addRow("ε", self.eps)
        step_row = QHBoxLayout()
        step_row.setSpacing(4)
        step_row.addWidget(self.step_box, 1)
        step_row.addWidget(self.step_auto)
        form.addRow("Step size", step_row)
        steps_row = QHBoxLayout()
        steps_row.setSpacing(4)
        steps_row.addWidget(self.steps_box, 1)
        steps_row.addWidget(QLabel("restarts"))
        steps_row.addWidget(self.restarts_box, 1)
        form.addRow("Steps", steps_row)
        start_row = QHBoxLayout()
        start_row.setSpacing(4)
        start_row.addWidget(self.start_box, 3)
        start_row.addWidget(QLabel("loss"))
        start_row.addWidget(self.loss_box, 2)
        form.addRow("Start", start_row)
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
        column = QVBoxLayout(controls)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(6)
        column.addLayout(form)
        column.addLayout(buttons)
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
        column.addWidget(self.texts, 1)

        self.loss_plot = StepCurve("loss", {"loss": ("loss", LOSS_COLOR, False)})
        self.loss_plot.setObjectName("attack-loss")
        self.probability_plot = StepCurve("probability", {"true": ("P(true class)", TRUE_COLOR, False),
                                                          "target": ("P(target)", TARGET_COLOR, True)},
                                          y_range=(0.0, 1.0))
        self.probability_plot.setObjectName("attack-probability")
        self.probability_plot.set_visible("target", False)
        curves = QSplitter(Qt.Orientation.Horizontal)
        curves.addWidget(self.loss_plot)
        curves.addWidget(self.probability_plot)
        curves.setChildrenCollapsible(False)

        self.table = TransferTable()
        self.table.setObjectName("attack-transfer")
        self.table_title = QLabel("<b>Every loaded model judges the adversarial image</b>")
        verdicts = QWidget()
        column = QVBoxLayout(verdicts)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.table_title)
        column.addWidget(self.table, 1)

        # controls | (curves side by side, over the verdicts)
        self.results = QSplitter(Qt.Orientation.Vertical)
        self.results.addWidget(curves)
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
        ctx = self.ctx
        ctx.selectionChanged.connect(self._on_selection)
        ctx.modelsChanged.connect(lambda _m: self._refresh_sources())
        ctx.datasetChanged.connect(lambda _d: self._refresh_classes())
        ctx.lectureModeChanged.connect(self.set_lecture_mode)
        self.norm_box.currentIndexChanged.connect(self._on_norm)
        self.eps.spin.valueChanged.connect(self._on_eps)
        self.eps.slider.valueChanged.connect(lambda _p: self._on_eps(self.eps.value()))
        self.steps_box.valueChanged.connect(lambda _v: self._update_step_size())
        self.step_auto.toggled.connect(lambda _on: self._update_step_size())
        self.source_box.currentIndexChanged.connect(lambda _i: self._update_visibility())
        self.target_box.currentIndexChanged.connect(lambda _i: self._update_visibility())
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

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
                kind = _kind_text(info.meta)
                self.source_box.addItem(style.short_name(info) + (f"  ({kind})" if kind else ""), (info.key, False))
            for info in self.ctx.models_of_kind("noise"):
                if info.meta.sigma is not None:
                    self.source_box.addItem(f"smoothed g of {style.short_name(info)} (EOT)", (info.key, True))
            if not self.ctx.models:
                self.source_box.addItem("no model loaded", None)
            if wanted is not None and _select(self.source_box, tuple(wanted)):
                if self._wanted_source is not None and tuple(self._wanted_source) == tuple(wanted):
                    self._wanted_source = None
            else:
                kinds = {m.key: m.meta.kind for m in self.ctx.models}
                standard = [i for i in range(self.source_box.count()) if self.source_box.itemData(i)
                            and not self.source_box.itemData(i)[1]
                            and kinds.get(self.source_box.itemData(i)[0]) == "standard"]
                self.source_box.setCurrentIndex(standard[0] if standard else 0)
        finally:
            self.source_box.blockSignals(False)
        self._update_visibility()

    def _refresh_classes(self) -> None:
        current = self.class_box.currentIndex()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for i, name in enumerate(self.ctx.classes):
            self.class_box.addItem(f"{i}: {name}", i)
        if 0 <= current < self.class_box.count():
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
        if norm is not None and not _select(self.norm_box, norm):
            raise ValueError(f"unknown norm {norm!r}")
        if eps is not None:
            self.eps.set_value(float(eps))
            self._on_eps(self.eps.value())
        if steps is not None:
            self.steps_box.setValue(int(steps))
        if step_size is not None:
            self.step_auto.setChecked(False)
            self.step_box.setValue(float(step_size))
        if random_start is not None and not _select(self.start_box, random_start):
            raise ValueError(f"unknown random start {random_start!r}")
        if restarts is not None:
            self.restarts_box.setValue(int(restarts))
        if target is not None and not _select(self.target_box, target):
            raise ValueError(f"unknown target mode {target!r}")
        if target_class is not None:
            _select(self.class_box, int(target_class))
        if loss is not None and not _select(self.loss_box, loss):
            raise ValueError(f"unknown loss {loss!r}")
        if samples is not None:
            self.samples_box.setValue(int(samples))
        if source is not None:
            if not _select(self.source_box, (source, bool(smoothed))):
                self._wanted_source = (source, bool(smoothed))  # chosen once the model is loaded
        self._update_step_size()
        self._update_visibility()

    # ---------------------------------------------------------------- runs

    def _on_selection(self, _selection) -> None:
        """A new image: the old attack is for another picture (the strip has already cleared its cards)."""
        self._run_id += 1
        self.ctx.cancel("attack")
        self.outcome = None
        self.attacked_selection = None
        self.state = "idle"
        self.cancel_button.setEnabled(False)
        self._reset_curves(None)
        self.table.clear_rows()
        self.table_note.setText("")
        if _selection is not None:
            self._show_status(f"{_selection.source}: press <b>F5</b> (or Attack) to attack it.")

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
        infos = {m.key: m for m in self.ctx.models}
        info = infos.get(params.source)
        if info is None:
            self._show_status(f"{params.source} is not loaded any more: choose another source.", error=True)
            return
        if tuple(info.meta.input_shape) != shape:
            self._show_status(f"{style.short_name(info)} takes {'×'.join(map(str, info.meta.input_shape))} images, "
                              f"this one is {'×'.join(map(str, shape))}.", error=True)
            return
        judges = [m.key for m in self.ctx.models if tuple(m.meta.input_shape) == shape]
        smooth_keys = [m.key for m in self.ctx.models_of_kind("noise")
                       if m.key in judges and m.meta.sigma is not None]
        label, image = selection.label, selection.image

        def job(engine, cancel):  # on the engine thread
            yield from attack_and_judge_job(engine, cancel, params=params, image=image, label=label,
                                            judge_keys=judges, smooth_keys=smooth_keys)

        self._run_id += 1
        run_id = self._run_id

        def on_event(event):
            if run_id == self._run_id:
                self._on_event(event)

        self.params = params
        self.outcome = None
        self.attacked_selection = selection
        self.state = "running"
        self._judged_keys = judges
        self._reset_curves(params)
        self.table.clear_rows()
        self.table_note.setText(f"Waiting for the attack to finish; then {len(judges)} model(s)"
                                + (f" and {len(smooth_keys)} smoothed classifier(s)" if smooth_keys else "")
                                + " classify the clean and the adversarial image.")
        what = f"smoothed g of {style.short_name(info)}" if params.smoothed else style.short_name(info)
        self._source_text = what
        self._show_status(f"Attacking <b>{what}</b>: {selection.source} · {self._settings_text(params)}")
        self.handle = self.ctx.submit_with_models("attack", job, on_event=on_event, keep_every=("attack_step",),
                                                  label=f"PGD on {what}: {selection.source}")
        self.cancel_button.setEnabled(True)
        self._redraw.start()

    def cancel(self) -> None:
        self.ctx.cancel("attack")

    @staticmethod
    def _settings_text(params: AttackParams) -> str:
        step = f"{params.step_size:g}" if params.step_size is not None else "2.5ε/steps"
        target = dict(TARGETS)[params.target]
        return (f"{NORM_NAMES[params.norm]} ε = {params.eps:.4g}, {params.steps} steps of {step}, "
                f"{params.restarts} restart(s), start {params.random_start}, {target}, {dict(LOSSES)[params.loss]}")

    # ---------------------------------------------------------------- events (GUI thread: draw only)

    def _on_event(self, event) -> None:
        if isinstance(event, Partial) and event.kind == "attack_step":
            self._steps_seen.append(event.value)
            self._dirty = True
        elif isinstance(event, Snapshot) and event.kind == "attack":
            self._show_snapshot(event)
        elif isinstance(event, Finished):
            self._finish(event.result)
        elif isinstance(event, Aborted):
            self._end("cancelled")
        elif isinstance(event, Failed):
            self._end("failed", event.message)

    def _show_snapshot(self, event: Snapshot) -> None:
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

    def _reset_curves(self, params: AttackParams | None) -> None:
        self._steps_seen = []
        self._dirty = False
        steps = params.steps if params else 1
        restarts = params.restarts if params else 1
        boundaries = [r * steps for r in range(1, restarts)]
        self.loss_plot.prepare(steps * restarts, boundaries)
        self.probability_plot.prepare(steps * restarts, boundaries)
        if params is None:
            return
        classes = self.ctx.classes
        selection = self.ctx.selection
        label = selection.label if selection is not None else None
        smoothed = "smoothed " if params.smoothed else ""
        true_name = classes[label] if label is not None and label < len(classes) else "its class"
        loss_name = LOSS_NAMES[params.loss]
        towards = "to the target" if params.target != "untargeted" else "of the true class"
        direction = "minimised" if params.target != "untargeted" else "maximised"
        self.loss_plot.set_legend("loss", f"{smoothed}{loss_name} {towards}")
        self.loss_plot.setLabel("left", f"loss ({direction})")
        self.probability_plot.set_legend("true", f"{smoothed}P({true_name}), true")
        targeted = params.target != "untargeted"
        self.probability_plot.set_visible("target", targeted)
        if targeted:
            text = (f"{smoothed}P({classes[params.target_class]}), target" if params.target == "class"
                    and params.target_class is not None and params.target_class < len(classes) else
                    f"{smoothed}P(target)")
            self.probability_plot.set_legend("target", text)

    def _draw_curves(self) -> None:
        if not self._dirty:
            if self.state != "running":
                self._redraw.stop()
            return
        self._dirty = False
        steps = self._steps_seen
        if not steps:
            return
        # x = the step counted over all restarts; NaN between restarts breaks the line
        x, loss, p_true, p_target = [], [], [], []
        previous = None
        for s in steps:
            if previous is not None and s.restart != previous:
                x.append(np.nan)
                loss.append(np.nan)
                p_true.append(np.nan)
                p_target.append(np.nan)
            previous = s.restart
            x.append(s.restart * s.steps + s.step)
            loss.append(float(s.loss[0]))
            p_true.append(float(s.true_probability[0]))
            p_target.append(float(s.target_probability[0]) if s.target_probability is not None else np.nan)
        x = np.asarray(x, dtype=float)
        self.loss_plot.set_series("loss", x, np.asarray(loss))
        self.probability_plot.set_series("true", x, np.asarray(p_true))
        self.probability_plot.set_series("target", x, np.asarray(p_target))
        last = steps[-1]
        self.loss_plot.set_marker(x[-1], loss[-1])
        self.probability_plot.set_marker(x[-1], p_true[-1])
        self._last_step = last
        if self.state == "running":
            self._show_status(self._step_text(last))

    def _class_name(self, index: int | None) -> str:
        classes = self.ctx.classes
        if index is None:
            return "—"
        if index == ABSTAIN:
            return "abstain"
        return classes[index] if 0 <= index < len(classes) else f"class {index}"

    def _step_text(self, step) -> str:
        params = self.params
        restart = f"restart {step.restart + 1}/{params.restarts}, " if params.restarts > 1 else ""
        predicted = int(step.predicted[0])
        verdict = ("<span style='color:%s'><b>fooled</b></span>" % style.WRONG.name()) if bool(step.success[0]) \
            else "not fooled yet"
        target = ""
        if step.target_probability is not None:
            target = f" · P(target) = {float(step.target_probability[0]):.3f}"
        return (f"Attacking <b>{self._source_text}</b> · {restart}step {step.step}/{step.steps}<br>"
                f"loss {float(step.loss[0]):.3f} · P(true) = {float(step.true_probability[0]):.3f}{target}<br>"
                f"predicted <b>{self._class_name(predicted)}</b> · ‖δ‖{NORM_SUBSCRIPTS[params.norm]} = "
                f"{float(step.perturbation_norm[0]):.4f} · {verdict}")

    def _finish(self, outcome: AttackOutcome) -> None:
        self.outcome = outcome
        self.state = "finished"
        self.cancel_button.setEnabled(False)
        self._dirty = True
        self._draw_curves()
        params = self.params
        sub = NORM_SUBSCRIPTS[outcome.norm]
        predictions = {key: probs for key, probs in outcome.adversarial_probs.items()}
        self.ctx.set_strip_image("adversarial", outcome.adversarial,
                                 f"PGD {NORM_NAMES[outcome.norm]} ε = {outcome.eps:.4g} on {self._source_text}",
                                 predictions=predictions)
        other = f" · ‖δ‖₂{NBSP}={NBSP}{outcome.l2_value:.2f}" if outcome.norm != "l2" else ""
        self.ctx.set_strip_image("perturbation", outcome.perturbation,
                                 f"‖δ‖{sub}{NBSP}={NBSP}{outcome.norm_value:.3f}{NBSP}≤{NBSP}ε{other}")
        self._fill_table(outcome)
        if outcome.target is not None:
            smoothed = "smoothed " if params.smoothed else ""
            self.probability_plot.set_legend("target", f"{smoothed}P({self._class_name(outcome.target)}), target")
        predicted = int(np.argmax(outcome.source_probability))
        if outcome.target is not None:
            verdict = (f"reached the target <b>{self._class_name(outcome.target)}</b>" if outcome.success
                       else f"did not reach the target {self._class_name(outcome.target)}")
        else:
            verdict = (f"<span style='color:{style.WRONG.name()}'><b>fooled</b></span>: now "
                       f"<b>{self._class_name(predicted)}</b>" if outcome.success
                       else f"<span style='color:{style.CORRECT.name()}'><b>not fooled</b></span>: still "
                            f"<b>{self._class_name(predicted)}</b>")
        self._show_status(f"Done: <b>{self._source_text}</b> {verdict} "
                          f"({100 * float(outcome.source_probability[predicted]):.0f}%) · "
                          f"‖δ‖{sub}{NBSP}={NBSP}{outcome.norm_value:.4f}, the best of "
                          f"{params.restarts * (params.steps + 1)} iterates.")

    def _end(self, state: str, message: str = "") -> None:
        self.state = state
        self.cancel_button.setEnabled(False)
        self._dirty = True
        self._draw_curves()
        last = self._last_step
        where = f" at step {last.step}/{last.steps}" if last is not None and self._steps_seen else ""
        if state == "cancelled":
            self._show_status(f"<b>Cancelled</b>{where}: the strip shows the last iterate drawn, judged as it is; "
                              "press F5 to attack again.")
            self.table_note.setText("Cancelled before the end: no transfer table.")
            snapshot = getattr(self, "_last_snapshot", None)
            if snapshot is not None and self.attacked_selection is self.ctx.selection:
                image, info = snapshot
                self.ctx.set_strip_image("adversarial", image, f"cancelled at step {info['step']}/{self.params.steps}")
        else:
            self._show_status(f"The attack failed: {message}", error=True)
            self.table_note.setText("")

    def _fill_table(self, outcome: AttackOutcome) -> None:
        params = self.params
        colors = style.model_colors(self.ctx.models)
        infos = {m.key: m for m in self.ctx.models}
        label, target = outcome.label, outcome.target
        rows = []
        for key in self._judged_keys:
            info = infos.get(key)
            if info is None or key not in outcome.adversarial_probs:
                continue
            clean, adversarial = outcome.clean_probs[key], outcome.adversarial_probs[key]
            c, a = int(np.argmax(clean)), int(np.argmax(adversarial))
            name = style.short_name(info)
            is_source = key == params.source
            if is_source:
                name += "  (base of the attacked g)" if params.smoothed else "  (attacked)"
            fooled, verdict, tip = self._fooled(c, a, label, outcome.label_known, target)
            rows.append(dict(name=name, color=colors.get(key), bold=is_source and not params.smoothed,
                             tooltip=info.label,
                             clean=f"{self._class_name(c)}  {clean[c]:.0%}",
                             adversarial=f"{self._class_name(a)}  {adversarial[a]:.0%}",
                             adversarial_wrong=outcome.label_known and a != label,
                             fooled=fooled, verdict=verdict, fooled_tip=tip))
        for key, v in outcome.smoothed.items():
            info = infos.get(key)
            attacked = params.smoothed and key == params.source
            name = f"smoothed g, σ = {v.sigma:g}" + ("  (attacked)" if attacked else "")
            clean = "abstain" if v.clean_prediction == ABSTAIN else \
                f"{self._class_name(v.clean_prediction)}, R = {v.clean_radius:.2f}"
            adversarial = "abstain" if v.adversarial_prediction == ABSTAIN else \
                f"{self._class_name(v.adversarial_prediction)}, R = {v.adversarial_radius:.2f}"
            fooled, verdict, tip = self._smoothed_fooled(v, outcome, label, target)
            rows.append(dict(name=name, color=colors.get(key) if info else None, bold=attacked,
                             tooltip=f"Cohen et al.'s CERTIFY with n0 = {SMOOTH_N0}, n = {SMOOTH_N:,}, "
                                     f"α = {SMOOTH_ALPHA:g} (R: certified L2 radius)",
                             clean=clean, adversarial=adversarial,
                             adversarial_wrong=(outcome.label_known and v.adversarial_prediction not in (label, ABSTAIN)),
                             fooled=fooled, verdict=verdict, fooled_tip=tip,
                             clean_tip=f"pA ≥ {v.clean_pA:.4f}", adversarial_tip=f"pA ≥ {v.adversarial_pA:.4f}"))
        self.table.set_rows(rows)
        fooled_count = sum(r["verdict"] == "yes" for r in rows)
        true = f"true class <b>{self._class_name(label)}</b>" if outcome.label_known else \
            f"no true class: the source's clean answer <b>{self._class_name(label)}</b> stands in"
        goal = f" · target <b>{self._class_name(target)}</b>" if target is not None else ""
        smooth = (f" Smoothed g: CERTIFY, n{NBSP}={NBSP}{SMOOTH_N:,}, α{NBSP}={NBSP}{SMOOTH_ALPHA:g}; within its "
                  f"certified L2 radius R, g cannot change (here ‖δ‖₂{NBSP}={NBSP}{outcome.l2_value:.2f})."
                  if outcome.smoothed else "")
        self.table_note.setText(f"{true}{goal} · fooled: <b>{fooled_count} of {len(rows)}</b>. An example crafted "
                                f"on one model often fools others: they share non-robust features.{smooth}")

    def _fooled(self, clean: int, adversarial: int, label: int, label_known: bool, target: int | None):
        """The fooled? cell: (text, verdict "yes"/"no"/"other", tooltip)."""
        if target is not None:
            if adversarial == target:
                return f"yes → {self._class_name(target)}", "yes", "classifies the adversarial image as the target"
            return "no", "no", f"does not classify it as the target {self._class_name(target)}"
        if not label_known:
            if adversarial != clean:
                return "yes (changed)", "yes", "its answer changed (no true class is known for this image)"
            return "no", "no", "its answer did not change"
        if clean != label:
            return "— wrong already", "other", "misclassifies the clean image already: nothing to fool"
        if adversarial != label:
            return "yes", "yes", "right on the clean image, wrong on the adversarial one"
        return "no", "no", "right on both"

    def _smoothed_fooled(self, v: SmoothedVerdict, outcome: AttackOutcome, label: int, target: int | None):
        l2 = outcome.l2_value
        if v.clean_prediction == ABSTAIN:
            return "— abstains on x", "other", "g abstains on the clean image: nothing is certified"
        inside = v.clean_prediction == label and l2 < v.clean_radius
        guard = (f"‖δ‖₂ = {l2:.3f} < R = {v.clean_radius:.3f}: inside the certified ball, g cannot change "
                 f"(with probability ≥ 1 − α)")
        if v.adversarial_prediction == ABSTAIN:
            return "abstains", "other", "g abstains on the adversarial image (CERTIFY's pA lower bound < ½)"
        if target is not None:
            hit = v.adversarial_prediction == target
        elif outcome.label_known:
            if v.clean_prediction != label:
                return "— wrong already", "other", "g misclassifies the clean image already"
            hit = v.adversarial_prediction != label
        else:
            hit = v.adversarial_prediction != v.clean_prediction
        if hit:
            return "yes", "yes", (f"‖δ‖₂ = {l2:.3f} ≥ R = {v.clean_radius:.3f}: outside the certified ball"
                                  if not inside else "inside the certified ball: the α chance of a wrong certificate")
        return ("no · inside R" if inside else "no"), "no", (guard if inside else
                                                              f"‖δ‖₂ = {l2:.3f} ≥ R = {v.clean_radius:.3f}, yet g holds")

    def _show_status(self, text: str, error: bool = False) -> None:
        color = f" style='color:{style.WRONG.name()}'" if error else ""
        self.status.setText(f"<span{color}>{text}</span>")

    # ---------------------------------------------------------------- lecture mode and settings

    def set_lecture_mode(self, on: bool) -> None:
        size = style.base_point_size() * (style.LECTURE_FONT_SCALE if on else 1.0)
        for plot in (self.loss_plot, self.probability_plot):
            plot.set_fonts(size)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)

    def save_settings(self, settings) -> None:
        params = self.current_params()
        for key, value in (("norm", self.norm_box.currentData()), ("eps_linf", self._eps["linf"]),
                           ("eps_l2", self._eps["l2"]), ("step_auto", self.step_auto.isChecked()),
                           ("step_size", self.step_box.value()), ("steps", self.steps_box.value()),
                           ("random_start", self.start_box.currentData()), ("restarts", self.restarts_box.value()),
                           ("target", self.target_box.currentData()), ("target_class", self.class_box.currentIndex()),
                           ("loss", self.loss_box.currentData()), ("samples", self.samples_box.value())):
            settings.setValue(key, value)
        if params is not None:
            settings.setValue("source", params.source)
            settings.setValue("source_smoothed", params.smoothed)

    def restore_settings(self, settings) -> None:
        """Restore the controls; a value that does not parse raises ValueError (the window reports it)."""
        def value(key, kind):
            raw = settings.value(key)
            if raw is None:
                return None
            if kind is bool:
                return str(raw).lower() in ("true", "1")
            try:
                return kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{key} = {raw!r} is not a {kind.__name__}") from None

        for norm in ("linf", "l2"):
            eps = value(f"eps_{norm}", float)
            if eps is not None:
                if not (0 <= eps <= EPS_SLIDER[norm][0] * EPS_SLIDER[norm][1] + 1e-9):
                    raise ValueError(f"ε = {eps} is outside the {NORM_NAMES[norm]} range")
                self._eps[norm] = eps
        norm = value("norm", str) or "linf"
        if norm not in EPS_SLIDER:
            raise ValueError(f"unknown norm {norm!r}")
        _select(self.norm_box, norm)
        self.eps.set_norm(norm, self._eps[norm])
        self.set_params(steps=value("steps", int), random_start=value("random_start", str),
                        restarts=value("restarts", int), target=value("target", str),
                        target_class=value("target_class", int), loss=value("loss", str),
                        samples=value("samples", int))
        auto = value("step_auto", bool)
        step = value("step_size", float)
        if auto is False and step is not None:
            self.set_params(step_size=step)
        source = value("source", str)
        if source:
            self.set_params(source=source, smoothed=bool(value("source_smoothed", bool)))
        self._update_step_size()


def _kind_text(meta) -> str:
    """What a model's name may not say: how it was trained."""
    if meta.kind == "adversarial":
        return f"PGD-trained, {NORM_NAMES.get(meta.norm, meta.norm)} ε = {meta.eps:g}" if meta.eps is not None \
            else "PGD-trained"
    if meta.kind == "noise":
        return f"noise σ = {meta.sigma:g}" if meta.sigma is not None else "noise-trained"
    return ""
