"""The dataset picker and the model picker (left column of the window)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QVBoxLayout, QWidget)

from robustlens.engine.models import ModelError, zoo_dir
from robustlens.engine.published import split_model_key
from robustlens.engine.zoo import ZooEntry, catalogue

from .controls import caption_label, push_button

# (key, label, dataset name, split, needs a folder)
DATASET_CHOICES = [
    ("fashion-mnist:test", "Fashion-MNIST · test (built in)", "fashion-mnist", "test", False),
    ("fashion-mnist:train", "Fashion-MNIST · train", "fashion-mnist", "train", False),
    ("mnist:test", "MNIST · test (from a folder)", "mnist", "test", True),
    ("cifar10:test", "CIFAR-10 · test (from a folder)", "cifar10", "test", True),
    ("folder:test", "Image folder… (one subfolder per class)", "folder", "test", True),
]


def _file_path(key: str) -> str:
    """The file of a model key ``PATH::arch=NAME`` (a malformed stored key is taken as a path)."""
    try:
        return split_model_key(key)[0]
    except ModelError:
        return key


def _file_label(key: str) -> str:
    """A model file's list label: its name, and the architecture / σ its key adds (``ckpt.pt · cifar_resnet110``)."""
    try:
        path, arch, sigma = split_model_key(key)
    except ModelError:
        return Path(key).name
    extras = [part for part in (arch, f"σ={sigma:g}" if sigma is not None else None) if part]
    return " · ".join([Path(path).name] + extras)


def _zoo_tooltip(entry: ZooEntry) -> str:
    """What the zoo catalogue says about a model: kind, clean and PGD-robust accuracy."""
    if not entry.listed:
        return f"{entry.name}\n(not yet in the zoo manifest)"
    info = entry.manifest
    kind = entry.kind or ""
    if kind == "adversarial":
        kind += f", {str(entry.norm or '').replace('linf', 'L∞').replace('l2', 'L2')} ε={entry.eps}"
    elif kind == "noise":
        kind += f", σ={entry.sigma}"
    lines = [entry.name, f"kind: {kind}"]
    if isinstance(info.get("clean_accuracy"), (int, float)):
        lines.append(f"clean test accuracy: {info['clean_accuracy']:.1%}")
    for norm, table in (info.get("robust_accuracy") or {}).items():
        cells = ", ".join(f"ε={eps}: {acc:.0%}" for eps, acc in table.items() if isinstance(acc, (int, float)))
        lines.append(f"PGD {norm.replace('linf', 'L∞').replace('l2', 'L2')} robust accuracy: {cells}")
    return "\n".join(lines)


class DatasetPicker(QWidget):
    """A combo box of datasets; the ones read from a folder get a "Folder…" button."""

    chosen = Signal(str, str, str, object)   # name, split, choice key, root (or None)
    folderWanted = Signal(str)               # choice key: ask the user for a folder

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        for key, label, *_ in DATASET_CHOICES:
            self.combo.addItem(label, key)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Choose the folder that holds this dataset's files")
        self.source = caption_label()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.source)
        self.combo.activated.connect(self._on_activated)
        self.folder_button.clicked.connect(lambda: self.folderWanted.emit(self.combo.currentData()))
        self._update_button()

    def choice(self, key: str) -> tuple:
        return next(c for c in DATASET_CHOICES if c[0] == key)

    def _on_activated(self, _row: int) -> None:
        self._update_button()
        key = self.combo.currentData()
        if self.choice(key)[4]:
            self.folderWanted.emit(key)
        else:
            _, _, name, split, _ = self.choice(key)
            self.chosen.emit(name, split, key, None)

    def _update_button(self) -> None:
        self.folder_button.setVisible(bool(self.choice(self.combo.currentData())[4]))

    def show_choice(self, key: str) -> None:
        position = self.combo.findData(key)
        if position >= 0:
            self.combo.setCurrentIndex(position)
        self._update_button()


class ModelPicker(QWidget):
    """Check boxes for the built-in models and opened model files; "Open model…" adds a file."""

    changed = Signal(list)          # the checked keys, in list order
    openWanted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("models")
        self.note = caption_label()
        self.open_button = push_button("Open model…", "Load a checkpoint file (.pt, .pth, TorchScript)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.note)
        layout.addWidget(self.open_button)
        self.open_button.clicked.connect(self.openWanted)
        self.list.itemChanged.connect(self._on_item_changed)
        self._quiet = False
        self._last_checked: list[str] = []
        self._watcher = QFileSystemWatcher(self)
        if zoo_dir().is_dir():
            self._watcher.addPath(str(zoo_dir()))
        self._watcher.directoryChanged.connect(lambda _p: self.refresh_zoo())

    def keys(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def checked_keys(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def _add(self, key: str, text: str, tooltip: str, checked: bool) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setToolTip(tooltip)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.list.addItem(item)
        return item

    def populate(self, checked: list[str] | None, files: list[str]) -> None:
        """Fill the list: the zoo, then ``files``. ``checked=None`` ticks every built-in model."""
        self._quiet = True
        try:
            self.list.clear()
            for entry in catalogue():
                self._add(entry.name, entry.short_name, _zoo_tooltip(entry),
                          checked is None or entry.name in checked)
            for path in files:
                if Path(_file_path(path)).exists() and path not in self.keys():
                    self._add(path, _file_label(path), path, checked is not None and path in checked)
        finally:
            self._quiet = False
        self._last_checked = self.checked_keys()
        self._update_note()

    def refresh_zoo(self) -> None:
        """Add zoo models whose files appeared since (unticked unless none was ticked at all)."""
        known = set(self.keys())
        tick = not self.checked_keys()
        added = []
        self._quiet = True
        try:
            zoo_count = sum(1 for k in known if not Path(k).is_absolute())
            for entry in catalogue():
                if entry.name not in known:
                    item = self._add(entry.name, entry.short_name, _zoo_tooltip(entry), tick)
                    # keep the zoo above opened files
                    self.list.takeItem(self.list.row(item))
                    self.list.insertItem(zoo_count, item)
                    zoo_count += 1
                    added.append(entry.name)
        finally:
            self._quiet = False
        self._update_note()
        if added and tick:
            self._last_checked = self.checked_keys()
            self.changed.emit(self._last_checked)

    def add_file(self, path: str) -> None:
        """Add (or re-tick) an opened model file."""
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == path:
                self.list.item(i).setCheckState(Qt.CheckState.Checked)
                return
        self._quiet = True
        try:
            self._add(path, _file_label(path), path, True)
        finally:
            self._quiet = False
        self._update_note()
        self._last_checked = self.checked_keys()
        self.changed.emit(self._last_checked)

    def check_keys(self, keys: list[str]) -> list[str]:
        """Tick these models (zoo names, or files, which are added); returns the keys it could not find."""
        self.refresh_zoo()
        missing = []
        self._quiet = True
        try:
            for key in keys:
                items = [self.list.item(i) for i in range(self.list.count())
                         if self.list.item(i).data(Qt.ItemDataRole.UserRole) == key]
                if items:
                    items[0].setCheckState(Qt.CheckState.Checked)
                elif Path(key).is_absolute() and Path(_file_path(key)).exists():
                    self._add(key, _file_label(key), key, True)
                else:
                    missing.append(key)
        finally:
            self._quiet = False
        self._update_note()
        if self.checked_keys() != self._last_checked:
            self._last_checked = self.checked_keys()
            self.changed.emit(self._last_checked)
        return missing

    def remove(self, key: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == key:
                self.list.takeItem(i)
                break
        self._last_checked = self.checked_keys()
        self._update_note()

    def set_item_error(self, key: str, message: str | None) -> None:
        self._quiet = True
        try:
            self._set_item_error(key, message)
        finally:
            self._quiet = False

    def _set_item_error(self, key: str, message: str | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                base = item.toolTip().split("\n\n⚠")[0]
                item.setToolTip(base + (f"\n\n⚠ {message}" if message else ""))
                item.setForeground(Qt.GlobalColor.red if message else self.palette().text())

    def opened_files(self) -> list[str]:
        return [k for k in self.keys() if Path(k).is_absolute()]  # zoo keys are names, files absolute paths

    def _on_item_changed(self, _item) -> None:
        # itemChanged also fires for text, tooltip and colour changes: only ticks matter
        if not self._quiet and self.checked_keys() != self._last_checked:
            self._update_note()
            self._last_checked = self.checked_keys()
            self.changed.emit(self._last_checked)

    def _fit_list(self) -> None:
        rows = max(3, min(8, self.list.count()))
        row_height = self.list.sizeHintForRow(0) if self.list.count() else self.list.fontMetrics().height() + 4
        self.list.setFixedHeight(rows * row_height + 2 * self.list.frameWidth() + 4)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:
            QTimer.singleShot(0, self._fit_list)  # after the list has taken the new font

    def _update_note(self) -> None:
        self._fit_list()
        if not catalogue():
            self.note.setText(f"No built-in models found in {zoo_dir()} yet: use Open model… "
                              "(the list updates when model files appear).")
        elif not self.checked_keys():
            self.note.setText("Tick models to see their predictions.")
        else:
            self.note.setText("")
