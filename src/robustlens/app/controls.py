"""The controls every panel uses, built one way: spin boxes and combos from a declared
:class:`~robustlens.app.settings.Setting`, a labelled row of them, and reading / writing any of them
by value (what the panel base saves and restores)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtWidgets import (QAbstractButton, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QHBoxLayout,
                               QLabel, QLayout, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from .settings import Setting


def spin_box(setting: Setting, tip: str | None = None) -> QSpinBox:
    """An integer box with the setting's range, default, step and help; it reports a value when
    editing ends (typing 10000 must not run 1, 10, 100, ... on the way)."""
    box = QSpinBox()
    box.setRange(int(setting.minimum if setting.minimum is not None else -2**31 + 1),
                 int(setting.maximum if setting.maximum is not None else 2**31 - 1))
    box.setValue(int(setting.default))
    box.setSingleStep(int(setting.step or 1))
    box.setGroupSeparatorShown(True)
    box.setKeyboardTracking(False)
    box.setToolTip(tip if tip is not None else setting.help)
    return box


def double_spin_box(setting: Setting, decimals: int = 3, tip: str | None = None) -> QDoubleSpinBox:
    """A decimal box with the setting's range, default, step and help (see :func:`spin_box`)."""
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(float(setting.minimum if setting.minimum is not None else -1e9),
                 float(setting.maximum if setting.maximum is not None else 1e9))
    box.setSingleStep(float(setting.step or 10 ** -decimals))
    box.setValue(float(setting.default))
    box.setKeyboardTracking(False)
    box.setToolTip(tip if tip is not None else setting.help)
    return box


def combo_box(choices: Iterable[tuple[Any, str]], tip: str = "", *, shrinking: bool = False,
              current: Any = None) -> QComboBox:
    """A combo of (data, text) items. ``shrinking``: it may be narrower than its longest text (the
    open list still shows it in full), so a long model name never widens the panel."""
    box = QComboBox()
    if shrinking:
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(10)
    for data, text in choices:
        box.addItem(text, data)
    box.setToolTip(tip)
    if current is not None:
        select(box, current)
    return box


def setting_combo(setting: Setting, text=lambda value: f"{value:g}" if isinstance(value, float) else str(value),
                  **options) -> QComboBox:
    """A combo of the setting's choices, showing the default."""
    return combo_box(((c, text(c)) for c in setting.choices or ()), setting.help, current=setting.default, **options)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, float(b), rel_tol=1e-9)
    return a == b


def select(box: QComboBox, data: Any) -> bool:
    """Choose the item whose data equals ``data`` (floats with a tolerance; tuples compare in Python);
    False, and nothing changes, when there is none."""
    position = next((i for i in range(box.count()) if _same(box.itemData(i), data)), -1)
    if position >= 0:
        box.setCurrentIndex(position)
    return position >= 0


def buddy(text: str, widget: QWidget) -> QLabel:
    """A label for ``widget`` (Alt+letter focuses it)."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label


def labelled_row(pairs: Sequence[tuple[str, QWidget]], *, spacing: int = 8, stretch: bool = True) -> QHBoxLayout:
    """label widget  label widget ...  on one line, each label a buddy of its widget (Alt+letter)."""
    row = QHBoxLayout()
    row.setSpacing(4)
    for text, widget in pairs:
        if text:
            row.addWidget(buddy(text, widget))
        row.addWidget(widget)
        row.addSpacing(spacing)
    if stretch:
        row.addStretch(1)
    return row


def widget_value(widget: QWidget) -> Any:
    """The value a control shows: a spin box's number, a combo's item data (its text when it has
    none), a check box's state, a line edit's text, or ``widget.value()`` for a composite control."""
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    if isinstance(widget, QComboBox):
        data = widget.currentData()
        return data if data is not None else widget.currentText()
    if isinstance(widget, QAbstractButton):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        return widget.text()
    return widget.value()


def set_widget_value(widget: QWidget, value: Any) -> None:
    """Show ``value`` in a control (see :func:`widget_value`); ValueError when a combo has no such item."""
    if isinstance(widget, QSpinBox):
        widget.setValue(int(value))
    elif isinstance(widget, QDoubleSpinBox):
        widget.setValue(float(value))
    elif isinstance(widget, QComboBox):
        if not select(widget, value):
            position = widget.findText(str(value))
            if position < 0:
                raise ValueError(f"no choice {value!r}")
            widget.setCurrentIndex(position)
    elif isinstance(widget, QAbstractButton):
        widget.setChecked(bool(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    else:
        widget.set_value(value)


def caption_label(text: str = "") -> QLabel:
    """A grey, word-wrapped note (the style sheet's "caption"): status lines, hints, sources."""
    label = QLabel(text)
    label.setObjectName("caption")
    label.setWordWrap(True)
    return label


def bold_label(text: str = "") -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def push_button(text: str, tip: str = "", *, enabled: bool = True) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.setEnabled(enabled)
    return button


def stack(parent: QWidget, *items, spacing: int = 4, margins: int = 0) -> QVBoxLayout:
    """Lay ``items`` out top to bottom in ``parent``: widgets, layouts, or (widget, stretch) pairs."""
    layout = QVBoxLayout(parent)
    layout.setContentsMargins(margins, margins, margins, margins)
    layout.setSpacing(spacing)
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        if isinstance(widget, QWidget):
            layout.addWidget(widget, stretch)
        else:
            layout.addLayout(widget, stretch)
    return layout


def column(*items, spacing: int = 4, margins: int = 0) -> QWidget:
    """A new widget stacking ``items`` top to bottom (see :func:`stack`)."""
    holder = QWidget()
    stack(holder, *items, spacing=spacing, margins=margins)
    return holder


def show_page(parent: QWidget, title: str, body: QWidget) -> QDialog:
    """A non-modal window showing ``body`` above a Close button (the message log, Getting started)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    stack(dialog, body, buttons)
    dialog.setModal(False)
    return dialog


class FlowRow(QLayout):
    """Controls left to right that wrap onto the next line when the panel is narrower than they are
    (lecture fonts beside the deck pane): a row of controls never widens a tab past its screen."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 8) -> None:
        super().__init__(parent)
        self._items = []
        self.setContentsMargins(0, 0, 0, 0)
        self.setSpacing(spacing)

    def add_group(self, *widgets: QWidget) -> QWidget:
        """Widgets that stay together on one line (a label and its control); returns their holder."""
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for widget in widgets:
            row.addWidget(widget)
        self.addWidget(holder)
        return holder

    def addItem(self, item) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        width = sum(i.sizeHint().width() + self.spacing() for i in self._items if not i.isEmpty())
        return QSize(width, self.minimumSize().height())

    def minimumSize(self) -> QSize:
        shown = [i for i in self._items if not i.isEmpty()]
        return QSize(max([i.minimumSize().width() for i in shown] or [0]),
                     max([i.sizeHint().height() for i in shown] or [0]))

    def _place(self, rect: QRect, move: bool) -> int:
        x, y, line = rect.x(), rect.y(), 0
        for item in self._items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            if x > rect.x() and x + hint.width() > rect.right() + 1:
                x, y, line = rect.x(), y + line + self.spacing() // 2, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            line = max(line, hint.height())
        return y + line - rect.y()
