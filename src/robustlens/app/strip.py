"""The image strip: the original and the images the panels derive from it, each judged by every model."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QSplitter, QWidget

from . import style
from .context import STRIP_SLOTS, AppContext, Selection
from .imaging import ImageView, as_numpy, perturbation_qimage, to_qimage
from .predictions import PredictionBars, PredictionRow

NO_MODELS = "No models loaded: tick one under Models, or File → Open model…"


COMPACT_IMAGE = 92    # the lecture strip's images (px): one compact row leaves the tab the screen
COMPACT_BARS_SCALE = 0.85
COMPACT_CARD_WIDTH = 560  # a lone card (only the original is filled) need not stretch its bars across
# the compact row's titles: one line each in a fifth of a 1280-px projector, never wrapped or cut
COMPACT_TITLES = {"robust": "Robust recon.", "non_robust": "Non-robust recon.", "perturbation": "Perturbation δ"}
PERTURBATION_NOTE = ("δ = adversarial − original, scaled so its largest pixel shows in full colour: "
                     "red brightens, blue darkens.")
COMPACT_PERTURBATION_NOTE = "red: δ brightens, blue: darkens"


class StripCard(QFrame):
    """One slot: title, image (or what fills it), a caption, and the models' prediction bars.
    Compact (lecture mode): the image beside the bars, one row of cards of equal width."""

    clicked = Signal(str)

    def __init__(self, slot: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        title, hint = STRIP_SLOTS[slot]
        self.setObjectName(f"strip-{slot}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # equal widths whatever the titles and captions say (Ignored: the stretch alone decides)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title = QLabel(title)
        self.title.setStyleSheet("font-weight: bold")  # bold, yet still following the window's font size
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.title.setWordWrap(True)
        self.view = ImageView(hint)
        self.view.setFixedHeight(132)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.caption.setObjectName("caption")
        self.bars = PredictionBars()
        self.compact = False
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(6, 6, 6, 6)
        self._layout.setHorizontalSpacing(8)
        self._layout.setVerticalSpacing(4)
        self._arrange()

    def _arrange(self) -> None:
        grid = self._layout
        for widget in (self.title, self.view, self.caption, self.bars):
            grid.removeWidget(widget)
        for row in range(grid.rowCount()):
            grid.setRowStretch(row, 0)
        for column in range(grid.columnCount()):
            grid.setColumnStretch(column, 0)
        if self.compact:
            # title, then the caption across the card (wrapped, never cut), then the image beside its bars
            grid.addWidget(self.title, 0, 0, 1, 2)
            grid.addWidget(self.caption, 1, 0, 1, 2)
            grid.addWidget(self.view, 2, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(self.bars, 2, 1)
            grid.setColumnStretch(1, 1)
            grid.setRowStretch(3, 1)
            self.title.setAlignment(Qt.AlignmentFlag.AlignLeft)
            self.caption.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        else:
            grid.addWidget(self.title, 0, 0)
            grid.addWidget(self.view, 1, 0)
            grid.addWidget(self.caption, 2, 0)
            grid.addWidget(self.bars, 3, 0)
            grid.setRowStretch(4, 1)
            grid.setColumnStretch(0, 1)
            self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)

    def set_compact(self, on: bool, image: int) -> None:
        self.compact = bool(on)
        # compact: a one-line title, the caption and the bars a little smaller than the lecture font
        # (still far above the desktop size): six models in ~125 px
        self.title.setText(COMPACT_TITLES.get(self.slot, STRIP_SLOTS[self.slot][0]) if on else STRIP_SLOTS[self.slot][0])
        self.title.setWordWrap(not on)
        font = QFont(self.font())
        if on:
            font.setPointSizeF(self.font().pointSizeF() * COMPACT_BARS_SCALE)
        self.bars.setFont(font if on else QFont())
        self.caption.setFont(font if on else QFont())
        if on:
            self.view.setFixedSize(image, image)
        else:
            self.view.setMinimumSize(96, 96)
            self.view.setMaximumSize(16777215, 16777215)
            self.view.setFixedHeight(image)
        self.bars.set_compact(on)
        self._arrange()

    def mousePressEvent(self, event) -> None:
        self.clicked.emit(self.slot)
        super().mousePressEvent(event)


class ImageStrip(QWidget):
    """Original | robust reconstruction | non-robust reconstruction | adversarial | perturbation.

    Filled slots get every loaded model's predictions from an engine job (one slot each, so a
    panel refreshing one image never cancels the predictions for another).
    """

    predictionsShown = Signal(str)   # slot key: its bars now show every loaded model
    slotClicked = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.cards: dict[str, StripCard] = {}
        self.images: dict[str, Any] = {}           # slot -> (C,H,W) array shown
        self.captions: dict[str, str] = {}
        self.predictions: dict[str, dict] = {}     # slot -> {model key: probs or reason}
        self.predicted_for: dict[str, int] = {}    # slot -> generation of the image predicted
        self._generation: dict[str, int] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        for slot in STRIP_SLOTS:
            card = StripCard(slot)
            card.clicked.connect(self.slotClicked)
            self.cards[slot] = card
            layout.addWidget(card, 1)
        layout.addStretch(0)
        self.cards["perturbation"].bars.set_empty_text(PERTURBATION_NOTE)
        self._shown: Selection | None = None       # the selection the original card shows
        ctx.modelsChanged.connect(self._on_models_changed)
        ctx.selectionShown.connect(self._on_selection_shown)
        ctx.selectionChanged.connect(self._on_selection)
        self._refresh_all_bars()

    # ---------------------------------------------------------------- content

    def _on_selection_shown(self, selection: Selection | None) -> None:
        """Every selection, at once (a held PgDown too): the image and caption only; the predictions
        wait for the selection to settle (``_on_selection``)."""
        for slot in STRIP_SLOTS:
            if slot != "original":
                self.clear(slot)
        if selection is None:
            self._shown = None
            self.clear("original")
            return
        self._shown = selection
        self._show("original", selection.image, self._caption(selection), live=False, predictions=None,
                   settled=False)

    def _on_selection(self, selection: Selection | None) -> None:
        """The selection settled: its predictions are asked for."""
        for slot in STRIP_SLOTS:
            if slot != "original":
                self.clear(slot)  # (a no-op for an empty slot)
        if selection is None:
            self._shown = None
            self.clear("original")
            return
        if selection is self._shown and "original" in self.images:
            self._request_predictions("original")
            self.ctx.stripChanged.emit("original")
            return
        self._shown = selection
        self._show("original", selection.image, self._caption(selection), live=False, predictions=None)

    def _caption(self, selection: Selection) -> str:
        caption = selection.source
        if selection.label is not None and self.ctx.classes:
            caption += f" · true class: {self.ctx.classes[selection.label]}"
        if selection.note:
            caption += f"\n{selection.note}"
        return caption

    def set_image(self, slot: str, image: Any, caption: str = "", *, live: bool = False,
                  predictions: dict | None = None) -> None:
        self._show(slot, image, caption, live=live, predictions=predictions)

    def clear(self, slot: str) -> None:
        card = self.cards[slot]
        self._generation[slot] = self._generation.get(slot, 0) + 1
        self.ctx.cancel(f"strip-predictions:{slot}")
        if slot not in self.images and slot not in self.predictions and not card.view.has_image:
            return  # empty already: nothing to redraw or announce (held PgDown clears four empty slots)
        self.images.pop(slot, None)
        self.captions.pop(slot, None)
        self.predictions.pop(slot, None)
        card.view.set_image(None)
        card.caption.setText("")
        self.ctx.strip_images.pop(slot, None)
        self._refresh_bars(slot)
        self._update_folded()
        self.ctx.stripChanged.emit(slot)

    def _show(self, slot: str, image: Any, caption: str, *, live: bool, predictions: dict | None,
              settled: bool = True) -> None:
        """``settled=False``: the image of a selection not yet settled; its predictions are asked for,
        and ``stripChanged`` emitted, when it settles."""
        card = self.cards[slot]
        array = as_numpy(image)
        self.images[slot] = array
        self.captions[slot] = caption
        self.ctx.strip_images[slot] = array[None]
        self._generation[slot] = self._generation.get(slot, 0) + 1
        if slot == "perturbation":
            qimage, scale = perturbation_qimage(array)
            caption = (caption + "\n" if caption else "") + f"shown ×{scale:.3g}"
        else:
            qimage = to_qimage(array)
        card.view.set_image(qimage)
        card.caption.setText(caption)
        card.caption.setToolTip(caption)
        self._update_folded()
        if not settled:
            self.ctx.cancel(f"strip-predictions:{slot}")
            pending = {key: "computing…" for key in self.ctx.model_keys()}
            shown = self.predictions.get(slot)
            if not (isinstance(shown, dict) and shown.keys() == pending.keys()
                    and all(isinstance(v, str) and v == "computing…" for v in shown.values())):
                self.predictions[slot] = pending
                self._refresh_bars(slot)
            return
        if slot != "perturbation":
            if predictions is not None:
                self.predictions[slot] = dict(predictions)
                self._refresh_bars(slot)
            elif live:
                self.predictions[slot] = {key: "predicted when done" for key in self.ctx.model_keys()}
                self._refresh_bars(slot)
            else:
                self._request_predictions(slot)
        self.ctx.stripChanged.emit(slot)

    # ---------------------------------------------------------------- predictions

    def _request_predictions(self, slot: str) -> None:
        keys = self.ctx.model_keys()
        if not keys:
            self.predictions[slot] = {}
            self._refresh_bars(slot)
            self.predictionsShown.emit(slot)
            return
        generation = self._generation[slot]
        self.predictions[slot] = {key: "computing…" for key in keys}
        self._refresh_bars(slot)

        def on_result(result: dict) -> None:
            if self._generation.get(slot) != generation:
                return  # the slot shows another image by now
            self.predictions[slot] = {key: (v[0] if not isinstance(v, str) else v)
                                      for key, v in result[slot].items()}
            self.predicted_for[slot] = generation
            self._refresh_bars(slot)
            self.predictionsShown.emit(slot)

        self.ctx.predict(f"strip-predictions:{slot}", {slot: self.images[slot][None]}, on_result,
                         keys=keys, label=f"predictions: {STRIP_SLOTS[slot][0].lower()}")

    def _on_models_changed(self, _models) -> None:
        for slot in list(self.images):
            if slot != "perturbation":
                self._request_predictions(slot)
        self._refresh_all_bars()

    def rows(self, slot: str) -> list[PredictionRow]:
        """The prediction rows of a slot, one per loaded model, in the models' order."""
        colors = style.model_colors(self.ctx.models)
        found = self.predictions.get(slot, {})
        rows = []
        for info in self.ctx.models:
            probs = found.get(info.key, "—")
            rows.append(PredictionRow(style.short_name(info), info.label, probs, colors[info.key]))
        return rows

    def _refresh_all_bars(self) -> None:
        for slot in STRIP_SLOTS:
            self._refresh_bars(slot)

    def _refresh_bars(self, slot: str) -> None:
        bars = self.cards[slot].bars
        if slot == "perturbation":
            return
        if slot not in self.images:
            bars.set_rows([], (), None)
            bars.set_empty_text("" if self.ctx.models else NO_MODELS)
            return
        if not self.ctx.models:
            bars.set_rows([], (), None)
            bars.set_empty_text(NO_MODELS)
            return
        label = self.ctx.selection.label if self.ctx.selection is not None else None
        bars.set_rows(self.rows(slot), self.ctx.classes, label)
        QTimer.singleShot(0, self._fit_height)

    def needed_height(self) -> int:
        """The height at which every card shows its image, caption and all prediction bars."""
        heights = [0]
        for card in self.cards.values():
            if card.isHidden():
                continue
            layout = card.layout()
            width = max(card.width(), card.minimumSizeHint().width())
            heights.append(layout.totalHeightForWidth(width) if layout.hasHeightForWidth()
                           else layout.totalSizeHint().height())
        return max(heights)

    def _fit_height(self) -> None:
        height = self.needed_height()
        if getattr(self, "compact", False):
            self.setFixedHeight(height)  # one compact row: the splitter gives the rest to the tab
            split = self.parentWidget()
            if isinstance(split, QSplitter) and split.indexOf(self) == 0 and split.count() == 2:
                split.setSizes([height, max(1, split.height() - height - split.handleWidth())])
        else:
            self.setMaximumHeight(16777215)
            self.setMinimumHeight(height)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.oldSize().width() != event.size().width():
            QTimer.singleShot(0, self._fit_height)

    def has_all_predictions(self, slot: str) -> bool:
        found = self.predictions.get(slot)
        if found is None:
            return False
        return all(key in found and not (isinstance(found[key], str) and found[key].endswith("…"))
                   for key in self.ctx.model_keys())

    def set_lecture_mode(self, on: bool) -> None:
        """Lecture mode: one compact row (images beside their bars); a slot nothing has filled yet
        is folded away, so the filled ones get the width."""
        self.compact = bool(on)
        for card in self.cards.values():
            card.set_compact(on, COMPACT_IMAGE if on else 132)
            card.setMaximumWidth(COMPACT_CARD_WIDTH if on else 16777215)
        self.cards["perturbation"].bars.set_empty_text(COMPACT_PERTURBATION_NOTE if on else PERTURBATION_NOTE)
        self._update_folded()
        QTimer.singleShot(0, self._fit_height)

    def _update_folded(self) -> None:
        compact = getattr(self, "compact", False)
        for slot, card in self.cards.items():
            card.setVisible(not compact or slot == "original" or slot in self.images)
