"""The Certify tab's second workflow: certified accuracy against radius over a test subset, one curve per
loaded noise model, growing as the rows of ``engine/certify_jobs.py`` ``accuracy_curves_job`` come in,
with a small table at a few radii. This widget only draws; the panel starts the job and hands it the
events."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout

from robustlens.engine.certify_jobs import AccuracyRow
from robustlens.engine.smoothing_bounds import certified_accuracy, max_certifiable_radius

from .. import style
from ..context import ModelInfo
from ..controls import caption_label, labelled_row, spin_box
from ..settings import Setting
from .certify_plots import AccuracyPlot

TABLE_RADII = (0.0, 0.25, 0.5, 1.0)
# distinct hues for the σ curves (the σ trade-off must read at a glance from the back row)

IMAGES = Setting("accuracy_images", 100, 1, 10_000, step=50,
                 help="test images to certify (evenly spaced through the dataset)")
SAMPLES = Setting("accuracy_n", 1000, 10, 100_000, step=500,
                  help="n per image for this curve (n0, α, batch and seed as above)")


class AccuracySection(QGroupBox):
    """Controls (images, n, Run all σ, Cancel), the curves, the table and a status line."""

    def __init__(self) -> None:
        super().__init__("Certified accuracy vs radius")
        self.images_box = spin_box(IMAGES)
        self.n_box = spin_box(SAMPLES)
        self.run_button = QToolButton()
        self.run_button.setText("Run all σ")
        self.run_button.setToolTip("Certify the subset with every loaded noise model; the curves grow live")
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setEnabled(False)
        self.plot = AccuracyPlot()
        self.plot.setObjectName("certify-accuracy")
        self.status = caption_label()
        self.table = QLabel("")
        self.table.setTextFormat(Qt.TextFormat.RichText)
        for label in (self.table, self.status):  # text that changes per row must never widen the panel
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            label.setSizePolicy(policy)
        self.rows: dict[str, list[AccuracyRow]] = {}   # model key -> its rows so far
        self._labels: dict[str, str] = {}               # model key -> its σ as text (colour key, table)
        self._colors: dict[str, QColor] = {}            # model key -> its colour (style.model_colors)
        self._total = 0
        self._started = 0.0
        self._shipped = False  # the curves are a shipped run's (show_shipped), not this window's

        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(4)
        column.addLayout(labelled_row((("images", self.images_box), ("n", self.n_box)), spacing=0))
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        column.addLayout(buttons)
        column.addWidget(self.plot, 1)
        column.addWidget(self.table)
        column.addWidget(self.status)

    def show_shipped(self, curves: list[tuple[str, str, QColor, object, object]], what: str) -> None:
        """Curves of a shipped run (the deck's replayed certify TSVs): (key, σ label, colour, radii,
        accuracy) each, and ``what`` they are; Run all σ replaces them with a run here."""
        top = max([float(radii[-1]) for _key, _label, _color, radii, _accuracy in curves] + [1e-3])
        self.plot.reset([(key, label, color) for key, label, color, _r, _a in curves], top, "shipped run")
        for key, _label, _color, radii, accuracy in curves:
            self.plot.set_curve(key, radii, accuracy)
        self.rows, self._shipped = {}, True
        self.table.setText("")
        self.status.setStyleSheet("")
        self.status.setText(f"the shipped run ({what}); Run all σ certifies here")

    def show_hint(self, noise_models: int, running: bool) -> None:
        """What Run all σ would do, while the plot is empty."""
        if any(self.rows.values()) or running or self._shipped:
            return
        if noise_models:
            # short lines: the plot may be a narrow column (lecture mode)
            self.plot.set_hint(f"Run all σ:\n{self.images_box.value()} test images\n"
                               f"× {noise_models} noise model{'s' if noise_models != 1 else ''},\none curve each")
        else:
            self.plot.set_hint("no noise model loaded")

    def refuse(self, text: str, error: bool = False) -> None:
        """Say why nothing runs."""
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {style.WRONG.name()};" if error else "")

    def begin(self, models: list[ModelInfo], images: int, n: int, alpha: float,
              loaded: list[ModelInfo] | None = None) -> None:
        """Empty curves for ``models`` (sorted as the job certifies them), each in its colour among
        the ``loaded`` models (the strip's, the legend's, every panel's)."""
        self.status.setStyleSheet("")
        self._shipped = False
        sigmas = [f"{m.meta.sigma:g}" for m in models]
        # two models at one σ (a built-in one and a file) are told apart by name
        self._labels = {m.key: text if sigmas.count(text) == 1 else f"{text} ({style.short_name(m)})"
                        for m, text in zip(models, sigmas)}
        top = max(max_certifiable_radius(m.meta.sigma, n, alpha) for m in models)
        palette = style.model_colors(loaded if loaded else models)
        self._colors = {m.key: QColor(palette.get(m.key, QColor("#7f7f7f"))) for m in models}
        colors = [self._colors[m.key] for m in models]
        self.plot.reset([(m.key, self._labels[m.key], color) for m, color in zip(models, colors)],
                        top, f"{images} images, n = {n:,}")
        self.rows = {m.key: [] for m in models}
        self._total = images * len(models)
        self._started = time.monotonic()
        self._estimate = ""
        self.table.setText("")
        self.plot.set_hint("certifying the first image…")
        self.status.setText(f"certifying {images} images with {len(models)} noise model(s)…")

    def show_estimate(self, estimate) -> None:
        """What the run will cost (engine.cost.CostEstimate), kept on the progress line."""
        self._estimate = f" · estimated {estimate.text()}"
        self.status.setText(self.status.text() + self._estimate)

    def add_row(self, row: AccuracyRow) -> None:
        self.rows.setdefault(row.model, []).append(row)
        self.plot.set_curve(row.model, row.radii, row.accuracy)
        self.status.setText(f"running: {self._done()} / {self._total} certificates · "
                            f"{time.monotonic() - self._started:.0f} s{self._estimate}")
        self._update_table()

    def finished(self) -> None:
        self.status.setText(f"done: {self._done()} certificates in {time.monotonic() - self._started:.1f} s "
                            "(abstentions count as wrong)")

    def aborted(self) -> None:
        self.status.setText("cancelled: the curves show the images certified so far")

    def failed(self, message: str) -> None:
        self.status.setText(f"failed: {message}")

    def set_fonts(self, point_size: float) -> None:
        self.plot.set_fonts(point_size)

    def _done(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def _update_table(self) -> None:
        head = "".join(f"<th align='right'>&nbsp;&nbsp;{'r = ' if r == 0 else ''}{r:g}</th>" for r in TABLE_RADII)
        lines = [f"<tr><th align='left'>σ</th><th align='right'>&nbsp;&nbsp;images</th>{head}</tr>"]
        for key, rows in self.rows.items():
            if not rows:
                continue
            values = certified_accuracy([r.radius for r in rows], [r.correct for r in rows], TABLE_RADII)
            cells = "".join(f"<td align='right'>&nbsp;{v:.0%}</td>" for v in values)
            color = self._colors.get(key, QColor("#7f7f7f")).name()
            lines.append(f"<tr><td><span style='color:{color}'>■</span> {self._labels.get(key, key)}</td>"
                         f"<td align='right'>{len(rows)}</td>{cells}</tr>")
        self.table.setText("<table cellspacing='0' cellpadding='1'>" + "".join(lines) + "</table>")
