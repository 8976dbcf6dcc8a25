"""The window's messages: one line floating over the top of the centre (it never moves the layout:
what was under the mouse stays there), and a log of every message (View → Messages).

Notes fade after a while; an error stays until closed, replaced, or — for an error about a job — until
a later job succeeds."""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLabel, QMessageBox,
                               QPlainTextEdit, QPushButton, QVBoxLayout, QWidget)

from .controls import show_page

# the window's style sheet colours it by the "level" property (see window.STYLE_SHEET)
NOTE_SHOWN_MS = 12_000
LOG_LIMIT = 500
MARGIN = 8


class Banner(QFrame):
    """``show_message("error" | "info", text, details, clears_on_success)``; details open in a dialog.

    ``float_over(widget)``: the banner becomes a child of ``widget`` drawn over its top edge and
    follows its width; it takes no room in any layout."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setAutoFillBackground(True)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details…")
        self.close_button = QPushButton("✕")
        self.close_button.setFlat(True)
        self.close_button.setToolTip("Dismiss (every message stays in View → Messages)")
        self.close_button.setFixedWidth(32)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.details_button)
        layout.addWidget(self.close_button)
        self.close_button.clicked.connect(self.hide)
        self.details_button.clicked.connect(self._show_details)
        self._details = ""
        self.level = ""
        self.clears_on_success = False
        self.log: list[tuple[float, str, str]] = []   # (time, level, text), oldest first
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self._host: QWidget | None = None
        self.hide()

    # ---------------------------------------------------------------- floating

    def float_over(self, host: QWidget) -> None:
        self._host = host
        self.setParent(host)
        host.installEventFilter(_Follow(self, host))
        self._place()

    def _place(self) -> None:
        host = self._host
        if host is None:
            return
        width = max(200, host.width() - 2 * MARGIN)
        self.setFixedWidth(width)
        height = self.layout().totalHeightForWidth(width) if self.layout().hasHeightForWidth() \
            else self.sizeHint().height()
        self.setGeometry(MARGIN, MARGIN, width, max(height, self.sizeHint().height()))
        self.raise_()

    # ---------------------------------------------------------------- messages

    def show_message(self, level: str, text: str, details: str = "", clears_on_success: bool = False) -> None:
        self.log.append((time.time(), level, text + (f"\n{details}" if details else "")))
        del self.log[:-LOG_LIMIT]
        self.level = level
        self.clears_on_success = level == "error" and clears_on_success
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.text.setText(("⚠ " if level == "error" else "") + text)
        self._details = details
        self.details_button.setVisible(bool(details))
        self.show()
        self._place()
        if level == "error":
            self._timer.stop()
        else:
            self._timer.start(NOTE_SHOWN_MS)

    def job_succeeded(self) -> None:
        """A later job finished: an error about a job is out of date."""
        if self.isVisible() and self.clears_on_success:
            self.hide()

    def log_text(self) -> str:
        return "\n".join(f"{time.strftime('%H:%M:%S', time.localtime(at))}  {level:<5}  {text}"
                         for at, level, text in self.log) or "No messages yet."

    def show_log(self, parent: QWidget) -> QDialog:
        view = QPlainTextEdit(self.log_text())
        view.setReadOnly(True)
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        dialog = show_page(parent, "Messages", view)
        dialog.resize(760, 420)
        dialog.show()
        view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
        return dialog

    def _show_details(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Error details", self.text.text(),
                          QMessageBox.StandardButton.Close, self)
        box.setDetailedText(self._details)
        box.setModal(False)
        box.show()


class _Follow(QObject):
    """Keeps the floating banner at the top of its host as the host resizes."""

    def __init__(self, banner: Banner, host: QWidget) -> None:
        super().__init__(host)
        self.banner = banner

    def eventFilter(self, watched, event) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Show, QEvent.Type.LayoutRequest):
            self.banner._place()
        return False
