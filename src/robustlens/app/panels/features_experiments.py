"""Ilyas et al.'s dataset experiment as a GUI section: build D_R, D_NR, D_rand and D_det from the
training set, train a standard model on each (and on the real images, D), and fill the table of clean
and robust accuracy on the real test set as the rows finish — beside the paper's CIFAR-10 figures,
labelled as theirs. Saved results (``docs/features/results.json`` from the CLI, or a previous run
here) load without running anything.

The datasets and the experiment are ``engine/features.py`` jobs; this module chains them on the engine
thread and draws the rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from robustlens.engine.data import load_dataset
from robustlens.engine.features import (EXPERIMENT_FORMAT, PAPER_CIFAR10, PAPER_ROBUST_EPS, SEED_MODES,
                                        STEP_SCHEDULES, ExperimentSettings,
                                        experiment_job, non_robust_dataset_job, relabeled_dataset_job,
                                        robust_dataset_job, select_source_indices)
from robustlens.engine.jobs import Aborted, Failed, Finished, Partial, Progress

from .. import style
from ..context import AppContext
from .features_models import choose, fill_model_box, missing_text, model_status

JOB_SLOT = "features-experiment"
REPO_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "features" / "results.json"
ROW_ORDER = ("D", "D_R", "D_NR", "D_rand", "D_det")
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
PAPER_COLOR = QColor(236, 236, 244)     # the paper's columns: theirs, set apart
# progress in units a user can follow: each of the 4 builds is one, each of the 5 trained rows one
UNITS = 4 + len(ROW_ORDER)


def default_data_root() -> Path:
    """Where the GUI keeps the datasets it builds (resumable: a cancelled run continues there)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".robustlens") / "features"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


class DatasetExperiments(QWidget):
    """The table of Ilyas et al.'s experiment, filled by a run here or loaded from a results file.
    A section of the Experiments tab (``Section(ctx)``, see ``experiments.py``)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.data_root = default_data_root()
        self.extra_settings: dict = {}        # ExperimentSettings fields beyond the controls (quick checks)
        self.build_options: dict = {}         # builder options beyond the controls (e.g. chunk size)
        # how D_rand / D_det are pushed and where inversions start: the engine's defaults, or those of
        # the results file shown (so a smaller run here follows the recipe of the table on screen)
        self.relabel = {"eps": 1.0, "pgd_steps": 100}
        self.seeds = "other-class"
        self.handle = None
        self.results: dict | None = None
        self.results_path: Path | None = None
        self.row_status: dict[str, str] = {}
        self._started = 0.0
        self._run_id = 0
        self._build()
        if REPO_RESULTS.exists():
            self.load_results(REPO_RESULTS, quiet=True)
        else:
            self._fill_table()

    # ---------------------------------------------------------------- construction

    def _build(self) -> None:
        self.count_box = QSpinBox()
        self.count_box.setRange(20, 60_000)
        self.count_box.setValue(1000)
        self.count_box.setSingleStep(500)
        self.count_box.setGroupSeparatorShown(True)
        self.count_box.setKeyboardTracking(False)
        self.count_box.setToolTip("Training images transformed into each constructed dataset (the paper: all "
                                  "50,000 of CIFAR-10; the README's table: 10,000)")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 10_000)
        self.steps_box.setValue(1000)
        self.steps_box.setSingleStep(100)
        self.steps_box.setKeyboardTracking(False)
        self.steps_box.setToolTip("Inversion steps per image for D_R and D_NR (the paper: 1000, α = 0.1)")
        self.step_size_box = QDoubleSpinBox()
        self.step_size_box.setDecimals(3)
        self.step_size_box.setRange(0.001, 10.0)
        self.step_size_box.setSingleStep(0.05)
        self.step_size_box.setValue(0.1)
        self.step_size_box.setKeyboardTracking(False)
        self.step_size_box.setToolTip("α of the inversions' normalised gradient steps (the paper: 0.1)")
        self.schedule_box = QComboBox()
        for schedule in STEP_SCHEDULES:
            self.schedule_box.addItem({"constant": "constant α", "cosine": "cosine α"}.get(schedule, schedule),
                                      schedule)
        self.schedule_box.setToolTip("constant α: the paper's; cosine α: annealed to 0, which reaches a low d in "
                                     "fewer steps")
        self.test_box = QSpinBox()
        self.test_box.setRange(100, 10_000)
        self.test_box.setValue(10_000)
        self.test_box.setSingleStep(1000)
        self.test_box.setGroupSeparatorShown(True)
        self.test_box.setKeyboardTracking(False)
        self.test_box.setToolTip("Real test images the clean accuracy is measured on (the first N of the test "
                                 "split; robust accuracy: the first 1,000 of them)")
        self.robust_box = QComboBox()
        self.robust_box.setToolTip("The adversarially trained model whose representation D_R inverts")
        self.standard_box = QComboBox()
        self.standard_box.setToolTip("The standard model whose representation D_NR inverts, and that D_rand / "
                                     "D_det attack with targeted PGD")
        for box in (self.robust_box, self.standard_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_button = QPushButton("Run experiment")
        self.run_button.setToolTip("Build the four datasets, train a standard model on each and on the real "
                                   "images, evaluate on the real test set")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.load_button = QPushButton("Load results…")
        self.load_button.setToolTip("Show a results JSON written by `robustlens experiment --out` or by a run here")
        models_row, run_row = QHBoxLayout(), QHBoxLayout()
        for row, pairs in ((models_row, (("Build D_R with", self.robust_box), ("D_NR, D_rand, D_det with",
                                                                             self.standard_box))),
                           (run_row, (("images per dataset", self.count_box), ("inversion steps", self.steps_box),
                                      ("α", self.step_size_box), ("", self.schedule_box),
                                      ("test images", self.test_box)))):
            row.setSpacing(4)
            for text, widget in pairs:
                if text:
                    label = QLabel(text)
                    label.setBuddy(widget)
                    row.addWidget(label)
                row.addWidget(widget)
                row.addSpacing(6)
        models_row.addStretch(1)
        models_row.addWidget(self.load_button)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addStretch(1)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setObjectName("caption")
        self.table = QTableWidget()
        self.table.setObjectName("features-experiment-table")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.shown = QLabel("")
        self.shown.setWordWrap(True)
        self.shown.setObjectName("caption")
        self.shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(models_row)
        layout.addLayout(run_row)
        layout.addWidget(self.warning)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.shown)
        layout.addWidget(self.status)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(lambda: self.ctx.cancel(JOB_SLOT))
        self.load_button.clicked.connect(self._ask_results)
        self.count_box.valueChanged.connect(lambda _v: self._update_warning())
        self.steps_box.valueChanged.connect(lambda _v: self._update_warning())
        self.ctx.cancelRequested.connect(lambda: self.cancel_button.setEnabled(False))
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
            f"({steps} steps each), targeted PGD (L2 ε = {self.relabel['eps']:g}, {self.relabel['pgd_steps']} "
            f"steps) for D_rand and D_det, then 5 standard models trained and attacked. Start small (a few hundred "
            f"images) to see the rows fill in; a cancelled run resumes where it stopped. Data kept in "
            f"{self.data_root}.")

    # ---------------------------------------------------------------- results files

    def _ask_results(self) -> None:
        start = str(self.results_path.parent if self.results_path else REPO_RESULTS.parent)
        path, _ = QFileDialog.getOpenFileName(self, "Experiment results", start, "Results (*.json)")
        if path:
            self.load_results(Path(path))

    def load_results(self, path: Path, quiet: bool = False) -> bool:
        """Show a results JSON; a file that is not one gives a one-line error and the table stays."""
        path = Path(path)
        try:
            results = json.loads(path.read_text())
            if results.get("format") != EXPERIMENT_FORMAT or not isinstance(results.get("rows"), list):
                raise ValueError("not a robustlens experiment results file")
        except (OSError, ValueError) as error:
            if not quiet:
                self.ctx.error(f"Cannot show {path.name}: {error}")
            return False
        self.results, self.results_path = results, path
        self.row_status = {}
        self._adopt_recipe(results)
        self._fill_table()
        self._describe_results()
        self.status.setText("")
        return True

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
                self.seeds = inversion["seeds"]
            relabel = sources.get("D_rand") or sources.get("D_det") or {}
            if "eps" in relabel and "steps" in relabel:
                self.relabel = {"eps": float(relabel["eps"]), "pgd_steps": int(relabel["steps"])}
        except (TypeError, ValueError):
            pass  # a hand-edited file: keep the controls as they are
        self._update_warning()

    def _describe_results(self) -> None:
        results, path = self.results, self.results_path
        if results is None:
            self.shown.setText("")
            return
        parts = []
        for row in results.get("rows", []):
            source = row.get("source") or {}
            if row["dataset"] in ("D_R", "D_NR") and "steps" in source:
                model = (source.get("model") or {}).get("name", "?")
                schedule = " (cosine-annealed)" if source.get("schedule") == "cosine" else ""
                parts.append(f"{row['dataset']}: {row['train_images']:,} images inverted through {model}, "
                             f"{source['steps']} steps of α = {source.get('step_size', '?')}{schedule}, "
                             f"{source.get('seeds', '?')} seeds")
            elif row["dataset"] in ("D_rand", "D_det") and "eps" in source:
                parts.append(f"{row['dataset']}: targeted L2 PGD ε = {source['eps']}, {source.get('steps', '?')} steps")
        test = results.get("test", {})
        settings = results.get("settings", {})
        if path is not None:
            try:
                path = path.resolve().relative_to(REPO_RESULTS.parents[2])  # docs/features/results.json
            except ValueError:
                pass
        where = f"Shown: {path}" if path is not None else "Shown: this run"
        self.shown.setText(
            f"{where}. Evaluated on the real {test.get('dataset', '')} {test.get('split', 'test')} set "
            f"({test.get('images', '?'):,} images; robust: {settings.get('eval_steps', '?')}-step "
            f"{str(settings.get('eval_norm', 'l2')).upper()} PGD on {test.get('robust_images', '?'):,}). "
            + "; ".join(parts))

    # ---------------------------------------------------------------- the table

    def _eps_list(self) -> list[float]:
        if self.results is not None:
            return [float(e) for e in self.results.get("settings", {}).get("eval_eps", [])]
        return [float(e) for e in self.experiment_settings().eval_eps]

    def _fill_table(self) -> None:
        eps_list = self._eps_list()
        norm = "L2"
        if self.results is not None:
            norm = str(self.results.get("settings", {}).get("eval_norm", "l2")).upper()
        paper_eps = (self.results or {}).get("paper", {}).get("robust_eps_l2", PAPER_ROBUST_EPS)
        headers = (["train on", "what it holds", "images", "epochs", "clean acc."]
                   + [f"robust acc.\n{norm} ε = {e:g}" for e in eps_list]
                   + ["Ilyas et al.'s\nCIFAR-10: clean", f"Ilyas et al.'s CIFAR-10:\nrobust L2 ε = {paper_eps:g}"])
        self.paper_columns = (len(headers) - 2, len(headers) - 1)
        rows = {r["dataset"]: r for r in (self.results or {}).get("rows", [])}
        names = list(ROW_ORDER) + [name for name in rows if name not in ROW_ORDER]
        self.table.clear()
        self.table.clearSpans()
        self.table.setColumnCount(len(headers))
        self.table.setRowCount(len(names))
        for c, text in enumerate(headers):
            item = QTableWidgetItem(text)
            if c in self.paper_columns:
                item.setToolTip("Ilyas et al. 2019, Fig. 2b and Table 1: a ResNet-50 on CIFAR-10 — their numbers, "
                                "not ours, on another dataset and ε scale")
                font = QFont(item.font())
                font.setItalic(True)
                item.setFont(font)
            self.table.setHorizontalHeaderItem(c, item)
        paper = (self.results or {}).get("paper", {}).get("rows", PAPER_CIFAR10)
        for r, name in enumerate(names):
            row = rows.get(name)
            status = self.row_status.get(name, "")
            values = [name, ROW_MEANING.get(name, "")]
            if row is not None:
                values += [f"{row['train_images']:,}", str(row.get("epochs", "")), _percent(row["clean_accuracy"])]
                values += [_percent(row["robust_accuracy"].get(str(float(e)))) for e in eps_list]
            else:
                values += ["", "", status or "–"] + ["" for _ in eps_list]
            theirs = paper.get(name, {})
            values += [_percent(theirs.get("clean")), _percent(theirs.get("robust"))]
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if c < 2:
                    item.setToolTip(ROW_TOOLTIP.get(name, ""))
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
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.resizeRowsToContents()

    def row_values(self, name: str) -> dict | None:
        """The finished row of a dataset in the shown results (tests, export)."""
        for row in (self.results or {}).get("rows", []):
            if row["dataset"] == name:
                return row
        return None

    # ---------------------------------------------------------------- running

    def experiment_settings(self) -> ExperimentSettings:
        return ExperimentSettings(**self.extra_settings)

    def run(self) -> None:
        """Build (or resume) the four datasets and run the experiment; the table fills in row by row."""
        dataset = self.ctx.dataset
        name = dataset.name if dataset is not None else "fashion-mnist"
        self._refresh_models()
        robust_key, standard_key = self.models()
        missing = [(kind, key) for kind, key in (("adversarial", robust_key), ("standard", standard_key))
                   if model_status(self.ctx, key) in ("missing", "none")]
        if missing:
            self.status.setText(f"<span style='color:{style.WRONG.name()}'>Cannot run: "
                                + "<br>".join(missing_text(kind, key or "(no model)") for kind, key in missing)
                                + "</span>")
            return
        count, steps, test_count = self.count_box.value(), self.steps_box.value(), self.test_box.value()
        settings = self.experiment_settings()
        options = {"seeds": self.seeds, "step_size": float(self.step_size_box.value()),
                   "schedule": self.schedule_box.currentData(), **self.relabel, **self.build_options}
        pgd = {k: options.pop(k) for k in ("eps", "pgd_steps")}
        tails = "-".join(Path(key).stem if Path(key).is_absolute() else key.rsplit("/", 1)[-1]
                         for key in (robust_key, standard_key))
        # one folder per recipe, so that changing a setting starts a new build instead of refusing to resume
        recipe = (f"{count}images-{steps}steps-a{options['step_size']:g}-{options['schedule']}-{options['seeds']}-"
                  f"pgd{pgd['eps']:g}x{pgd['pgd_steps']}")
        folder = self.data_root / f"{name}-{recipe}-{tails}"
        out = folder / "results.json"

        def job(engine, cancel):  # on the engine thread: chain the engine's jobs
            robust, standard = engine.model(robust_key), engine.model(standard_key)
            source = load_dataset(name, "train")
            test = load_dataset(name, "test")
            if test_count < len(test):
                test = test.subset(range(test_count))
            if count > len(source):
                raise ValueError(f"the {name} training set has {len(source):,} images, fewer than {count:,}")
            builders = {
                "D_R": robust_dataset_job(robust, source, folder / "D_R", count=count, steps=steps, **options),
                "D_NR": non_robust_dataset_job(standard, source, folder / "D_NR", count=count, steps=steps,
                                               **options),
                "D_rand": relabeled_dataset_job(standard, source, folder / "D_rand", mode="rand", count=count,
                                                eps=pgd.get("eps", 1.0), steps=pgd.get("pgd_steps", 100)),
                "D_det": relabeled_dataset_job(standard, source, folder / "D_det", mode="det", count=count,
                                               eps=pgd.get("eps", 1.0), steps=pgd.get("pgd_steps", 100)),
            }
            built = {}
            for stage, (dataset_name, builder) in enumerate(builders.items()):
                for event in builder(cancel):
                    if isinstance(event, Finished):
                        built[dataset_name] = event.result
                    elif isinstance(event, Progress):
                        yield Progress(stage + event.fraction, UNITS, f"building {dataset_name}: {event.message}")
                        yield Partial(f"status:{dataset_name}", f"building {event.fraction:.0%}")
                yield Partial(f"status:{dataset_name}", "built; waiting to train")
            real = source.subset(select_source_indices(source, count, 0))  # the images the builders transformed
            real.name = "D"
            for event in experiment_job({"D": real, **built}, test, settings=settings, out=out,
                                        device=engine.device)(cancel):
                if isinstance(event, Progress):  # done = rows finished + a fraction of the current one
                    yield Progress(len(builders) + event.done, UNITS, event.message)
                    dataset_name, _, message = event.message.partition(": ")
                    yield Partial(f"status:{dataset_name}", message)
                else:
                    yield event

        self._run_id += 1
        run_id = self._run_id
        self.results = {"format": EXPERIMENT_FORMAT, "settings": settings.to_dict(), "rows": [],
                        "test": {"dataset": name, "split": "test"}}
        self.results_path = None
        self.row_status = {n: "waiting" for n in ROW_ORDER}
        self._fill_table()
        self.shown.setText(f"Running: {count:,} images per dataset, {steps} inversion steps; saved in {folder}")
        self._started = time.monotonic()
        self.handle = self.ctx.submit_with_models(JOB_SLOT, job, on_event=lambda e: self._on_event(e, run_id, out),
                                                  keep_every=("row",), label=f"Ilyas et al. experiment ({count:,} "
                                                                             "images)")
        self.cancel_button.setEnabled(True)
        self.status.setText("building D_R…")

    def _on_event(self, event, run_id: int, out: Path) -> None:
        if run_id != self._run_id:
            return
        elapsed = time.monotonic() - self._started
        if isinstance(event, Partial) and event.kind.startswith("status:"):
            name = event.kind.split(":", 1)[1]
            if name in self.row_status and self.row_values(name) is None:
                self.row_status[name] = str(event.value)
                self._fill_table()
        elif isinstance(event, Partial) and event.kind == "row-started":
            self.row_status[event.value["dataset"]] = f"training ({event.value['epochs']} epochs)"
            self._fill_table()
        elif isinstance(event, Partial) and event.kind == "row":
            row = event.value
            self.results["rows"] = [r for r in self.results["rows"] if r["dataset"] != row["dataset"]] + [row]
            self.row_status.pop(row["dataset"], None)
            self._fill_table()
            self.status.setText(f"{row['dataset']} done: clean {_percent(row['clean_accuracy'])} · {elapsed:.0f} s")
        elif isinstance(event, Progress):
            self.status.setText(f"{event.message} · {elapsed:.0f} s")
        elif isinstance(event, Finished):
            self.results, self.results_path = event.result, out
            self.row_status = {}
            self._fill_table()
            self._describe_results()
            self.status.setText(f"Done in {elapsed:.0f} s; results in {out}.")
            self.cancel_button.setEnabled(False)
        elif isinstance(event, Aborted):
            self.status.setText(f"Cancelled after {elapsed:.0f} s: run again with the same settings to resume "
                                "(finished chunks and rows are kept).")
            self.cancel_button.setEnabled(False)
        elif isinstance(event, Failed):
            self.status.setText(f"Failed: {event.message}")
            self.cancel_button.setEnabled(False)

    # ---------------------------------------------------------------- lecture mode and settings

    def set_lecture_mode(self, on: bool) -> None:
        self.table.resizeColumnsToContents()
        self.table.resizeRowsToContents()

    def save_settings(self, settings) -> None:
        robust, standard = self.models()
        settings.setValue("robust_model", robust)
        settings.setValue("standard_model", standard)
        settings.setValue("images", self.count_box.value())
        settings.setValue("steps", self.steps_box.value())
        settings.setValue("test_images", self.test_box.value())
        settings.setValue("step_size", float(self.step_size_box.value()))
        settings.setValue("schedule", self.schedule_box.currentData())
        if self.results_path is not None:
            settings.setValue("results", str(self.results_path))

    def restore_settings(self, settings) -> None:
        self.set_models(settings.value("robust_model"), settings.value("standard_model"))
        for key, box in (("images", self.count_box), ("steps", self.steps_box), ("test_images", self.test_box)):
            value = settings.value(key)
            if value is not None:
                try:
                    box.setValue(int(value))
                except (TypeError, ValueError):
                    raise ValueError(f"experiments/{key} = {value!r} is not a number") from None
        step_size = settings.value("step_size")
        if step_size is not None:
            try:
                self.step_size_box.setValue(float(step_size))
            except (TypeError, ValueError):
                raise ValueError(f"experiments/step_size = {step_size!r} is not a number") from None
        schedule = settings.value("schedule")
        if schedule is not None and self.schedule_box.findData(schedule) >= 0:
            self.schedule_box.setCurrentIndex(self.schedule_box.findData(schedule))
        path = settings.value("results")
        if path and Path(str(path)).exists():
            self.load_results(Path(str(path)), quiet=True)
