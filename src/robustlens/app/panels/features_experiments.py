"""Ilyas et al.'s dataset experiment as a section of the Experiments tab: build D_R, D_NR, D_rand and
D_det from the training set, train a standard model on each (and on the real images, D), and fill the
table of clean and robust accuracy on the real test set as the rows finish — beside the paper's
CIFAR-10 figures, labelled as theirs. A results file (``robustlens experiment --out``, or a previous
run here) opens without running anything; so does the planted-feature demo's (``robustlens planted
--out``): its rows, and how each model answers test images carrying a class pattern. Both are read
and checked by ``engine/results_files.py``.

The run is ``engine/ilyas_experiment.py``'s :func:`ilyas_experiment_job` with an
:class:`IlyasExperimentRequest`, the very job and settings ``robustlens experiment --build-in`` runs;
this module builds the request from its controls and draws the rows.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QLabel, QPushButton, QTableWidgetItem,
                               QWidget)

from robustlens.engine.ilyas_experiment import (EXPERIMENT_FORMAT, PAPER_CIFAR10, PAPER_ROBUST_EPS,
                                                REGIME_BUILD, REGIME_TRAINING, ExperimentSettings,
                                                IlyasExperimentRequest, ilyas_experiment_job)
from robustlens.engine.inversion import SEED_MODES, STEP_SCHEDULES
from robustlens.engine.models import architectures_for
from robustlens.engine.results_files import EXPERIMENT, PLANTED, eps_columns, eval_norm, read_results, robust_at

from .. import style
from ..context import AppContext
from ..controls import FlowRow, buddy, caption_label, double_spin_box, setting_combo, spin_box, stack
from ..settings import Setting
from .base import Panel
from .features_models import check_remembered, choose, fill_model_box, load_unloaded, missing_text, model_status
from .results_table import ResultsTable

JOB_SLOT = "features-experiment"
# the ablation's real-data regime (models, seeds, steps, architecture): the controls start from it
BUILD, TRAINING = REGIME_BUILD, REGIME_TRAINING
ROW_ORDER = ("D", "D_R", "D_NR", "D_rand", "D_det")
BUILT_ROWS = ROW_ORDER[1:]
ROW_MEANING = {
    "D": "real images (baseline)",
    "D_R": "robust model's inversions",
    "D_NR": "standard model's inversions",
    "D_rand": "PGD → random t, label t",
    "D_det": "PGD → y+1, label y+1",
}
ROW_TOOLTIP = {
    "D": "The real training images the other datasets were made from, with their true labels",
    "D_R": "Each image replaced by the inversion of the robust model's representation of it, true label kept: "
           "only robust features",
    "D_NR": "Each image replaced by the inversion of the standard model's representation: the features a "
            "standard model uses, robust and non-robust",
    "D_rand": "Each image pushed by targeted L2 PGD on the standard model towards a random other class t and "
              "labelled t: only non-robust features agree with the label",
    "D_det": "Each image pushed by targeted L2 PGD towards class (y+1) mod C and labelled so: non-robust features "
             "agree with the label, robust ones contradict it",
}
# the planted-feature demo (engine/planted_demo.py): the rows and what each answers with a pattern added
PLANTED_MEANING = {
    "D_planted": "real images + p_y",
    "D_det": "its PGD → y+1, label y+1",
    "D_R": "robust model's inversions",
    "D": "no pattern",
}
PLANTED_TOOLTIP = {
    "D_planted": "The standard model trained on planted training images x̃ = clip(x + p_y, 0, 1): the pattern p_y "
                 "predicts the label perfectly and is small (L2 norm 1)",
    "D_det": "Planted images pushed by targeted L2 PGD on the planted model towards (y+1) mod C and labelled so",
    "D_R": "The planted images replaced by inversions of the robust model's representation, true label kept",
    "D": "The same training images without the pattern: the baseline",
}
REFERENCE_SUFFIX = " (zoo, unplanted)"
PATTERN_COLUMNS = (  # (measure, header, tooltip): planted_measures.pattern_following
    ("own_pattern_accuracy", "own pattern\np_y added:\naccuracy",
     "Accuracy on the real test images with their own class's pattern p_y added"),
    ("follows_pattern", "another\nclass's p_c:\nanswers c",
     "With the pattern of a random other class c added: the share of test images the model calls c"),
    ("switched_to_pattern", "p_c:\nswitched\nto c",
     "With p_c added: the share called c that were not called c without the pattern"),
    ("true_class", "p_c:\nanswers y",
     "With p_c added: the share still called by their true class y"),
)
PAPER_COLOR = QColor(236, 236, 244)     # the paper's columns: theirs, set apart
REFERENCE_COLOR = QColor(90, 90, 110)   # the zoo's models in the planted table: references, not the demo's
NOTHING_SHOWN = ("No results shown yet. Load results… opens a results file (written by "
                 "<code>robustlens experiment --out FILE</code>, by a run here or by <code>robustlens planted</code>); "
                 "Run experiment builds the four datasets and fills the table row by row.")


def default_data_root() -> Path:
    """Where the GUI keeps the datasets it builds (resumable: a cancelled run continues there)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".robustlens") / "features"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _count(value) -> str:
    return "–" if value is None else f"{value:,}"


class DatasetExperiments(Panel):
    """The table of Ilyas et al.'s experiment, filled by a run here or loaded from a results file.
    A section of the Experiments tab (``Section(ctx)``, see ``experiments.py``); a Panel, so its
    declared settings save and restore themselves in whatever settings group it is given."""

    SETTINGS = (
        Setting("robust_model", "", help="The adversarially trained model whose representation D_R inverts"),
        Setting("standard_model", "", help="The standard model whose representation D_NR inverts, and that "
                                           "D_rand / D_det attack with targeted PGD"),
        Setting("images", BUILD.count, 20, 60_000, step=500,
                help="Training images transformed into each constructed dataset (the paper: all 50,000 of "
                     "CIFAR-10; the README's table: 10,000)"),
        Setting("steps", BUILD.steps, 1, 10_000, step=100,
                help="Inversion steps per image for D_R and D_NR (the paper: 1000, α = 0.1)"),
        Setting("step_size", BUILD.step_size, 0.001, 10.0, step=0.05,
                help="α of the inversions' normalised gradient steps (the paper: 0.1)"),
        Setting("schedule", BUILD.schedule, choices=STEP_SCHEDULES,
                help="constant α: the paper's; cosine α: annealed to 0, which reaches a low d in fewer steps"),
        Setting("test_images", 10_000, 100, 10_000, step=1000,
                help="Real test images the clean accuracy is measured on (the first N of the test split; "
                     "robust accuracy: the first 1,000 of them)"),
        Setting("results", "", help="The results file shown"),
        Setting("arch", TRAINING.arch, choices=architectures_for("fashion-mnist"),
                help="Architecture of the standard models trained on D, D_R, D_NR, D_rand and D_det"),
    )

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.data_root = default_data_root()
        # the recipe beyond the controls (seeds, PGD ε and steps, chunks): the engine's defaults, or
        # those of the results file shown, so that a smaller run here follows the table on screen
        self.construction = BUILD
        self.training = TRAINING
        self.results: dict | None = None
        self.results_kind = EXPERIMENT  # PLANTED: a planted-demo file is shown
        self.results_path: Path | None = None
        self.row_status: dict[str, str] = {}
        self.stage: str | None = None   # the build or "experiment" the running job is in
        self._started = 0.0
        self._estimate = ""  # what the running pipeline said it would cost
        self._build()
        self._fill_table()
        self._describe_results()

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        settings = {s.key: s for s in self.SETTINGS}
        self.count_box = spin_box(settings["images"])
        self.steps_box = spin_box(settings["steps"])
        self.steps_box.setGroupSeparatorShown(False)
        self.step_size_box = double_spin_box(settings["step_size"], decimals=3)
        self.schedule_box = setting_combo(settings["schedule"],
                                          text=lambda s: {"constant": "constant α", "cosine": "cosine α"}.get(s, s))
        self.test_box = spin_box(settings["test_images"])
        self.arch_box = setting_combo(settings["arch"])
        self.robust_box, self.standard_box = QComboBox(), QComboBox()
        for box, key in ((self.robust_box, "robust_model"), (self.standard_box, "standard_model")):
            box.setToolTip(settings[key].help)
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_button = QPushButton("Run experiment")
        self._run_tip = ("Build the four datasets, train a standard model on each and on the real "
                         "images, evaluate on the real test set")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.load_button = QPushButton("Load results…")
        self.load_button.setToolTip("Show a results JSON written by `robustlens experiment --out`, by a run here or by "
                                    "`robustlens planted --out` (the planted-feature demo)")
        models_row = FlowRow(spacing=8)
        models_row.add_group(buddy("Build D_R with", self.robust_box), self.robust_box)
        models_row.add_group(buddy("D_NR, D_rand, D_det with", self.standard_box), self.standard_box)
        models_row.add_group(self.load_button)
        run_row = FlowRow(spacing=8)  # wraps on a narrow tab (lecture fonts beside the deck pane)
        for text, box in (("images per dataset", self.count_box), ("inversion steps", self.steps_box)):
            run_row.add_group(buddy(text, box), box)
        run_row.add_group(buddy("α", self.step_size_box), self.step_size_box, self.schedule_box)
        run_row.add_group(buddy("test images", self.test_box), self.test_box)
        run_row.add_group(buddy("train", self.arch_box), self.arch_box)
        run_row.add_group(self.run_button, self.cancel_button)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setObjectName("caption")
        self.table = ResultsTable()
        self.table.setObjectName("features-experiment-table")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        self.shown = caption_label()
        self.shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        stack(self, models_row, run_row, self.warning, (self.table, 1), self.shown, self.status, margins=4)
        self.run_button.clicked.connect(self.run)
        self.load_button.clicked.connect(self._ask_results)
        self.count_box.valueChanged.connect(lambda _v: self._update_warning())
        self.steps_box.valueChanged.connect(lambda _v: self._update_warning())
        self.ctx.modelsChanged.connect(lambda _m: self._refresh_models())
        self.ctx.datasetChanged.connect(lambda _d: self._refresh_models())
        self._refresh_models()
        self.ctx.register_exportable("Features: dataset experiment table", self.table)
        self._update_warning()

    def _refresh_models(self) -> None:
        fill_model_box(self.robust_box, self.ctx, "adversarial")
        fill_model_box(self.standard_box, self.ctx, "standard")

    def models(self) -> tuple[str, str]:
        """The (robust, standard) model keys the datasets are built with."""
        return self.robust_box.currentData() or "", self.standard_box.currentData() or ""

    def set_models(self, robust: str | None = None, standard: str | None = None) -> None:
        if robust:
            choose(self.robust_box, self.ctx, robust)
        if standard:
            choose(self.standard_box, self.ctx, standard)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._refresh_models()  # zoo files may have appeared meanwhile

    def _update_warning(self) -> None:
        count, steps = self.count_box.value(), self.steps_box.value()
        device = getattr(self.ctx.engine, "device", None)
        where = "the GPU" if getattr(device, "type", "cpu") == "cuda" else "a CPU"
        # 2 inversions (D_R, D_NR) × count × steps forward+backward passes dominate the run
        passes = 2 * count * steps
        self.warning.setText(
            f"A full run takes long on {where}: {passes:,} forward+backward passes to invert {count:,} images twice "
            f"({steps} steps each), targeted PGD (L2 ε = {self.construction.eps:g}, {self.construction.pgd_steps} "
            f"steps) for D_rand and D_det, then 5 standard models trained and attacked. Start small (a few hundred "
            f"images) to see the rows fill in; a cancelled run resumes where it stopped. Data kept in "
            f"{self.data_root}.")
        self.run_button.setToolTip(f"{self._run_tip}\n\n{self.warning.text()}")

    # ---------------------------------------------------------------- settings

    def setting_widgets(self) -> dict[str, QWidget]:
        return {"images": self.count_box, "steps": self.steps_box, "step_size": self.step_size_box,
                "schedule": self.schedule_box, "test_images": self.test_box, "arch": self.arch_box}

    def setting_value(self, key: str):
        if key in ("robust_model", "standard_model"):
            return self.models()[key == "standard_model"]
        if key == "results":
            return str(self.results_path) if self.results_path is not None else ""
        return super().setting_value(key)

    def apply_setting(self, key: str, value) -> None:
        if key in ("robust_model", "standard_model"):
            box = self.robust_box if key == "robust_model" else self.standard_box
            if value:
                check_remembered(self.ctx, "adversarial" if box is self.robust_box else "standard", str(value))
                choose(box, self.ctx, str(value))
            else:  # none remembered: the first model there, as on first start
                box.clear()
                self._refresh_models()
        elif key == "results":
            if value and Path(str(value)).is_file():  # a file gone since: the table stays as it is
                self.show_results_file(Path(str(value)))  # a foreign one: one line (deck, --setting, restore)
        else:
            super().apply_setting(key, value)

    # ---------------------------------------------------------------- results files

    def _ask_results(self) -> None:
        start = str(self.results_path.parent) if self.results_path else self.ctx.last_folder("results")
        path, _ = QFileDialog.getOpenFileName(self, "Experiment results", start, "Results (*.json)")
        if path:
            self.ctx.remember_folder("results", str(Path(path).parent))
            self.load_results(Path(path))

    def load_results(self, path: Path, quiet: bool = False) -> bool:
        """Show a results JSON (an experiment's or the planted demo's); a file that is not one gives a
        one-line error and the table stays."""
        try:
            self.show_results_file(path)
        except ValueError as error:
            if not quiet:
                self.ctx.error(str(error)[:1].upper() + str(error)[1:])
            return False
        return True

    def show_results_file(self, path: Path) -> None:
        """Show a results JSON, or raise a one-line ValueError ("cannot show NAME: why"), the table unchanged."""
        path = Path(path)
        try:
            shown = read_results(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot show {path.name}: {error}") from None
        self.results, self.results_kind, self.results_path = shown.results, shown.kind, path
        self.row_status = {}
        if shown.kind == EXPERIMENT:  # the demo's recipe is another pipeline's: the next run keeps its own
            self._adopt_recipe(shown.results)
        self._fill_table()
        self._describe_results()
        self.status.setText("")

    def _adopt_recipe(self, results: dict) -> None:
        """Take the construction settings of a results file (inversion steps, α, schedule, seeds; PGD ε
        and steps) as those of the next run; the number of images stays the user's."""
        sources = {row["dataset"]: row.get("source") or {} for row in results.get("rows", [])}
        inversion = sources.get("D_R") or sources.get("D_NR") or {}
        try:
            if "steps" in inversion:
                self.steps_box.setValue(int(inversion["steps"]))
            if "step_size" in inversion:
                self.step_size_box.setValue(float(inversion["step_size"]))
            if self.schedule_box.findData(inversion.get("schedule")) >= 0:
                self.schedule_box.setCurrentIndex(self.schedule_box.findData(inversion["schedule"]))
            if inversion.get("seeds") in SEED_MODES:
                self.construction = replace(self.construction, seeds=inversion["seeds"])
            arch = results.get("settings", {}).get("arch")
            if self.arch_box.findData(arch) >= 0:
                self.arch_box.setCurrentIndex(self.arch_box.findData(arch))
            relabel = sources.get("D_rand") or sources.get("D_det") or {}
            if "eps" in relabel and "steps" in relabel:
                self.construction = replace(self.construction, eps=float(relabel["eps"]),
                                            pgd_steps=int(relabel["steps"]))
        except (TypeError, ValueError):
            pass  # a hand-edited file: keep the controls as they are
        self._update_warning()

    def _describe_results(self) -> None:
        results, path = self.results, self.results_path
        if results is None:
            self.shown.setText(NOTHING_SHOWN)
            return
        if self.results_kind == PLANTED:
            self._describe_planted()
            return
        parts = {}  # what each constructed dataset is, datasets built alike named together
        for row in results.get("rows", []):
            source = row.get("source") or {}
            if row["dataset"] in ("D_R", "D_NR") and "steps" in source:
                model = (source.get("model") or {}).get("name", "?")
                schedule = " (cosine-annealed)" if source.get("schedule") == "cosine" else ""
                how = (f"{row['train_images']:,} images inverted through {{models}}, {source['steps']} steps of "
                       f"α = {source.get('step_size', '?')}{schedule}, {source.get('seeds', '?')} seeds")
                parts.setdefault(how, []).append((row["dataset"], model))
            elif row["dataset"] in ("D_rand", "D_det") and "eps" in source:
                how = f"targeted L2 PGD ε = {source['eps']}, {source.get('steps', '?')} steps"
                parts.setdefault(how, []).append((row["dataset"], None))
        described = []
        for how, named in parts.items():
            models = [model for _, model in named if model]
            through = " and ".join(models) + (" respectively" if len(models) > 1 else "")
            described.append(f"{', '.join(name for name, _ in named)}: {how.replace('{models}', through)}")
        counts = {row.get("train_images") for row in results.get("rows", []) if row.get("dataset") != "D"}
        sizing = ""
        if len(counts) == 1 and counts != {self.count_box.value()}:  # the box sizes the next run, not this one
            sizing = " Run experiment builds as many images as “images per dataset” says."
        test = results.get("test", {})
        settings = results.get("settings", {})
        # the file's name, not its folder: a shipped result's path is an install detail (tooltip)
        where = f"Shown: {Path(path).name}" if path is not None else "Shown: this run"
        self.shown.setToolTip(str(path) if path is not None else "")
        self.shown.setText(
            f"{where}. Evaluated on the real {test.get('dataset', '')} {test.get('split', 'test')} set "
            f"({test.get('images', '?'):,} images; robust: {settings.get('eval_steps', '?')}-step "
            f"{str(settings.get('eval_norm', 'l2')).upper()} PGD on {test.get('robust_images', '?'):,}). "
            + "; ".join(described) + "." + sizing)

    def _describe_planted(self) -> None:
        results, path = self.results, self.results_path
        patterns, test = results.get("patterns", {}), results.get("test", {})
        training = results.get("settings", {}).get("training", {})
        self.shown.setToolTip(str(path) if path is not None else "")
        carried = patterns.get("carried_norm_mean")
        self.shown.setText(
            f"Shown: {Path(path).name if path is not None else 'this run'}, the planted-feature demo (robustlens "
            f"planted). Each training image of class y carries a pattern p_y of L2 norm {patterns.get('norm', '?')}"
            + (f" ({carried:.2f} after clipping, on average)" if isinstance(carried, (int, float)) else "")
            + f". Evaluated on the real {test.get('dataset', '')} test set without it ({test.get('images', '?'):,} "
            f"images; robust: {training.get('eval_steps', '?')}-step {eval_norm(results)} PGD on "
            f"{test.get('robust_images', '?'):,}); the pattern columns add p_y, or a random other class's p_c, "
            f"to every test image.")

    # ---------------------------------------------------------------- the table

    def _eps_list(self) -> list[float]:
        """The ε columns: those of the results shown (their evaluation's, and any a row was measured at)."""
        if self.results is not None:
            return list(eps_columns(self.results))
        return [float(e) for e in self.training.eval_eps]

    def _fill_table(self) -> None:
        if self.results is not None and self.results_kind == PLANTED:
            self._fill_planted_table()
            return
        eps_list = self._eps_list()
        norm = "L2" if self.results is None else eval_norm(self.results)
        paper_eps = (self.results or {}).get("paper", {}).get("robust_eps_l2", PAPER_ROBUST_EPS)
        headers = (["train on", "what it\nholds", "images", "epochs", "clean\nacc."]
                   + [f"robust acc.\n{norm} ε = {e:g}" for e in eps_list]
                   + ["Ilyas et al.'s\nCIFAR-10:\nclean", f"Ilyas et al.'s\nCIFAR-10: robust\nL2 ε = {paper_eps:g}"])
        self.paper_columns = (len(headers) - 2, len(headers) - 1)
        rows = {r["dataset"]: r for r in (self.results or {}).get("rows", [])}
        if self.results is None or self.row_status:  # nothing shown yet, or a run filling in: every row
            names = list(ROW_ORDER)
        else:  # a finished file: its rows only (an ablation may train on D and D_R alone)
            names = [name for name in ROW_ORDER if name in rows]
        names += [name for name in rows if name not in names]
        paper_tip = ("Ilyas et al. 2019, Fig. 2b and Table 1: a ResNet-50 on CIFAR-10 — their numbers, "
                     "not ours, on another dataset and ε scale")
        self.table.start_over(headers, len(names), {c: paper_tip for c in self.paper_columns})
        paper = (self.results or {}).get("paper", {}).get("rows", PAPER_CIFAR10)
        for r, name in enumerate(names):
            row = rows.get(name)
            status = self.row_status.get(name, "")
            values = [name, ROW_MEANING.get(name, "")]
            if row is not None:
                values += [_count(row.get("train_images")), str(row.get("epochs", "")),
                           _percent(row["clean_accuracy"])]
                values += [_percent(robust_at(row, e)) for e in eps_list]
            else:
                values += ["", "", status or "–"] + ["" for _ in eps_list]
            theirs = paper.get(name, {})
            values += [_percent(theirs.get("clean")), _percent(theirs.get("robust"))]
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if c < 2:  # the meaning also where "what it holds" is hidden (a narrow tab)
                    item.setToolTip(f"{ROW_MEANING[name]}: {ROW_TOOLTIP[name]}" if c == 0 and name in ROW_MEANING
                                    else ROW_TOOLTIP.get(name, ""))
                if c >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c in self.paper_columns:
                    item.setBackground(QBrush(PAPER_COLOR))
                    item.setForeground(QBrush(QColor(70, 70, 90)))
                if row is None and c == 4 and status:
                    item.setForeground(QBrush(QColor(style.UNKNOWN)))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
            if row is None and status:
                self.table.setSpan(r, 4, 1, 1 + len(eps_list))
        self.table.fit_columns()

    def _fill_planted_table(self) -> None:
        """The planted demo's rows: clean and robust accuracy on the real test set, then the answers on test
        images carrying a pattern (own class's, another class's). No paper columns: the paper has no
        planted numbers."""
        eps_list, norm = self._eps_list(), eval_norm(self.results)
        headers = (["train on", "what it\nholds", "images", "clean\nacc."]
                   + [f"robust\n{norm} ε = {e:g}" for e in eps_list] + [h for _, h, _ in PATTERN_COLUMNS])
        self.paper_columns = ()
        first_pattern = len(headers) - len(PATTERN_COLUMNS)
        rows = self.results.get("rows", [])
        self.table.start_over(headers, len(rows),
                         {first_pattern + i: tip for i, (_, _, tip) in enumerate(PATTERN_COLUMNS)})
        for r, row in enumerate(rows):
            name, reference = row["dataset"], bool(row.get("reference"))
            if reference:  # "fashion-mnist/standard (zoo, unplanted)": the model's short name, the rest below
                shown = name.removesuffix(REFERENCE_SUFFIX).rpartition("/")[2] + " (zoo)"
                meaning, tooltip = "trained on real images only", f"{name}: a reference that never saw a pattern"
            else:
                shown, meaning, tooltip = name, PLANTED_MEANING.get(name, ""), PLANTED_TOOLTIP.get(name, "")
            values = ([shown, meaning, _count(row.get("train_images")), _percent(row["clean_accuracy"])]
                      + [_percent(robust_at(row, e)) for e in eps_list]
                      + [_percent(row.get(key)) for key, _, _ in PATTERN_COLUMNS])
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if c < 2:  # the meaning also where "what it holds" is hidden (a narrow tab)
                    item.setToolTip(f"{meaning}: {tooltip}" if c == 0 and meaning else tooltip)
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if reference:
                    item.setForeground(QBrush(REFERENCE_COLOR))
                self.table.setItem(r, c, item)
        self.table.fit_columns()

    def row_values(self, name: str) -> dict | None:
        """The finished row of a dataset in the shown results (tests, export)."""
        for row in (self.results or {}).get("rows", []):
            if row["dataset"] == name:
                return row
        return None

    # ---------------------------------------------------------------- running

    def request(self) -> IlyasExperimentRequest:
        """The run the controls ask for: the pipeline's request, as ``robustlens experiment --build-in``
        builds it from its options."""
        robust, standard = self.models()
        dataset = self.ctx.dataset.name if self.ctx.dataset is not None else "fashion-mnist"
        construction = replace(self.construction, count=self.count_box.value(), steps=self.steps_box.value(),
                               step_size=float(self.step_size_box.value()), schedule=self.schedule_box.currentData())
        training = replace(self.training, arch=self.arch_box.currentData())
        request = IlyasExperimentRequest(workdir="", robust_model=robust, standard_model=standard, dataset=dataset,
                                         test_images=self.test_box.value(), construction=construction,
                                         training=training)
        return replace(request, workdir=str(self.data_root / request.recipe_name()))

    def run(self) -> None:
        """Build (or resume) the four datasets and run the experiment; the table fills in row by row."""
        self._refresh_models()
        request = replace(self.request(), cluster=self.ctx.cluster_options())  # the chunks on Ray, if set
        missing = [(kind, key) for kind, key in (("adversarial", request.robust_model),
                                                 ("standard", request.standard_model))
                   if model_status(self.ctx, key) in ("missing", "none")]
        if missing:
            self.status.setText(f"<span style='color:{style.WRONG.name()}'>Cannot run: "
                                + "<br>".join(missing_text(kind, key or "(no model)") for kind, key in missing)
                                + "</span>")
            return
        load_unloaded(self.ctx, (request.robust_model, request.standard_model))
        count = request.construction.count
        self.results = {"format": EXPERIMENT_FORMAT, "settings": request.training.to_dict(), "rows": [],
                        "test": {"dataset": request.dataset, "split": "test"}}
        self.results_kind = EXPERIMENT
        self.results_path = None
        self.row_status = {name: "waiting" for name in ROW_ORDER}
        self.stage = None
        self._fill_table()
        self.shown.setText(f"Running: {count:,} images per dataset, {request.construction.steps} inversion steps; "
                           f"saved in {request.workdir}")
        self._started = time.monotonic()
        self._estimate = ""
        out = Path(request.out or Path(request.workdir) / "results.json")
        self.run_engine(JOB_SLOT, ilyas_experiment_job, request, label=f"Ilyas et al. experiment ({count:,} images)",
                        keep_every=("row", "stage"), on_partial=self._on_partial, on_progress=self._on_progress,
                        on_done=lambda results: self._show_done(results, out), on_aborted=self._show_cancelled,
                        on_failed=lambda event: self.status.setText(f"Failed: {event.message}"),
                        cancel_button=self.cancel_button)
        self.status.setText("building D_R…")

    def show_estimate(self, slot: str, estimate) -> None:
        """From scratch; a resumed run skips what is built."""
        self._estimate = f" of at most {estimate.text()}"
        self.status.setText(self.status.text() + self._estimate)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.0f} s{self._estimate}"

    def _set_status(self, name: str, text: str) -> None:
        if name in self.row_status and self.row_values(name) is None:
            self.row_status[name] = text
            self._fill_table()

    def _on_partial(self, event) -> None:
        if event.kind == "stage":
            if self.stage in BUILT_ROWS:
                self._set_status(self.stage, "built; waiting to train")
            self.stage = event.value["stage"]
            self._set_status(self.stage, "building 0%")
        elif event.kind == "row-started":
            self._set_status(event.value["dataset"], f"training ({event.value['epochs']} epochs)")
        elif event.kind == "row":
            row = event.value
            self.results["rows"] = [r for r in self.results["rows"] if r["dataset"] != row["dataset"]] + [row]
            self.row_status.pop(row["dataset"], None)
            self._fill_table()
            self.status.setText(f"{row['dataset']} done: clean {_percent(row['clean_accuracy'])} · {self._elapsed()}")

    def _on_progress(self, event) -> None:
        self.status.setText(f"{event.message} · {self._elapsed()}")
        if self.stage in BUILT_ROWS:  # each stage is one unit of the pipeline's progress
            self._set_status(self.stage, f"building {event.done - BUILT_ROWS.index(self.stage):.0%}")
        elif self.stage == "experiment":
            name, _, message = event.message.partition(": ")
            self._set_status(name, message)

    def _show_done(self, results: dict, out: Path) -> None:
        self.results, self.results_kind, self.results_path = results, EXPERIMENT, out
        self.row_status = {}
        self._fill_table()
        self._describe_results()
        self.status.setText(f"Done in {self._elapsed()}; results in {out}.")

    def _show_cancelled(self, _event) -> None:
        self.status.setText(f"Cancelled after {self._elapsed()}: run again with the same settings to resume "
                            "(finished chunks and rows are kept).")

    # ---------------------------------------------------------------- lecture mode

    def set_lecture_mode(self, on: bool) -> None:
        self.table.fit_columns()
        # a projector's lines go to the table: the cost of a run stays in Run experiment's tooltip
        self.warning.setVisible(not on)
