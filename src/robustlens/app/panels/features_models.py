"""Which model inverts what, for the Features tab and the Ilyas et al. experiment section: the models
that can play each part (robust, standard, noise-trained), whether each is there, and what to do when
one is missing. No weights here: a key is loaded on the engine thread when a job uses it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QComboBox

from robustlens.engine.models import zoo_file
from robustlens.engine.zoo import catalogue

from ..context import AppContext

NONE_KEY = ""  # "no model" (the optional third column)

# the built-in models that play each kind's part by default, first one preferred
DEFAULT_TAILS = {"adversarial": ("l2-robust", "linf-robust"), "standard": ("standard",),
                 "noise": ("noise-0.25", "noise-0.50", "noise-1.00")}
# how to get an equivalent model when the built-in one is missing
TRAIN_HINT = {"adversarial": "robustlens train --mode adversarial --norm l2 --eps 1.5 --out robust.pt",
              "standard": "robustlens train --mode standard --out standard.pt",
              "noise": "robustlens train --mode noise --sigma 0.5 --out noise.pt"}


def dataset_name(ctx: AppContext) -> str:
    return ctx.dataset.name if ctx.dataset is not None else "fashion-mnist"


def model_status(ctx: AppContext, key: str) -> str:
    """"loaded" (ticked in the window), "zoo" / "file" (there; loads when a job uses it), "missing",
    or "none" for no key."""
    if not key:
        return "none"
    if key in ctx.model_keys():
        return "loaded"
    if Path(key).is_absolute():
        return "file" if Path(key).exists() else "missing"
    return "zoo" if zoo_file(key).exists() else "missing"


def candidates(ctx: AppContext, kind: str) -> list[str]:
    """Keys that can play ``kind``'s part: the dataset's default built-in models (even while missing,
    so the panel can say what to do), the zoo's others of that kind, and the loaded ones."""
    dataset = dataset_name(ctx)
    keys = [f"{dataset}/{tail}" for tail in DEFAULT_TAILS[kind]]
    for entry in catalogue():
        if entry.kind == kind and entry.dataset == dataset and entry.name not in keys:
            keys.append(entry.name)
    for info in ctx.models_of_kind(kind):
        if info.key not in keys:
            keys.append(info.key)
    return keys


def display_name(ctx: AppContext, key: str, metas: dict | None = None) -> str:
    """'l2-robust (L2 ε=1.5)' for a loaded model (or one whose meta a job sent), else the key's tail."""
    info = next((m for m in ctx.models if m.key == key), None)
    if info is not None:
        return info.label
    meta = (metas or {}).get(key)
    if meta is not None:
        return meta.label
    return Path(key).name if Path(key).is_absolute() else key.rsplit("/", 1)[-1]


def missing_text(kind: str, key: str) -> str:
    """One rich-text line: which model is missing, and how to get one."""
    where = key if Path(key).is_absolute() else str(zoo_file(key))
    return (f"<b>{key} is missing</b> (no file {where}; the built-in zoo adds it once trained). "
            f"Choose another model, or train one — <code>{TRAIN_HINT[kind]}</code> — and open it with "
            "File → Open model….")


def fill_model_box(box: QComboBox, ctx: AppContext, kind: str, *, optional: bool = False,
                   metas: dict | None = None) -> None:
    """(Re)list the candidates of ``kind`` in ``box``, marking missing ones, keeping the choice; with
    nothing chosen yet the first model that is there (or "none" when ``optional``)."""
    current = box.currentData()
    box.blockSignals(True)
    try:
        box.clear()
        if optional:
            box.addItem("none", NONE_KEY)
        keys = candidates(ctx, kind)
        if current and current not in keys:
            keys.append(current)
        for key in keys:
            missing = model_status(ctx, key) == "missing"
            box.addItem(display_name(ctx, key, metas) + ("  (missing)" if missing else ""), key)
        if current is None:
            current = NONE_KEY if optional else next(
                (k for k in keys if model_status(ctx, k) != "missing"), keys[0] if keys else NONE_KEY)
        position = box.findData(current)
        box.setCurrentIndex(position if position >= 0 else 0)
    finally:
        box.blockSignals(False)


def check_remembered(ctx: AppContext, kind: str, key: str) -> None:
    """ValueError for a remembered key that names no model there is or could be (a built-in default
    still being trained is offered, so it passes), so that settings fall back to the default."""
    if key and model_status(ctx, key) == "missing" and key not in candidates(ctx, kind):
        raise ValueError(f"no model {key!r} (no such built-in model or file)")


def load_unloaded(ctx: AppContext, keys) -> None:
    """Ask the window to load the built-in models a run uses but the window has not loaded yet, so
    they appear (ticked, in their colour) wherever models are shown."""
    wanted = [key for key in keys if model_status(ctx, key) == "zoo"]
    if wanted:
        ctx.load_models(wanted)


def choose(box: QComboBox, ctx: AppContext, key: str, metas: dict | None = None) -> None:
    """Select ``key`` in ``box``, adding it when it is not listed (a file, a setting from before)."""
    if box.findData(key) < 0:
        missing = model_status(ctx, key) == "missing"
        box.addItem(display_name(ctx, key, metas) + ("  (missing)" if missing else ""), key)
    box.setCurrentIndex(box.findData(key))
