"""The Experiments tab: experiments over a test subset, one section each.

- **Robust accuracy vs ε**: for every loaded model, the fraction of the subset it classifies correctly
  both clean and under an untargeted PGD attack of radius ε (Madry et al. 2018), one curve per model,
  growing as each (model, ε) point is computed. Robustly trained models keep their accuracy longer.
- **Transfer matrix**: PGD examples crafted on each model (rows) judged by every model (columns); a
  cell is the attack's success rate on the column model. Off the diagonal, success is transfer:
  models share non-robust features (Ilyas et al. 2019, Sec. 5).

Sections are listed in :data:`SECTIONS`; a section joins the tab with one line there (or, at run time,
with :meth:`ExperimentsPanel.add_section`). A section is a ``QWidget`` built as ``Section(ctx)``; it may
have ``run()`` (F5 runs the section on screen), ``save_settings(s)`` / ``restore_settings(s)`` (called
inside its own settings group) and ``set_lecture_mode(on)``.

All numbers come from ``engine/experiments.py``; this module asks for them and draws them.
"""

from __future__ import annotations

import importlib
import re
import time
import traceback
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QTabWidget, QTextEdit, QVBoxLayout, QWidget)

from robustlens.engine.experiments import robustness_curves_job, save_result, transfer_matrix_job
from robustlens.engine.jobs import Aborted, Failed, Finished, Partial

from .. import style
from ..context import AppContext
from .attack import DEFAULT_EPS, EPS_SLIDER, NORM_NAMES, inference_mode_off
from .attack_plots import RobustnessPlot, TransferMatrixTable

# (title, "module:Class"): the sections, in tab order
SECTIONS: list[tuple[str, str]] = [
    ("Robust accuracy vs ε", "robustlens.app.panels.experiments:RobustnessSection"),
    ("Transfer matrix", "robustlens.app.panels.experiments:TransferSection"),
    ("Dataset experiments (Ilyas et al.)", "robustlens.app.panels.features_experiments:DatasetExperiments"),
]

DEFAULT_EPS_GRID = {"linf": "0, 0.02, 0.05, 0.1, 0.15, 0.2", "l2": "0, 0.5, 1, 1.5, 2, 3"}
SYMBOLS = ("o", "s", "t", "d", "star", "p", "h", "t1")
TRANSFER_TARGETS = (("untargeted", "untargeted"), ("random", "random other (D_rand)"),
                    ("next", "(y+1) mod C (D_det)"))


# ---------------------------------------------------------------- shared helpers

def batch_for(steps: int) -> int:
    """Images per attacked batch: the engine checks for cancellation between batches, so a batch is kept
    to about 2,500 image-steps (a second or less on a laptop CPU); at 10 steps this is the CLI's 250,
    so the default settings give the CLI's numbers."""
    return max(25, min(250, 2500 // max(1, int(steps))))


def _spin(minimum: int, maximum: int, value: int, step: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


def _norm_box() -> QComboBox:
    box = QComboBox()
    for key in ("linf", "l2"):
        box.addItem(NORM_NAMES[key], key)
    box.setToolTip("the threat model: the ball ‖δ‖ ≤ ε")
    return box


def _select(box: QComboBox, data) -> None:
    position = box.findData(data)
    if position < 0:
        raise ValueError(f"unknown choice {data!r}")
    box.setCurrentIndex(position)


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


class _Section(QWidget):
    """Controls in a row, a status line, and Run / Cancel / Save over one engine job slot."""

    slot = ""
    noun = "experiment"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.handle = None
        self.result = None
        self.state = "idle"
        self._run_id = 0
        self._started = 0.0
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
        self.cancel_button.clicked.connect(lambda: self.ctx.cancel(self.slot))
        self.save_button.clicked.connect(self._ask_and_save)

    def _controls(self, pairs) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(4)
        for text, widget in pairs:
            label = QLabel(text)
            label.setBuddy(widget)
            row.addWidget(label)
            row.addWidget(widget)
            row.addSpacing(8)
        for button in (self.run_button, self.cancel_button, self.save_button):
            row.addWidget(button)
        row.addStretch(1)
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

    def _submit(self, job, label: str, keep: str) -> None:
        self._run_id += 1
        run_id = self._run_id

        def on_event(event):
            if run_id == self._run_id:
                self._on_event(event)

        self.result = None
        self.state = "running"
        self._started = time.monotonic()
        self.save_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.handle = self.ctx.submit_with_models(self.slot, job, on_event=on_event, keep_every=(keep,), label=label)

    def _on_event(self, event) -> None:
        if isinstance(event, Partial):
            self._on_partial(event)
        elif isinstance(event, Finished):
            self.result = event.result
            self.state = "finished"
            self.cancel_button.setEnabled(False)
            self.save_button.setEnabled(True)
            self._on_finished(event.result, time.monotonic() - self._started)
        elif isinstance(event, Aborted):
            self.state = "cancelled"
            self.cancel_button.setEnabled(False)
            self._say(f"Cancelled: {self._partial_text()}")
        elif isinstance(event, Failed):
            self.state = "failed"
            self.cancel_button.setEnabled(False)
            self._say(f"Failed: {event.message}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {style.WRONG.name()};" if error else "")
        self.status.setText(text)

    def cancel(self) -> None:
        self.ctx.cancel(self.slot)

    def save_results(self, stem: str | Path) -> list[Path]:
        """Write the last finished result as ``stem.tsv`` and ``stem.json``."""
        if self.result is None:
            raise ValueError(f"no finished {self.noun} to save")
        return save_result(self.result, stem)

    def _ask_and_save(self) -> None:
        settings = getattr(self.ctx.window, "settings", None)
        start = str(settings.value("paths/export", "")) if settings is not None else ""
        suggestion = str(Path(start or ".") / self.noun.replace(" ", "-"))
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
        self.ctx.info("Saved " + ", ".join(str(p) for p in written))

    # subclasses
    def _on_partial(self, event) -> None: ...
    def _on_finished(self, result, seconds: float) -> None: ...
    def _partial_text(self) -> str: return ""


# ---------------------------------------------------------------- robust accuracy vs ε

class RobustnessSection(_Section):
    """Robust accuracy against ε, every loaded model, streamed point by point."""

    slot = "experiment-robustness"
    noun = "robust accuracy vs eps"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self._grids = dict(DEFAULT_EPS_GRID)
        self.norm_box = _norm_box()
        self.eps_edit = QLineEdit(self._grids["linf"])
        self.eps_edit.setToolTip("the ε values to attack at, in [0,1]-pixel units of the norm, e.g. 0, 0.05, 0.1")
        self.eps_edit.setMinimumWidth(210)
        self.steps_box = _spin(1, 500, 10, 5, "PGD steps per attack (step size 2.5·ε/steps, uniform random start)")
        self.images_box = _spin(1, 10_000, 100, 50, "test images, spread evenly through the dataset")
        self.plot = RobustnessPlot()
        self.plot.setObjectName("experiments-robustness")
        self.table = QLabel("")
        self.table.setTextFormat(Qt.TextFormat.RichText)
        self.table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(self._controls((("Norm", self.norm_box), ("ε values", self.eps_edit),
                                         ("Steps", self.steps_box), ("Images", self.images_box))))
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
        self.eps_edit.editingFinished.connect(lambda: self._grids.__setitem__(self.norm_box.currentData(),
                                                                                self.eps_edit.text()))
        ctx.register_exportable("Experiments: robust accuracy vs ε", self.plot)
        self.points: dict[str, list] = {}
        self._names: dict[str, str] = {}
        self._short: dict[str, str] = {}
        self._total = 0
        self._say("Every loaded model is attacked at every ε (untargeted PGD); a point is the fraction of the "
                  "images it classifies correctly both clean and attacked. Press F5 (or Run).")

    def _on_norm(self, _index: int) -> None:
        self.eps_edit.setText(self._grids[self.norm_box.currentData()])

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
        top = EPS_SLIDER[norm][0] * EPS_SLIDER[norm][1] * 3  # generous: any ε a lecture could want
        if eps_values[-1] > top:
            self._say(f"ε = {eps_values[-1]:g} is beyond any sensible {NORM_NAMES[norm]} radius (≤ {top:g})",
                      error=True)
            return
        self._grids[norm] = ", ".join(f"{e:g}" for e in eps_values)
        self.eps_edit.setText(self._grids[norm])
        steps, count = self.steps_box.value(), self.images_box.value()
        subset, _positions = evaluation_subset(self.ctx, count)
        keys = [m.key for m in models]
        colors = style.model_colors(self.ctx.models)
        self._names = {m.key: _model_text(m) for m in models}
        self._short = {m.key: style.short_name(m) for m in models}
        self.plot.prepare([(m.key, self._names[m.key], colors[m.key]) for m in models], eps_values,
                        f"ε ({NORM_NAMES[norm]} radius, [0,1]-pixel units)",
                        f"Robust accuracy under PGD-{steps} ({NORM_NAMES[norm]}), {len(subset)} "
                        f"{self.ctx.dataset.split} images")
        for i, (name, curve) in enumerate(self.plot.curves.items()):
            curve.setSymbol(SYMBOLS[i % len(SYMBOLS)])
        self.points = {key: [] for key in keys}
        self._eps_values = eps_values
        self._total = len(keys) * len(eps_values)
        self.table.setText("")
        images, labels = subset.images, subset.labels

        def job(engine, cancel):  # on the engine thread
            yield from inference_mode_off(robustness_curves_job(engine.models(keys), images, labels, norm=norm,
                                                                eps_values=eps_values, steps=steps,
                                                                batch_size=batch_for(steps))(cancel))

        self._say(f"Attacking {len(keys)} model(s) at {len(eps_values)} ε values on {len(subset)} images…")
        self._submit(job, f"robust accuracy vs ε: {len(keys)} models × {len(eps_values)} ε", "curve_point")

    def _on_partial(self, event) -> None:
        if event.kind != "curve_point":
            return
        point = event.value
        self.points.setdefault(point.model, []).append(point)
        rows = self.points[point.model]
        self.plot.set_curve(point.model, [p.eps for p in rows], [p.accuracy for p in rows])
        self._update_table()
        self._say(f"Running: {self._partial_text()} · {time.monotonic() - self._started:.0f} s")

    def _partial_text(self) -> str:
        done = sum(len(v) for v in self.points.values())
        return f"{done} of {self._total} (model, ε) points"

    def _on_finished(self, result, seconds: float) -> None:
        self._say(f"Done: {result.images} images, {len(result.models)} models × {len(result.eps)} ε in {seconds:.1f} s "
                  f"({result.settings.get('steps')} PGD steps, step 2.5ε/steps, uniform random start, best iterate).")

    def _update_table(self) -> None:
        eps_values = getattr(self, "_eps_values", [])
        head = "".join(f"<th align='right'>&nbsp;&nbsp;{e:g}</th>" for e in eps_values)
        lines = [f"<tr><th align='left'>robust acc. at ε =</th>{head}</tr>"]
        colors = style.model_colors(self.ctx.models)
        for key, rows in self.points.items():
            found = {p.eps: p for p in rows}
            cells = "".join(f"<td align='right'>&nbsp;&nbsp;{found[e].accuracy:.0%}</td>" if e in found
                            else "<td align='right'>&nbsp;&nbsp;…</td>" for e in eps_values)
            color = colors[key].name() if key in colors else "#888"
            lines.append(f"<tr><td><span style='color:{color}'>■</span> {self._short.get(key, key)}</td>{cells}</tr>")
        self.table.setText("<table cellspacing='0' cellpadding='1'>" + "".join(lines) + "</table>")

    def set_lecture_mode(self, on: bool) -> None:
        self.plot.set_fonts(style.base_point_size() * (style.LECTURE_FONT_SCALE if on else 1.0))

    def save_settings(self, settings) -> None:
        settings.setValue("norm", self.norm_box.currentData())
        settings.setValue("eps_linf", self._grids["linf"])
        settings.setValue("eps_l2", self._grids["l2"])
        settings.setValue("steps", self.steps_box.value())
        settings.setValue("images", self.images_box.value())

    def restore_settings(self, settings) -> None:
        for norm in ("linf", "l2"):
            text = settings.value(f"eps_{norm}")
            if text is not None:
                text = ", ".join(text) if isinstance(text, list) else str(text)  # QSettings splits on commas
                parse_eps_list(text)
                self._grids[norm] = text
        norm = settings.value("norm")
        if norm is not None:
            _select(self.norm_box, str(norm))
        self.eps_edit.setText(self._grids[self.norm_box.currentData()])
        for key, box in (("steps", self.steps_box), ("images", self.images_box)):
            value = settings.value(key)
            if value is not None:
                box.setValue(int(value))


# ---------------------------------------------------------------- transfer matrix

class TransferSection(_Section):
    """The transfer matrix: crafted on the row model, judged by the column model, cell by cell."""

    slot = "experiment-transfer"
    noun = "transfer matrix"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self._eps = dict(DEFAULT_EPS)
        self.norm_box = _norm_box()
        self.eps_box = QDoubleSpinBox()
        self.eps_box.setDecimals(4)
        self.eps_box.setKeyboardTracking(False)
        self.eps_box.setToolTip("ε, in [0,1]-pixel units of the norm")
        self.steps_box = _spin(1, 500, 10, 5, "PGD steps per attack (step size 2.5·ε/steps, uniform random start)")
        self.images_box = _spin(1, 10_000, 100, 50, "test images, spread evenly through the dataset")
        self.target_box = QComboBox()
        self.target_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.target_box.setMinimumContentsLength(10)
        for key, text in TRANSFER_TARGETS:
            self.target_box.addItem(text, key)
        self.target_box.setToolTip("untargeted: success = misclassified; targeted: success = the target class")
        self.matrix = TransferMatrixTable()
        self.matrix.setObjectName("experiments-transfer")
        self.caption = QLabel("")
        self.caption.setObjectName("caption")
        self.caption.setWordWrap(True)
        self.title = QLabel("")
        bold = self.title.font()
        bold.setBold(True)
        self.title.setFont(bold)
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.title)
        column.addWidget(self.matrix, 1)
        column.addWidget(self.caption)
        self.body = body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(self._controls((("Norm", self.norm_box), ("ε", self.eps_box), ("Steps", self.steps_box),
                                         ("Images", self.images_box), ("Target", self.target_box))))
        layout.addWidget(body, 1)
        layout.addWidget(self.status)
        self.norm_box.currentIndexChanged.connect(self._on_norm)
        self.eps_box.valueChanged.connect(lambda v: self._eps.__setitem__(self.norm_box.currentData(), float(v)))
        self._on_norm(0)
        ctx.register_exportable("Experiments: transfer matrix", body)
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
        self.eps_box.setValue(self._eps[norm])
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
        images, labels = subset.images, subset.labels

        def job(engine, cancel):  # on the engine thread
            yield from inference_mode_off(transfer_matrix_job(engine.models(keys), images, labels, norm=norm, eps=eps,
                                                              steps=steps, target=target,
                                                              batch_size=batch_for(steps))(cancel))

        self._say(f"Crafting on {len(keys)} model(s), {len(subset)} images each…")
        self._submit(job, f"transfer matrix: {len(keys)} × {len(keys)} models", "transfer_cell")

    def _on_partial(self, event) -> None:
        if event.kind != "transfer_cell":
            return
        cell = event.value
        self.matrix.set_cell(cell.source, cell.target, cell.success_rate, cell.fooled, cell.eligible)
        self._cells += 1
        self._say(f"Running: {self._partial_text()} · {time.monotonic() - self._started:.0f} s")

    def _partial_text(self) -> str:
        return f"{self._cells} of {self._total} cells"

    def _on_finished(self, result, seconds: float) -> None:
        self._say(f"Done: {len(result.models)} × {len(result.models)} cells, {result.images} images, in {seconds:.1f} s.")

    def set_lecture_mode(self, on: bool) -> None:
        self.matrix.resizeRowsToContents()

    def save_settings(self, settings) -> None:
        settings.setValue("norm", self.norm_box.currentData())
        settings.setValue("eps_linf", self._eps["linf"])
        settings.setValue("eps_l2", self._eps["l2"])
        settings.setValue("steps", self.steps_box.value())
        settings.setValue("images", self.images_box.value())
        settings.setValue("target", self.target_box.currentData())

    def restore_settings(self, settings) -> None:
        for norm in ("linf", "l2"):
            value = settings.value(f"eps_{norm}")
            if value is not None:
                eps = float(value)
                step, positions = EPS_SLIDER[norm]
                if not 0 <= eps <= step * positions + 1e-9:
                    raise ValueError(f"ε = {eps} is outside the {NORM_NAMES[norm]} range")
                self._eps[norm] = eps
        norm = settings.value("norm")
        if norm is not None:
            _select(self.norm_box, str(norm))
        self._on_norm(0)
        target = settings.value("target")
        if target is not None:
            _select(self.target_box, str(target))
        for key, box in (("steps", self.steps_box), ("images", self.images_box)):
            value = settings.value(key)
            if value is not None:
                box.setValue(int(value))


# ---------------------------------------------------------------- the tab

class _SectionTabs(QTabWidget):
    """The sections' tabs. Their wrapped texts do not ask for height-for-width layout: inside the
    window's scroll area that would lay the tab out at its preferred height and scroll."""

    def hasHeightForWidth(self) -> bool:
        return False


class ExperimentsPanel(QWidget):
    """The sections of :data:`SECTIONS` as inner tabs; F5 runs the one on screen."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.sections: dict[str, QWidget] = {}
        self.tabs = _SectionTabs()
        self.tabs.setDocumentMode(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        for title, target in SECTIONS:
            self.add_section(title, target)
        ctx.lectureModeChanged.connect(self.set_lecture_mode)

    def add_section(self, title: str, section: QWidget | str) -> QWidget:
        """Add a section: a widget, or "module:Class" built as ``Class(ctx)``. A section that fails to
        import or build becomes a page showing the error; the other sections work on."""
        if isinstance(section, str):
            try:
                module_name, _, class_name = section.partition(":")
                section = getattr(importlib.import_module(module_name), class_name)(self.ctx)
            except Exception:  # noqa: BLE001 - one section's bug must not take the tab down
                text = QTextEdit()
                text.setReadOnly(True)
                text.setPlainText(f"The {title} section could not be opened:\n\n{traceback.format_exc()}")
                section = text
        section.setObjectName(f"experiments-section-{title}")
        self.sections[title] = section
        self.tabs.addTab(section, title)
        if self.ctx.lecture_mode and hasattr(section, "set_lecture_mode"):
            section.set_lecture_mode(True)
        return section

    def current_section(self) -> QWidget | None:
        return self.tabs.currentWidget()

    def show_section(self, title: str) -> None:
        self.tabs.setCurrentWidget(self.sections[title])

    def run(self) -> None:
        section = self.current_section()
        if hasattr(section, "run"):
            section.run()

    def set_lecture_mode(self, on: bool) -> None:
        for section in self.sections.values():
            if hasattr(section, "set_lecture_mode"):
                section.set_lecture_mode(on)

    def save_settings(self, settings) -> None:
        settings.setValue("section", self.tabs.tabText(self.tabs.currentIndex()))
        for title, section in self.sections.items():
            if hasattr(section, "save_settings"):
                settings.beginGroup(_group(title))
                try:
                    section.save_settings(settings)
                finally:
                    settings.endGroup()

    def restore_settings(self, settings) -> None:
        problems = []
        for title, section in self.sections.items():
            if hasattr(section, "restore_settings"):
                settings.beginGroup(_group(title))
                try:
                    section.restore_settings(settings)
                except (TypeError, ValueError) as error:
                    problems.append(f"{title}: {error}")
                finally:
                    settings.endGroup()
        current = settings.value("section")
        if current in self.sections:
            self.show_section(current)
        if problems:
            raise ValueError("; ".join(problems))


def _group(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "section"


__all__ = ["SECTIONS", "ExperimentsPanel", "RobustnessSection", "TransferSection", "parse_eps_list",
           "evaluation_subset", "compatible_models"]
