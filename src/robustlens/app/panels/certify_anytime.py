"""The Certify tab's two modes: "fixed n (Cohen et al.)" — CERTIFY at the n chosen in advance, the bound
valid only there — and "anytime (stop when you like)" — a confidence sequence for pA
(``engine/anytime.py``), valid whenever the run stops. In anytime mode n is the most samples a run may
draw, a Stop button ends the run and keeps its certificate (not a cancel: the evidence so far *is* a
certificate), and a plot draws the anytime and the fixed-n bound on the same samples, so the price of
anytime validity — and the fixed-n bound's temptation — are visible, with both ceilings.

A mixin of :class:`~robustlens.app.panels.certify.CertifyPanel`: it builds the controls and the plot, picks
the engine job for the mode and draws the anytime events; the panel keeps the rest of the flow.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QLayout, QPushButton, QWidget

from robustlens.engine.anytime import AnytimeUpdate, StopSignal, ceiling_curves, look_schedule
from robustlens.engine.certify_jobs import (AnytimeCertifyRequest, CertifyParams, CertifyRequest,
                                            certify_anytime_image_job, certify_image_job)

from ..controls import setting_combo
from ..settings import Setting
from . import certify_verdicts as verdicts
from .certify_plots import BoundsTrace

FIXED, ANYTIME = "fixed", "anytime"
MODE_TEXT = {FIXED: "fixed n (Cohen et al.)", ANYTIME: "anytime (stop when you like)"}
MODE = Setting("mode", FIXED, choices=(FIXED, ANYTIME),
               help="fixed n: Cohen et al.'s CERTIFY, its bound valid only at the n chosen in advance. "
                    "anytime: a confidence sequence, valid whenever the run stops (Stop keeps the certificate); "
                    "n is then the most samples it may draw")
STOPPING_NOTE = "Stopping after this chunk: the certificate is the evidence so far."


def buddy_label(layout: QLayout, widget: QWidget) -> QLabel | None:
    """The label of ``widget`` in a ``controls.labelled_row``."""
    for i in range(layout.count()):
        label = layout.itemAt(i).widget()
        if isinstance(label, QLabel) and label.buddy() is widget:
            return label
    return None


class AnytimeMode:
    """The mode choice, the Stop button and the bounds plot of the Certify tab (a mixin: ``self`` is the
    panel, with ``n_box``, ``radius_plot``, ``run_engine`` …)."""

    def _build_anytime(self) -> None:
        self.mode_box = setting_combo(MODE, text=MODE_TEXT.__getitem__)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End the anytime run now and keep its certificate: the confidence sequence "
                                    "holds whenever you stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_anytime)
        self.bounds_plot = BoundsTrace()
        self.bounds_plot.setObjectName("certify-bounds")
        self._stop_signal: StopSignal | None = None

    def anytime(self) -> bool:
        return self.mode_box.currentData() == ANYTIME

    def _apply_mode(self, controls: QLayout) -> None:
        """Show what the mode needs: Stop and the bounds plot (anytime) or the radius curve (fixed n)."""
        anytime = self.anytime()
        label = buddy_label(controls, self.n_box)
        if label is not None:
            label.setText("max n" if anytime else "n")
        self.n_box.setToolTip("the most estimation samples an anytime run may draw" if anytime else
                              "n: noise samples that bound pA (the certificate's evidence)")
        self.stop_button.setVisible(anytime)
        self.bounds_plot.setVisible(anytime)
        self.radius_plot.setVisible(not anytime)

    def _update_ceilings(self, params: CertifyParams) -> None:
        n, fixed, anytime = ceiling_curves(params.sigma, params.n, params.alpha)
        self.bounds_plot.set_ceilings(n, fixed, anytime, params.n, len(look_schedule(params.n)))

    def _certify_job(self, model_key: str, image, index: int, params: CertifyParams):
        """(engine function, request) for a run in the current mode; anytime runs get a fresh StopSignal."""
        if params.mode != ANYTIME:
            self._stop_signal = None
            return certify_image_job, CertifyRequest(model_key, image, index, params)
        self._stop_signal = StopSignal()
        return certify_anytime_image_job, AnytimeCertifyRequest(model_key, image, index, params,
                                                                stop=self._stop_signal)

    def _anytime_started(self) -> None:
        self.stop_button.setEnabled(self._stop_signal is not None)

    def _anytime_ended(self, _state: str = "") -> None:
        self.stop_button.setEnabled(False)

    def _reset_anytime(self) -> None:
        """A new image or run: no trace, nothing to stop."""
        self.bounds_plot.show_trace(None)
        self._anytime_ended()

    def stop_anytime(self) -> None:
        """Stop: the running anytime job ends after its current chunk with the certificate so far."""
        if self._stop_signal is not None and not self._stop_signal.stopped:
            self._stop_signal.stop()
            self.stop_button.setEnabled(False)
            self._set_note(STOPPING_NOTE)

    def _show_anytime_update(self, update) -> None:
        if not isinstance(update, AnytimeUpdate):
            return
        if update.trace is not None:
            self.bounds_plot.show_trace(update.trace)
        if update.so_far is not None:  # the radius so far is a certificate already: the bars show it
            shape = self.ctx.dataset.image_shape if self.ctx.dataset is not None else (1, 28, 28)
            self.lengths.set_lengths(*verdicts.lengths(self.params, int(np.prod(shape)), update.so_far))
