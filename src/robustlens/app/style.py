"""Colours and fonts shared by the window and the panels, so one model looks the same everywhere."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QApplication

CORRECT = QColor(46, 139, 87)      # the top class is the true class
WRONG = QColor(200, 55, 45)        # the top class is another class
UNKNOWN = QColor(70, 110, 180)     # no true label (a file the user opened)

# one hue family per kind of model; several models of a kind get successive shades
_KIND_SHADES = {
    "standard": ["#4c72b0", "#6a8cc7", "#2f4f8a"],
    "adversarial": ["#dd8452", "#c0504d", "#e8a33d", "#b5651d"],
    "noise": ["#55a868", "#2e8b57", "#8fbc5a", "#1b6e4a"],
}
_OTHER = ["#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]

LECTURE_FONT_SCALE = 1.45


def model_colors(models) -> dict[str, QColor]:
    """A colour per ModelInfo key: standard blues, adversarially trained oranges, noise-trained greens."""
    used: dict[str, int] = {}
    colors = {}
    for info in models:
        kind = getattr(info.meta, "kind", "other")
        shades = _KIND_SHADES.get(kind, _OTHER)
        n = used.get(kind, 0)
        used[kind] = n + 1
        colors[info.key] = QColor(shades[n % len(shades)])
    return colors


def short_name(info) -> str:
    """'fashion-mnist/l2-robust' -> 'l2-robust'; a file -> its name as the checkpoint gives it."""
    return str(info.meta.name).replace("\\", "/").split("/")[-1]


def display_label(meta) -> str:
    """'l2-robust (L2 ε=1.5)', 'linf-robust (L∞ ε=0.1)', 'noise-0.25 (σ=0.25)', 'standard'."""
    short = str(meta.name).replace("\\", "/").split("/")[-1]
    if getattr(meta, "kind", None) == "adversarial" and meta.eps is not None:
        norm = {"linf": "L∞", "l2": "L2"}.get(str(meta.norm).lower(), str(meta.norm or ""))
        return f"{short} ({norm} ε={meta.eps:g})"
    if getattr(meta, "kind", None) == "noise" and meta.sigma is not None:
        return f"{short} (σ={meta.sigma:g})"
    return short


def base_point_size() -> float:
    app = QApplication.instance()
    font = app.property("robustlens_base_font") if app is not None else None
    return float(font) if font else QFont().pointSizeF()


def point_size(lecture: bool) -> float:
    """The point size of a plot's text: the app's, scaled in lecture mode."""
    return base_point_size() * (LECTURE_FONT_SCALE if lecture else 1.0)


def sized_font(point_size: float, bold: bool = False) -> QFont:
    """A font of the given point size (plots size their text themselves, see lecture mode)."""
    font = QFont()
    font.setPointSizeF(point_size)
    font.setBold(bold)
    return font
