"""Turning [0,1] image arrays into pixels on screen (display only: no model maths here)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def as_numpy(image: Any) -> np.ndarray:
    """A (C, H, W) float array from a tensor or array of shape (C,H,W) or (1,C,H,W)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 4:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected an image of shape (C,H,W) or (1,C,H,W), got {array.shape}")
    return array


def to_qimage(image: Any) -> QImage:
    """A [0,1] (C,H,W) image as an 8-bit QImage (grayscale or RGB); values outside [0,1] are clipped."""
    array = as_numpy(image)
    pixels = np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _qimage_from_uint8(pixels)


def _qimage_from_uint8(pixels: np.ndarray) -> QImage:
    channels, height, width = pixels.shape
    if channels == 1:
        data = np.ascontiguousarray(pixels[0])
        qimage = QImage(data.data, width, height, width, QImage.Format.Format_Grayscale8)
    else:
        data = np.ascontiguousarray(pixels[:3].transpose(1, 2, 0))
        qimage = QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: the numpy buffer dies with this function


# A diverging map (blue − white − red, as ColorBrewer's RdBu reversed): negative δ blue, positive red.
_DIVERGING = np.array([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
                       [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77],
                       [178, 24, 43], [103, 0, 31]], dtype=np.float32)


def perturbation_qimage(delta: Any) -> tuple[QImage, float]:
    """δ drawn so that its largest entry reaches full colour; returns the image and the amplification.

    Grayscale: the diverging map (white = unchanged). Colour: 0.5 + k·δ per channel (gray = unchanged).
    """
    array = as_numpy(delta)
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak <= 0:
        scale = 1.0
    else:
        scale = 1.0 / peak
    if array.shape[0] == 1:
        t = np.clip(array[0] * scale, -1, 1)  # in [-1, 1]
        position = (t + 1) / 2 * (len(_DIVERGING) - 1)
        low = np.floor(position).astype(int).clip(0, len(_DIVERGING) - 2)
        frac = (position - low)[..., None]
        rgb = _DIVERGING[low] * (1 - frac) + _DIVERGING[low + 1] * frac
        pixels = np.clip(rgb + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)
        return _qimage_from_uint8(pixels), scale
    shown = np.clip(0.5 + 0.5 * array * scale, 0, 1)
    return to_qimage(shown), 0.5 * scale


class ImageView(QWidget):
    """An image drawn with crisp (nearest-neighbour) pixels, centred, or a hint when empty."""

    def __init__(self, hint: str = "", parent: QWidget | None = None, minimum: int = 96) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._hint = hint
        self._minimum = minimum
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(minimum, minimum)

    def sizeHint(self) -> QSize:
        return QSize(self._minimum + 32, self._minimum + 32)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self.update()

    def set_hint(self, hint: str) -> None:
        self._hint = hint
        self.update()

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def image(self) -> QImage | None:
        return self._image

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        rect = self.rect()
        side = min(rect.width(), rect.height())
        square = QRectF(rect.x() + (rect.width() - side) / 2, rect.y() + (rect.height() - side) / 2, side, side)
        if self._image is None:
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DashLine))
            painter.drawRect(square.adjusted(0.5, 0.5, -0.5, -0.5))
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(square.adjusted(8, 8, -8, -8),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._hint)
            return
        w, h = self._image.width(), self._image.height()
        scale = side / max(w, h)
        # whole-pixel magnification keeps every source pixel the same size on screen
        if scale >= 1:
            scale = max(1.0, float(int(scale)))
        target = QRectF(0, 0, w * scale, h * scale)
        target.moveCenter(square.center())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(target, self._image)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.drawRect(target.adjusted(-0.5, -0.5, 0.5, 0.5))
