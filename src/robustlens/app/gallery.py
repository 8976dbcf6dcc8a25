"""The dataset gallery: thumbnails with true labels, a class filter; clicking selects.

Thumbnails are made only when the view asks for them (the visible ones) and kept in a bounded cache,
so 10,000 images open at once and scroll smoothly.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QPalette, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QListView,
                               QStyle, QStyledItemDelegate, QVBoxLayout, QWidget)

from .imaging import to_qimage
from .style import dataset_source

THUMBNAIL_CACHE = 3000
DatasetIndexRole = Qt.ItemDataRole.UserRole + 1


class GalleryModel(QAbstractListModel):
    """The (filtered) images of a dataset; row r shows dataset image ``rows[r]``."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._images = np.zeros((0, 1, 1, 1), dtype=np.float32)
        self._labels = np.zeros(0, dtype=np.int64)
        self._classes: tuple[str, ...] = ()
        self._source = ""
        self.rows = np.zeros(0, dtype=np.int64)
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self.thumbnail_size = 56

    def set_dataset(self, dataset, class_filter: int | None = None) -> None:
        self.beginResetModel()
        self._images = dataset.images.numpy() if hasattr(dataset.images, "numpy") else np.asarray(dataset.images)
        self._labels = np.asarray(dataset.labels)
        self._classes = tuple(dataset.classes)
        self._source = f"{dataset.name} {dataset.split}"
        self._cache.clear()
        self.rows = self._filtered(class_filter)
        self.endResetModel()

    def set_filter(self, class_filter: int | None) -> None:
        self.beginResetModel()
        self.rows = self._filtered(class_filter)
        self.endResetModel()

    def set_thumbnail_size(self, size: int) -> None:
        self.beginResetModel()
        self.thumbnail_size = size
        self._cache.clear()
        self.endResetModel()

    def _filtered(self, class_filter: int | None) -> np.ndarray:
        if class_filter is None:
            return np.arange(len(self._labels))
        return np.flatnonzero(self._labels == class_filter)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self._labels, minlength=len(self._classes)) if len(self._labels) else np.zeros(0)

    def row_of(self, dataset_index: int) -> int | None:
        hits = np.flatnonzero(self.rows == dataset_index)
        return int(hits[0]) if len(hits) else None

    # -- Qt model

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            return self._classes[self._labels[i]] if len(self._classes) else str(self._labels[i])
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(i)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{self._source} #{i}\ntrue class: {self._classes[self._labels[i]]}"
        if role == DatasetIndexRole:
            return i
        return None

    def _thumbnail(self, i: int) -> QPixmap:
        pixmap = self._cache.get(i)
        if pixmap is not None:
            self._cache.move_to_end(i)
            return pixmap
        image = to_qimage(self._images[i])
        pixmap = QPixmap.fromImage(image.scaled(self.thumbnail_size, self.thumbnail_size,
                                                Qt.AspectRatioMode.KeepAspectRatio,
                                                Qt.TransformationMode.FastTransformation))
        self._cache[i] = pixmap
        if len(self._cache) > THUMBNAIL_CACHE:
            self._cache.popitem(last=False)
        return pixmap


class ThumbnailDelegate(QStyledItemDelegate):
    """A thumbnail with its true class under it, using the whole grid cell for the text."""

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self.view = view

    def sizeHint(self, option, index) -> QSize:
        return self.view.gridSize() - QSize(2, 2)

    def paint(self, painter, option, index) -> None:
        rect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect.adjusted(1, 1, -1, -1), palette.color(QPalette.ColorRole.Highlight))
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        metrics = option.fontMetrics
        if pixmap is not None:
            x = rect.x() + (rect.width() - pixmap.width()) // 2
            painter.drawPixmap(x, rect.y() + 3, pixmap)
        text_rect = QRect(rect.x() + 2, rect.bottom() - metrics.height() - 2, rect.width() - 4, metrics.height())
        text = metrics.elidedText(str(index.data(Qt.ItemDataRole.DisplayRole)), Qt.TextElideMode.ElideRight,
                                  text_rect.width())
        painter.setPen(palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, text)


class GalleryView(QListView):
    """The thumbnail grid; remembers whether the current image is being moved by a key."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.keyboard = False

    def keyPressEvent(self, event) -> None:
        self.keyboard = True  # arrows, Home, PgDown: a held key steps 30 times a second
        try:
            super().keyPressEvent(event)
        finally:
            self.keyboard = False


class Gallery(QWidget):
    """Class filter above a grid of thumbnails. Emits the dataset index of the image chosen:
    ``indexSelected`` for a click (and ``select(..., emit=True)``), ``indexStepped`` for a step
    with the keyboard (``step``, the arrows), which the window lets settle before starting jobs."""

    indexSelected = Signal(int)
    indexStepped = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = GalleryModel(self)
        self.filter = QComboBox()
        self.filter.setToolTip("Show only the images of one true class")
        self.count = QLabel("")
        self.count.setObjectName("caption")
        self.view = GalleryView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(500)
        self.view.setWrapping(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setModel(self.model)
        self.view.setItemDelegate(ThumbnailDelegate(self.view))
        self._dataset = None
        self._quiet = False  # select(..., emit=False) moves the current image without indexSelected
        self._apply_sizes(56)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.filter.currentIndexChanged.connect(self._on_filter)
        self.filmstrip = False
        self.top = QWidget()
        top = QHBoxLayout(self.top)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel("Class"))
        top.addWidget(self.filter, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.top)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count)

    def _apply_sizes(self, thumbnail: int) -> None:
        self._thumbnail = thumbnail
        self.model.set_thumbnail_size(thumbnail)
        self.view.setIconSize(QSize(thumbnail, thumbnail))
        metrics = self.view.fontMetrics()
        names = self._dataset.classes if getattr(self, "_dataset", None) is not None else ("Ankle boot",)
        label_width = max(metrics.horizontalAdvance(name) for name in names) + 8
        grid = QSize(max(thumbnail + 10, label_width), thumbnail + metrics.height() + 10)
        self.view.setGridSize(grid)
        self.view.setSpacing(2)
        if getattr(self, "filmstrip", False):
            self.view.setFixedHeight(grid.height() + 2 * self.view.frameWidth() + 4)
        else:
            self.view.setMinimumHeight(0)
            self.view.setMaximumHeight(16777215)

    def set_filmstrip(self, on: bool) -> None:
        """One row of thumbnails, left to right (lecture mode, under the tabs): no filter, no count,
        no scroll bar — PgDown / PgUp and the arrows move along it."""
        self.filmstrip = bool(on)
        self.top.setVisible(not on)
        self.count.setVisible(not on)
        self.view.setFlow(QListView.Flow.LeftToRight if on else QListView.Flow.TopToBottom)
        self.view.setWrapping(not on)
        off, auto = Qt.ScrollBarPolicy.ScrollBarAlwaysOff, Qt.ScrollBarPolicy.ScrollBarAsNeeded
        self.view.setHorizontalScrollBarPolicy(off)
        self.view.setVerticalScrollBarPolicy(off if on else auto)
        self.view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        selected = self.selected_index()
        self._apply_sizes(self._thumbnail)  # (resets the model: the selection is put back below)
        if selected is not None:
            self.select(selected, emit=False)
            self.view.scrollTo(self.view.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)

    def set_thumbnail_size(self, size: int) -> None:
        current = self.selected_index()
        self._apply_sizes(size)
        self._update_count()
        if current is not None:
            self.select(current, emit=False)

    def set_dataset(self, dataset) -> None:
        self._dataset = dataset
        self.model.set_dataset(dataset)
        self._apply_sizes(self._thumbnail)
        counts = self.model.class_counts()
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItem(f"All classes ({len(dataset):,})", None)
        for i, name in enumerate(dataset.classes):
            self.filter.addItem(f"{name} ({int(counts[i]):,})", i)
        self.filter.blockSignals(False)
        self._update_count()

    def _on_filter(self, _row: int) -> None:
        selected = self.selected_index()
        self.model.set_filter(self.filter.currentData())
        self._update_count()
        if selected is not None:
            self.select(selected, emit=False)

    def set_class_filter(self, class_index: int | None) -> None:
        position = self.filter.findData(class_index)
        self.filter.setCurrentIndex(max(0, position))

    def class_filter(self) -> int | None:
        return self.filter.currentData()

    def _update_count(self) -> None:
        if self._dataset is None:
            self.count.setText("")
            return
        shown = len(self.model.rows)
        self.count.setText(f"{shown:,} of {len(self._dataset):,} images · {dataset_source(self._dataset)}")

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and not self._quiet:
            index = int(self.model.data(current, DatasetIndexRole))
            (self.indexStepped if self.view.keyboard else self.indexSelected).emit(index)

    def selected_index(self) -> int | None:
        current = self.view.currentIndex()
        return int(self.model.data(current, DatasetIndexRole)) if current.isValid() else None

    def select(self, dataset_index: int, emit: bool = True) -> bool:
        """Select (and scroll to) a dataset image; False when the class filter hides it."""
        row = self.model.row_of(dataset_index)
        if row is None:
            return False
        index = self.model.index(row)
        self._quiet = not emit
        try:
            self.view.setCurrentIndex(index)
        finally:
            self._quiet = False
        self.view.scrollTo(index)
        return True

    def clear_selection(self) -> None:
        """No dataset image is selected (the window shows an opened file); emits nothing."""
        self.view.clearSelection()
        self.view.setCurrentIndex(QModelIndex())

    def step(self, delta: int) -> None:
        """Select the next (delta=1) or previous (delta=-1) image of the gallery."""
        rows = len(self.model.rows)
        if not rows:
            return
        current = self.view.currentIndex()
        row = (current.row() + delta) % rows if current.isValid() else 0
        index = self.model.index(row)
        self.view.keyboard, stepping = True, self.view.keyboard
        try:
            self.view.setCurrentIndex(index)
        finally:
            self.view.keyboard = stepping
        self.view.scrollTo(index)
