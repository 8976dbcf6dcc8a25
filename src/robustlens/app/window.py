"""The main window: pickers and gallery on the left, the image strip and the panels' tabs in the
centre, the engine's state in the status bar."""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QApplication, QFileDialog, QFrame, QGroupBox, QMainWindow, QScrollArea, QSplitter,
                               QTabWidget, QTextEdit, QVBoxLayout, QWidget)

from robustlens.engine.data import DatasetError, load_dataset
from robustlens.engine.jobs import Finished, Progress
from robustlens.engine.model_cache import load_models_job
from robustlens.engine.zoo import catalogue

from . import style
from .banner import Banner
from .cluster_dialog import CLUSTER_ADDRESS, CLUSTER_WORKERS
from .context import AppContext, ModelInfo, Selection
from .engine_thread import Engine, bind_request
from .file_opening import FileOpening, missing_files_help
from .gallery import Gallery
from .help_pages import HelpPages
from .menus import WindowMenus
from .panels import PANELS
from .pickers import DATASET_CHOICES, DatasetPicker, ModelPicker
from .settings import Setting, read_settings
from .status import JobStatus
from .strip import ImageStrip

SETTLE_MS = 90        # a selection starts its jobs once no newer one came within this time (held PgDown)
CLOSE_WAIT_MS = 2000  # closing waits at most this long for the engine's running chunk
STYLE_SHEET = """
QLabel#caption { color: palette(placeholder-text); }
QFrame#banner[level="error"] { background: #fbe3e1; border: 1px solid #d9534f; border-radius: 4px; }
QFrame#banner[level="info"] { background: #e3eefb; border: 1px solid #5b8fd9; border-radius: 4px; }
QFrame#banner QLabel { color: #222; }
"""


# what the window itself remembers, besides geometry, dataset and models
WINDOW_SETTINGS = (
    Setting("gallery/index", 0, minimum=0),
    Setting("gallery/class_filter", "", help="class index, or empty for all"),
    Setting("view/gallery", True),
    Setting("view/strip", True),
    Setting("view/lecture", False),
    CLUSTER_ADDRESS,
    CLUSTER_WORKERS,
)


class MainWindow(FileOpening, WindowMenus, HelpPages, QMainWindow):
    """The robustlens window. ``settings``: where to remember geometry, dataset, models, options
    (a fresh QSettings file makes a reproducible window, as the screenshot mode does)."""

    firstPredictions = Signal()     # the selected image's predictions are on screen for the first time

    def __init__(self, settings: QSettings | None = None, extra_models: list[str] | None = None,
                 select: int | None = None, dataset: str | None = None, use_settings: bool = True,
                 models: list[str] | None = None, panels: list[tuple[str, str]] | None = None,
                 data_root: str | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings("robustlens", "robustlens")
        self.setWindowTitle("robustlens — adversarial examples, robust features, certified robustness")
        self.setAcceptDrops(True)
        app = QApplication.instance()
        if app.property("robustlens_base_font") is None:
            app.setProperty("robustlens_base_font", app.font().pointSizeF())
        self.engine = Engine(self)
        self.ctx = AppContext(self.engine, self)
        self.ctx.window = self
        self.ctx.settings = self.settings
        self.ctx.exportableAdded.connect(self._add_export_menu)
        self._dataset_key = "fashion-mnist:test"
        self._dataset_roots: dict[str, str] = {}
        self._models_ready = False
        self._first_done = False
        self._closing = False
        self._last_dataset_ok = None
        self._pending_select = select
        # stepping through images settles: ctx.selection and the strip's original change at once,
        # selectionChanged (the panels' and the predictions' jobs) once no newer step came within SETTLE_MS
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(SETTLE_MS)
        self._settle_timer.timeout.connect(self._settle_selection)
        self._unsettled: Selection | None = None
        self._panel_specs = list(PANELS if panels is None else panels)
        self._build_ui()
        self._build_menus()
        self._build_presenter_menus()
        self._connect()
        self._restore(use_settings, extra_models or [], dataset, models, data_root)

    # ---------------------------------------------------------------- construction

    def _build_ui(self) -> None:
        self.setStyleSheet(STYLE_SHEET)
        # left column
        self.dataset_picker = DatasetPicker()
        self.model_picker = ModelPicker()
        self.gallery = Gallery()
        left = self.left_column = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        for title, widget, stretch in (("Dataset", self.dataset_picker, 0), ("Models", self.model_picker, 0),
                                       ("Gallery", self.gallery, 1)):
            box = QGroupBox(title)
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(6, 6, 6, 6)
            box_layout.addWidget(widget)
            left_layout.addWidget(box, stretch)
        # centre: banner, strip, tabs
        self.banner = Banner()
        self.strip = ImageStrip(self.ctx)
        self.ctx.strip = self.strip
        self.ctx.register_exportable("Image strip", self.strip)
        for slot, card in self.strip.cards.items():
            self.ctx.register_exportable(f"Strip: {card.title.text()}", card)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.panels: dict[str, QWidget] = {}
        for title, target in self._panel_specs:
            panel = self._make_panel(title, target)
            self.panels[title] = panel
            # a panel wider or taller than the screen scrolls instead of stretching the window
            scroll = QScrollArea()
            scroll.setWidget(panel)
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            self.tabs.addTab(scroll, title)
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 6, 6, 0)
        self.centre_split = QSplitter(Qt.Orientation.Vertical)
        self.centre_split.addWidget(self.strip)
        self.centre_split.addWidget(self.tabs)
        self.centre_split.setStretchFactor(0, 0)
        self.centre_split.setStretchFactor(1, 1)
        self.centre_split.setChildrenCollapsible(False)
        centre_layout.addWidget(self.centre_split, 1)
        # lecture mode: the gallery moves here as a one-row filmstrip (menus.set_lecture_mode)
        self.filmstrip = QWidget()
        self.filmstrip.setObjectName("filmstrip")
        self.filmstrip_layout = QVBoxLayout(self.filmstrip)
        self.filmstrip_layout.setContentsMargins(0, 2, 0, 2)
        self.filmstrip.hide()
        centre_layout.addWidget(self.filmstrip)
        self.gallery_box = self.gallery.parentWidget()
        self.banner.float_over(centre)  # over the strip's top edge: it never pushes the layout down
        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.addWidget(left)
        self.main_split.addWidget(centre)
        self.main_split.setStretchFactor(0, 0)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([330, 1100])
        self.setCentralWidget(self.main_split)
        self.status = JobStatus(self.statusBar(), self.engine)

    def _make_panel(self, title: str, target: str) -> QWidget:
        """Import and build a registered panel; a broken one becomes a tab that shows its error."""
        try:
            module_name, _, class_name = target.partition(":")
            panel_class = getattr(importlib.import_module(module_name), class_name)
            panel = panel_class(self.ctx)
            panel.setObjectName(f"panel-{title}")
            return panel
        except Exception:  # noqa: BLE001 - one panel's bug must not keep the window from opening
            details = traceback.format_exc()
            text = QTextEdit()
            text.setReadOnly(True)
            text.setPlainText(f"The {title} panel could not be opened ({target}):\n\n{details}")
            return text

    def _connect(self) -> None:
        self.gallery.indexSelected.connect(self.select_index)
        self.gallery.indexStepped.connect(lambda index: self.select_index(index, settle=True))
        self.dataset_picker.chosen.connect(lambda name, split, key, root: self.load_dataset(name, split, key, root))
        self.dataset_picker.folderWanted.connect(self._ask_dataset_folder)
        self.model_picker.changed.connect(self.load_models)
        self.model_picker.openWanted.connect(self.open_model_dialog)
        self.ctx.modelsWanted.connect(self._load_wanted_models)
        self.ctx.openModelWanted.connect(self.open_model_dialog)
        self.status.cancel_button.clicked.connect(self.cancel_jobs)
        self.ctx.message.connect(lambda level, text: self.banner.show_message(level, text,
                                                                              clears_on_success=True))
        self.engine.jobFailed.connect(self._on_job_failed)
        self.engine.jobEnded.connect(self._on_job_ended)
        self.strip.predictionsShown.connect(self._check_first_predictions)
        app = QApplication.instance()
        app.aboutToQuit.connect(self._stop_engine)

    def _restore(self, use_settings: bool, extra_models: list[str], dataset: str | None,
                 models: list[str] | None, data_root: str | None = None) -> None:
        s = self.settings
        geometry = s.value("window/geometry") if use_settings else None
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 920)
        splits = s.value("window/centre_split") if use_settings else None
        if splits:
            self.centre_split.restoreState(splits)
        else:
            self.centre_split.setSizes([380, 480])
        checked = s.value("models/checked") if use_settings else None
        files = (s.value("models/files") or []) if use_settings else []
        files = [files] if isinstance(files, str) else list(files)
        checked = [checked] if isinstance(checked, str) else (list(checked) if checked is not None else None)
        extra = [str(Path(p).expanduser().resolve()) for p in extra_models]
        if extra:
            checked = (checked or [entry.name for entry in catalogue()]) + extra
        if models is not None:  # exactly these (tests, scripted screenshots)
            checked = [str(Path(k).resolve()) if Path(k).exists() else k for k in models]
            extra = [k for k in checked if Path(k).is_absolute()]
        self.model_picker.populate(checked, files + [p for p in extra if p not in files])
        for key in ("mnist:test", "cifar10:test", "folder:test"):
            root = s.value(f"dataset/root/{key}") if use_settings else None
            if root:
                self._dataset_roots[key] = str(root)
        key = s.value("dataset/choice", "fashion-mnist:test") if use_settings else "fashion-mnist:test"
        if dataset:
            key = dataset if ":" in dataset else f"{dataset}:test"
        if key not in [c[0] for c in DATASET_CHOICES]:
            key = "fashion-mnist:test"
        if data_root:
            self._dataset_roots[key] = str(Path(data_root).expanduser())
        stored, problems = read_settings(s, WINDOW_SETTINGS, "window") if use_settings else ({}, [])
        if self._pending_select is None and use_settings:
            self._pending_select = stored.get("gallery/index", 0)
        self._pending_filter = stored.get("gallery/class_filter") if use_settings else None
        self.load_models(self.model_picker.checked_keys())
        choice = self.dataset_picker.choice(key)
        root = self._dataset_roots.get(key)
        if choice[4] and not root:
            self.banner.show_message("info", f"{choice[1].split(' (')[0]} is read from a folder: choose it with "
                                             "Dataset → Folder…; showing the built-in Fashion-MNIST meanwhile.")
            key, choice, root = "fashion-mnist:test", self.dataset_picker.choice("fashion-mnist:test"), None
        self.load_dataset(choice[2], choice[3], key, root)
        if use_settings:
            problems += self.restore_panel_settings(list(self.panels))
        if problems:
            self.banner.show_message("error", f"Stored settings ignored ({len(problems)}): " + "; ".join(problems))
        self.ctx.cluster_address = stored.get(CLUSTER_ADDRESS.key, CLUSTER_ADDRESS.default)
        self.ctx.cluster_workers = stored.get(CLUSTER_WORKERS.key, CLUSTER_WORKERS.default)
        if use_settings:
            self.show_gallery(stored.get("view/gallery", True))
            self.show_strip(stored.get("view/strip", True))
        if use_settings and stored.get("view/lecture", False):
            QTimer.singleShot(0, lambda: self.lecture_action.trigger())
        if use_settings:
            QTimer.singleShot(0, self.maybe_show_getting_started)

    def restore_panel_settings(self, titles: list[str]) -> list[str]:
        """Let these tabs read their settings from ``self.settings`` (group ``panels/TITLE``); returns
        one line per value ignored."""
        s, problems = self.settings, []
        for title in titles:
            panel = self.panels[title]
            if not hasattr(panel, "restore_settings"):
                continue
            s.beginGroup(f"panels/{title}")
            try:
                problems += [f"{title}: {p}" for p in (panel.restore_settings(s) or [])]
            except Exception as error:  # noqa: BLE001 - stale settings must not stop the window
                problems.append(f"{title}: stored settings ignored ({error})")
            finally:
                s.endGroup()
        return problems

    # ---------------------------------------------------------------- dataset

    def _ask_dataset_folder(self, key: str) -> None:
        _, label, name, split, _ = self.dataset_picker.choice(key)
        folder = QFileDialog.getExistingDirectory(self, f"Folder with {label.split(' (')[0]}",
                                                  self._dataset_roots.get(key, str(Path.home())))
        if not folder:
            self.dataset_picker.show_choice(self._dataset_key)
            return
        self.load_dataset(name, split, key, folder)

    def load_dataset(self, name: str, split: str, key: str, root: str | None = None) -> None:
        """Load a dataset on the engine thread; on failure the previous one stays and the error shows."""
        self.dataset_picker.source.setText("loading…")

        def factory(cancel):
            yield Progress(0, 1, f"loading {name} {split}")
            missing = missing_files_help(name, root)  # what to put where, in the window's words
            if missing:
                raise DatasetError(missing)
            yield Finished(load_dataset(name, split, root))

        def on_event(event):
            if isinstance(event, Finished):
                self._on_dataset(event.result, key, root)

        self.engine.submit("dataset", factory, on_event=on_event, label=f"loading {name} {split}")

    def _on_dataset(self, dataset, key: str, root: str | None) -> None:
        self._dataset_key = key
        if root:
            self._dataset_roots[key] = root
        self.ctx.dataset = dataset
        self.dataset_picker.show_choice(key)
        self.dataset_picker.source.setText(f"{len(dataset):,} images, {len(dataset.classes)} classes, "
                                           f"{'×'.join(map(str, dataset.image_shape))} · "
                                           f"{style.dataset_source(dataset)}")
        self.gallery.set_dataset(dataset)
        if self._pending_filter not in (None, "", "None"):
            try:
                self.gallery.set_class_filter(int(self._pending_filter))
            except (TypeError, ValueError):
                pass
        self._pending_filter = None
        self.ctx.datasetChanged.emit(dataset)
        index = self._pending_select if self._pending_select is not None else 0
        self._pending_select = None
        index = min(max(0, int(index)), len(dataset) - 1)
        if not self.gallery.select(index, emit=False):
            self.gallery.set_class_filter(None)
            self.gallery.select(index, emit=False)
        self.select_index(index)

    # ---------------------------------------------------------------- selection

    def select_index(self, index: int, settle: bool = False) -> None:
        """Select image ``index`` of the dataset: the strip, the predictions and the panels follow.
        ``settle=True`` (stepping with the keyboard: PgDown, the arrows): ``selectionChanged``, which
        starts the jobs, waits until no newer step came within ``SETTLE_MS``; a click, a file, a
        dataset or a script's call start them at once."""
        dataset = self.ctx.dataset
        if dataset is None or not 0 <= index < len(dataset):
            return
        if self.gallery.selected_index() != index:
            self.gallery.select(index, emit=False)
        label = int(dataset.labels[index])
        name = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}.get(dataset.name, dataset.name)
        selection = Selection(dataset.images[index:index + 1].clone(), label, index,
                              f"{name} {dataset.split} #{dataset.source_index(index)}")
        self._set_selection(selection, settle)

    def _set_selection(self, selection: Selection | None, settle: bool = False) -> None:
        """The selection is current at once (``ctx.selection``; ``selectionShown``: the strip's
        original image). ``selectionChanged`` (the panels' jobs, the predictions) follows now, or with
        ``settle`` once no newer selection came within SETTLE_MS: holding PgDown (30 steps a second)
        then starts one round of jobs, for the image it stops on, instead of one per image."""
        self.ctx.selection = selection
        self.ctx.selectionShown.emit(selection)
        if settle:
            self._unsettled = selection  # the latest wins; the wait starts over
            self._settle_timer.start()
            return
        self._settle_timer.stop()
        self._unsettled = None
        self.ctx.selectionChanged.emit(selection)

    def _settle_selection(self) -> None:
        selection, self._unsettled = self._unsettled, None
        if selection is not None and selection is self.ctx.selection and not self._closing:
            self.ctx.selectionChanged.emit(selection)

    def settle_selection(self) -> None:
        """Start the pending selection's jobs now (scripts and tests that cannot wait SETTLE_MS)."""
        if self._settle_timer.isActive():
            self._settle_timer.stop()
            self._settle_selection()

    # ---------------------------------------------------------------- models

    def load_models(self, keys: list[str]) -> None:
        """Load the ticked models on the engine thread; the strip and panels update when they are."""
        keys = list(keys)
        self._models_ready = False

        def on_event(event):
            if isinstance(event, Finished):
                self._on_models(*event.result)

        self.engine.submit("models", bind_request(load_models_job, tuple(keys)),
                           on_event=on_event, with_engine=True,
                           label=f"loading {len(keys)} model{'s' if len(keys) != 1 else ''}")

    def _on_models(self, loaded: list, errors: dict) -> None:
        manifest = {entry.name: entry.manifest for entry in catalogue()}
        self.ctx.models = [ModelInfo(key, meta, "file" if Path(key).is_absolute() else "zoo",
                                     manifest.get(key, {})) for key, meta in loaded]
        for key in self.model_picker.keys():
            self.model_picker.set_item_error(key, errors.get(key))
        if errors:
            text = "; ".join(f"{Path(k).name}: {v}" for k, v in errors.items())
            self.banner.show_message("error", f"Could not load {len(errors)} model(s) — {text}")
            for key in errors:  # a bad file is dropped from the list; a bad zoo entry stays, unticked
                if Path(key).is_absolute():
                    self.model_picker.remove(key)
        self._models_ready = True
        self.ctx.modelsChanged.emit(list(self.ctx.models))
        self._check_first_predictions("original")

    def _load_wanted_models(self, keys: list) -> None:
        missing = self.model_picker.check_keys([str(k) for k in keys])
        if missing:
            self.banner.show_message("error", f"Not in the model list: {', '.join(missing)}")

    # ---------------------------------------------------------------- jobs and status

    def current_panel(self) -> QWidget | None:
        scroll = self.tabs.currentWidget()
        return scroll.widget() if isinstance(scroll, QScrollArea) else scroll

    def request_run(self) -> None:
        panel = self.current_panel()
        if hasattr(panel, "run"):
            panel.run()
        self.ctx.runRequested.emit()

    def cancel_jobs(self, quietly: bool = False) -> None:
        """Stop the running jobs (Esc, Cancel). ``quietly``: the app moved on (a deck step), so the status
        bar does not report them as cancelled."""
        cancelled = self.engine.cancel_all()
        if quietly:
            self.status.end_quietly(cancelled)
        self.ctx.cancelRequested.emit()

    def _on_job_ended(self, handle) -> None:
        if handle.state == "finished" and handle.user_cancellable and not handle.slot.startswith("strip-"):
            self.banner.job_succeeded()

    def _on_job_failed(self, handle, failure) -> None:
        if handle.slot == "dataset":
            self.dataset_picker.show_choice(self._dataset_key)
            self.dataset_picker.source.setText("")
            if self.ctx.dataset is not None:
                d = self.ctx.dataset
                self.dataset_picker.source.setText(f"{len(d):,} images · {style.dataset_source(d)}")
        self.banner.show_message("error", f"{handle.label} failed: {failure.message}", failure.details,
                                 clears_on_success=True)

    def _check_first_predictions(self, slot: str) -> None:
        if (slot == "original" and not self._first_done and self._models_ready
                and self.ctx.selection is not None and self.strip.has_all_predictions("original")):
            self._first_done = True
            self.firstPredictions.emit()

    # ---------------------------------------------------------------- closing

    def save_settings(self) -> None:
        s = self.settings
        if not self.isFullScreen():
            s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/centre_split", self.centre_split.saveState())
        s.setValue("dataset/choice", self._dataset_key)
        for key, root in self._dataset_roots.items():
            s.setValue(f"dataset/root/{key}", root)
        s.setValue("models/checked", self.model_picker.checked_keys())
        s.setValue("models/files", self.model_picker.opened_files())
        s.setValue("gallery/index", self.gallery.selected_index() if self.gallery.selected_index() is not None else 0)
        filter_value = self.gallery.class_filter()
        s.setValue("gallery/class_filter", "" if filter_value is None else int(filter_value))
        s.setValue("view/lecture", self.ctx.lecture_mode)
        s.setValue("view/gallery", self.gallery_action.isChecked())
        s.setValue("view/strip", self.strip_action.isChecked())
        s.setValue(CLUSTER_ADDRESS.key, self.ctx.cluster_address)
        s.setValue(CLUSTER_WORKERS.key, self.ctx.cluster_workers)
        for title, panel in self.panels.items():
            if hasattr(panel, "save_settings"):
                s.beginGroup(f"panels/{title}")
                try:
                    panel.save_settings(s)
                finally:
                    s.endGroup()
        s.sync()

    def closeEvent(self, event) -> None:
        if not self._closing:
            self._closing = True
            self._settle_timer.stop()
            try:
                self.save_settings()
            finally:
                self.status.stop()
                self._stop_engine()
                if self.ctx.lecture_mode:  # the application font is process-wide: hand it back unscaled
                    font = QFont(QApplication.instance().font())
                    font.setPointSizeF(style.base_point_size())
                    QApplication.instance().setFont(font)
        super().closeEvent(event)

    def _stop_engine(self) -> None:
        """Cancel every job and wait for the engine thread at most CLOSE_WAIT_MS: a job stuck inside one
        long chunk is left to end by itself (engine_thread's "Shutdown"), the window closes anyway."""
        if self.engine.thread_running:
            self.engine.shutdown(timeout_ms=CLOSE_WAIT_MS)
