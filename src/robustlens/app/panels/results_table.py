"""The Experiments tab's results table (Ilyas et al.'s experiment and the planted-feature demo): every
number on screen without a horizontal scroll bar, on a projector beside the deck pane too."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem


class ResultsTable(QTableWidget):
    """The results table: every column as wide as its contents, except "what it holds", which wraps at
    its words when the table would be wider than the tab (a projector beside the deck pane), and is
    hidden (its text stays in the first column's tooltip) when even that is too wide: the numbers stay
    on screen without a horizontal scroll bar."""

    WRAPPED_COLUMN = 1

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)

    def start_over(self, headers: list[str], rows: int, header_tips: dict[int, str]) -> None:
        """Empty, with these column headers (``header_tips``: column -> tooltip) and ``rows`` rows. (Not
        named reset: that is QAbstractItemView.reset, which Qt itself calls.)"""
        self.clear()
        self.clearSpans()
        self.setColumnCount(len(headers))
        self.setRowCount(rows)
        for c, text in enumerate(headers):
            item = QTableWidgetItem(text)
            if c in header_tips:
                item.setToolTip(header_tips[c])
            # no font of its own: a header item's font is fixed when set, so a lecture-size header
            # would size the column for one font and draw another (clipped at 1920×1080)
            self.setHorizontalHeaderItem(c, item)

    def fit_columns(self) -> None:
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # widths set here, not by Qt
        column = self.WRAPPED_COLUMN
        if column < self.columnCount():
            self.setColumnHidden(column, False)
        # headers on two lines at most where the table fits that way (a lower header leaves the rows
        # room), on the lines they were written with (up to three, narrower) where it does not
        self._set_header_lines(narrow=False)
        self.resizeColumnsToContents()
        if header.length() > self.viewport().width():
            self._set_header_lines(narrow=True)
            self.resizeColumnsToContents()
        if column >= self.columnCount():
            return
        too_wide = header.length() - self.viewport().width()
        if too_wide > 0:
            words = [word for r in range(self.rowCount()) if self.item(r, column) is not None
                     for word in self.item(r, column).text().split()]
            title = self.horizontalHeaderItem(column)
            lines = title.text().splitlines() if title is not None else []
            narrowest = 16 + max([self.fontMetrics().horizontalAdvance(w) for w in words]
                                 + [header.fontMetrics().horizontalAdvance(line) for line in lines] + [0])
            if self.columnWidth(column) - narrowest < too_wide:
                self.setColumnHidden(column, True)
            else:
                self.setColumnWidth(column, self.columnWidth(column) - too_wide)
        self.resizeRowsToContents()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def _set_header_lines(self, narrow: bool) -> None:
        metrics = self.horizontalHeader().fontMetrics()
        for c in range(self.columnCount()):
            item = self.horizontalHeaderItem(c)
            if item is None:
                continue
            written = item.data(Qt.ItemDataRole.UserRole)
            if written is None:  # the header as the table was filled: its narrow form
                written = item.text()
                item.setData(Qt.ItemDataRole.UserRole, written)
            text = written if narrow else _on_two_lines(written, metrics.horizontalAdvance)
            if item.text() != text:
                item.setText(text)


def _on_two_lines(text: str, width) -> str:
    """``text`` on at most two lines, split between words where the longer line is shortest."""
    if text.count("\n") < 2:
        return text
    words = text.split()
    splits = [(" ".join(words[:k]), " ".join(words[k:])) for k in range(1, len(words))]
    first, second = min(splits, key=lambda lines: max(width(lines[0]), width(lines[1])))
    return f"{first}\n{second}"
