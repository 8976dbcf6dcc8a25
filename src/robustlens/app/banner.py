"""The window's one-line message above the strip: errors stay until closed, notes fade after a while."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

# the window's style sheet colours it by the "level" property (see window.STYLE_SHEET)
NOTE_SHOWN_MS = 12_000


class Banner(QFrame):
    """``show_message("error" | "info", text, details)``; details open in a dialog."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details…")
        self.close_button = QPushButton("✕")
        self.close_button.setFlat(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.setFixedWidth(28)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.details_button)
        layout.addWidget(self.close_button)
        self.close_button.clicked.connect(self.hide)
        self.details_button.clicked.connect(self._show_details)
        self._details = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def show_message(self, level: str, text: str, details: str = "") -> None:
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.text.setText(("⚠ " if level == "error" else "") + text)
        self._details = details
        self.details_button.setVisible(bool(details))
        self.show()
        if level == "error":
            self._timer.stop()
        else:
            self._timer.start(NOTE_SHOWN_MS)

    def _show_details(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Error details", self.text.text(),
                          QMessageBox.StandardButton.Close, self)
        box.setDetailedText(self._details)
        box.setModal(False)
        box.show()
