"""The Features tab: robust and non-robust features (Ilyas et al. 2019), formed live.

For the selected image x, the engine inverts the penultimate representation g of a robust
(adversarially trained) model and of a standard model from the same seed x₀, in lockstep: each step
moves x_r by α along −∇d/‖∇d‖₂ with d(x_r) = ‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂ and clamps it to [0,1]
(Sec. 3.1 of the paper). What remains in the robust reconstruction is what the robust model needs
to see; the standard model's reconstruction matches g(x) just as well while still looking like the
seed. The two reconstructions fill the strip's "robust" and "non_robust" slots as they form, and
every loaded model judges them once they are done. A third column — offered by neither paper —
inverts a Gaussian-noise-trained model, to ask the lecture's question: is noise training, with no
attack in its loop, a cheaper route to robust features?

The paper's dataset experiment is a section of the Experiments tab (``features_experiments.py``).

All numbers come from ``engine/inversion.py`` (:func:`reconstruct_image_job`); this module asks for them
and draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QLabel, QPushButton, QSizePolicy, QSplitter,
                               QVBoxLayout, QWidget)

from robustlens.engine.inversion import SEED_MODES, STEP_SCHEDULES, ReconstructRequest, reconstruct_image_job
from robustlens.engine.jobs import Snapshot, predict_job

from .. import style
from ..context import AppContext
from ..controls import FlowRow, buddy, caption_label, double_spin_box, setting_combo, spin_box, stack
from ..predictions import PredictionRow
from ..settings import Setting
from .base import Panel
from .features_models import (NONE_KEY, check_remembered, choose, display_name, fill_model_box, load_unloaded,
                              missing_text, model_status)
from .features_plots import DISTANCE_LABEL, DistancePlot, ImageColumn

JOB_SLOT = "features"
PREDICT_SLOT = "features-predictions"

# What each inverted model is, the kind of model that plays it, and the zoo model that does by default.
ROLES = ("robust", "non_robust", "extra")
ROLE_KIND = {"robust": "adversarial", "non_robust": "standard", "extra": "noise"}
ROLE_TITLE = {"robust": "Robust", "non_robust": "Non-robust", "extra": "Noise-trained"}
ROLE_COLOR = {"robust": QColor("#dd8452"), "non_robust": QColor("#4c72b0"), "extra": QColor("#55a868")}
ROLE_SETTING = {"robust": "robust_model", "non_robust": "standard_model", "extra": "extra_model"}

SEED_TEXT = {"other-class": "image of another class", "random": "any other image (paper)",
             "noise": "gray + N(0, 0.05²)"}
SCHEDULE_TEXT = {"constant": "constant α", "cosine": "cosine α"}
EXTRA_EXPLANATION = ("3rd column, in neither paper: a Gaussian-noise-trained model. If it reconstructs the garment "
                     "too, noise training (no attack in the loop) is a cheaper route to robust features.")

METHOD = (f"d(x_r) = {DISTANCE_LABEL}, g = the penultimate layer; each step moves x_r by α along −∇d/‖∇d‖₂ and "
          "clamps to [0, 1]; shown: the iterate of lowest d (Ilyas et al. 2019, Sec. 3.1).")


@dataclass(frozen=True)
class ReconstructParams:
    """What the controls ask for (captured when a run starts: the widgets may change meanwhile)."""
    robust: str
    non_robust: str
    extra: str
    seed_mode: str
    draw: int
    steps: int
    step_size: float
    schedule: str

    def roles(self) -> dict[str, str]:
        """role -> model key, in column order, without the empty third column."""
        found = {"robust": self.robust, "non_robust": self.non_robust, "extra": self.extra}
        return {role: key for role, key in found.items() if key}


class FeaturesPanel(Panel):
    """Original | robust reconstruction | non-robust reconstruction (| noise-trained), live."""

    SETTINGS = (
        Setting("robust_model", "", help="Adversarially trained model whose representation is inverted: its "
                                         "reconstruction keeps only the features it relies on (robust features)"),
        Setting("standard_model", "", help="Standard model whose representation is inverted: its reconstruction "
                                           "matches g(x) through non-robust features"),
        Setting("extra_model", "", help=EXTRA_EXPLANATION),
        Setting("seed", "other-class", choices=SEED_MODES,
                help="Where x_r starts. A dataset image: whatever of the target's class appears in a "
                     "reconstruction was put there by the inversion. Gray noise: the paper's other seed."),
        Setting("draw", 0, 0, 999_999, step=1, help="Which random seed image / noise: draw number (the selected "
                                                    "image's index is added, so each image gets its own)"),
        Setting("steps", 1000, 1, 100_000, step=100, help="Inversion steps (the paper: 1000)"),
        Setting("step_size", 0.1, 0.001, 10.0, step=0.05,
                help="α: L2 length of each normalised gradient step (the paper: 0.1)"),
        Setting("schedule", "constant", choices=STEP_SCHEDULES,
                help="constant α: the paper's. cosine α: α shrinks to 0, settling closer to g(x) in fewer steps"),
        Setting("auto", False, help="Reconstruct whenever another image is selected (while this tab is shown); "
                                    "unticked, F5 or Reconstruct starts it"),
    )

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.params: ReconstructParams | None = None
        self.run_roles: dict[str, str] = {}       # role -> model key of the current / last run
        self.run_selection = None                  # the Selection the shown reconstructions are of
        self.metas: dict[str, object] = {}         # model key -> ModelMeta (sent by the job)
        self.last_images: dict[str, object] = {}   # role -> latest (N,C,H,W) reconstruction shown
        self.last_step: dict[str, int] = {}
        self.final: dict[str, object] = {}         # role -> InversionResult of a finished run
        self.seed_image = None
        self.seed_index: int | None = None         # position of the seed in the dataset (−1: noise)
        self.seed_note = ""
        self.curves: dict[str, list] = {}          # model key -> d at each step so far (from the engine)
        self.lowest: dict[str, list] = {}          # model key -> lowest d so far, at each step
        self.prediction_rows: dict[str, list] = {}  # column -> PredictionRow list shown
        self._stale = False
        self._build()
        self._connect()
        self._refresh_model_choices()
        self._reset_columns(self.ctx.selection)

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        settings = {s.key: s for s in self.SETTINGS}
        self.model_boxes: dict[str, QComboBox] = {}
        for role in ROLES:
            box = QComboBox()
            box.setToolTip(settings[ROLE_SETTING[role]].help)
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            self.model_boxes[role] = box
        self.seed_box = setting_combo(settings["seed"], text=SEED_TEXT.get)
        self.draw_box = spin_box(settings["draw"])
        self.draw_box.setMaximumWidth(80)
        self.new_seed_button = QPushButton("New seed")
        self.new_seed_button.setToolTip("Draw another seed and reconstruct again")
        self.steps_box = spin_box(settings["steps"])
        self.step_size_box = double_spin_box(settings["step_size"], decimals=3)
        self.schedule_box = setting_combo(settings["schedule"], text=lambda s: SCHEDULE_TEXT.get(s, s))
        self.run_button = QPushButton("Reconstruct (F5)")
        self.run_button.setToolTip("Invert the models' representations of the selected image, live")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the reconstruction (Esc); the images so far stay")
        self.cancel_button.setEnabled(False)
        self.auto_box = QCheckBox("on click")
        self.auto_box.setChecked(settings["auto"].default)
        self.auto_box.setToolTip(settings["auto"].help)

        # two rows of controls that wrap when the tab is narrow (lecture fonts beside the deck pane)
        models_row, run_row = FlowRow(spacing=10), FlowRow(spacing=8)
        for text, role in (("Robust", "robust"), ("Standard", "non_robust"), ("3rd column", "extra")):
            models_row.add_group(buddy(text, self.model_boxes[role]), self.model_boxes[role])
        models_row.add_group(self.run_button, self.cancel_button)
        run_row.add_group(buddy("Seed", self.seed_box), self.seed_box)
        run_row.add_group(buddy("draw", self.draw_box), self.draw_box, self.new_seed_button)
        run_row.add_group(buddy("steps", self.steps_box), self.steps_box)
        run_row.add_group(buddy("α", self.step_size_box), self.step_size_box, self.schedule_box)
        run_row.add_group(self.auto_box)
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setTextFormat(Qt.TextFormat.RichText)
        self.model_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.extra_note = QLabel(EXTRA_EXPLANATION)
        self.extra_note.setObjectName("caption")
        self.extra_note.setWordWrap(True)

        # the images, one column each, and the distance curves beside them
        self.columns: dict[str, ImageColumn] = {
            "seed": ImageColumn("Seed x₀\n(the start)", "The seed appears here when a run starts"),
            "original": ImageColumn("Original x\ntarget: g(x)", "Click a thumbnail"),
            **{role: ImageColumn(f"{ROLE_TITLE[role]}\nreconstruction", "Press F5 to reconstruct", ROLE_COLOR[role])
               for role in ROLES},
        }
        for name, column in self.columns.items():
            column.setObjectName(f"features-column-{name}")
        self.images = QWidget()
        self.images.setObjectName("features-reconstructions")
        grid = QGridLayout(self.images)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(5)
        for i, column in enumerate(self.columns.values()):
            grid.addWidget(column, 0, i)
            grid.setColumnStretch(i, 1)
        self.plot = DistancePlot()
        self.plot.setObjectName("features-distance")
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.images)
        self.split.addWidget(self.plot)
        self.split.setChildrenCollapsible(False)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([640, 330])
        self.status = caption_label()
        self.plot.setToolTip(METHOD)

        stack(self, models_row, run_row, self.model_note, self.extra_note, (self.split, 1), self.status,
              spacing=3, margins=6)

        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.ctx.register_exportable("Features: distance curves", self.plot)
        self.ctx.register_exportable("Features: seed, original and reconstructions", self.images)

    def _connect(self) -> None:
        self.follow(selection=self._on_selection, models=lambda _m: self._refresh_model_choices(),
                    dataset=lambda _d: self._refresh_model_choices())
        self.run_button.clicked.connect(self.run)
        self.new_seed_button.clicked.connect(self._new_seed)
        for box in self.model_boxes.values():
            box.activated.connect(lambda _i: self._update_model_note())
        self.model_boxes["extra"].activated.connect(lambda _i: self._show_extra_column())

    # ---------------------------------------------------------------- settings

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"seed": self.seed_box, "draw": self.draw_box, "steps": self.steps_box,
                "step_size": self.step_size_box, "schedule": self.schedule_box, "auto": self.auto_box}

    def setting_value(self, key: str):
        role = next((r for r, k in ROLE_SETTING.items() if k == key), None)
        if role is not None:
            return self.model_boxes[role].currentData() or NONE_KEY
        return super().setting_value(key)

    def apply_setting(self, key: str, value) -> None:
        role = next((r for r, k in ROLE_SETTING.items() if k == key), None)
        if role is None:
            super().apply_setting(key, value)
        elif value or role == "extra":
            check_remembered(self.ctx, ROLE_KIND[role], str(value))
            self.set_model(role, str(value))
        else:  # no model remembered: the first one there, as on first start
            self.model_boxes[role].clear()
            self._refresh_model_choices()

    # ---------------------------------------------------------------- models for each role

    def model_status(self, key: str) -> str:
        return model_status(self.ctx, key)

    def _display_name(self, key: str) -> str:
        return display_name(self.ctx, key, self.metas)

    def _refresh_model_choices(self) -> None:
        for role, box in self.model_boxes.items():
            fill_model_box(box, self.ctx, ROLE_KIND[role], optional=(role == "extra"), metas=self.metas)
        self._update_model_note()
        self._show_extra_column()

    def set_model(self, role: str, key: str) -> None:
        """Choose the model of a role (tests, presets, settings); a key not listed yet is added."""
        choose(self.model_boxes[role], self.ctx, key, self.metas)
        self._update_model_note()
        self._show_extra_column()

    def missing_models(self) -> dict[str, str]:
        """role -> key of the chosen models that cannot be loaded (no file)."""
        return {role: key for role, key in self.current_params().roles().items()
                if self.model_status(key) == "missing"}

    def _update_model_note(self) -> None:
        missing = self.missing_models()
        if missing:
            text = "<br>".join(missing_text(ROLE_KIND[role], key) for role, key in missing.items())
            self.model_note.setText(f"<span style='color:{style.WRONG.name()}'>{text}</span>")
            self.model_note.show()
        else:
            self.model_note.setText("")
            self.model_note.hide()

    def _show_extra_column(self) -> None:
        on = bool(self.model_boxes["extra"].currentData())
        self.columns["extra"].setVisible(on or "extra" in self.run_roles)

    # ---------------------------------------------------------------- parameters

    def current_params(self) -> ReconstructParams:
        return ReconstructParams(
            robust=self.model_boxes["robust"].currentData() or NONE_KEY,
            non_robust=self.model_boxes["non_robust"].currentData() or NONE_KEY,
            extra=self.model_boxes["extra"].currentData() or NONE_KEY,
            seed_mode=self.seed_box.currentData(), draw=self.draw_box.value(), steps=self.steps_box.value(),
            step_size=float(self.step_size_box.value()), schedule=self.schedule_box.currentData())

    def set_params(self, **values) -> None:
        """Set the controls (tests, presets): ``steps``, ``step_size``, ``seed_mode``, ``draw``,
        ``schedule``, ``auto``; takes effect at the next run. ValueError for a value the setting refuses."""
        settings = {s.key: s for s in self.SETTINGS}
        for name, value in values.items():
            if value is None:
                continue
            key = "seed" if name == "seed_mode" else name
            settings[key].check(value)
            self.apply_setting(key, value)

    # ---------------------------------------------------------------- selection

    def _on_selection(self, selection) -> None:
        self.cancel_job(JOB_SLOT)
        self.cancel_job(PREDICT_SLOT)
        self.run_roles = {}
        self._reset_columns(selection)
        if selection is None or not self.auto_box.isChecked():
            return
        if self.isVisible():
            self.run()
        else:
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._refresh_model_choices()  # zoo files may have appeared meanwhile
        if self._stale:
            self._stale = False
            if self.ctx.selection is not None and self.auto_box.isChecked() and not self.final:
                self.run()

    def _reset_columns(self, selection) -> None:
        self.final = {}
        self.last_images = {}
        self.last_step = {}
        self.seed_image = None
        self.seed_index = None
        self.curves, self.lowest = {}, {}
        self.prediction_rows = {}
        for name, column in self.columns.items():
            column.clear()
        if selection is None:
            self.columns["original"].view.set_hint("Click a thumbnail")
        else:
            label = selection.label
            classes = self.ctx.classes
            true = f" · {classes[label]}" if label is not None and 0 <= label < len(classes) else ""
            self.columns["original"].set_image(selection.image, f"{selection.source}{true}")
        self.plot.reset([], max(1, self.steps_box.value()))
        self._show_extra_column()
        self.status.setText("Press F5 (or Reconstruct) to invert the models' representations of this image. " + METHOD
                            if selection is not None else "Click an image in the gallery first.")

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Reconstruct the selected image with the chosen models (F5, the button, a click): latest wins."""
        self._stale = False
        selection = self.ctx.selection
        if selection is None:
            self.status.setText("Nothing selected: click an image in the gallery first.")
            return
        self._refresh_model_choices()
        params = self.current_params()
        roles = params.roles()
        if "robust" not in roles or "non_robust" not in roles:
            self.status.setText("Choose a robust and a standard model above.")
            return
        missing = self.missing_models()
        if missing:
            self.cancel_job(JOB_SLOT)
            self.status.setText("Cannot reconstruct: " + "; ".join(f"{key} is missing" for key in missing.values())
                                + " (see above).")
            return
        if len(set(roles.values())) != len(roles):
            self.status.setText("Choose different models for the columns.")
            return
        load_unloaded(self.ctx, roles.values())
        request = ReconstructRequest(image=selection.image, keys=tuple(roles.values()), label=selection.label,
                                     index=selection.index, pool=self.ctx.dataset, seed_mode=params.seed_mode,
                                     draw=params.draw, steps=params.steps, step_size=params.step_size,
                                     schedule=params.schedule)
        self.cancel_job(PREDICT_SLOT)
        self._reset_columns(selection)
        self.params = params
        self.run_roles = dict(roles)
        self.run_selection = selection
        self._prepare_run(params)
        self.run_engine(JOB_SLOT, reconstruct_image_job, request, label=f"reconstructing {selection.source}",
                        on_partial=self._on_partial, on_snapshot=self._show_snapshot, on_done=self._show_final,
                        on_aborted=lambda _event: self._show_cancelled(), on_failed=self._show_failed,
                        cancel_button=self.cancel_button)
        self.status.setText(f"Inverting {len(roles)} representations of {selection.source}, {params.steps} steps of "
                            f"α = {params.step_size:g}…")

    def show_estimate(self, slot: str, estimate) -> None:
        if slot == JOB_SLOT:
            self.status.setText(f"{self.status.text()} Estimated {estimate.text()}.")

    def _new_seed(self) -> None:
        self.draw_box.setValue(self.draw_box.value() + 1)
        self.run()

    def _role_color(self, role: str, key: str) -> QColor:
        """The strip's colour for a loaded model (one model, one colour everywhere), else the role's."""
        colors = style.model_colors(self.ctx.models)
        return QColor(colors[key]) if key in colors else QColor(ROLE_COLOR[role])

    def _prepare_run(self, params: ReconstructParams) -> None:
        series = []
        for role, key in self.run_roles.items():
            color = self._role_color(role, key)
            self.columns[role].set_color(color)
            self.columns[role].set_title(f"{ROLE_TITLE[role]}\n{self._display_name(key).split(' (')[0]}")
            self.columns[role].view.set_hint("starting…")
            self.columns[role].set_prediction_note("predictions when done")
            # short names: the legend sits under a narrow plot; the column titles name the models
            series.append((key, ROLE_TITLE[role].lower(), color))
        self.plot.reset(series, params.steps)
        self._show_extra_column()

    # ---------------------------------------------------------------- events (GUI thread: draw only)

    def _role_of(self, key: str) -> str | None:
        return next((role for role, k in self.run_roles.items() if k == key), None)

    def _on_partial(self, event) -> None:
        if event.kind == "models":
            self.metas.update(event.value)
            self._prepare_run(self.params)
        elif event.kind == "seed":
            self._show_seed(event.value)
        elif event.kind == "curves":
            self.curves, self.lowest = event.value["d"], event.value["lowest"]
            for key, values in self.curves.items():
                self.plot.set_curve(key, values, self.lowest.get(key))
            step = max((len(v) for v in self.curves.values()), default=1) - 1
            self.status.setText(f"step {step} / {self.params.steps} · " + " · ".join(
                f"{self._display_name(key)}: d = {values[-1]:.3g}" for key, values in self.curves.items() if values))

    def _show_failed(self, event) -> None:
        self.status.setText(f"Reconstruction failed: {event.message}")
        for role in self.run_roles:
            self.columns[role].view.set_hint("failed: see the message above")

    def _show_seed(self, value: dict) -> None:
        self.seed_image = value["image"]
        self.seed_index = value["index"]
        self.seed_note = value["note"]
        dataset = self.ctx.dataset
        if value["mode"] == "noise":
            caption = "gray 0.5 + N(0, 0.05²)"
        else:
            index = value["index"]
            cls = self.ctx.classes[int(dataset.labels[index])] if dataset is not None else "?"
            caption = f"{dataset.split} #{dataset.source_index(index)} · {cls}"
        self.columns["seed"].set_image(value["image"], caption + self.seed_note)

    def _show_snapshot(self, event: Snapshot) -> None:
        key = event.kind.split(":", 1)[1]
        role = self._role_of(key)
        if role is None:
            return
        info = event.info
        distance = info["distance"][0]
        self.last_images[role] = event.image
        self.last_step[role] = info["step"]
        self.columns[role].set_image(event.image, f"step {info['step']} / {info['steps']} · d = {distance:.3g}")
        if role in ("robust", "non_robust") and not info.get("final"):
            self.ctx.set_strip_image(role, event.image, f"{self._display_name(key)} · step {info['step']}/"
                                                        f"{info['steps']} · d = {distance:.3g}", live=True)

    def _show_final(self, result) -> None:
        params = self.params
        images = {}
        parts = []
        for role, key in self.run_roles.items():
            inversion = result.results[key]
            self.final[role] = inversion
            images[role] = inversion.images
            distance = float(inversion.distances[0])
            start = inversion.curve[0] if inversion.curve else float("nan")
            self.columns[role].set_image(inversion.images, f"d = {distance:.3g} (seed: {start:.3g})")
            if role in ("robust", "non_robust"):
                self.ctx.set_strip_image(role, inversion.images, f"{self._display_name(key)} · {params.steps} steps"
                                                                 f" · d = {distance:.3g}")
            parts.append(f"{self._display_name(key)}: d {start:.3g} → {distance:.3g}")
        self.status.setText(f"Done: the iterate of lowest d in {params.steps} steps of α = {params.step_size:g} · "
                            + " · ".join(parts) + ". Under each image: the inverted models' predictions (the strip "
                            "above: every loaded model's).")
        self._predict_columns(images)

    def _show_cancelled(self) -> None:
        step = max(self.last_step.values(), default=0)
        self.status.setText(f"Cancelled at step {step} of {self.params.steps if self.params else '?'}: the images "
                            "are the iterates reached so far.")
        images = {}
        for role, key in self.run_roles.items():
            image = self.last_images.get(role)
            if image is None:
                self.columns[role].view.set_hint("cancelled")
                continue
            images[role] = image
            if role in ("robust", "non_robust"):
                self.ctx.set_strip_image(role, image, f"{self._display_name(key)} · cancelled at step "
                                                      f"{self.last_step.get(role, 0)}")
        if images:
            self._predict_columns(images)

    def _predict_columns(self, reconstructions: dict) -> None:
        """The inverted models' class probabilities on the seed, the original and each reconstruction."""
        images = dict(reconstructions)
        if self.run_selection is not None:
            images["original"] = self.run_selection.image
        if self.seed_image is not None:
            images["seed"] = self.seed_image
        keys = list(self.run_roles.values())
        for name in images:
            self.columns[name].set_prediction_note("predictions: computing…")
        self.start_job(PREDICT_SLOT, lambda cache, cancel: predict_job(cache.models(keys), images)(cancel),
                       label="predictions on the reconstructions", on_done=self._show_predictions)

    def _show_predictions(self, result: dict) -> None:
        classes = self.ctx.classes
        label = self.run_selection.label if self.run_selection is not None else None
        for name, per_model in result.items():
            rows = []
            for role, key in self.run_roles.items():
                probs = per_model.get(key, "—")
                probs = probs if isinstance(probs, str) else probs[0]
                rows.append(PredictionRow(self._display_name(key).split(" (")[0], self._display_name(key),
                                          probs, self._role_color(role, key)))
            self.prediction_rows[name] = rows
            self.columns[name].set_predictions(rows, classes, label)

    # ---------------------------------------------------------------- lecture mode

    def set_lecture_mode(self, on: bool) -> None:
        self.plot.set_fonts(style.point_size(on))
        for column in self.columns.values():
            column.set_image_minimum(96 if on else 84)  # 720 lines: the plot beside keeps its room
            column.set_compact(on)
        # less chrome on a projector: the 3rd column's explanation stays in its combo's tooltip
        self.extra_note.setVisible(not on)
