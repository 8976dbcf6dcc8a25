"""Two sections of the Experiments tab, over a test subset:

- **Robust accuracy vs ε**: for every loaded model, the fraction of the subset it classifies correctly
  both clean and under an untargeted PGD attack of radius ε (Madry et al. 2018), one curve per model,
  growing as each (model, ε) point is computed. Robustly trained models keep their accuracy longer.
- **Transfer matrix**: PGD examples crafted on each model (rows) judged by every model (columns); a
  cell is the attack's success rate on the column model. Off the diagonal, success is transfer:
  models share non-robust features (Ilyas et al. 2019, Sec. 5).

Each builds a request of ``engine/robustness.py`` and draws its events.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from robustlens.engine.evaluate import APGD_STEPS, ATTACK_LABELS, ATTACKS
from robustlens.engine.robustness import (RobustnessRequest, TransferRequest, cached_robustness_curves_job,
                                          cached_transfer_matrix_job, save_result)

from .. import style
from ..context import AppContext
from ..controls import FlowRow, bold_label, buddy, caption_label, column, combo_box, double_spin_box, spin_box
from ..eps_control import DEFAULT_EPS, EPS_SLIDER, NORM_NAMES, eps_maximum, norm_combo
from ..settings import Setting
from .attack_plots import RobustnessPlot, TransferMatrixTable
from .base import Panel

DEFAULT_EPS_GRID = {"linf": "0, 0.02, 0.05, 0.1, 0.15, 0.2", "l2": "0, 0.5, 1, 1.5, 2, 3"}
SYMBOLS = ("o", "s", "t", "d", "star", "p", "h", "t1")
TRANSFER_TARGETS = (("untargeted", "untargeted"), ("random", "random other (D_rand)"),
                    ("next", "(y+1) mod C (D_det)"))
STEPS = Setting("steps", 10, 1, 500, step=5, help="PGD steps per attack (step size 2.5·ε/steps, uniform random start)")
IMAGES = Setting("images", 100, 1, 10_000, step=50, help="test images, spread evenly through the dataset")
NORM = Setting("norm", "linf", choices=tuple(NORM_NAMES), help="the threat model: the ball ‖δ‖ ≤ ε")
ATTACK = Setting("attack", "pgd", choices=ATTACKS,
                 help=f"pgd: our PGD (Steps); apgd: APGD-CE then APGD-T, {APGD_STEPS} steps each; autoattack: the "
                      "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), the field's reference (Croce & Hein 2020)")
ATTACK_CHOICES = tuple((key, {"pgd": "PGD", "apgd": "APGD", "autoattack": "AutoAttack"}[key]) for key in ATTACKS)


def parse_eps_list(text: str) -> list[float]:
    """'0, 0.05, 0.1' -> [0.0, 0.05, 0.1] (sorted, without repeats); a clear ValueError otherwise."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if not parts:
        raise ValueError("give at least one ε, e.g. 0, 0.05, 0.1")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number: give ε values like 0, 0.05, 0.1") from None
        if not value >= 0 or value != value or value == float("inf"):
            raise ValueError(f"ε must be a finite number ≥ 0, not {part}")
        values.append(value)
    return sorted(set(values))


def evaluation_subset(ctx: AppContext, count: int):
    """``count`` images spread evenly through the dataset (every class is represented), and their positions."""
    dataset = ctx.dataset
    count = max(1, min(int(count), len(dataset)))
    stride = max(1, len(dataset) // count)
    positions = list(range(0, stride * count, stride))[:count]
    return dataset.subset(positions), positions


def compatible_models(ctx: AppContext):
    """The loaded models that take the dataset's images."""
    shape = tuple(ctx.dataset.image_shape) if ctx.dataset is not None else None
    return [m for m in ctx.models if shape is None or tuple(m.meta.input_shape) == shape]


def _model_text(info) -> str:
    meta = info.meta
    if meta.kind == "adversarial" and meta.eps is not None:
        return f"{style.short_name(info)} ({NORM_NAMES.get(meta.norm, meta.norm)} ε = {meta.eps:g})"
    return style.short_name(info)


class _Section(Panel):
    """Controls in a row, a status line, and Run / Cancel / Save over one engine job slot."""

    slot = ""
    noun = "experiment"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.result = None
        self.state = "idle"
        self._started = 0.0
        self._estimate = ""                # what the running job said it would cost
        self._per_norm: dict = {}          # norm -> its ε (grid); the subclass fills it
        self.run_button = QPushButton("Run (F5)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Write the numbers as TSV and JSON (as the CLI does)")
        self.save_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setObjectName("caption")
        self.status.setWordWrap(True)
        self.status.setMinimumWidth(200)
        self.run_button.clicked.connect(self.run)
        self.save_button.clicked.connect(self._ask_and_save)

    # the settings eps_linf / eps_l2: a value per norm, kept in self._per_norm while the other norm shows
    def setting_value(self, key: str):
        if key in ("eps_linf", "eps_l2"):
            return self._per_norm[key[len("eps_"):]]
        return super().setting_value(key)

    def apply_setting(self, key: str, value) -> None:
        if key in ("eps_linf", "eps_l2"):
            self._per_norm[key[len("eps_"):]] = self._eps_value(value)
        else:
            super().apply_setting(key, value)

    def settings_applied(self) -> None:
        self._on_norm(0)

    def _eps_value(self, value):
        """A stored per-norm value as the section keeps it; ValueError when it is not one."""
        return value

    def _controls(self, pairs) -> FlowRow:
        """The section's controls and buttons on a row that wraps when the tab is narrow (lecture fonts
        beside the deck pane)."""
        row = FlowRow(spacing=8)
        for text, widget in pairs:
            row.add_group(buddy(text, widget), widget)
        row.add_group(self.run_button, self.cancel_button, self.save_button)
        return row

    def _ready(self) -> list | None:
        if self.ctx.dataset is None:
            self._say("No dataset loaded yet.", error=True)
            return None
        models = compatible_models(self.ctx)
        if not models:
            self._say("No model for these images is loaded: tick some under Models.", error=True)
            return None
        return models

    def _start(self, function, request, label: str, keep: str) -> None:
        self.result = None
        self._estimate = ""
        self.state = "running"
        self._started = time.monotonic()
        self.save_button.setEnabled(False)
        self.run_engine(self.slot, function, request, label=label, keep_every=(keep,), on_partial=self._on_partial,
                        on_done=self._done, on_aborted=self._aborted, on_failed=self._failed,
                        cancel_button=self.cancel_button)

    def show_estimate(self, slot: str, estimate) -> None:
        self._estimate = f" · estimated {estimate.text()}"
        self._say(self.status.text() + self._estimate)

    def _done(self, result) -> None:
        self.result = result
        self.state = "finished"
        self.save_button.setEnabled(True)
        self._on_finished(result, time.monotonic() - self._started)

    def _aborted(self, _event) -> None:
        self.state = "cancelled"
        self._say(f"Cancelled: {self._partial_text()}")

    def _failed(self, event) -> None:
        self.state = "failed"
        self._say(f"Failed: {event.message}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {style.WRONG.name()};" if error else "")
        self.status.setText(text)

    def save_results(self, stem: str | Path) -> list[Path]:
        """Write the last finished result as ``stem.tsv`` and ``stem.json``."""
        if self.result is None:
            raise ValueError(f"no finished {self.noun} to save")
        return save_result(self.result, stem)

    def _ask_and_save(self) -> None:
        suggestion = str(Path(self.ctx.last_folder("export") or ".") / self.noun.replace(" ", "-"))
        path, _ = QFileDialog.getSaveFileName(self, f"Save the {self.noun}", suggestion,
                                              "TSV + JSON (*.tsv *.json);;All files (*)")
        if not path:
            return
        stem = Path(path)
        if stem.suffix.lower() in (".tsv", ".json"):
            stem = stem.with_suffix("")
        try:
            written = self.save_results(stem)
        except (OSError, ValueError) as error:
            self.ctx.error(f"Saving failed: {error}")
            return
        self.ctx.remember_folder("export", str(stem.parent))
        self.ctx.info("Saved " + ", ".join(str(p) for p in written))

    # subclasses
    def _on_norm(self, _index: int) -> None: ...
    def _on_partial(self, event) -> None: ...
    def _on_finished(self, result, seconds: float) -> None: ...
    def _partial_text(self) -> str: return ""


# ---------------------------------------------------------------- robust accuracy vs ε

class RobustnessSection(_Section):
    """Robust accuracy against ε, every loaded model, streamed point by point."""

    slot = "experiment-robustness"
    noun = "robust accuracy vs eps"
    SETTINGS = (NORM,
                Setting("eps_linf", DEFAULT_EPS_GRID["linf"], help="the L∞ ε values to attack at"),
                Setting("eps_l2", DEFAULT_EPS_GRID["l2"], help="the L2 ε values to attack at"),
                STEPS, IMAGES, ATTACK)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self._per_norm = dict(DEFAULT_EPS_GRID)
        self.norm_box = norm_combo()
        self.eps_edit = QLineEdit(self._per_norm["linf"])
        self.eps_edit.setToolTip("the ε values to attack at, in [0,1]-pixel units of the norm, e.g. 0, 0.05, 0.1")
        self.eps_edit.setMinimumWidth(175)  # the default grid in full; the row leaves room for the attack
        self.steps_box = spin_box(STEPS)
        self.images_box = spin_box(IMAGES)
        self.attack_box = combo_box(ATTACK_CHOICES, ATTACK.help)
        self.attack_box.currentIndexChanged.connect(
            lambda _i: self.steps_box.setEnabled(self.attack_box.currentData() == "pgd"))
        self.plot = RobustnessPlot()
        self.plot.setObjectName("experiments-robustness")
        self.table = QLabel("")
        self.table.setTextFormat(Qt.TextFormat.RichText)
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(self._controls((("Norm", self.norm_box), ("ε", self.eps_edit),
                                         ("Attack", self.attack_box), ("Steps", self.steps_box),
                                         ("Images", self.images_box))))
        # the plot, and beside it the numbers as they arrive
        side = QVBoxLayout()
        side.setSpacing(6)
        side.addWidget(self.table)
        side.addWidget(self.status)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(560)
        body = QHBoxLayout()
        body.setSpacing(8)
        body.addWidget(self.plot, 1)
        body.addWidget(side_widget)
        layout.addLayout(body, 1)
        self.norm_box.currentIndexChanged.connect(self._on_norm)
        self.eps_edit.editingFinished.connect(lambda: self._per_norm.__setitem__(self.norm_box.currentData(),
                                                                                self.eps_edit.text()))
        ctx.register_exportable("Experiments: robust accuracy vs ε", self.plot)
        self.points: dict[str, list] = {}
        self._eps_values: list[float] = []
        self._short: dict[str, str] = {}
        self._total = 0
        self._say("Every loaded model is attacked at every ε (untargeted PGD, or the stronger APGD / AutoAttack); a "
                  "point is the fraction of the images it classifies correctly both clean and attacked. Press F5 (or Run).")

    def _on_norm(self, _index: int) -> None:
        self.eps_edit.setText(self._per_norm[self.norm_box.currentData()])

    def run(self) -> None:
        models = self._ready()
        if models is None:
            return
        norm = self.norm_box.currentData()
        try:
            eps_values = parse_eps_list(self.eps_edit.text())
        except ValueError as error:
            self._say(str(error), error=True)
            return
        top = eps_maximum(norm) * 3  # generous: any ε a lecture could want
        if eps_values[-1] > top:
            self._say(f"ε = {eps_values[-1]:g} is beyond any sensible {NORM_NAMES[norm]} radius (≤ {top:g})",
                      error=True)
            return
        self._per_norm[norm] = ", ".join(f"{e:g}" for e in eps_values)
        self.eps_edit.setText(self._per_norm[norm])
        steps, count, attack = self.steps_box.value(), self.images_box.value(), self.attack_box.currentData()
        subset, _positions = evaluation_subset(self.ctx, count)
        keys = [m.key for m in models]
        method = f"PGD-{steps}" if attack == "pgd" else ATTACK_LABELS[attack]
        colors = style.model_colors(self.ctx.models)
        self._short = {m.key: style.short_name(m) for m in models}
        self.plot.prepare([(m.key, _model_text(m), colors[m.key]) for m in models], eps_values,
                          f"ε ({NORM_NAMES[norm]} radius, [0,1]-pixel units)",
                          f"Robust accuracy under {method} ({NORM_NAMES[norm]}), {len(subset)} "
                          f"{self.ctx.dataset.split} images")
        for i, curve in enumerate(self.plot.curves.values()):
            curve.setSymbol(SYMBOLS[i % len(SYMBOLS)])
        self.points = {key: [] for key in keys}
        self._eps_values = eps_values
        self._total = len(keys) * len(eps_values)
        self.table.setText("")
        cluster = self.ctx.cluster_options() if attack == "pgd" else None  # strong attacks run here
        request = RobustnessRequest(tuple(keys), subset.images, subset.labels, norm, tuple(eps_values), steps, attack,
                                    cluster=cluster)
        where = "" if request.cluster is None else f" on Ray ({request.cluster.address})"
        self._say(f"Attacking {len(keys)} model(s) with {method} at {len(eps_values)} ε values on {len(subset)} "
                  f"images{where}…")
        self._start(cached_robustness_curves_job, request,
                    f"robust accuracy vs ε: {len(keys)} models × {len(eps_values)} ε{where}", "curve_point")

    def _on_partial(self, event) -> None:
        if event.kind != "curve_point":
            return
        point = event.value
        self.points.setdefault(point.model, []).append(point)
        rows = self.points[point.model]
        self.plot.set_curve(point.model, [p.eps for p in rows], [p.accuracy for p in rows])
        self._update_table()
        self._say(f"Running: {self._partial_text()} · {time.monotonic() - self._started:.0f} s{self._estimate}")

    def _partial_text(self) -> str:
        done = sum(len(v) for v in self.points.values())
        return f"{done} of {self._total} (model, ε) points"

    def _on_finished(self, result, seconds: float) -> None:
        if result.settings.get("attack", "").startswith("PGD"):
            how = f"{result.settings.get('steps')} PGD steps, step 2.5ε/steps, best iterate"
        else:
            how = f"{result.settings['attack']}, torchattacks, {result.settings.get('steps')} steps per attack"
        self._say(f"Done: {result.images} images, {len(result.models)} models × {len(result.eps)} ε in {seconds:.1f} s "
                  f"({how}).")

    def _update_table(self) -> None:
        head = "".join(f"<th align='right'>&nbsp;&nbsp;{e:g}</th>" for e in self._eps_values)
        lines = [f"<tr><th align='left'>robust acc. at ε =</th>{head}</tr>"]
        colors = style.model_colors(self.ctx.models)
        for key, rows in self.points.items():
            found = {p.eps: p for p in rows}
            cells = "".join(f"<td align='right'>&nbsp;&nbsp;{found[e].accuracy:.0%}</td>" if e in found
                            else "<td align='right'>&nbsp;&nbsp;…</td>" for e in self._eps_values)
            color = colors[key].name() if key in colors else "#888"
            lines.append(f"<tr><td><span style='color:{color}'>■</span> {self._short.get(key, key)}</td>{cells}</tr>")
        self.table.setText("<table cellspacing='0' cellpadding='1'>" + "".join(lines) + "</table>")

    def set_lecture_mode(self, on: bool) -> None:
        self.plot.set_fonts(style.point_size(on))

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"norm": self.norm_box, "steps": self.steps_box, "images": self.images_box, "attack": self.attack_box}

    def _eps_value(self, value) -> str:
        parse_eps_list(str(value))  # ValueError: the base falls back to the default
        return str(value)


# ---------------------------------------------------------------- transfer matrix

class TransferSection(_Section):
    """The transfer matrix: crafted on the row model, judged by the column model, cell by cell."""

    slot = "experiment-transfer"
    noun = "transfer matrix"
    SETTINGS = (NORM,
                Setting("eps_linf", DEFAULT_EPS["linf"], 0.0, eps_maximum("linf"), help="L∞ ε"),
                Setting("eps_l2", DEFAULT_EPS["l2"], 0.0, eps_maximum("l2"), help="L2 ε"),
                STEPS, IMAGES,
                Setting("target", "untargeted", choices=tuple(k for k, _ in TRANSFER_TARGETS),
                        help="untargeted: success = misclassified; targeted: success = the target class"))

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self._per_norm = dict(DEFAULT_EPS)
        self.norm_box = norm_combo()
        self.eps_box = double_spin_box(self.SETTINGS[1], decimals=4, tip="ε, in [0,1]-pixel units of the norm")
        self.steps_box = spin_box(STEPS)
        self.images_box = spin_box(IMAGES)
        self.target_box = combo_box(TRANSFER_TARGETS, self.SETTINGS[-1].help, shrinking=True)
        self.matrix = TransferMatrixTable()
        self.matrix.setObjectName("experiments-transfer")
        self.caption = caption_label()
        self.title = bold_label()
        self.title.setWordWrap(True)  # a long title never widens the tab (the deck pane beside it)
        self.body = column(self.title, (self.matrix, 1), self.caption)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(self._controls((("Norm", self.norm_box), ("ε", self.eps_box), ("Steps", self.steps_box),
                                         ("Images", self.images_box), ("Target", self.target_box))))
        layout.addWidget(self.body, 1)
        layout.addWidget(self.status)
        self.norm_box.currentIndexChanged.connect(self._on_norm)
        self.eps_box.valueChanged.connect(lambda v: self._per_norm.__setitem__(self.norm_box.currentData(), float(v)))
        self._on_norm(0)
        ctx.register_exportable("Experiments: transfer matrix", self.body)
        self._cells = 0
        self._total = 0
        self._say("Adversarial examples crafted on each loaded model (rows) are shown to every model (columns). "
                  "Press F5 (or Run).")

    def _on_norm(self, _index: int) -> None:
        norm = self.norm_box.currentData()
        step, positions = EPS_SLIDER[norm]
        self.eps_box.blockSignals(True)
        self.eps_box.setRange(0.0, step * positions)
        self.eps_box.setSingleStep(step)
        self.eps_box.setValue(self._per_norm[norm])
        self.eps_box.blockSignals(False)

    def run(self) -> None:
        models = self._ready()
        if models is None:
            return
        norm, eps = self.norm_box.currentData(), float(self.eps_box.value())
        steps, count, target = self.steps_box.value(), self.images_box.value(), self.target_box.currentData()
        subset, _positions = evaluation_subset(self.ctx, count)
        keys = [m.key for m in models]
        self.matrix.prepare(keys, [style.short_name(m) for m in models], [_model_text(m) for m in models])
        self._cells, self._total = 0, len(keys) ** 2
        target_text = dict(TRANSFER_TARGETS)[target]
        self.title.setText(f"Attack success rate — rows: crafted on, columns: judged by · PGD-{steps} "
                           f"{NORM_NAMES[norm]} ε = {eps:g}, {target_text}, {len(subset)} {self.ctx.dataset.split} images")
        success = ("misclassifies" if target == "untargeted" else "gives the target class for")
        self.caption.setText(f"Cell: of the images the column model classifies correctly, the fraction whose adversarial "
                             f"example crafted on the row model it {success}. Diagonal (bold): white box. Off the "
                             "diagonal: transfer, from shared non-robust features.")
        request = TransferRequest(tuple(keys), subset.images, subset.labels, norm, eps, steps, target)
        self._say(f"Crafting on {len(keys)} model(s), {len(subset)} images each…")
        self._start(cached_transfer_matrix_job, request, f"transfer matrix: {len(keys)} × {len(keys)} models",
                    "transfer_cell")

    def _on_partial(self, event) -> None:
        if event.kind != "transfer_cell":
            return
        cell = event.value
        self.matrix.set_cell(cell.source, cell.target, cell.success_rate, cell.fooled, cell.eligible)
        self._cells += 1
        self._say(f"Running: {self._partial_text()} · {time.monotonic() - self._started:.0f} s{self._estimate}")

    def _partial_text(self) -> str:
        return f"{self._cells} of {self._total} cells"

    def _on_finished(self, result, seconds: float) -> None:
        self._say(f"Done: {len(result.models)} × {len(result.models)} cells, {result.images} images, in {seconds:.1f} s.")

    def set_lecture_mode(self, on: bool) -> None:
        self.matrix.resizeRowsToContents()

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"norm": self.norm_box, "steps": self.steps_box, "images": self.images_box, "target": self.target_box}

    def _eps_value(self, value) -> float:
        return float(value)
