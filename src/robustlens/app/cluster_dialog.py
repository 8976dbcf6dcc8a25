"""Run → Cluster…: where the long experiments run — here, on a local Ray, or on a Ray cluster — and with
how many workers. Certified accuracy over σ (Certify tab), robust accuracy against ε and the Ilyas et al.
pipeline (Experiments tab) then hand their blocks to Ray workers (``engine/cluster_experiments.py``) and
their plots grow as the blocks come back, with the numbers a run here gives.

The choice is two window settings (:data:`CLUSTER_ADDRESS`, :data:`CLUSTER_WORKERS`), kept in the
``AppContext``; panels read ``ctx.cluster_options()`` when they build a request.
"""

from __future__ import annotations

import re

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from robustlens.engine.cluster import ClusterOptions

from . import style
from .controls import caption_label, combo_box, select, spin_box
from .settings import Setting

CLUSTER_ADDRESS = Setting("cluster/address", "", help="where the long experiments run: empty (here), local (a Ray "
                                                      "on this machine), auto, or HOST:PORT of a Ray head")
CLUSTER_WORKERS = Setting("cluster/workers", 0, 0, 4096, help="Ray workers (0: as many as the cluster has CPUs)")
MODES = (("off", "here, in this program"), ("local", "a local Ray on this machine"),
         ("address", "a Ray cluster at this address"))
_ADDRESS = re.compile(r"^(auto|(ray://)?[\w.\-\[\]:]+:\d+)$")


def cluster_options(address: str, workers: int) -> ClusterOptions | None:
    """The options of a job run on Ray, or None to run here; Ray stays up between the app's runs (starting
    it and its workers costs seconds)."""
    address = address.strip()
    return ClusterOptions(address, workers or None, stay_connected=True) if address else None


def check_address(text: str) -> str:
    """A Ray address as --ray takes it (auto, HOST:PORT or ray://HOST:PORT); ValueError says why not."""
    text = text.strip()
    if not _ADDRESS.match(text):
        raise ValueError(f"{text or 'an empty address'} is not auto, HOST:PORT or ray://HOST:PORT")
    return text


class ClusterDialog(QDialog):
    """The mode (here / local Ray / a cluster), the address and the number of workers."""

    def __init__(self, address: str, workers: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Cluster")
        self.mode_box = combo_box(MODES, "where certified accuracy, robustness curves and the Ilyas pipeline run")
        self.address_edit = QLineEdit(address if address not in ("", "local") else "")
        self.address_edit.setPlaceholderText("HOST:6379, ray://HOST:10001 or auto")
        self.address_edit.setToolTip(CLUSTER_ADDRESS.help)
        self.workers_box = spin_box(CLUSTER_WORKERS)
        self.workers_box.setSpecialValueText("as many as fit")
        self.workers_box.setValue(int(workers))
        self.error = QLabel("")
        self.error.setStyleSheet(f"color: {style.WRONG.name()};")
        select(self.mode_box, "off" if not address else "local" if address == "local" else "address")
        form = QFormLayout()
        form.addRow("Run on", self.mode_box)
        form.addRow("Address", self.address_edit)
        form.addRow("Workers", self.workers_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(caption_label("Certified accuracy over σ, robust accuracy vs ε and the Ilyas et al. datasets "
                                       "are cut into blocks for Ray workers; the plots grow as blocks return, with "
                                       "the numbers a run here gives. Every node needs robustlens[cluster] and the "
                                       "models (zoo names, or files at the same path)."))
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.mode_box.currentIndexChanged.connect(self._on_mode)
        self._on_mode()

    def _on_mode(self, *_args) -> None:
        mode = self.mode_box.currentData()
        self.address_edit.setEnabled(mode == "address")
        self.workers_box.setEnabled(mode != "off")

    def values(self) -> tuple[str, int]:
        """(address: "" here, "local", or the cluster's; workers, 0 for as many as fit); ValueError for a bad
        address."""
        mode = self.mode_box.currentData()
        address = "" if mode == "off" else "local" if mode == "local" else check_address(self.address_edit.text())
        return address, int(self.workers_box.value())

    def _accept(self) -> None:
        try:
            self.values()
        except ValueError as error:
            self.error.setText(str(error))
            return
        self.accept()
