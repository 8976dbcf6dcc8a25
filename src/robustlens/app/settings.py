"""Declared settings: a panel lists what it remembers (key, type, range, default) and the panel base
saves and restores it; a stored value of the wrong type or out of range falls back to the default.

In the spirit of Orange's ``Setting(default)`` class attributes: the panel declares, nothing else
writes save/restore code. QSettings hands back strings for INI files and typed values for the native
store, so :meth:`Setting.parse` accepts both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("robustlens.settings")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting:
    """One remembered value. Its type is the type of ``default`` (bool, int, float or str).

    ``minimum`` / ``maximum``: the closed range a number must lie in. ``choices``: the values allowed
    (numbers compare with a relative tolerance, so 0.001 stored as "0.001" matches). ``step`` and
    ``help`` serve the control built from it (:mod:`robustlens.app.controls`).
    """
    key: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    step: float | None = None
    help: str = ""

    @property
    def kind(self) -> type:
        return type(self.default)

    def parse(self, raw: Any) -> Any:
        """``raw`` (as QSettings gives it back) as this setting's type, checked; ValueError says why not."""
        if isinstance(raw, (list, tuple, dict)):
            raise ValueError(f"{self.key} = {raw!r} is not a single value")
        kind = self.kind
        text = str(raw).strip()
        if kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif text.lower() in _TRUE:
                value = True
            elif text.lower() in _FALSE:
                value = False
            else:
                raise ValueError(f"{self.key} = {raw!r} is not true or false")
        elif kind is int:
            try:
                value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(text)
            except ValueError:
                raise ValueError(f"{self.key} = {raw!r} is not a whole number") from None
        elif kind is float:
            try:
                value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else float(text)
            except ValueError:
                raise ValueError(f"{self.key} = {raw!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{self.key} = {raw!r} is not a finite number")
        else:
            value = text
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """ValueError unless ``value`` lies in the declared range and choices."""
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.key} = {value!r} is below its minimum {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.key} = {value!r} is above its maximum {self.maximum:g}")
        if self.choices is not None and not any(_same(value, c) for c in self.choices):
            raise ValueError(f"{self.key} = {value!r} is not one of {', '.join(map(str, self.choices))}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def read_settings(store, settings: tuple[Setting, ...], where: str = "") -> tuple[dict[str, Any], list[str]]:
    """The stored values of ``settings`` that parse ({key: value}; absent keys are left out) and one line
    per stored value that does not (it falls back to its default). Each problem is logged once."""
    values, problems = {}, []
    for setting in settings:
        raw = store.value(setting.key)
        if raw is None:
            continue
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as error:
            problem = f"{where + ': ' if where else ''}{error}; using {setting.default!r}"
            log.warning("stored setting ignored: %s", problem)
            problems.append(problem)
    return values, problems
