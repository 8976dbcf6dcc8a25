"""A plot's title never runs past the plot: every line, as written or as a legend key in a title's
second line, breaks at a space where it is wider than the room over the view box (a narrow lecture
column), keeps a legend's mark with its words, and is left as it is where it fits."""

import re

import pytest
from PySide6.QtGui import QFontMetrics

from robustlens.app import style
from robustlens.app.panels.certify_plots import BoundsTrace
from robustlens.app.plots import Plot


def shown_lines(plot: Plot) -> list[str]:
    return plot.getPlotItem().titleLabel.text.split("<br>")


def text_width(plot: Plot, html: str) -> int:
    metrics = QFontMetrics(style.sized_font(plot.point_size * 1.2))
    return metrics.horizontalAdvance(re.sub(r"<[^>]*>", "", html).replace("&nbsp;", " "))


def room(plot: Plot) -> int:
    return plot.width() - int(plot.getAxis("left").width()) - 24


@pytest.mark.parametrize("width", [260, 340, 900])
def test_every_line_of_the_anytime_plots_title_fits(qtbot, width):
    plot = BoundsTrace()
    qtbot.addWidget(plot)
    plot.set_fonts(style.point_size(True))  # lecture fonts: the widest title
    plot.resize(width, 300)
    plot.show()
    qtbot.waitUntil(lambda: plot.width() == width)
    plot.set_title(plot._title)
    lines = shown_lines(plot)
    for line in lines:
        assert text_width(plot, line) <= room(plot), (width, lines)
    text = " ".join(re.sub(r"<[^>]*>", "", line).replace("&nbsp;", " ") for line in lines)
    for word in ("anytime", "fixed n", "upper", "ceilings"):
        assert f"━ {word}" in text or f"┅ {word}" in text or f"╌ {word}" in text, text  # mark and words together
    if width == 900:
        assert len(lines) == 2  # as written: the title, then the key


def test_a_title_that_fits_is_left_as_written(qtbot):
    plot = Plot()
    qtbot.addWidget(plot)
    plot.resize(600, 300)
    plot.show()
    qtbot.waitUntil(lambda: plot.width() == 600)
    plot.set_title("Short<br>two lines")
    assert shown_lines(plot) == ["Short", "two lines"]
