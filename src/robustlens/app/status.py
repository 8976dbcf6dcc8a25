"""The window's status bar: the device, the running job with its progress and, when the job announced
it, what it costs ("about 3 min (1.6 s per image, 120 images)", engine/cost.py), and Cancel.

It polls the engine's handles (20 times a second) instead of following every Progress signal, so a
stream of events costs the GUI thread one repaint per tick at most. A job younger than 150 ms is not
shown: a click's quick predictions would only make the bar flicker.
"""

from __future__ import annotations

import time
import weakref

import torch
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QPushButton, QSizePolicy, QStatusBar

from .engine_thread import Engine, JobHandle

POLL_MS = 50
SHOWN_AFTER_S = 0.15   # younger jobs are not shown
ENDED_SHOWN_S = 6.0    # how long "certifying …: done (3.2 s)" stays


def device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"Device: CUDA ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"Device: CPU, {threads} thread{'s' if threads != 1 else ''}"


class JobStatus(QObject):
    """Fills ``bar`` with device | job | progress | cancel; the window connects ``cancel_button``."""

    def __init__(self, bar: QStatusBar, engine: Engine) -> None:
        super().__init__(bar)
        self.engine = engine
        self.device_label = QLabel(device_text(engine.device))
        self.job_label = QLabel("Ready")
        self.job_label.setMinimumWidth(160)
        # a long job label is elided to the room left (all of it in the tooltip): it must never widen
        # the window past the screen (a 1280-px projector with the deck pane beside the tabs)
        self.job_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(200)
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running jobs (Esc)")
        self.cancel_button.setEnabled(False)
        bar.addWidget(self.device_label)
        # a rule between the device and the job: side by side they read as one sentence ("1 thread certifying …")
        divider = QFrame()
        divider.setFrameShape(QFrame.Shape.VLine)
        divider.setFrameShadow(QFrame.Shadow.Sunken)
        bar.addWidget(divider)
        bar.addWidget(self.job_label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        self._last_ended: tuple[str, float] | None = None
        self._quiet: "weakref.WeakSet[JobHandle]" = weakref.WeakSet()  # cancelled by a move, not by the user
        engine.jobEnded.connect(self._on_job_ended)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def end_quietly(self, handles) -> None:
        """These jobs were stopped because the app moved on: their end is not reported ("cancelled")."""
        self._quiet.update(handles)
        self._last_ended = None

    def _on_job_ended(self, handle: JobHandle) -> None:
        if handle in self._quiet and handle.state == "aborted":
            self._quiet.discard(handle)
            return
        if handle.user_cancellable:
            verb = {"finished": "done", "aborted": "cancelled", "failed": "failed"}[handle.state]
            self._last_ended = (f"{handle.label}: {verb} ({handle.ended_at - handle.submitted_at:.2f} s)",
                                time.monotonic())

    def refresh(self) -> None:
        now = time.monotonic()
        active = [h for h in self.engine.active_jobs() if now - h.submitted_at > SHOWN_AFTER_S]
        self.cancel_button.setEnabled(any(h.user_cancellable for h in self.engine.active_jobs()))
        # the bar only while a job is shown: idle, an empty bar reads as a blank text field
        self.progress.setVisible(bool(active))
        if not active:
            self.progress.setRange(0, 1000)
            self.progress.setValue(0)
            self.progress.setFormat("")
            if self._last_ended and now - self._last_ended[1] < ENDED_SHOWN_S:
                self._show_job(self._last_ended[0])
            else:
                self._show_job("Ready")
            return
        shown = active[-1]
        more = f"  (+{len(active) - 1} more)" if len(active) > 1 else ""
        message = shown.progress.message if shown.progress and shown.progress.message else ""
        estimate = f" · {shown.estimate.text()}" if shown.estimate is not None else ""
        self._show_job(f"Running: {shown.label}" + (f" — {message}" if message and message != shown.label else "")
                       + estimate + more)
        if shown.progress is not None and shown.progress.total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * shown.progress.fraction))
            self.progress.setFormat(f"{shown.progress.fraction:.0%}")
        else:
            self.progress.setRange(0, 0)  # busy: the job does not know how long it takes

    def _show_job(self, text: str) -> None:
        label = self.job_label
        label.setToolTip(text)
        label.setText(QFontMetrics(label.font()).elidedText(text, Qt.TextElideMode.ElideRight,
                                                            max(40, label.width() - 4)))
