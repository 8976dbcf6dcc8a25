"""The guided lecture's pane beside the tabs: the step counter, the step's title, its formula in large
type, what to say (Markdown), a shipped result with "Rerun live", and the PgUp / PgDown buttons.
It only shows; ``deck.DeckController`` applies the steps."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QApplication, QDockWidget, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from robustlens.engine.deck_file import REPLAY_RADII, Deck, DeckStep

from . import style

WIDTH_SHARE = 0.25      # of the window's width
MIN_WIDTH, MAX_WIDTH = 280, 560
ACCENT = "#0072B2"      # Okabe–Ito blue: reads on a projector
PANE_STYLE = f"""
QLabel#deck-counter {{ color: palette(placeholder-text); }}
QLabel#deck-formula {{ background: #f2f5fa; border-left: 4px solid {ACCENT}; padding: 6px 8px; color: #111; }}
QLabel#deck-problems {{ color: #b3261e; }}
"""


class DeckPane(QDockWidget):
    """Docked at the window's right edge while a deck is open."""

    def __init__(self, controller, window) -> None:
        super().__init__("Guided lecture", window)
        self.controller = controller
        self.window_ = window
        self.setObjectName("deck-pane")
        self.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.setTitleBarWidget(QWidget())  # the counter says what this is; no title bar to waste height
        body = QWidget()
        body.setObjectName("deck-body")
        body.setStyleSheet(PANE_STYLE)
        self.counter = _wrapped(QLabel(""))
        self.counter.setObjectName("deck-counter")
        self.heading = _wrapped(QLabel(""))
        self.heading.setObjectName("deck-title")
        self.formula = _wrapped(QLabel(""))
        self.formula.setObjectName("deck-formula")
        self.formula.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text = _wrapped(QLabel(""))
        self.text.setObjectName("deck-text")
        self.text.setTextFormat(Qt.TextFormat.MarkdownText)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        text_area = QScrollArea()  # a long text scrolls here, never the tab beside it
        text_area.setWidget(self.text)
        text_area.setWidgetResizable(True)
        text_area.setFrameShape(QFrame.Shape.NoFrame)
        text_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.replay_box = QGroupBox("Shipped result")
        self.replay_table = _wrapped(QLabel(""))
        self.replay_table.setTextFormat(Qt.TextFormat.RichText)
        self.rerun_button = QPushButton("Rerun live")
        self.rerun_button.setToolTip("Run this step's job on this machine instead of showing the shipped result")
        self.rerun_button.clicked.connect(lambda: self.controller.rerun_live())
        replay_layout = QVBoxLayout(self.replay_box)
        replay_layout.setContentsMargins(6, 4, 6, 6)
        replay_layout.addWidget(self.replay_table)
        replay_row = QHBoxLayout()
        replay_row.addWidget(self.rerun_button)
        replay_row.addStretch(1)
        replay_layout.addLayout(replay_row)
        self.problems = _wrapped(QLabel(""))
        self.problems.setObjectName("deck-problems")
        self.previous_button = QPushButton("◀ PgUp")
        self.previous_button.setToolTip("Previous step (PgUp)")
        self.next_button = QPushButton("PgDown ▶")
        self.next_button.setToolTip("Next step (PgDown)")
        self.end_button = QPushButton("End")
        self.end_button.setToolTip("Close the guided lecture; your own settings come back")
        self.previous_button.clicked.connect(lambda: self.controller.previous())
        self.next_button.clicked.connect(lambda: self.controller.next())
        self.end_button.clicked.connect(lambda: self.controller.close())
        for button in (self.previous_button, self.next_button, self.end_button, self.rerun_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # PgUp / PgDown stay the deck's
        nav = QHBoxLayout()
        nav.addWidget(self.previous_button)
        nav.addWidget(self.next_button)
        nav.addStretch(1)
        nav.addWidget(self.end_button)

        layout = QVBoxLayout(body)
        layout.setContentsMargins(10, 8, 8, 8)
        layout.setSpacing(8)
        layout.addWidget(self.counter)
        layout.addWidget(self.heading)
        layout.addWidget(self.formula)
        layout.addWidget(text_area, 1)
        layout.addWidget(self.replay_box)
        layout.addWidget(self.problems)
        layout.addLayout(nav)
        self.setWidget(body)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self)
        self.show()  # a dock added to a window already on screen stays hidden otherwise
        window.ctx.lectureModeChanged.connect(self._lecture_changed)
        self.set_fonts()
        self.fit_width()

    # ---------------------------------------------------------------- showing

    def show_waiting(self, deck: Deck) -> None:
        self.counter.setText(f"{len(deck.steps)} steps · {deck.title}")
        self.heading.setText("Loading the dataset and the models…")
        for widget in (self.formula, self.replay_box, self.problems):
            widget.hide()

    def show_step(self, index: int, step: DeckStep, problems: list[str]) -> None:
        deck = self.controller.deck
        self.counter.setText(f"Step {index + 1} of {len(deck.steps)} · {step.tab} tab")
        self.counter.setToolTip(deck.title)
        self.heading.setText(step.title)
        self.formula.setText(formula_html(step.formula))
        self.formula.setVisible(bool(step.formula))
        self.text.setText(step.text)
        self.replay_box.setVisible(step.has_replay)
        self.replay_table.setText(_replay_html(step))
        self.replay_table.setVisible(bool(step.replay_rows))
        self.previous_button.setEnabled(index > 0)
        self.next_button.setEnabled(index + 1 < len(deck.steps))
        self.show_problems(problems)

    def show_problems(self, problems: list[str]) -> None:
        self.problems.setText("Not applied: " + "; ".join(problems) if problems else "")
        self.problems.setVisible(bool(problems))

    # ---------------------------------------------------------------- size and fonts

    def fit_width(self) -> None:
        width = int(min(MAX_WIDTH, max(MIN_WIDTH, WIDTH_SHARE * self.window_.width())))
        self.setMinimumWidth(MIN_WIDTH)
        self.window_.resizeDocks([self], [width], Qt.Orientation.Horizontal)

    def _lecture_changed(self, _on: bool) -> None:
        self.set_fonts()
        self.fit_width()

    def set_fonts(self) -> None:
        """Sizes relative to the application font (which lecture mode scales)."""
        base = QApplication.instance().font().pointSizeF()
        if base <= 0:
            base = style.base_point_size()
        for widget, scale, bold in ((self.heading, 1.45, True), (self.formula, 1.2, False),
                                    (self.text, 1.0, False), (self.counter, 0.9, False),
                                    (self.replay_table, 0.9, False), (self.problems, 0.95, False)):
            font = QFont(QApplication.instance().font())
            font.setPointSizeF(base * scale)
            font.setBold(bold)
            widget.setFont(font)

    def remove(self) -> None:
        self.window_.removeDockWidget(self)
        self.deleteLater()


def _wrapped(label: QLabel) -> QLabel:
    label.setWordWrap(True)
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)  # text never widens the pane
    label.setSizePolicy(policy)
    return label


def formula_html(formula: str) -> str:
    """A deck formula as rich text: ``x_{adv}`` / ``x_A`` subscripts, ``a^{1/n}`` / ``x^2`` superscripts
    (TeX's spelling, so a lecturer can paste from slides); everything else is shown as written."""
    text = html.escape(formula)
    text = re.sub(r"_\{([^{}]*)\}", r"<sub>\1</sub>", text)
    text = re.sub(r"\^\{([^{}]*)\}", r"<sup>\1</sup>", text)
    text = re.sub(r"_(\w)", r"<sub>\1</sub>", text)
    text = re.sub(r"\^(\w)", r"<sup>\1</sup>", text)
    return text.replace("\n", "<br>")


def _replay_html(step: DeckStep) -> str:
    """A replayed certified-accuracy table: one row per shipped certify run, one column per radius."""
    if not step.replay_rows:
        return ""
    head = "".join(f"<th align='right'>&nbsp;{r:g}</th>" for r in REPLAY_RADII)
    rows = [f"<tr><th align='left'>r =</th>{head}</tr>"]
    for row in step.replay_rows:
        cells = "".join(f"<td align='right'>&nbsp;{v:.0%}</td>" for v in row.accuracy)
        name = row.name.replace("noise-", "σ ") if row.name.startswith("noise-") else row.name
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    count = " / ".join(f"{n:,}" for n in sorted({row.images for row in step.replay_rows}))
    return (f"Certified accuracy at radius r, {count} test images:"
            f"<table cellspacing='0' cellpadding='0'>{''.join(rows)}</table>")
