"""The Predictions tab: every class's probability under every loaded model for one strip image."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout

from ..context import STRIP_SLOTS, AppContext
from ..controls import combo_box, select
from ..predictions import PredictionChart
from ..style import point_size
from .base import Panel


class PredictionsPanel(Panel):
    """Choose a strip image (or click its card); the chart shows all class probabilities. It remembers
    nothing: which image it shows follows the strip."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.image_choice = combo_box((slot, title) for slot, (title, _hint) in STRIP_SLOTS.items()
                                      if slot != "perturbation")
        self.note = QLabel("")
        self.note.setObjectName("caption")
        self.chart = PredictionChart()
        self.chart.setObjectName("predictions-chart")
        top = QHBoxLayout()
        top.addWidget(QLabel("Image"))
        top.addWidget(self.image_choice)
        top.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.chart, 1)
        ctx.register_exportable("Predictions chart", self.chart)
        self.image_choice.currentIndexChanged.connect(lambda _i: self.refresh())
        ctx.modelsChanged.connect(lambda _m: self.refresh())
        ctx.stripChanged.connect(self._on_strip_changed)
        self.strip = ctx.strip  # the strip owns the predictions it shows
        self.strip.predictionsShown.connect(self._on_strip_changed)
        self.strip.slotClicked.connect(self.show_slot)
        self.refresh()

    def show_slot(self, slot: str) -> None:
        select(self.image_choice, slot)

    def _on_strip_changed(self, slot: str) -> None:
        if slot == self.image_choice.currentData():
            self.refresh()

    def refresh(self) -> None:
        if self.strip is None:
            return
        slot = self.image_choice.currentData()
        title = STRIP_SLOTS[slot][0]
        selection = self.ctx.selection
        if slot not in self.strip.images:
            self.note.setText(f"{title}: empty — {STRIP_SLOTS[slot][1]}")
            self.chart.show_predictions(title, self.ctx.classes, [], None)
            return
        rows = self.strip.rows(slot)
        label = selection.label if selection is not None else None
        if not self.ctx.models:
            self.note.setText("No models loaded: tick one under Models, or File → Open model…")
        else:
            pending = sum(isinstance(r.probs, str) for r in rows)
            self.note.setText(f"{len(rows) - pending} of {len(rows)} models" + (" (✓ marks the true class)"
                                                                             if label is not None else ""))
        source = f" — {selection.source}" if selection is not None else ""
        self.chart.show_predictions(f"{title}{source}", self.ctx.classes, rows, label)

    def set_lecture_mode(self, on: bool) -> None:
        self.chart.set_fonts(point_size(on))
