"""Export a plot or an image panel as PNG or SVG (lecture slides, papers).

PNG: pyqtgraph plots through pyqtgraph's ImageExporter (redrawn at twice the screen size), other
widgets with ``QWidget.grab`` (scaled ×2 with crisp pixels). SVG: every widget is painted into
QtSvg's ``QSvgGenerator`` (part of PySide6-Essentials), which keeps plots as vector paths and text.
(pyqtgraph's own SVGExporter cannot parse the path data Qt 6.12 writes.)
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401 - registers ImageExporter / SVGExporter
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QPainter, QRegion
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QLabel, QListWidget,
                               QListWidgetItem, QVBoxLayout, QWidget)

FORMATS = "PNG image (*.png);;SVG drawing (*.svg)"


def _plot_target(widget: QWidget):
    """The item pyqtgraph's exporters take for a pyqtgraph widget, or None for other widgets."""
    if isinstance(widget, pg.PlotWidget):
        return widget.getPlotItem()
    if isinstance(widget, pg.GraphicsView):
        return widget.scene()
    return None


def export_widget(widget: QWidget, path: str | Path, scale: float = 2.0) -> Path:
    """Write ``widget`` to ``path``; the suffix (.png or .svg) picks the format."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(f"cannot export to {path.name}: choose a .png or .svg file name")
    target = _plot_target(widget)
    if target is not None and suffix == ".png":
        exporter = pg.exporters.ImageExporter(target)
        exporter.parameters()["width"] = int(max(1, widget.width()) * scale)
        exporter.export(str(path))
        return path
    if suffix == ".png":
        pixmap = widget.grab()
        if scale != 1:
            big = QSize(int(widget.width() * scale), int(widget.height() * scale))
            pixmap = pixmap.scaled(big, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.FastTransformation)
        if not pixmap.save(str(path), "PNG"):
            raise OSError(f"could not write {path}")
        return path
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(widget.size())
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle(widget.objectName() or "robustlens panel")
    painter = QPainter(generator)
    try:
        # QWidget's render, also for QGraphicsView subclasses (plots) whose own render() differs
        QWidget.render(widget, painter, QPoint(0, 0), QRegion(),
                       QWidget.RenderFlag.DrawWindowBackground | QWidget.RenderFlag.DrawChildren)
    finally:
        painter.end()
    return path


class ExportDialog(QDialog):
    """Pick one of the panels on screen, then a file name (.png or .svg)."""

    def __init__(self, choices: list[tuple[str, QWidget]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export panel")
        self.choices = choices
        self.list = QListWidget()
        for name, widget in choices:
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, widget)
            self.list.addItem(item)
        if choices:
            self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton("Export…", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Panels on screen (SVG keeps plots as vectors):"))
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self.resize(380, 320)

    def chosen(self) -> tuple[str, QWidget] | None:
        item = self.list.currentItem()
        return (item.text(), item.data(Qt.ItemDataRole.UserRole)) if item is not None else None


def ask_file_and_export(name: str, widget: QWidget, parent: QWidget, start_dir: str = "") -> Path | None:
    """Ask for a .png/.svg file name and write ``widget`` there; None when the user cancelled."""
    suggestion = str(Path(start_dir or ".") / (name.lower().replace(" ", "-").replace("/", "-").replace(":", "")
                                               + ".png"))
    path, selected = QFileDialog.getSaveFileName(parent, f"Export {name}", suggestion, FORMATS)
    if not path:
        return None
    if not Path(path).suffix:
        path += ".svg" if "svg" in selected.lower() else ".png"
    return export_widget(widget, path)


def ask_and_export(choices: list[tuple[str, QWidget]], parent: QWidget, start_dir: str = "") -> Path | None:
    """The File → Export panel… flow. Returns the written file, or None when the user cancelled."""
    dialog = ExportDialog(choices, parent)
    if dialog.exec() != QDialog.DialogCode.Accepted or dialog.chosen() is None:
        return None
    name, widget = dialog.chosen()
    return ask_file_and_export(name, widget, parent, start_dir)
