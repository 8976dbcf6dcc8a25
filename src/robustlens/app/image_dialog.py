"""File → Open image…: how to make the dataset's small square image of your own picture — the whole
picture squashed, its centre square, or a box dragged on it; inverted or not (the datasets draw
white on black); and its true class, if you know it. The conversion itself is the engine's
(``engine.data.load_image_file(path, shape, crop=, invert=)``)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImageReader, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QRadioButton, QVBoxLayout, QWidget)

PREVIEW = 360


@dataclass(frozen=True)
class ImageChoices:
    """What the dialog chose: ``crop`` None | "centre" | (left, top, right, bottom) pixels of the
    upright picture; ``invert``; ``label`` the true class index or None."""
    crop: object
    invert: bool
    label: int | None


class CropView(QWidget):
    """The picture, scaled to fit, with the crop box drawn over it; dragging draws a new box."""

    boxDrawn = Signal()

    def __init__(self, pixmap: QPixmap, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pixmap = pixmap
        self.box: QRect | None = None        # in the picture's pixels
        self._drag_from: QPoint | None = None
        self.setMinimumSize(QSize(PREVIEW, PREVIEW))
        self.setCursor(Qt.CursorShape.CrossCursor)

    def _frame(self) -> QRectF:
        size = self.pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF((self.width() - size.width()) / 2, (self.height() - size.height()) / 2,
                      size.width(), size.height())

    def _to_picture(self, point) -> QPoint:
        frame = self._frame()
        scale = self.pixmap.width() / max(1.0, frame.width())
        x = min(max(0.0, (point.x() - frame.left()) * scale), self.pixmap.width())
        y = min(max(0.0, (point.y() - frame.top()) * scale), self.pixmap.height())
        return QPoint(int(round(x)), int(round(y)))

    def set_box(self, box: QRect | None) -> None:
        self.box = box
        self.update()

    def mousePressEvent(self, event) -> None:
        self._drag_from = self._to_picture(event.position())

    def mouseMoveEvent(self, event) -> None:
        if self._drag_from is not None:
            self.set_box(QRect(self._drag_from, self._to_picture(event.position())).normalized())

    def mouseReleaseEvent(self, event) -> None:
        if self._drag_from is not None:
            self.set_box(QRect(self._drag_from, self._to_picture(event.position())).normalized())
            self._drag_from = None
            if self.box is not None and self.box.width() > 1 and self.box.height() > 1:
                self.boxDrawn.emit()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        frame = self._frame()
        painter.drawPixmap(frame.toRect(), self.pixmap)
        if self.box is None:
            return
        scale = frame.width() / max(1, self.pixmap.width())
        shown = QRectF(frame.left() + self.box.left() * scale, frame.top() + self.box.top() * scale,
                       self.box.width() * scale, self.box.height() * scale)
        shade = QColor(0, 0, 0, 120)
        for part in (QRectF(frame.left(), frame.top(), frame.width(), shown.top() - frame.top()),
                     QRectF(frame.left(), shown.bottom(), frame.width(), frame.bottom() - shown.bottom()),
                     QRectF(frame.left(), shown.top(), shown.left() - frame.left(), shown.height()),
                     QRectF(shown.right(), shown.top(), frame.right() - shown.right(), shown.height())):
            painter.fillRect(part, shade)
        painter.setPen(QPen(QColor("#E69F00"), 2))
        painter.drawRect(shown)


class OpenImageDialog(QDialog):
    """Crop, invert and true class for one picture; ``choices()`` once accepted."""

    def __init__(self, path: str, classes, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open image")
        reader = QImageReader(path)
        reader.setAutoTransform(True)  # upright per EXIF, as the engine reads it: the box's pixels agree
        image = reader.read()
        self.readable = not image.isNull()
        self.problem = reader.errorString() if not self.readable else ""
        self.view = CropView(QPixmap.fromImage(image) if self.readable else QPixmap(1, 1))
        self.whole = QRadioButton("whole picture, squashed to a square")
        self.centre = QRadioButton("centre square")
        self.dragged = QRadioButton("the box dragged on the picture")
        self.dragged.setEnabled(False)
        group = QButtonGroup(self)
        for button in (self.whole, self.centre, self.dragged):
            group.addButton(button)
        square = self.readable and image.width() == image.height()
        (self.whole if square else self.centre).setChecked(True)
        self.invert = QCheckBox("invert (the datasets draw light on dark)")
        self.invert.setChecked(self.readable and _mostly_light(image))
        self.label_box = QComboBox()
        self.label_box.addItem("unknown", None)
        for index, name in enumerate(classes or ()):
            self.label_box.addItem(name, index)
        info = QLabel(f"{image.width()}×{image.height()} pixels" if self.readable else self.problem)
        info.setObjectName("caption")
        form = QFormLayout()
        crop_column = QVBoxLayout()
        for button in (self.whole, self.centre, self.dragged):
            crop_column.addWidget(button)
        form.addRow("Crop", crop_column)
        form.addRow("", self.invert)
        form.addRow("True class", self.label_box)
        form.addRow("", info)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.view, 1)
        row.addLayout(form)
        layout = QVBoxLayout(self)
        layout.addLayout(row, 1)
        layout.addWidget(buttons)
        self.view.boxDrawn.connect(self._on_box)
        for button in (self.whole, self.centre, self.dragged):
            button.toggled.connect(lambda _on: self._show_crop())
        self._show_crop()

    def _on_box(self) -> None:
        self._box = self.view.box
        self.dragged.setEnabled(True)
        self.dragged.setChecked(True)
        self._show_crop()

    def _show_crop(self) -> None:
        pixmap = self.view.pixmap
        if self.centre.isChecked():
            side = min(pixmap.width(), pixmap.height())
            self.view.set_box(QRect((pixmap.width() - side) // 2, (pixmap.height() - side) // 2, side, side))
        elif self.dragged.isChecked() and getattr(self, "_box", None) is not None:
            self.view.set_box(self._box)
        else:
            self.view.set_box(None)

    def choices(self) -> ImageChoices:
        crop = None
        if self.centre.isChecked():
            crop = "centre"
        elif self.dragged.isChecked() and getattr(self, "_box", None) is not None:
            box = self._box
            crop = (box.left(), box.top(), box.left() + box.width(), box.top() + box.height())
        return ImageChoices(crop, self.invert.isChecked(), self.label_box.currentData())


def _mostly_light(image) -> bool:
    """A first guess for "invert": a photo or drawing on a light background (the datasets' are black)."""
    small = image.scaled(16, 16, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    border = [small.pixelColor(x, y).lightnessF() for x in range(16) for y in (0, 15)]
    border += [small.pixelColor(x, y).lightnessF() for y in range(16) for x in (0, 15)]
    return sum(border) / len(border) > 0.5
