"""The Certify tab's two layouts, chosen by the room the tab has. Stacked (a tall tab): two lines of
controls over three columns (evidence | noise draws, the two lengths and the radius curve | certified
accuracy). Columns (a short, wide tab: a 720-line projector, a desktop window with the strip full):
verdict and noise draws | histogram | radius curve and the two lengths | accuracy. Lecture mode folds
batch and seed away and, on a wide screen, puts the mode on the first line of controls.

A mixin of :class:`~robustlens.app.panels.certify.CertifyPanel` (``self`` is the panel, with its
widgets, ``split`` and the column widgets); it only moves widgets between layouts.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QHBoxLayout, QSplitter, QWidget

from robustlens.engine.certify_jobs import NOISE_SHOWN

from .certify_anytime import buddy_label

# the split's widths: verdict | histogram | noise and radius curve | radius curve and lengths | accuracy.
# In columns the plots' titles and labels need the width more than the verdict, which wraps
COLUMN_SHARES = (250, 310, 0, 400, 290)
STACKED_SHARES = (320, 0, 360, 0, 300)
COLUMNS_BELOW = {False: 560, True: 600}   # a tab shorter than this (px) is laid out in columns
NOISE_WIDE_FROM = 1100  # stacked in lecture mode: the noise draws show from this tab width (px)
ONE_ROW_FROM = 1180   # lecture mode: from this tab width the mode joins the first line of controls
NOISE_DRAWS_FROM = {False: 470, True: 520}  # in columns, the noise draws show from this tab height (px)


class Columns(QSplitter):
    """The tab's columns. Preferred height: only what they need (a wrapped label's own preference, a
    tall narrow column, would make the tab scroll)."""

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.minimumSizeHint().height())


class ColumnsLayout:
    """Moves the Certify tab's widgets between the stacked and the columns layout."""

    def _build_rows(self) -> None:
        """The mode and its Stop on a second line of controls (the first is full at 1280 px), with the
        model note; and the row under the verdict the note moves to when the mode joins the first line."""
        self.mode_row = QWidget()
        status = QHBoxLayout(self.mode_row)
        status.setContentsMargins(0, 0, 0, 0)
        status.setSpacing(6)
        status.addWidget(self.mode_box)
        status.addWidget(self.stop_button)
        status.addSpacing(8)
        status.addWidget(self.model_note, 1)
        status.addWidget(self.load_button)
        self.model_row = QHBoxLayout()
        self.model_row.setContentsMargins(0, 0, 0, 0)

    def _wanted_layout(self) -> tuple[bool, bool, bool]:
        """(columns, one_row, lecture). A short tab (a 720-line projector, a desktop window with the
        strip full) is laid out in columns; lecture mode folds batch and seed away, and on a wide
        screen the mode joins the first line of controls."""
        lecture = bool(self.ctx.lecture_mode)
        tab = self.parentWidget()  # the tab's scroll area viewport: its size, not the panel's minimum
        height = tab.height() if tab is not None else self.height()
        width = tab.width() if tab is not None else self.width()
        return height < COLUMNS_BELOW[lecture], lecture and width >= ONE_ROW_FROM, lecture

    def _arrange(self) -> None:
        """Stacked (a tall tab): two lines of controls over three columns (evidence | noise and radius
        curve | accuracy). Columns (a short, wide tab): verdict and noise draws | histogram | radius
        curve and the two lengths | accuracy. Lecture mode: batch and seed, rarely changed in a
        lecture, fold away (they keep their values)."""
        wanted = self._wanted_layout()
        if wanted == getattr(self, "_layout_state", (False, False, False)):
            self._fold_noise_draws()
            return
        self._layout_state = columns, one_row, lecture = wanted
        for box in (self.batch_box, self.seed_box):
            box.setVisible(not lecture)
            label = buddy_label(self.controls, box)
            if label is not None:
                label.setVisible(not lecture)
        mode_row = self.mode_row.layout()
        for widget in (self.mode_box, self.stop_button):  # out first: an index counts them otherwise
            self.controls.removeWidget(widget)
            mode_row.removeWidget(widget)
        if one_row:
            at = self.controls.indexOf(self.run_button)
            self.controls.insertWidget(at, self.stop_button)
            self.controls.insertWidget(at, self.mode_box)
            self.model_row.addWidget(self.model_note, 1)
            self.model_row.addWidget(self.load_button)
        else:
            mode_row.insertWidget(0, self.stop_button)
            mode_row.insertWidget(0, self.mode_box)
            mode_row.addWidget(self.model_note, 1)
            mode_row.addWidget(self.load_button)
        self.mode_row.setVisible(not one_row)
        evidence, geometry = self.evidence_column.layout(), self.geometry_column.layout()
        curve = self.curve_column.layout()
        for layout in (evidence, geometry, curve):
            last = layout.itemAt(layout.count() - 1)
            if last is not None and last.spacerItem() is not None:
                layout.removeItem(last)
        self.noise_strip.set_columns(2 if columns else NOISE_SHOWN)  # two short rows in the verdict's column
        if columns:
            evidence.addWidget(self.noise_box)
            evidence.addStretch(1)
            self.histogram_column.layout().addWidget(self.histogram, 1)
            for plot in (self.radius_plot, self.bounds_plot):
                curve.addWidget(plot, 1)
            curve.addWidget(self.lengths)
        else:
            evidence.addWidget(self.histogram, 1)
            geometry.addWidget(self.noise_box)
            geometry.addWidget(self.lengths)
            for plot in (self.radius_plot, self.bounds_plot):
                geometry.addWidget(plot, 1)
        for extra in (self.histogram_column, self.curve_column):
            extra.setVisible(columns)
        self.geometry_column.setVisible(not columns)
        for index, stretch in enumerate(COLUMN_SHARES if columns else STACKED_SHARES):
            self.split.setStretchFactor(index, stretch)
        self._share_width()
        self._fold_noise_draws()

    def _share_width(self) -> None:
        """The columns' widths in proportion to their shares (again once the panel has its real width)."""
        shares = COLUMN_SHARES if getattr(self, "_layout_state", (False,))[0] else STACKED_SHARES
        width = max(self.split.width(), 1)
        self.split.setSizes([int(width * share / sum(shares)) for share in shares])

    def _fold_noise_draws(self) -> None:
        """Columns on a short tab (a 720-line projector): the noise draws under the verdict fold away
        when they do not fit; the two lengths beside the radius curve still make their point (‖ε‖₂ ≈
        σ√d against R)."""
        tab = self.parentWidget()  # the scroll area's viewport: its size does not follow the panel's
        height = tab.height() if tab is not None else self.height()
        width = tab.width() if tab is not None else self.width()
        lecture = bool(self.ctx.lecture_mode)
        if getattr(self, "_layout_state", (False,))[0]:
            self.noise_box.setVisible(height >= NOISE_DRAWS_FROM[lecture])
        else:  # stacked: a narrow lecture tab (the deck pane beside it) has no width for four draws
            self.noise_box.setVisible(not lecture or width >= NOISE_WIDE_FROM)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()
        if event.oldSize().width() != event.size().width():
            self._share_width()
