"""What a panel sees of the app: the selection, the dataset, the loaded models, the engine, the strip.

A panel gets one :class:`AppContext` (``ctx``) in its constructor and talks to the rest of the
window only through it (see ``app/README.md``, "The panel contract").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from robustlens.engine.jobs import Finished
from robustlens.engine.model_cache import PredictionsRequest, predictions_job
from robustlens.engine.smoothing import ABSTAIN

from .engine_thread import Engine, JobHandle, bind_request

# The strip's slots, in display order: key -> (title, what fills it and where)
STRIP_SLOTS: dict[str, tuple[str, str]] = {
    "original": ("Original", "Click a thumbnail, or open or drop an image file"),
    "robust": ("Robust reconstruction", "Features tab → Reconstruct (F5): inverts the robust model's representation"),
    "non_robust": ("Non-robust reconstruction",
                   "Features tab → Reconstruct (F5): inverts the standard model's representation"),
    "adversarial": ("Adversarial", "Attack tab → Attack (F5): PGD on this image"),
    "perturbation": ("Perturbation (amplified)", "Attack tab → Attack (F5): adversarial − original"),
}


@dataclass(frozen=True)
class Selection:
    """The image the window is looking at.

    ``image``: (1, C, H, W) float32 [0,1] tensor. ``index``: position in ``ctx.dataset`` (None for a
    file the user opened). ``label``: true class index (None when unknown). ``source``: a short text
    for captions ("Fashion-MNIST test #17", "photo.jpg"); ``note``: how a file was converted.
    """
    image: Any
    label: int | None
    index: int | None
    source: str
    note: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """A model loaded on the engine thread, as the GUI knows it (no weights here)."""
    key: str           # what ModelCache.model(key) takes: a zoo name or a file path
    meta: Any          # engine.models.ModelMeta: name, arch, dataset, classes, kind, norm, eps, sigma, input_shape
    source: str = "zoo"  # "zoo" or "file"
    manifest: dict = field(default_factory=dict)  # the zoo manifest's entry (accuracies, command), if any

    @property
    def label(self) -> str:
        """For legends and tooltips: 'linf-robust (L∞ ε=0.1)', 'noise-0.25 (σ=0.25)', a file's own name."""
        from .style import model_label

        return model_label(self)


@dataclass(frozen=True)
class CertifiedImage:
    """A finished CERTIFY that other panels may draw (the Geometry tab's disk): which image, which model."""
    selection: Selection
    model_key: str
    certificate: Any   # engine.smoothing.Certificate


class AppContext(QObject):
    """State and services shared by the window and its panels. Lives on the GUI thread."""

    selectionChanged = Signal(object)    # Selection (or None): the selection settled; start its jobs now
    selectionShown = Signal(object)      # Selection (or None), at once on every selection, a held PgDown's
    #                                      too: only cheap drawing here (the strip's original image)
    datasetChanged = Signal(object)      # engine.data.Dataset
    modelsChanged = Signal(list)         # list[ModelInfo], the loaded models in display order
    runRequested = Signal()              # F5 / Ctrl+Return: the current tab should run its job
    cancelRequested = Signal()           # Esc / cancel button (the engine jobs are already cancelled)
    lectureModeChanged = Signal(bool)
    stripChanged = Signal(str)           # a strip slot's content changed (slot key)
    message = Signal(str, str)           # (level "info"|"error", text): shown in the window's banner
    exportableAdded = Signal(str, object)  # (name, widget): the window gives it a right-click Export…
    certified = Signal(object)           # CertifiedImage: a CERTIFY finished (the Certify tab publishes it)
    modelsWanted = Signal(list)          # model keys a panel asks to load (the window ticks and loads them)
    openModelWanted = Signal()           # a panel asks for File → Open model…

    def __init__(self, engine: Engine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.dataset = None
        self.selection: Selection | None = None
        self.models: list[ModelInfo] = []
        self.lecture_mode = False
        self.strip_images: dict[str, Any] = {}   # slot key -> (1, C, H, W) array shown there
        self.window: QWidget | None = None       # the main window (for dialogs' parents)
        self.strip = None                        # the window's app.strip.ImageStrip (set before panels exist)
        self._exportables: list[tuple[str, QWidget]] = []
        self.last_certificate: CertifiedImage | None = None
        self.settings = None                     # the window's QSettings (remembered folders)
        self.cluster_address = ""                # Run → Cluster…: "" here, "local", or a Ray address
        self.cluster_workers = 0                 # Ray workers, 0: as many as the cluster fits

    # ---------------------------------------------------------------- state

    def cluster_options(self):
        """Where the long experiments run: a ``cluster.ClusterOptions`` for Ray, None for here."""
        from .cluster_dialog import cluster_options

        return cluster_options(self.cluster_address, self.cluster_workers)

    @property
    def classes(self) -> tuple[str, ...]:
        if self.dataset is not None:
            return tuple(self.dataset.classes)
        return tuple(self.models[0].meta.classes) if self.models else ()

    def class_name(self, index: int | None) -> str:
        """A class index as the panels write it: its name, "abstain" for the smoothed classifier's
        abstention, "—" for none, "class N" past the dataset's classes (a model with more outputs)."""
        if index is None:
            return "—"
        if index == ABSTAIN:
            return "abstain"
        classes = self.classes
        return classes[index] if 0 <= index < len(classes) else f"class {index}"

    def model_keys(self) -> list[str]:
        return [m.key for m in self.models]

    def models_of_kind(self, kind: str) -> list[ModelInfo]:
        """Loaded models of a kind: "standard", "adversarial" or "noise"."""
        return [m for m in self.models if m.meta.kind == kind]

    # ---------------------------------------------------------------- engine jobs

    def submit(self, slot: str, factory: Callable, *, on_event: Callable[[Any], None] | None = None,
               label: str = "", keep_every: Iterable[str] = ()) -> JobHandle:
        """Run ``factory(cancel)`` (an engine job, engine/jobs.py) on the engine thread; latest wins."""
        return self.engine.submit(slot, factory, on_event=on_event, label=label, keep_every=keep_every)

    def submit_with_models(self, slot: str, job: Callable, *, on_event: Callable[[Any], None] | None = None,
                           label: str = "", keep_every: Iterable[str] = ()) -> JobHandle:
        """Run ``job(engine, cancel)`` on the engine thread, where ``engine.model(key)`` /
        ``engine.models(keys)`` give cached models on the engine's device and ``engine.device`` the device."""
        return self.engine.submit(slot, job, on_event=on_event, label=label, keep_every=keep_every,
                                  with_engine=True)

    def predict(self, slot: str, images: dict[str, Any], on_result: Callable[[dict], None],
                keys: list[str] | None = None, label: str = "predicting") -> JobHandle:
        """Softmax probabilities of the loaded models (or ``keys``) on ``images`` ({name: (N,C,H,W)}).
        ``on_result({image name: {model key: (N, classes) array or a string saying why not}})``."""
        request = PredictionsRequest(dict(images), tuple(self.model_keys() if keys is None else keys))

        def on_event(event):
            if isinstance(event, Finished):
                on_result(event.result)

        return self.submit_with_models(slot, bind_request(predictions_job, request), on_event=on_event, label=label)

    def cancel(self, slot: str) -> None:
        self.engine.cancel(slot)

    def load_models(self, keys: list[str]) -> None:
        """Load these models (zoo names or files) beside the loaded ones; ``modelsChanged`` follows."""
        self.modelsWanted.emit(list(keys))

    def open_model_file(self) -> None:
        """Let the user pick a checkpoint (File → Open model…)."""
        self.openModelWanted.emit()

    def publish_certificate(self, selection: Selection, model_key: str, certificate: Any) -> None:
        """A CERTIFY finished: remember it and tell the panels that draw certificates."""
        self.last_certificate = CertifiedImage(selection, model_key, certificate)
        self.certified.emit(self.last_certificate)

    def certificate_for(self, selection: Selection | None, model_key: str) -> Any:
        """The last certificate when it is for this very image and model, else None."""
        last = self.last_certificate
        if last is None or selection is None or last.selection is not selection or last.model_key != model_key:
            return None
        return last.certificate

    def last_folder(self, kind: str) -> str:
        """The folder the user last chose for ``kind`` ("images", "models", "export", "results")."""
        return str(self.settings.value(f"paths/{kind}", "") or "") if self.settings is not None else ""

    def remember_folder(self, kind: str, folder: str) -> None:
        if self.settings is not None:
            self.settings.setValue(f"paths/{kind}", str(folder))

    # ---------------------------------------------------------------- the strip

    def set_strip_image(self, slot: str, image: Any, caption: str = "", *, live: bool = False,
                        predictions: dict | None = None) -> None:
        """Show ``image`` ((C,H,W) or (1,C,H,W), [0,1]; for "perturbation": δ itself, any sign) in a
        strip slot. ``caption``: one line under the title (settings, ‖δ‖, step). ``live=True`` while a
        job is still changing it (no predictions computed); otherwise the strip asks the engine for
        every loaded model's predictions, unless ``predictions`` ({model key: (classes,) array}) are given."""
        if slot not in STRIP_SLOTS or slot == "original":
            raise ValueError(f"unknown strip slot {slot!r}: use one of {', '.join(list(STRIP_SLOTS)[1:])}")
        self.strip.set_image(slot, image, caption, live=live, predictions=predictions)

    def clear_strip_image(self, slot: str) -> None:
        self.strip.clear(slot)

    # ---------------------------------------------------------------- the window

    def register_exportable(self, name: str, widget: QWidget) -> None:
        """List a plot or image widget in File → Export panel… and give it a right-click "Export…"
        (PNG, or SVG with plots kept as vectors)."""
        self._exportables.append((name, widget))
        self.exportableAdded.emit(name, widget)

    def exportables(self) -> list[tuple[str, QWidget]]:
        return [(name, w) for name, w in self._exportables if _alive(w)]

    def info(self, text: str) -> None:
        self.message.emit("info", text)

    def error(self, text: str) -> None:
        self.message.emit("error", text)


def _alive(widget: QWidget) -> bool:
    try:
        widget.objectName()
        return True
    except RuntimeError:  # the C++ object is gone
        return False
