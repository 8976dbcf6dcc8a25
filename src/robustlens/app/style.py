"""Colours and fonts shared by the window and the panels, so one model looks the same everywhere."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QApplication

CORRECT = QColor(46, 139, 87)      # the top class is the true class
WRONG = QColor(200, 55, 45)        # the top class is another class
UNKNOWN = QColor(70, 110, 180)     # no true label (a file the user opened)

# Okabe & Ito's colour-blind-safe palette (distinct on a washed-out projector, too). Each kind of model
# has its own colours, the same model the same colour in every panel: strip bars, plot curves,
# legends, table chips all ask model_colors().
OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "orange": "#E69F00", "bluish green": "#009E73",
             "sky blue": "#56B4E9", "reddish purple": "#CC79A7", "black": "#000000", "yellow": "#F0E442"}
_KIND_COLORS = {
    "standard": ("#0072B2", "#000000"),
    "adversarial": ("#D55E00", "#E69F00"),
    "noise": ("#009E73", "#56B4E9", "#CC79A7"),
}
_EXTRA = ("#000000", "#E69F00", "#CC79A7", "#56B4E9", "#0072B2", "#D55E00", "#009E73",
          "#7f7f7f", "#8c564b", "#b8a000", "#4d4d4d", "#9e9ac8")

LECTURE_FONT_SCALE = 1.45


def _kind_order(info) -> tuple:
    meta = info.meta
    return (getattr(meta, "sigma", None) or 0.0, getattr(meta, "eps", None) or 0.0, str(info.key))


def model_colors(models) -> dict[str, QColor]:
    """A colour per ModelInfo key, from the Okabe–Ito palette by kind: standard blue, adversarially
    trained vermillion / orange, noise-trained green, sky blue, purple (by σ). A kind with more models
    than colours takes the unused colours next, so no two of up to 12 models share one."""
    models = list(models)
    colors: dict[str, QColor] = {}
    used: set[str] = set()
    by_kind: dict[str, list] = {}
    for info in models:
        by_kind.setdefault(getattr(info.meta, "kind", "other"), []).append(info)
    overflow = []
    for kind, infos in by_kind.items():
        preferred = [c for c in _KIND_COLORS.get(kind, ()) if c not in used]
        for info in sorted(infos, key=_kind_order):
            if preferred:
                color = preferred.pop(0)
                used.add(color)
                colors[info.key] = QColor(color)
            else:
                overflow.append(info)
    for n, info in enumerate(overflow):
        free = [c for c in _EXTRA if c not in used]
        color = free[0] if free else _EXTRA[n % len(_EXTRA)]
        used.add(color)
        colors[info.key] = QColor(color)
    return colors


def model_color(models, key: str, fallback: str = "#7f7f7f") -> QColor:
    """The colour of one loaded model (``fallback`` for a key not loaded)."""
    return QColor(model_colors(models).get(key, QColor(fallback)))


def short_name(info) -> str:
    """The model's name everywhere (strip, legends, tables, combo boxes): 'l2-robust' for a zoo
    model, the file's own name ('my_checkpoint.pt') for a loaded file."""
    if getattr(info, "source", "zoo") == "file":
        return Path(str(info.key)).name
    return str(info.meta.name).replace("\\", "/").split("/")[-1]


def model_label(info) -> str:
    """The name with its training: 'l2-robust (L2 ε=1.5)', 'my_checkpoint.pt (σ=0.5)'."""
    return display_label(info.meta, short_name(info))


def display_label(meta, short: str | None = None) -> str:
    """'l2-robust (L2 ε=1.5)', 'linf-robust (L∞ ε=0.1)', 'noise-0.25 (σ=0.25)', 'standard'."""
    short = short if short is not None else str(meta.name).replace("\\", "/").split("/")[-1]
    if getattr(meta, "kind", None) == "adversarial" and meta.eps is not None:
        norm = {"linf": "L∞", "l2": "L2"}.get(str(meta.norm).lower(), str(meta.norm or ""))
        return f"{short} ({norm} ε={meta.eps:g})"
    if getattr(meta, "kind", None) == "noise" and meta.sigma is not None:
        return f"{short} (σ={meta.sigma:g})"
    return short


def dataset_source(dataset) -> str:
    """Where a dataset came from, without repeating its size ('built-in', not 'built-in (10000 images)')."""
    return re.sub(r"\s*\(\d[\d,]* images\)\s*$", "", str(dataset.source)) or str(dataset.source)


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
