"""The Attack tab's verdict table: every loaded model, and the smoothed classifier g of every noise
model, on the clean and on the adversarial image, with "fooled?" spelled out. The numbers come from
``engine/attack_judge.py``; this module turns them into rows and draws them."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from robustlens.engine.attack_judge import SMOOTH_ALPHA, SMOOTH_N, SMOOTH_N0, AttackOutcome, AttackParams, SmoothedVerdict
from robustlens.engine.smoothing import ABSTAIN

from .. import style
from ..eps_control import NORM_NAMES

NBSP = "\u00a0"  # keeps "‖δ‖ = 0.10" on one line in wrapped captions


def table_item(text: str, tooltip: str = "", bold: bool = False, color: QColor | None = None,
               background: QColor | None = None, align=Qt.AlignmentFlag.AlignLeft) -> QTableWidgetItem:
    """A read-only cell: text, tooltip, weight, colours and alignment."""
    item = QTableWidgetItem(text)
    item.setTextAlignment(align | Qt.AlignmentFlag.AlignVCenter)
    if tooltip:
        item.setToolTip(tooltip)
    if bold:
        font = item.font()
        font.setBold(True)
        item.setFont(font)
    if color is not None:
        item.setForeground(QBrush(color))
    if background is not None:
        item.setBackground(QBrush(background))
    return item


def make_read_only(table: QTableWidget) -> None:
    """A table that only shows: no editing, no selection, no focus."""
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)


class TransferTable(QTableWidget):
    """model | clean prediction | adversarial prediction | fooled? — one row per judging model."""

    HEADERS = ("model", "clean", "adversarial", "fooled?")  # short: in lecture mode the table is a column

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        make_read_only(self)
        # a verdict too long for its column ("T-shirt/top 100%" in a narrow tab) wraps onto a second
        # line of its row rather than being cut short; rows stay one line where everything fits
        self.setWordWrap(True)
        self.setColumnCount(len(self.HEADERS))
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.verticalHeader().hide()
        # compact rows: every loaded model and smoothed classifier should fit without scrolling
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumSize(300, 90)

    def set_rows(self, rows: Sequence[dict]) -> None:
        """Each row: name, color (QColor), clean, adversarial, fooled (texts), verdict ("yes"/"no"/other),
        tooltip, bold (the source model)."""
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            name = table_item(row["name"], row.get("tooltip", ""), bold=row.get("bold", False))
            chip = QColor(row.get("color") or QColor("gray"))
            name.setData(Qt.ItemDataRole.DecorationRole, chip)
            self.setItem(r, 0, name)
            self.setItem(r, 1, table_item(row["clean"], row.get("clean_tip", "")))
            self.setItem(r, 2, table_item(row["adversarial"], row.get("adversarial_tip", ""),
                                          color=style.WRONG if row.get("adversarial_wrong") else None))
            verdict = row.get("verdict")
            color = {"yes": style.WRONG, "no": style.CORRECT}.get(verdict)
            self.setItem(r, 3, table_item(row["fooled"], row.get("fooled_tip", ""), bold=verdict in ("yes", "no"),
                                          color=color))
        self.resizeRowsToContents()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.resizeRowsToContents()  # the columns' new widths may wrap a verdict, or unwrap it

    def clear_rows(self) -> None:
        self.setRowCount(0)

    def row_texts(self) -> list[list[str]]:
        return [[self.item(r, c).text() if self.item(r, c) else "" for c in range(self.columnCount())]
                for r in range(self.rowCount())]


class Verdicts:
    """The table's rows and the note under it for one finished attack. ``class_name(index)``: a class
    index as the user reads it; ``models``: the loaded ModelInfos; ``judged``: the keys that judged."""

    def __init__(self, outcome: AttackOutcome, params: AttackParams, models, judged: Sequence[str],
                 class_name: Callable[[int | None], str]) -> None:
        self.outcome, self.params, self.judged, self.name = outcome, params, list(judged), class_name
        self.models = list(models)

    def rows(self) -> list[dict]:
        outcome, params = self.outcome, self.params
        colors = style.model_colors(self.models)
        infos = {m.key: m for m in self.models}
        rows = []
        for key in self.judged:
            info = infos.get(key)
            if info is None or key not in outcome.adversarial_probs:
                continue
            clean, adversarial = outcome.clean_probs[key], outcome.adversarial_probs[key]
            c, a = int(np.argmax(clean)), int(np.argmax(adversarial))
            name = style.short_name(info)
            is_source = key == params.source
            if is_source:
                name += "  (base of the attacked g)" if params.smoothed else "  (attacked)"
            fooled, verdict, tip = self.fooled(c, a)
            rows.append(dict(name=name, color=colors.get(key), bold=is_source and not params.smoothed,
                             tooltip=info.label,
                             clean=f"{self.name(c)} {clean[c]:.0%}",
                             adversarial=f"{self.name(a)} {adversarial[a]:.0%}",
                             adversarial_wrong=outcome.label_known and a != outcome.label,
                             fooled=fooled, verdict=verdict, fooled_tip=tip))
        for key, v in outcome.smoothed.items():
            attacked = params.smoothed and key == params.source
            name = f"smoothed g, σ = {v.sigma:g}" + ("  (attacked)" if attacked else "")
            clean = "abstain" if v.clean_prediction == ABSTAIN else \
                f"{self.name(v.clean_prediction)}, R={v.clean_radius:.2f}"
            adversarial = "abstain" if v.adversarial_prediction == ABSTAIN else \
                f"{self.name(v.adversarial_prediction)}, R={v.adversarial_radius:.2f}"
            fooled, verdict, tip = self.smoothed_fooled(v)
            rows.append(dict(name=name, color=colors.get(key) if key in infos else None, bold=attacked,
                             tooltip=f"Cohen et al.'s CERTIFY with n0 = {SMOOTH_N0}, n = {SMOOTH_N:,}, "
                                     f"α = {SMOOTH_ALPHA:g} (R: certified L2 radius)",
                             clean=clean, adversarial=adversarial,
                             adversarial_wrong=(outcome.label_known
                                                and v.adversarial_prediction not in (outcome.label, ABSTAIN)),
                             fooled=fooled, verdict=verdict, fooled_tip=tip,
                             clean_tip=f"pA ≥ {v.clean_pA:.4f}", adversarial_tip=f"pA ≥ {v.adversarial_pA:.4f}"))
        return rows

    def note(self, rows: Sequence[dict]) -> str:
        """The caption under the table: the true class, the target, how many were fooled, and why."""
        outcome = self.outcome
        fooled_count = sum(r["verdict"] == "yes" for r in rows)
        label = self.name(outcome.label)
        true = f"true class <b>{label}</b>" if outcome.label_known else \
            f"no true class: the source's clean answer <b>{label}</b> stands in"
        goal = f" · target <b>{self.name(outcome.target)}</b>" if outcome.target is not None else ""
        smooth = (f" Smoothed g: CERTIFY, n{NBSP}={NBSP}{SMOOTH_N:,}, α{NBSP}={NBSP}{SMOOTH_ALPHA:g}; within its "
                  f"certified L2 radius R, g cannot change (here ‖δ‖₂{NBSP}={NBSP}{outcome.l2_value:.2f})."
                  if outcome.smoothed else "")
        return (f"{true}{goal} · fooled: <b>{fooled_count} of {len(rows)}</b>. An example crafted "
                f"on one model often fools others: they share non-robust features.{smooth}")

    def fooled(self, clean: int, adversarial: int):
        """The fooled? cell of a model: (text, verdict "yes"/"no"/"other", tooltip)."""
        label, target = self.outcome.label, self.outcome.target
        if target is not None:
            if adversarial == target:
                return f"yes → {self.name(target)}", "yes", "classifies the adversarial image as the target"
            return "no", "no", f"does not classify it as the target {self.name(target)}"
        if not self.outcome.label_known:
            if adversarial != clean:
                return "yes (changed)", "yes", "its answer changed (no true class is known for this image)"
            return "no", "no", "its answer did not change"
        if clean != label:
            return "— wrong already", "other", "misclassifies the clean image already: nothing to fool"
        if adversarial != label:
            return "yes", "yes", "right on the clean image, wrong on the adversarial one"
        return "no", "no", "right on both"

    def smoothed_fooled(self, v: SmoothedVerdict):
        """The fooled? cell of a smoothed classifier, with what its certificate says about it."""
        outcome = self.outcome
        label, target, l2 = outcome.label, outcome.target, outcome.l2_value
        if v.clean_prediction == ABSTAIN:
            return "— abstains on x", "other", "g abstains on the clean image: nothing is certified"
        inside = v.clean_prediction == label and l2 < v.clean_radius
        guard = (f"‖δ‖₂ = {l2:.3f} < R = {v.clean_radius:.3f}: inside the certified ball, g cannot change "
                 f"(with probability ≥ 1 − α)")
        if v.adversarial_prediction == ABSTAIN:
            return "abstains", "other", "g abstains on the adversarial image (CERTIFY's pA lower bound < ½)"
        if target is not None:
            hit = v.adversarial_prediction == target
        elif outcome.label_known:
            if v.clean_prediction != label:
                return "— wrong already", "other", "g misclassifies the clean image already"
            hit = v.adversarial_prediction != label
        else:
            hit = v.adversarial_prediction != v.clean_prediction
        if hit:
            return "yes", "yes", (f"‖δ‖₂ = {l2:.3f} ≥ R = {v.clean_radius:.3f}: outside the certified ball"
                                  if not inside else "inside the certified ball: the α chance of a wrong certificate")
        return ("no · inside R" if inside else "no"), "no", (guard if inside else
                                                              f"‖δ‖₂ = {l2:.3f} ≥ R = {v.clean_radius:.3f}, yet g holds")


def kind_text(meta) -> str:
    """What a model's name may not say: how it was trained."""
    if meta.kind == "adversarial":
        return f"PGD-trained, {NORM_NAMES.get(meta.norm, meta.norm)} ε = {meta.eps:g}" if meta.eps is not None \
            else "PGD-trained"
    if meta.kind == "noise":
        return f"noise σ = {meta.sigma:g}" if meta.sigma is not None else "noise-trained"
    return ""
