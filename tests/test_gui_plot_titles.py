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


@pytest.mark.parametrize("width", [180, 260, 330, 600])
def test_the_noise_against_radius_bars_draw_whole_sentences_in_a_narrow_column(qtbot, width):
    """The two lengths' texts (noise, certified R, how many times longer the noise is) come in forms from
    the longest down; a narrow column gets the longest that fits, not a sentence cut short."""
    from types import SimpleNamespace

    from robustlens.app.panels import certify_verdicts
    from robustlens.app.panels.certify_plots import NoiseVsRadius
    from robustlens.engine.certify_jobs import CertifyParams

    bars = NoiseVsRadius()
    qtbot.addWidget(bars)
    bars.setFont(style.sized_font(style.point_size(True)))
    bars.resize(width, bars.sizeHint().height())
    params = CertifyParams(sigma=1.0, n0=100, n=10_000, alpha=0.001, batch=1000, seed=0)
    cert = SimpleNamespace(abstained=False, radius=0.643, max_radius=3.199)  # what the bars read of a certificate
    expected, *texts = certify_verdicts.lengths(params, 784, cert)
    bars.set_lengths(expected, texts[0], texts[1], texts[2], texts[3], texts[4])
    metrics = QFontMetrics(bars.font())
    room = bars.width() - 4
    for forms in (bars.noise_text, bars.radius_text, bars.footer):
        shown = bars._fitting(forms, room)
        if metrics.horizontalAdvance(forms[-1]) <= room:
            assert shown in forms and metrics.horizontalAdvance(shown) <= room
            longer = forms[:forms.index(shown)]
            assert all(metrics.horizontalAdvance(text) > room for text in longer)  # the longest that fits
    assert "44×" in bars._fitting(bars.footer, room) or metrics.horizontalAdvance(bars.footer[-1]) > room
    assert "44×" in bars.toolTip() and "27.99" in bars.toolTip()
