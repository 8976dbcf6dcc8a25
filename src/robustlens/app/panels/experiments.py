"""The Experiments tab: experiments over a test subset, one section each, as inner tabs.

Sections are listed in :data:`SECTIONS`; a section joins the tab with one line there (or, at run time,
with :meth:`ExperimentsPanel.add_section`). A section is any ``QWidget`` built as ``Section(ctx)``; it
may have ``run()`` (F5 runs the section on screen) and ``set_lecture_mode(on)``. A section that is a
:class:`~robustlens.app.panels.base.Panel` has its declared settings saved and restored with the tab's,
each under the section's prefix (``robust-accuracy-vs/steps``).

The robustness curves and the transfer matrix are ``robustness_sections.py``; the Ilyas et al. dataset
experiment is ``features_experiments.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import traceback
from typing import Any

from PySide6.QtWidgets import QTabWidget, QTextEdit, QVBoxLayout, QWidget

from ..context import AppContext
from ..settings import Setting
from .base import Panel
from .robustness_sections import RobustnessSection, TransferSection

ROBUSTNESS, TRANSFER = "Robust accuracy vs ε", "Transfer matrix"
# (title, "module:Class"): the sections, in tab order
SECTIONS: list[tuple[str, str]] = [
    (ROBUSTNESS, "robustlens.app.panels.robustness_sections:RobustnessSection"),
    (TRANSFER, "robustlens.app.panels.robustness_sections:TransferSection"),
    ("Dataset experiments (Ilyas et al.)", "robustlens.app.panels.features_experiments:DatasetExperiments"),
]
SECTION = Setting("section", ROBUSTNESS, help="the section on screen")


def _group(title: str) -> str:
    """A section's settings prefix: its title in lower case, runs of other characters as one '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "section"


def _prefixed(title: str, settings: tuple[Setting, ...]) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(s, key=f"{_group(title)}/{s.key}") for s in settings)


class _SectionTabs(QTabWidget):
    """The sections' tabs. Their wrapped texts do not ask for height-for-width layout: inside the
    window's scroll area that would lay the tab out at its preferred height and scroll."""

    def hasHeightForWidth(self) -> bool:
        return False


class ExperimentsPanel(Panel):
    """The sections of :data:`SECTIONS` as inner tabs; F5 runs the one on screen."""

    # what the built-in robustness sections declare; an instance adds those of every Panel section it hosts
    SETTINGS = (SECTION,) + _prefixed(ROBUSTNESS, RobustnessSection.SETTINGS) + _prefixed(TRANSFER,
                                                                                          TransferSection.SETTINGS)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.SETTINGS = (SECTION,)
        self.sections: dict[str, QWidget] = {}
        self._prefixes: dict[str, Panel] = {}    # settings prefix -> the Panel section it belongs to
        self.tabs = _SectionTabs()
        self.tabs.setDocumentMode(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        for title, target in SECTIONS:
            self.add_section(title, target)

    def add_section(self, title: str, section: QWidget | str) -> QWidget:
        """Add a section: a widget, or "module:Class" built as ``Class(ctx)``. A section that fails to
        import or build becomes a page showing the error; the other sections work on."""
        if isinstance(section, str):
            try:
                module_name, _, class_name = section.partition(":")
                section = getattr(importlib.import_module(module_name), class_name)(self.ctx)
            except Exception:  # noqa: BLE001 - one section's bug must not take the tab down
                text = QTextEdit()
                text.setReadOnly(True)
                text.setPlainText(f"The {title} section could not be opened:\n\n{traceback.format_exc()}")
                section = text
        section.setObjectName(f"experiments-section-{title}")
        self.sections[title] = section
        self.tabs.addTab(section, title)
        if isinstance(section, Panel):
            self._prefixes[_group(title)] = section
            self.SETTINGS = self.SETTINGS + _prefixed(title, section.SETTINGS)
        if self.ctx.lecture_mode and hasattr(section, "set_lecture_mode"):
            section.set_lecture_mode(True)
        return section

    def current_section(self) -> QWidget | None:
        return self.tabs.currentWidget()

    def show_section(self, title: str) -> None:
        self.tabs.setCurrentWidget(self.sections[title])

    def run(self) -> None:
        section = self.current_section()
        if hasattr(section, "run"):
            section.run()

    def set_lecture_mode(self, on: bool) -> None:
        for section in self.sections.values():  # a Panel section follows lecture mode by itself
            if hasattr(section, "set_lecture_mode") and not isinstance(section, Panel):
                section.set_lecture_mode(on)

    # ---------------------------------------------------------------- settings: the sections' own, prefixed

    def setting_value(self, key: str) -> Any:
        if key == SECTION.key:
            return self.tabs.tabText(self.tabs.currentIndex())
        prefix, _, rest = key.partition("/")
        return self._prefixes[prefix].setting_value(rest)

    def apply_setting(self, key: str, value: Any) -> None:
        if key == SECTION.key:
            if value not in self.sections:
                raise ValueError(f"no section {value!r}")
            self.show_section(value)
            return
        prefix, _, rest = key.partition("/")
        self._prefixes[prefix].apply_setting(rest, value)

    def settings_applied(self) -> None:
        for section in self._prefixes.values():
            section.settings_applied()
