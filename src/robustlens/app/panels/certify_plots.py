"""The Certify panel's drawings: the live class histogram, the radius curve, the noise-vs-radius bars,
the noise samples and the certified-accuracy curves, the plots on the shared :class:`~robustlens.app.plots.Plot`.
They only draw numbers the engine computed (``engine/smoothing.py``, ``engine/smoothing_bounds.py``); the
panel (``certify.py``) decides what to show when."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from .. import style
from ..imaging import ImageView, to_qimage
from ..plots import Plot

BAR_OTHER = QColor(176, 184, 196)          # classes other than ĉA
NOISE_COLOR = QColor(120, 120, 130)        # the noise length
RADIUS_COLOR = QColor(46, 139, 87)         # the certified radius
GENERAL_COLOR = QColor(214, 120, 40)       # the general (Bonferroni) bound
CEILING_COLOR = QColor(150, 40, 40)
FIXED_N_COLOR = QColor(200, 95, 30)        # the fixed-n Clopper–Pearson bound (valid only at a preset n)
UPPER_COLOR = QColor(70, 110, 170)         # the anytime upper bound: no n certifies more


class ClassHistogram(Plot):
    """Counts of the base classifier's classes on the noise samples drawn so far: horizontal bars,
    class names on the left axis (✓ marks the true class), ĉA highlighted, the count at each bar."""

    MIN_LINES = 16.0  # ten class names, one above the other, plus title and axis

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._classes: tuple[str, ...] = ()
        self._counts = np.zeros(0, dtype=np.int64)
        self._labels: list[pg.TextItem] = []
        self.getViewBox().invertY(True)  # first class at the top, like a table
        self.getPlotItem().setLabel("bottom", "noise samples")
        self.showGrid(x=True, y=False, alpha=0.2)
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.72)
        self.addItem(self.bars)
        self.setMinimumWidth(190)  # a column of its own when the tab is short

    def set_classes(self, classes: Sequence[str], true_label: int | None, total: int = 1) -> None:
        self._classes = tuple(classes)
        ticks = [(i, f"{name} ✓" if i == true_label else name) for i, name in enumerate(self._classes)]
        self.getAxis("left").setTicks([ticks])
        for item in self._labels:
            self.removeItem(item)
            self._text_items.remove(item)
        self._labels = [self.text_item(color=(40, 40, 40), anchor=(0, 0.5)) for _ in self._classes]
        self.setYRange(-0.6, len(self._classes) - 0.4, padding=0)
        self.show_counts(np.zeros(len(self._classes), dtype=np.int64), total, None, None, "")

    def show_counts(self, counts, total: int, top_class: int | None, true_label: int | None,
                    title: str) -> None:
        """``counts`` so far out of ``total`` samples of this phase (the axis spans the whole phase, so the
        bars grow as the evidence piles up)."""
        counts = np.asarray(counts, dtype=np.int64)
        self._counts = counts.copy()
        count = len(counts)
        if top_class is None:
            highlight = None
        elif true_label is None:
            highlight = style.UNKNOWN
        else:
            highlight = style.CORRECT if top_class == true_label else style.WRONG
        brushes = [highlight if (i == top_class and highlight is not None) else BAR_OTHER for i in range(count)]
        self.bars.setOpts(x0=np.zeros(count), y=np.arange(count), width=counts, height=0.72,
                          brushes=brushes, pens=[pg.mkPen(QColor(b).darker(125)) for b in brushes])
        total = max(1, int(total))
        for i, item in enumerate(self._labels[:count]):
            value = int(counts[i])
            item.setText(f"{value:,}" if value else "")
            if value > 0.55 * total:  # a long bar carries its count inside, in white
                item.setColor("w")
                item.setAnchor((1, 0.5))
                item.setPos(value - total * 0.015, i)
            else:
                item.setColor((40, 40, 40))
                item.setAnchor((0, 0.5))
                item.setPos(value + total * 0.015, i)
        self.setXRange(0, total, padding=0.02)
        # one count, half of n, with thousands separators (n is in the title; a label at the axis' very
        # end is dropped): five of them ("2000 4000 …") run together in a narrow column
        self.getAxis("bottom").setTicks([[(total / 2, f"{total / 2:,.0f}"), (total, "")]])
        self.set_title(title)

    def counts(self) -> np.ndarray:
        return self._counts.copy()


class RadiusCurvePlot(Plot):
    """R(pA) = σ Φ⁻¹(pA) (Theorem 1 with pB = 1 − pA) for the chosen σ, the ceiling σ Φ⁻¹(α^(1/n)) that no
    run of n samples can pass, this image's pA lower bound on the curve (●), and the general-bound radius
    σ/2 (Φ⁻¹(pA) − Φ⁻¹(pB)) with simultaneous (Bonferroni) bounds beside it (▲)."""

    X_RANGE = (0.4, 1.01)
    MIN_LINES = 11.0  # title, axis, the ceiling's two lines, the marks' two lines, the abstain label

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLabel("bottom", "pA (lower bound)")
        item.setLabel("left", "certified L2 radius R")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.getAxis("bottom").setTicks([[(v, f"{v:g}") for v in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]])
        self.abstain = pg.LinearRegionItem(values=(self.X_RANGE[0], 0.5), movable=False,
                                           brush=pg.mkBrush(200, 55, 45, 28), pen=pg.mkPen(None))
        self.addItem(self.abstain)
        # anchored at the region's left edge: in a narrow plot the label may run past pA = ½, never off
        self.abstain_label = self.text_item(text="abstain\npA < ½", color=(160, 50, 40), anchor=(0, 1))
        self.curve = self.plot([], [], pen=pg.mkPen(RADIUS_COLOR, width=2.5))
        self.ceiling = pg.InfiniteLine(angle=0, movable=False,
                                       pen=pg.mkPen(CEILING_COLOR, width=1.5, style=Qt.PenStyle.DashLine))
        self.addItem(self.ceiling)
        self.ceiling_label = self.text_item(color=CEILING_COLOR, anchor=(0, 1))
        self.marker_line = pg.InfiniteLine(angle=90, movable=False,
                                           pen=pg.mkPen(RADIUS_COLOR, width=1, style=Qt.PenStyle.DotLine))
        self.addItem(self.marker_line)
        self.general = pg.ScatterPlotItem(size=11, symbol="t1", brush=pg.mkBrush(GENERAL_COLOR),
                                          pen=pg.mkPen("k", width=1))
        self.addItem(self.general)
        self.marker = pg.ScatterPlotItem(size=12, brush=pg.mkBrush(RADIUS_COLOR), pen=pg.mkPen("k", width=1))
        self.addItem(self.marker)
        self.marker_label = self.text_item(color=(30, 30, 30), anchor=(1, 0.5))
        self.setMinimumWidth(200)
        self._general_text = ""
        self._point_text = ""
        self.set_point(None)
        self.set_general(None, None)

    def set_curve(self, sigma: float, p_values: np.ndarray, radii: np.ndarray, ceiling: float, n: int,
                  alpha: float) -> None:
        """The engine's R(pA) at ``p_values`` and the ceiling for runs of ``n`` samples at level α."""
        self.curve.setData(p_values, radii)
        self.ceiling.setValue(ceiling)
        self.ceiling_label.setText(f"ceiling σ Φ⁻¹(α^(1/n)) = {ceiling:.3f}\nfor n = {n:,}, α = {alpha:g}")
        self._ceiling = ceiling
        self._top = ceiling * 1.45  # room above the ceiling for its two-line label, lecture fonts included
        self.ceiling_label.setPos(self.X_RANGE[0] + 0.005, ceiling + self._top * 0.01)
        self.abstain_label.setPos(self.X_RANGE[0], self._top * 0.04)
        self.setXRange(*self.X_RANGE, padding=0)
        self.setYRange(0, self._top, padding=0)
        self.set_title(f"R(pA) = σ Φ⁻¹(pA) at σ = {sigma:g}")
        self._place_label()

    def set_point(self, p_lower: float | None, radius: float | None = None, final: bool = False) -> None:
        """Mark pA's lower bound and its radius (drawn at the left edge when below the axis' range)."""
        if p_lower is None:
            self.marker.setData([], [])
            self.marker_line.hide()
            self._point_text = ""
            self._place_label()
            return
        shown = max(p_lower, self.X_RANGE[0] + 0.002)
        radius = radius or 0.0
        self.marker.setData([shown], [radius])
        self.marker_line.setValue(shown)
        self.marker_line.show()
        word = "" if final else "so far: "
        verdict = f"R = {radius:.3f}" if p_lower >= 0.5 else "abstain"
        self._point_text = (f"<span style='color:{RADIUS_COLOR.name()}'>●</span> {word}"
                            f"pA ≥ {p_lower:.4f} → {verdict}")
        self._place_label()

    def set_general(self, p_lower: float | None, radius: float | None) -> None:
        if p_lower is None or radius is None:
            self.general.setData([], [])
            self._general_text = ""
        else:
            if radius > 0:
                self.general.setData([max(p_lower, self.X_RANGE[0] + 0.002)], [radius])
            else:
                self.general.setData([], [])
            value = f"R = {radius:.3f}" if radius > 0 else "nothing certified"
            self._general_text = f"<span style='color:{GENERAL_COLOR.name()}'>▲</span> general bound: {value}"
        self._place_label()

    def _place_label(self) -> None:
        """The legend of the two marks, in the empty upper left: above the curve, below the ceiling's
        label, from the plot's left edge (a narrow lecture column still has room for all of it)."""
        lines = [t for t in (self._point_text, self._general_text) if t]
        self.marker_label.setHtml("<br>".join(lines))
        ceiling = getattr(self, "_ceiling", 1.0)
        self.marker_label.setAnchor((0, 0))
        self.marker_label.setPos(self.X_RANGE[0] + 0.005, ceiling * 0.93)


Texts = str | tuple[str, ...]


def _forms(text: Texts) -> tuple[str, ...]:
    return (text,) if isinstance(text, str) else tuple(text) or ("",)


class NoiseVsRadius(QWidget):
    """Two lengths to scale: a typical noise draw ‖ε‖₂ ≈ σ√d against the certified radius R = O(σ)
    (the lecture point that the certified ball is tiny next to the noise the classifier tolerates)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.noise_norm: float | None = None
        self.noise_text: tuple[str, ...] = ("",)
        self.radius: float | None = None
        self.radius_text: tuple[str, ...] = ("",)
        self.ceiling: float | None = None
        self.footer: tuple[str, ...] = ("",)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_lengths(self, noise_norm: float | None, noise_text: Texts, radius: float | None, radius_text: Texts,
                    ceiling: float | None, footer: Texts) -> None:
        """The two lengths and their texts; a text is a string or its forms from the longest down (the
        longest that fits the width is drawn, the longest is in the tooltip)."""
        self.noise_norm, self.noise_text = noise_norm, _forms(noise_text)
        self.radius, self.radius_text = radius, _forms(radius_text)
        self.ceiling, self.footer = ceiling, _forms(footer)
        self.setToolTip("\n".join(forms[0] for forms in (self.noise_text, self.radius_text, self.footer)))
        self.updateGeometry()
        self.update()

    def _line(self) -> int:
        return QFontMetrics(self.font()).height()

    def _fitting(self, forms: tuple[str, ...], width: float) -> str:
        """The longest form that fits ``width``; the shortest elided when none does (tooltip: all)."""
        metrics = QFontMetrics(self.font())
        for text in forms:
            if metrics.horizontalAdvance(text) <= width:
                return text
        return metrics.elidedText(forms[-1], Qt.TextElideMode.ElideRight, int(width))

    def sizeHint(self) -> QSize:
        return QSize(320, int(self._line() * 5.2))

    def minimumSizeHint(self) -> QSize:
        return QSize(200, self.sizeHint().height())

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.WindowText)
        line = self._line()
        width = self.width() - 4
        lengths = [v for v in (self.noise_norm, self.radius, self.ceiling) if v]
        scale = width / max(lengths) if lengths else 0.0
        top = 0
        for value, text, color in ((self.noise_norm, self.noise_text, NOISE_COLOR),
                                   (self.radius, self.radius_text, RADIUS_COLOR)):
            painter.setPen(text_color)
            shown = self._fitting(text, width)
            painter.drawText(QRectF(2, top, width, line), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             shown)
            bar = QRectF(2, top + line + 1, width, line * 0.62)
            painter.fillRect(bar, palette.color(QPalette.ColorRole.AlternateBase))
            if value:
                painter.fillRect(QRectF(bar.left(), bar.top(), max(2.0, value * scale), bar.height()), color)
            if color == RADIUS_COLOR and self.ceiling and scale:
                # where the radius could at most get with this n and α
                x = bar.left() + self.ceiling * scale
                painter.setPen(QPen(CEILING_COLOR, 1.5, Qt.PenStyle.DashLine))
                painter.drawLine(int(x), int(bar.top() - 2), int(x), int(bar.bottom() + 2))
            top += int(line * 1.9)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        footer = self._fitting(self.footer, width)
        painter.drawText(QRectF(2, top, width, line * 1.3), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         footer)


class NoiseSampleStrip(QWidget):
    """A few draws x + ε (clipped to [0,1] for display; the original is in the window's strip above),
    each with the base classifier's class and its noise norm ‖ε‖₂. Captions are elided to their column,
    so new content never widens the panel."""

    def __init__(self, count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(4)
        layout.setVerticalSpacing(0)
        self.views: list[ImageView] = []
        self.captions: list[QLabel] = []
        self._texts: list[str] = []
        for _ in range(count):
            view = ImageView("", minimum=40)
            caption = QLabel("")
            caption.setObjectName("caption")
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.views.append(view)
            self.captions.append(caption)
            self._texts.append("")
        self.set_columns(count)
        self.set_thumbnail_size(56)

    def set_columns(self, columns: int) -> None:
        """The draws in rows of ``columns`` (one row on a desktop; two short rows in a narrow column)."""
        layout = self.layout()
        columns = max(1, int(columns))
        for column in range(layout.columnCount()):
            layout.setColumnStretch(column, 0)
        for i, (view, caption) in enumerate(zip(self.views, self.captions)):
            layout.removeWidget(view)
            layout.removeWidget(caption)
            row, column = divmod(i, columns)
            layout.addWidget(view, 2 * row, column, Qt.AlignmentFlag.AlignHCenter)
            layout.addWidget(caption, 2 * row + 1, column)
        layout.setColumnStretch(columns, 1)

    def _set_caption(self, i: int, text: str) -> None:
        self._texts[i] = text
        label = self.captions[i]
        metrics = QFontMetrics(label.font())
        width = label.width() - 2
        label.setText("\n".join(metrics.elidedText(line, Qt.TextElideMode.ElideRight, width)
                                 for line in text.split("\n")))
        label.setToolTip(text.replace("\n", " · "))

    def set_samples(self, images, captions: Sequence[str]) -> None:
        for i, view in enumerate(self.views):
            if images is not None and i < len(images):
                view.set_image(to_qimage(images[i]))
                self._set_caption(i, captions[i])
            else:
                view.set_image(None)
                self._set_caption(i, "")

    def set_thumbnail_size(self, side: int) -> None:
        width = side + max(14, QFontMetrics(self.font()).horizontalAdvance("Ankle boot") - side + 4)
        for i, view in enumerate(self.views):
            view.setFixedSize(side, side)
            self.captions[i].setFixedWidth(width)
            self._set_caption(i, self._texts[i])


class AccuracyPlot(Plot):
    """Certified accuracy vs L2 radius, one curve per noise model, growing as images are certified."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLabel("bottom", "L2 radius r")
        item.setLabel("left", "certified accuracy")
        self.showGrid(x=True, y=True, alpha=0.2)
        # the colour key is the title's second line: a legend inside the plot would cover some curve
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.hint = self.text_item(color=(110, 110, 110), anchor=(0.5, 0.5))
        self.hint.setPos(0.5, 0.5)
        self.setXRange(0, 1.0, padding=0.02)
        self.setYRange(0, 1.0, padding=0.02)
        self.setMinimumWidth(220)

    def reset(self, names_and_colors: Sequence[tuple[str, str, QColor]], max_radius: float, title: str) -> None:
        """One empty curve per model: (name as the rows call it, its text in the colour key, colour)."""
        for curve in self.curves.values():
            self.removeItem(curve)
        self.curves = {}
        key = []
        for name, text, color in names_and_colors:
            self.curves[name] = self.plot([], [], pen=pg.mkPen(color, width=2.5))
            # ━ 0.25; the mark stays with its σ when the key wraps
            key.append(f"<span style='color:{QColor(color).name()}'>━&nbsp;{text.replace(' ', '&nbsp;')}</span>")
        self.setXRange(0, max(max_radius, 1e-3), padding=0.02)
        self.setYRange(0, 1.0, padding=0.02)
        self.hint.setPos(max(max_radius, 1e-3) / 2, 0.5)
        self.set_title(title + "<br>σ:&nbsp;" + "&nbsp;&nbsp;".join(key))
        self.set_fonts(self.point_size)

    def set_hint(self, text: str) -> None:
        """A line in the middle of the empty plot: what to press to fill it."""
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def set_curve(self, name: str, radii, accuracy) -> None:
        self.hint.hide()
        curve = self.curves.get(name)
        if curve is not None:
            curve.setData(np.asarray(radii), np.asarray(accuracy))


class BoundsTrace(Plot):
    """Anytime mode: the certified radius after every chunk, two bounds on the same samples — the
    confidence sequence's σ Φ⁻¹(L) (valid whenever you stop; steps at its looks) and the fixed-n
    Clopper–Pearson σ Φ⁻¹(pA_lower) at level α (what CERTIFY says had n been fixed in advance at exactly
    that count; stopping on it voids the guarantee) — with the upper sequence's σ Φ⁻¹(U) (no n certifies
    more) and both ceilings σ Φ⁻¹(α^(1/n)) and σ Φ⁻¹((α/K)^(1/n_k)) against n (all samples agreeing).
    Log-scaled n, so the geometric looks are evenly spaced."""

    MIN_LINES = 12.0

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        item = self.getPlotItem()
        item.setLabel("bottom", "estimation samples n (log scale)")
        item.setLabel("left", "certified L2 radius R")
        self.setLogMode(x=True, y=False)
        self.showGrid(x=True, y=True, alpha=0.2)
        dashed = Qt.PenStyle.DashLine
        self.fixed_ceiling = self.plot([], [], pen=pg.mkPen(FIXED_N_COLOR, width=1.2, style=dashed))
        self.anytime_ceiling = self.plot([], [], pen=pg.mkPen(RADIUS_COLOR, width=1.2, style=dashed))
        self.upper = self.plot([], [], pen=pg.mkPen(UPPER_COLOR, width=1.8, style=Qt.PenStyle.DotLine))
        self.fixed = self.plot([], [], pen=pg.mkPen(FIXED_N_COLOR, width=2.2))
        self.anytime = self.plot([], [], pen=pg.mkPen(RADIUS_COLOR, width=3))
        self.now = self.plot([], [], pen=None, symbol="o", symbolSize=10, symbolBrush=pg.mkBrush(RADIUS_COLOR),
                             symbolPen=pg.mkPen("k", width=1))
        self.note = self.text_item(color=(70, 70, 70), anchor=(0, 0))
        self.setMinimumWidth(240)
        self._top = 1.0
        # a short key (a long title widens the plot past its column and cuts it off); the rest in the tooltip
        self.set_title(self._key())
        self.setToolTip(
            "━ anytime: the confidence sequence's bound, valid whenever you stop (steps at its looks)\n"
            "━ fixed n: Clopper–Pearson at this very n, valid only had n been fixed in advance\n"
            "┅ upper: the anytime upper bound on pA; no n certifies more than it\n"
            "╌ ceilings: the most each bound can certify at n, with every sample agreeing")

    @staticmethod
    def _key() -> str:
        def swatch(color: QColor, text: str, mark: str = "━") -> str:
            text = text.replace(" ", "&nbsp;")  # a mark and its words stay together when the key wraps
            return f"<span style='color:{color.name()}'>{mark}&nbsp;{text}</span>"
        return ("Two bounds, same samples<br>"
                + "&nbsp; ".join((swatch(RADIUS_COLOR, "anytime"), swatch(FIXED_N_COLOR, "fixed n"),
                                  swatch(UPPER_COLOR, "upper", "┅"), swatch(QColor(90, 90, 90), "ceilings", "╌"))))

    def set_ceilings(self, n: np.ndarray, fixed: np.ndarray, anytime: np.ndarray, max_n: int, looks: int) -> None:
        """The engine's ceiling curves (``engine/anytime.py`` ceiling_curves) for runs of at most max_n."""
        self.fixed_ceiling.setData(n, fixed)
        self.anytime_ceiling.setData(n, anytime)
        # headroom above the ceilings for the note, which would otherwise sit on the curves
        self._top = max(float(np.max(fixed)), 1e-3) * 1.4
        self._max_n = max_n
        self.setXRange(np.log10(max(n[0], 1)), np.log10(max_n), padding=0.02)
        self.setYRange(0, self._top, padding=0)
        self.note.setHtml(
            f"ceilings at max n = {max_n:,}:<br>"
            f"<span style='color:{FIXED_N_COLOR.name()}'>fixed n {fixed[-1]:.3f}</span> · "
            f"<span style='color:{RADIUS_COLOR.name()}'>anytime {anytime[-1]:.3f}</span><br>"
            f"(anytime: α/{looks} per look)")
        self.note.setPos(np.log10(max(n[0], 1)) + 0.02, self._top * 0.99)
        self.show_trace(None)

    def show_trace(self, trace) -> None:
        """``trace``: the engine's AnytimeTrace (bounds as radii after every chunk), or None."""
        if trace is None or len(trace.drawn) == 0:
            for curve in (self.fixed, self.anytime, self.upper, self.now):
                curve.setData([], [])
            return
        lower, upper, fixed, n = trace.radius_lower, trace.radius_upper, trace.radius_fixed, trace.drawn
        self.anytime.setData(*_steps(n, lower))  # held from one look to the next: steps, not slopes
        self.fixed.setData(n, fixed)
        self.upper.setData(*_steps(n, np.minimum(upper, self._top * 2)))
        self.now.setData(n[-1:], lower[-1:])


def _steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the step function that holds y[i] from x[i] until x[i + 1]."""
    if len(x) < 2:
        return x, y
    return np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]


def verdict_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def titled(title: str, widget: QWidget) -> QWidget:
    """A bold caption above a widget (lighter than a group box)."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    head = QLabel(title)
    bold = QFont(head.font())
    bold.setBold(True)
    head.setFont(bold)
    layout.addWidget(head)
    layout.addWidget(widget)
    return box
