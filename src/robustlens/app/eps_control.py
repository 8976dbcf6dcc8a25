"""The threat model's controls, shared by the Attack and the Experiments tabs: the norm's names, the
ε range of each norm in its own units, a norm combo, and :class:`EpsControl` (a slider and the exact
value of ε)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QSlider, QWidget

from .controls import combo_box

NORM_NAMES = {"linf": "L∞", "l2": "L2"}
NORM_SUBSCRIPTS = {"linf": "∞", "l2": "₂"}
# the ε slider in each norm's own units: (step, positions). L∞ 0 – 77/255 ≈ 0.30 in 1/255 steps (one
# grey level of an 8-bit image), L2 0 – 5 in steps of 0.05 (28×28 images have ‖x‖₂ up to 28).
EPS_SLIDER = {"linf": (1 / 255, 77), "l2": (0.05, 100)}
DEFAULT_EPS = {"linf": 0.1, "l2": 1.5}   # the ε the built-in robust models were trained at


def eps_maximum(norm: str) -> float:
    """The largest ε the controls offer for ``norm``."""
    step, positions = EPS_SLIDER[norm]
    return step * positions


def norm_combo(texts: dict[str, str] = NORM_NAMES, **options) -> QComboBox:
    """A combo of the two threat models, showing ``texts`` for them."""
    return combo_box(((key, texts[key]) for key in NORM_NAMES), "the threat model: the ball ‖δ‖ ≤ ε", **options)


class EpsControl(QWidget):
    """ε in the norm's own units: a slider (L∞ in 1/255 steps, L2 in 0.05 steps) and the exact value,
    with the value in grey levels for L∞."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.norm = "linf"
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("ε, the radius of the ball the perturbation stays in")
        self.spin = QDoubleSpinBox()
        self.spin.setKeyboardTracking(False)
        self.spin.setToolTip("ε exactly, in [0,1]-pixel units of the chosen norm")
        self.units = QLabel("")
        self.units.setObjectName("caption")
        self.units.setMinimumWidth(self.units.fontMetrics().horizontalAdvance("= 25.5/255") + 4)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(4)
        layout.setVerticalSpacing(2)
        layout.addWidget(self.spin, 0, 0)
        layout.addWidget(self.units, 0, 1)
        layout.addWidget(self.slider, 1, 0, 1, 2)
        layout.setColumnStretch(1, 1)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self.set_norm("linf", DEFAULT_EPS["linf"])

    def set_norm(self, norm: str, value: float) -> None:
        step, positions = EPS_SLIDER[norm]
        self.norm = norm
        for widget in (self.slider, self.spin):
            widget.blockSignals(True)
        self.slider.setRange(0, positions)
        self.slider.setPageStep(max(1, positions // 10))
        self.spin.setDecimals(4 if norm == "linf" else 3)
        self.spin.setRange(0.0, step * positions)
        self.spin.setSingleStep(step)
        for widget in (self.slider, self.spin):
            widget.blockSignals(False)
        self.set_value(value)

    def set_value(self, value: float) -> None:
        self.spin.setValue(float(value))
        self._from_spin(self.spin.value())

    def value(self) -> float:
        return float(self.spin.value())

    def _from_slider(self, position: int) -> None:
        step, _ = EPS_SLIDER[self.norm]
        self.spin.blockSignals(True)
        self.spin.setValue(position * step)
        self.spin.blockSignals(False)
        self._show_units()

    def _from_spin(self, value: float) -> None:
        step, _ = EPS_SLIDER[self.norm]
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(value / step)))
        self.slider.blockSignals(False)
        self._show_units()

    def _show_units(self) -> None:
        value = self.value()
        self.units.setText(f"= {value * 255:.3g}/255" if self.norm == "linf" else "")
