"""The guided lecture: walk a deck (``engine/deck_file.py``) through the window, one step per PgDown.

A step is applied only through what the window and the panels offer everyone: the tab by its title,
the tab's declared settings (``Panel.apply_setting`` then ``settings_applied``, as a restore does),
``window.select_index``, the tab's ``run()`` (F5) and its buttons by their text (as ``--click``).
The settings a deck changes are the lecturer's own again when the deck closes (or the window does).

    controller = start_deck(window, path=None, step=1)   # the built-in deck, first step
    controller.next(); controller.previous(); controller.rerun_live(); controller.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QWidget

from robustlens.engine.deck_file import Deck, DeckError, DeckStep, read_deck

NEXT_KEYS = ("PgDown",)       # presenter remotes send PgDown / PgUp
PREVIOUS_KEYS = ("PgUp",)


def setting_checks(window) -> dict[str, Any]:
    """{tab title: check(key, value)} for the deck file: each tab's declared settings parse the value
    (Setting.parse: type, range, choices); an undeclared key is a KeyError listing the declared ones."""

    def check_for(panel):
        declared = {setting.key: setting for setting in getattr(panel, "SETTINGS", ())}

        def check(key: str, value: Any) -> Any:
            if key not in declared:
                raise KeyError(f"it has {', '.join(sorted(declared))}" if declared else "it has no settings")
            if isinstance(value, float) and declared[key].kind is int and value.is_integer():
                value = int(value)
            return declared[key].parse(value)

        return check

    return {title: check_for(panel) for title, panel in window.panels.items()}


def load_deck(window, path: str | Path | None = None) -> Deck:
    """The deck file at ``path`` (None or "": the built-in one), checked against this window's tabs."""
    return read_deck(Path(path).expanduser() if path else None, checks=setting_checks(window))


def click_button(panel: QWidget, text: str) -> bool:
    """Click the first visible, enabled button of ``panel`` with this text (no mnemonics, any case)."""
    wanted = text.replace("&", "").strip().lower()
    for button in panel.findChildren(QAbstractButton):
        if button.text().replace("&", "").strip().lower() == wanted and button.isVisible() and button.isEnabled():
            button.click()
            return True
    return False


class DeckController(QObject):
    """Walks ``deck`` in ``window``: the pane beside the tabs (``deck_view.DeckPane``), PgDown / PgUp."""

    stepShown = Signal(int)            # 0-based index of the step just applied
    closed = Signal()

    def __init__(self, window, deck: Deck) -> None:
        super().__init__(window)
        from .deck_view import DeckPane

        self.window = window
        self.deck = deck
        self.index = -1
        self.problems: list[str] = []  # what went wrong applying the current step (also in the pane)
        self._saved = self._snapshot()
        self._gallery_was_shown = window.gallery_action.isChecked()
        self._strip_was_shown = window.strip_action.isChecked()
        self._window_keys = (list(window.next_action.shortcuts()), list(window.previous_action.shortcuts()))
        # PgDown / PgUp step the deck now; the window's next / previous image keep their other keys
        for action in (window.next_action, window.previous_action):
            action.setShortcuts([k for k in action.shortcuts()
                                 if k.toString() not in (*NEXT_KEYS, *PREVIOUS_KEYS)])
        self.next_action = self._action("Next deck step", self.next, NEXT_KEYS)
        self.previous_action = self._action("Previous deck step", self.previous, PREVIOUS_KEYS)
        self.pane = DeckPane(self, window)
        window.show_gallery(False)  # the deck chooses the images: the tabs take the width
        window.installEventFilter(self)

    def _action(self, text: str, slot, keys) -> QAction:
        action = QAction(text, self.window)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        self.window.addAction(action)
        return action

    # ---------------------------------------------------------------- moving

    @property
    def step(self) -> DeckStep | None:
        return self.deck.steps[self.index] if 0 <= self.index < len(self.deck.steps) else None

    def next(self) -> None:
        if self.index + 1 < len(self.deck.steps):
            self.show_step(self.index + 1)

    def previous(self) -> None:
        if self.index > 0:
            self.show_step(self.index - 1)

    def show_step(self, index: int) -> list[str]:
        """Apply step ``index`` (0-based): its tab, settings, image, job and clicks; then the pane.
        Returns what could not be applied (also shown in the pane), an empty list when all was."""
        window, step = self.window, self.deck.steps[index]
        self.index = index
        self.problems = []
        # the last step's jobs stop: the deck moves at once, and says nothing of having cancelled them
        window.cancel_jobs(quietly=True)
        panel = window.panels.get(step.tab)
        titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        if panel is None or step.tab not in titles:
            self.problems.append(f"no tab {step.tab!r}")
        else:
            window.tabs.setCurrentIndex(titles.index(step.tab))
            window.show_strip(step.strip and self._strip_was_shown)
            self._apply(panel, step.settings)
            self._select(step.image)
            if step.run:
                window.request_run()
            self._click(panel, step.click)
            if step.replay_rows and hasattr(panel, "show_replay"):  # the shipped result drawn in the tab itself
                panel.show_replay(step.replay_rows)
        self.pane.show_step(index, step, self.problems)
        self.stepShown.emit(index)
        return list(self.problems)

    def rerun_live(self) -> list[str]:
        """The current step's job, live on this machine instead of the shipped result."""
        step, panel = self.step, self.window.panels.get(self.step.tab) if self.step else None
        if step is None or panel is None:
            return []
        self.problems = []
        self._apply(panel, step.live_settings)
        if step.live_click:
            self._click(panel, step.live_click)
        else:
            self.window.request_run()
        self.pane.show_problems(self.problems)
        return list(self.problems)

    # ---------------------------------------------------------------- applying

    def _apply(self, panel, settings) -> None:
        if not settings:
            return
        for key, value in settings:
            try:
                panel.apply_setting(key, value)
            except (KeyError, TypeError, ValueError) as error:
                self.problems.append(f"{key} = {value!r}: {error}")
        try:
            panel.settings_applied()
        except (TypeError, ValueError) as error:
            self.problems.append(str(error))

    def _select(self, image: int | None) -> None:
        if image is None:
            return
        dataset = self.window.ctx.dataset
        if dataset is None or not 0 <= image < len(dataset):
            size = "no dataset" if dataset is None else f"{len(dataset):,} images"
            self.problems.append(f"image {image} is not in the dataset ({size})")
            return
        self.window.select_index(image)

    def _click(self, panel, texts) -> None:
        for text in texts:
            if not click_button(panel, text):
                self.problems.append(f"no button {text!r} to click on the {self.step.tab} tab")

    # ---------------------------------------------------------------- the lecturer's settings

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        """The current values of every setting the deck may change, per tab."""
        touched: dict[str, set[str]] = {}
        for step in self.deck.steps:
            touched.setdefault(step.tab, set()).update(k for k, _ in step.settings + step.live_settings)
        saved = {}
        for title, keys in touched.items():
            panel = self.window.panels.get(title)
            if panel is None or not hasattr(panel, "setting_value"):
                continue
            values = {}
            for key in sorted(keys):
                try:
                    values[key] = panel.setting_value(key)
                except (KeyError, TypeError, ValueError):
                    pass
            saved[title] = values
        return saved

    def _restore(self) -> None:
        for title, values in self._saved.items():
            panel = self.window.panels.get(title)
            for key, value in values.items():
                try:
                    panel.apply_setting(key, value)
                except (KeyError, TypeError, ValueError):
                    pass  # a value that cannot be shown again stays as the deck left it
            try:
                panel.settings_applied()
            except (TypeError, ValueError):
                pass

    def close(self) -> None:
        """End the deck: the lecturer's settings, keys and gallery come back."""
        window = self.window
        if window is None:
            return
        window.removeEventFilter(self)
        self._restore()
        window.next_action.setShortcuts(self._window_keys[0])
        window.previous_action.setShortcuts(self._window_keys[1])
        for action in (self.next_action, self.previous_action):
            window.removeAction(action)
            action.deleteLater()
        window.show_gallery(self._gallery_was_shown)
        window.show_strip(self._strip_was_shown)
        self.pane.remove()
        if getattr(window, "deck", None) is self:
            window.deck = None
        self.window = None
        self.closed.emit()

    def eventFilter(self, watched, event) -> bool:
        # before the window saves its settings on close: the lecturer's, not the deck's
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.close()
        elif watched is self.window and event.type() == QEvent.Type.Resize:
            self.pane.fit_width()
        return False


def start_deck(window, path: str | Path | None = None, step: int = 1) -> DeckController | None:
    """Open a deck in ``window`` at ``step`` (1-based) and return its controller; a bad deck file is
    one line in the window's message banner and None. A deck already open closes first."""
    try:
        deck = load_deck(window, path)
    except DeckError as error:
        window.ctx.error(str(error))
        return None
    if not 1 <= step <= len(deck.steps):
        window.ctx.error(f"deck {deck.source}: no step {step} (it has {len(deck.steps)})")
        return None
    return open_deck(window, deck, step)


def open_deck(window, deck: Deck, step: int = 1) -> DeckController:
    """Walk a deck already read (and checked): step ``step`` (1-based) once the dataset and models are in."""
    old = getattr(window, "deck", None)
    if old is not None:
        old.close()
    controller = DeckController(window, deck)
    window.deck = controller
    ctx = window.ctx
    if ctx.dataset is not None and ctx.models:
        controller.show_step(step - 1)
    else:  # the window is still loading: start once the first predictions are on screen
        def first(*_args) -> None:
            window.firstPredictions.disconnect(first)
            if window.deck is controller:
                controller.show_step(step - 1)

        window.firstPredictions.connect(first)
        controller.pane.show_waiting(deck)
    return controller

