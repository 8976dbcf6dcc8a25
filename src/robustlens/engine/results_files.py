"""The results files the Experiments tab's Ilyas et al. table shows, read and checked without Qt:

- an experiment's (``robustlens experiment --out``, format ``robustlens-features-experiment``):
  clean and robust accuracy of standard models trained on D, D_R, D_NR, D_rand, D_det;
- the planted-feature demo's (``robustlens planted --out``, format ``robustlens-planted-demo``):
  the same accuracies, and how each model answers test images carrying a class pattern
  (:data:`PATTERN_MEASURES`).

    shown = read_results(path)          # ValueError, one line, for anything else
    shown.kind, shown.eval_eps, shown.rows, robust_at(row, 1.5)

The ε columns are the file's own: the evaluation's ``eval_eps`` and any ε a row was measured at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .files import MANIFEST_LIMIT, read_regular
from .ilyas_experiment import EXPERIMENT_FORMAT
from .planted_demo import DEMO_FORMAT

EXPERIMENT, PLANTED = "experiment", "planted"
KINDS = {EXPERIMENT_FORMAT: EXPERIMENT, DEMO_FORMAT: PLANTED}
# a planted-demo row's answers on test images carrying a pattern (planted_measures.pattern_following);
# switched_to_pattern came later: a file without it shows "–" there
PATTERN_MEASURES = ("own_pattern_accuracy", "follows_pattern", "switched_to_pattern", "true_class")
OPTIONAL_MEASURES = ("switched_to_pattern",)
WRITTEN_BY = "robustlens experiment --out or robustlens planted --out"


@dataclass(frozen=True)
class ShownResults:
    """A checked results file: ``kind`` (EXPERIMENT or PLANTED), the parsed ``results``, its ε columns."""
    kind: str
    results: dict
    eval_eps: tuple[float, ...]
    norm: str

    @property
    def rows(self) -> list[dict]:
        return self.results["rows"]


def read_results(path: Path | str) -> ShownResults:
    """The results file at ``path``, checked; a file that is not one is a ValueError of one line."""
    data = read_regular(Path(path).expanduser(), limit=MANIFEST_LIMIT, what="a results file")
    try:
        results = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not valid JSON ({error})") from None
    return check_results(results)


def check_results(results) -> ShownResults:
    """``results`` (a parsed JSON) as ShownResults, or a one-line ValueError saying what is wrong."""
    if not isinstance(results, dict):
        raise ValueError(f"not a robustlens results file (a JSON {type(results).__name__}, not an object; "
                         f"written by {WRITTEN_BY})")
    kind = KINDS.get(results.get("format"))
    if kind is None:
        what = f"its format is {results['format']!r}" if "format" in results else "it names no format"
        raise ValueError(f"not a robustlens results file ({what}; expected {' or '.join(map(repr, KINDS))}, "
                         f"written by {WRITTEN_BY})")
    rows = results.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError("a results file without rows")
    for number, row in enumerate(rows, 1):
        _check_row(row, number, kind)
    declared = _evaluation(results).get("eval_eps", [])
    if not isinstance(declared, list) or not all(_is_number(e) for e in declared):
        raise ValueError(f"eval_eps is not a list of numbers: {declared!r}")
    return ShownResults(kind, results, eps_columns(results), eval_norm(results))


def _evaluation(results: dict) -> dict:
    """The evaluation settings: the experiment's own, the planted demo's under "training"."""
    settings = results.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    if results.get("format") == DEMO_FORMAT:
        settings = settings.get("training")
    return settings if isinstance(settings, dict) else {}


def eps_columns(results: dict) -> tuple[float, ...]:
    """The ε of a results table (also of a run still filling it): the evaluation's ``eval_eps``, then
    any other ε a row was measured at, so that no column is empty and no measured value hidden."""
    declared = [float(e) for e in _evaluation(results).get("eval_eps", []) if _is_number(e)]
    measured = set()
    for row in results.get("rows") or []:
        for key in (row.get("robust_accuracy") or {}) if isinstance(row, dict) else ():
            try:
                measured.add(float(key))
            except ValueError:
                pass
    return tuple(declared) + tuple(sorted(measured - set(declared)))


def eval_norm(results: dict) -> str:
    """The robust accuracy's norm as the table writes it: "L2", "LINF"."""
    return str(_evaluation(results).get("eval_norm", "l2")).upper()


def robust_at(row: dict, eps: float) -> float | None:
    """A row's robust accuracy at ``eps`` (keys are written as str(float(ε)); "1" and "1.0" are one ε)."""
    for key, value in row["robust_accuracy"].items():
        if float(key) == eps:
            return value
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_row(row, number: int, kind: str) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("dataset"), str):
        raise ValueError(f"row {number} names no dataset")
    where = f"row {number} ({row['dataset']})"

    def fraction(key: str, optional: bool = False) -> None:
        value = row.get(key)
        if value is None and optional:
            return
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{where}: {key} is not a fraction in [0, 1]: {value!r}")

    fraction("clean_accuracy")
    robust = row.get("robust_accuracy")
    if not isinstance(robust, dict):
        raise ValueError(f"{where}: robust_accuracy is not a table of ε: accuracy")
    for key, value in robust.items():
        try:
            float(key)
        except ValueError:
            raise ValueError(f"{where}: robust_accuracy has an ε that is not a number: {key!r}") from None
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):
            raise ValueError(f"{where}: robust accuracy at ε = {key} is not a fraction in [0, 1]: {value!r}")
    images = row.get("train_images")
    if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 0):
        raise ValueError(f"{where}: train_images is not a count: {images!r}")
    if kind == PLANTED:
        for key in PATTERN_MEASURES:
            fraction(key, optional=key in OPTIONAL_MEASURES)
