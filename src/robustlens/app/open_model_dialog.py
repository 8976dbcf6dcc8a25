"""File → Open model…: choose a checkpoint file and, when the file does not say, its architecture (from
the list of known ones, with input shape and class count) and the σ it was trained with.

The answer is a model key ``PATH::arch=NAME::sigma=S`` (``engine/published.model_key``), which the
engine's ModelCache loads like any other key. What a file lacks is read by
``engine/published.describe_model_file`` (memory-mapped, no weights read).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget)

from robustlens.engine.models import architecture_summaries
from robustlens.engine.published import ModelFileInfo, describe_model_file, model_key

MODEL_SUFFIXES = (".pt", ".pth", ".tar", ".ts", ".ckpt")
MODEL_FILTER = f"Models ({' '.join('*' + s for s in MODEL_SUFFIXES)});;All files (*)"
DEFAULT_SIGMA = 0.25


def architecture_label(name: str, dataset: str, shape: tuple, count: int) -> str:
    return f"{name} — {'×'.join(map(str, shape))} input, {count} classes ({dataset})"


class ArchitectureDialog(QDialog):
    """Asks what a model file does not say: its architecture (plain state_dict, robustness-library
    checkpoint) and whether it was trained with Gaussian noise of some σ (needed to certify it)."""

    def __init__(self, info: ModelFileInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info = info
        self.setWindowTitle("Open model")
        heading = QLabel(f"<b>{Path(info.path).name}</b> is {info.description}.")
        heading.setWordWrap(True)
        explain = QLabel("The file holds weights but not the network they belong to: choose it."
                         if info.needs_arch else "The file names its architecture but not the noise level "
                                                 "it was trained with.")
        explain.setObjectName("caption")
        explain.setWordWrap(True)
        self.arch = QComboBox()
        for name, dataset, shape, count in architecture_summaries():
            self.arch.addItem(architecture_label(name, dataset, shape, count), name)
        if info.arch:
            position = self.arch.findData(info.arch)
            if position >= 0:
                self.arch.setCurrentIndex(position)
        self.arch.setEnabled(info.needs_arch)
        self.noise = QCheckBox("trained with Gaussian noise, σ =")
        self.sigma = QDoubleSpinBox()
        self.sigma.setRange(0.01, 10.0)
        self.sigma.setDecimals(3)
        self.sigma.setSingleStep(0.05)
        self.sigma.setValue(info.sigma or DEFAULT_SIGMA)
        # Cohen et al.'s models are all noise-trained; a plain file is assumed not to be unless its path says so
        self.noise.setChecked(info.format == "cohen" or info.sigma is not None)
        self.sigma.setEnabled(self.noise.isChecked())
        self.noise.toggled.connect(self.sigma.setEnabled)
        noise_row = QHBoxLayout()
        noise_row.addWidget(self.noise)
        noise_row.addWidget(self.sigma)
        noise_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Architecture", self.arch)
        form.addRow("Training noise", noise_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(explain)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)

    def model_key(self) -> str:
        """The key of the file with the choices made (no arch part when the file names its own)."""
        arch = self.arch.currentData() if self.info.needs_arch else None
        sigma = self.sigma.value() if self.noise.isChecked() else None
        return model_key(self.info.path, arch, sigma)


def ask_model_key(parent: QWidget, ctx) -> str | None:
    """Ask for a model file and what it lacks; the model key to load, or None when cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open model", ctx.last_folder("models"), MODEL_FILTER)
    if not path:
        return None
    ctx.remember_folder("models", str(Path(path).parent))
    return model_key_for_file(parent, path)


def model_key_for_file(parent: QWidget, path: str) -> str | None:
    """The model key of a chosen (or dropped) file: the file itself when it says all it needs, else
    what the architecture dialog adds to it; None when the dialog is cancelled."""
    path = str(Path(path).expanduser().resolve())
    info = describe_model_file(path)
    if not (info.needs_arch or info.asks_sigma):
        return path  # robustlens checkpoints, TorchScript, unreadable files (the loader says why)
    dialog = ArchitectureDialog(info, parent)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.model_key()


def is_model_file(path: str) -> bool:
    """A file to load as a model: a checkpoint's usual suffix, or a file torch reads as one (a
    ``.bin`` state_dict). A file with a checkpoint's suffix that does not read goes to the loader
    anyway, whose error says what is wrong with it."""
    return Path(path).name.lower().endswith(MODEL_SUFFIXES) or describe_model_file(path).format != "unknown"
