"""A lecture deck as plain data: the steps a lecturer walks with PgDown / PgUp, read from a TOML or JSON
file and checked before the window shows any of it. Qt-free: the window's deck (``app/deck.py``) applies
the steps through the panels' declared settings.

A deck file (the built-in one is ``resources/decks/lecture.toml``; ``robustlens --deck-template`` writes
it out to copy and edit)::

    title = "Lecture 8: evasion attacks"

    [[step]]
    title = "A standard model is brittle"     # the pane's heading
    tab = "Attack"                            # a tab of the window, by its title
    image = 7                                 # dataset index to select (leave out: keep the selection)
    settings = { source = "fashion-mnist/standard", norm = "linf", eps_linf = 0.1 }
    run = true                                # run the tab's job (as F5) once the step is shown
    click = []                                # then click these buttons of the tab, by their text
    strip = true                              # false: hide the image strip, the tab gets the height
    formula = "x ← Π(x + α·sign ∇ℓ)"          # shown large beside the panel
    text = "Markdown: what to say, what to point at."

    # a step whose job is long on a CPU replays a shipped result and offers "Rerun live":
    replay = ["builtin:certify-noise-0.25.tsv"]   # certify TSVs: a certified-accuracy table in the pane
    live_settings = { accuracy_images = 50 }      # applied before a live rerun
    live_click = ["Run all σ"]                     # what the live rerun clicks (default: F5, the tab's run)

String values ``builtin:NAME`` name a file shipped in ``resources/decks``; ``./NAME`` a file beside the
deck file. Every error is one line naming the file, the step and the key (:class:`DeckError`).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Callable, Mapping

from .certify_tsv import read_certify_tsv
from .files import read_regular

BUILTIN_PREFIX = "builtin:"
LOCAL_PREFIX = "./"
MAX_DECK_BYTES = 1 << 20   # a deck is text: a megabyte is far more than any lecture
MAX_STEPS = 200
REPLAY_RADII = (0.0, 0.5, 1.0, 1.5, 2.0)   # the radii of a replayed certified-accuracy table
STEP_KEYS = ("title", "tab", "image", "settings", "run", "click", "strip", "formula", "text", "replay",
             "live_settings", "live_click")
DECK_KEYS = ("title", "step")

# validate(setting key, raw value) -> the parsed value, or ValueError saying why not
SettingCheck = Callable[[str, Any], Any]


class DeckError(ValueError):
    """A deck file that cannot be walked: the message is one line naming the file, step and key."""


@dataclass(frozen=True)
class ReplayRow:
    """One shipped certify run: certified accuracy at :data:`REPLAY_RADII` (abstentions count as wrong),
    its whole curve (``curve_radii``, ``curve_accuracy``: CertifyTable.accuracy_curve) and the σ its
    name gives ("noise-0.25"; None when it names none)."""
    name: str
    images: int
    accuracy: tuple[float, ...]
    sigma: float | None = None
    curve_radii: tuple[float, ...] = ()
    curve_accuracy: tuple[float, ...] = ()


@dataclass(frozen=True)
class DeckStep:
    title: str
    tab: str
    image: int | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    run: bool = False
    click: tuple[str, ...] = ()
    strip: bool = True
    formula: str = ""
    text: str = ""
    replay: tuple[Path, ...] = ()
    live_settings: tuple[tuple[str, Any], ...] = ()
    live_click: tuple[str, ...] = ()
    replay_rows: tuple[ReplayRow, ...] = ()

    @property
    def has_replay(self) -> bool:
        """The step shows a shipped result, and offers a live rerun beside it."""
        return bool(self.replay) or bool(self.live_settings) or bool(self.live_click)


@dataclass(frozen=True)
class Deck:
    title: str
    steps: tuple[DeckStep, ...]
    source: str = ""          # where it was read from, for messages
    folder: Path | None = field(default=None, compare=False)


def builtin_folder() -> Path:
    """``resources/decks``: the built-in deck and the results its steps replay."""
    return Path(str(importlib_resources.files("robustlens.resources").joinpath("decks")))


def builtin_deck_path() -> Path:
    return builtin_folder() / "lecture.toml"


def builtin_deck_text() -> str:
    return builtin_deck_path().read_text(encoding="utf-8")


def read_deck(path: str | Path | None = None, checks: Mapping[str, SettingCheck | None] | None = None) -> Deck:
    """The deck in ``path`` (None: the built-in one). ``checks``: {tab title: check(key, value)} for
    the window's tabs (None: tabs and settings are not checked); DeckError says what is wrong."""
    path = builtin_deck_path() if path is None else Path(path)
    try:
        raw = read_regular(path, limit=MAX_DECK_BYTES, what="a deck file", error=DeckError)
    except DeckError as error:
        raise DeckError(f"deck {path}: {error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DeckError(f"deck {path}: not UTF-8 text") from None
    return parse_deck(text, source=str(path), folder=path.parent,
                      json_format=path.suffix.lower() == ".json", checks=checks)


def parse_deck(text: str, source: str = "deck", folder: Path | None = None, json_format: bool = False,
               checks: Mapping[str, SettingCheck | None] | None = None) -> Deck:
    """Parse deck text (TOML, or JSON with ``json_format``) and check every step."""
    where = f"deck {source}"
    try:
        data = json.loads(text) if json_format else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        kind = "JSON" if json_format else "TOML"
        raise DeckError(f"{where}: not valid {kind}: {_one_line(error)}") from None
    if not isinstance(data, dict):
        raise DeckError(f"{where}: the top level must be a table with 'title' and [[step]] entries")
    unknown = sorted(set(data) - set(DECK_KEYS))
    if unknown:
        raise DeckError(f"{where}: unknown key {unknown[0]!r} at the top level (it has {', '.join(DECK_KEYS)})")
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise DeckError(f"{where}: no steps (add [[step]] tables, each with a title and a tab)")
    if len(steps) > MAX_STEPS:
        raise DeckError(f"{where}: {len(steps)} steps; at most {MAX_STEPS}")
    title = data.get("title", "")
    if not isinstance(title, str):
        raise DeckError(f"{where}: title must be text")
    parsed = tuple(_step(entry, i + 1, where, folder, checks) for i, entry in enumerate(steps))
    return Deck(title=title, steps=parsed, source=source, folder=folder)


def _step(entry: Any, number: int, where: str, folder: Path | None,
          checks: Mapping[str, SettingCheck | None] | None) -> DeckStep:
    if not isinstance(entry, dict):
        raise DeckError(f"{where}: step {number} must be a table")
    label = f"{where}: step {number}"
    if isinstance(entry.get("title"), str) and entry["title"].strip():
        label += f" ({entry['title'].strip()!r})"
    unknown = sorted(set(entry) - set(STEP_KEYS))
    if unknown:
        raise DeckError(f"{label}: unknown key {unknown[0]!r} (a step has {', '.join(STEP_KEYS)})")
    for key in ("title", "tab"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise DeckError(f"{label}: '{key}' is required text")
    tab = entry["tab"].strip()
    check = None
    if checks is not None:
        titles = {t.lower(): t for t in checks}
        if tab.lower() not in titles:
            raise DeckError(f"{label}: no tab {tab!r} (tabs: {', '.join(checks)})")
        tab = titles[tab.lower()]
        check = checks[tab]
    image = entry.get("image")
    if image is not None and (isinstance(image, bool) or not isinstance(image, int) or image < 0):
        raise DeckError(f"{label}: image = {image!r} must be a dataset index (a whole number ≥ 0)")
    for key in ("run", "strip"):
        if key in entry and not isinstance(entry[key], bool):
            raise DeckError(f"{label}: {key} = {entry[key]!r} must be true or false")
    for key in ("formula", "text"):
        if key in entry and not isinstance(entry[key], str):
            raise DeckError(f"{label}: {key} must be text")
    clicks = {key: _strings(entry.get(key, []), f"{label}: {key}") for key in ("click", "live_click")}
    replay = tuple(_resolve_file(value, f"{label}: replay", folder)
                   for value in _strings(entry.get("replay", []), f"{label}: replay"))
    rows = tuple(_replay_row(path, f"{label}: replay") for path in replay)
    return DeckStep(title=entry["title"].strip(), tab=tab, image=image, replay_rows=rows,
                    settings=_settings(entry.get("settings", {}), f"{label}: settings", tab, check, folder),
                    run=bool(entry.get("run", False)), click=clicks["click"],
                    strip=bool(entry.get("strip", True)),
                    formula=entry.get("formula", "").strip(), text=entry.get("text", "").strip(),
                    replay=replay,
                    live_settings=_settings(entry.get("live_settings", {}), f"{label}: live_settings", tab,
                                            check, folder),
                    live_click=clicks["live_click"])


def _settings(table: Any, label: str, tab: str, check: SettingCheck | None,
              folder: Path | None) -> tuple[tuple[str, Any], ...]:
    if not isinstance(table, dict):
        raise DeckError(f"{label} must be a table of KEY = VALUE")
    pairs = []
    for key, value in table.items():
        if isinstance(value, str) and (value.startswith(BUILTIN_PREFIX) or value.startswith(LOCAL_PREFIX)):
            value = str(_resolve_file(value, f"{label}: {key}", folder))
        if check is not None:
            try:
                value = check(key, value)
            except KeyError as error:
                raise DeckError(f"{label}: the {tab} tab has no setting {key!r} ({error.args[0]})") from None
            except ValueError as error:
                raise DeckError(f"{label}: {_one_line(error)}") from None
        pairs.append((key, value))
    return tuple(pairs)


def _replay_row(path: Path, label: str) -> ReplayRow:
    """A certify TSV (``robustlens certify``'s output) as one row of the certified-accuracy table."""
    try:
        table = read_certify_tsv(path)
    except (OSError, ValueError) as error:
        raise DeckError(f"{label}: {_one_line(error)}") from None
    name = path.stem.removeprefix("certify-")
    radii, accuracy = table.accuracy_curve()
    return ReplayRow(name, len(table), tuple(float(v) for v in table.accuracy_at(REPLAY_RADII)), _sigma_in(name),
                     tuple(float(r) for r in radii), tuple(float(a) for a in accuracy))


def _sigma_in(name: str) -> float | None:
    """The σ in a shipped run's name ("noise-0.25"), or None."""
    try:
        return float(name.rsplit("-", 1)[-1])
    except ValueError:
        return None


def _strings(value: Any, label: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DeckError(f"{label} must be a list of text")
    return tuple(v.strip() for v in value)


def _resolve_file(value: str, label: str, folder: Path | None) -> Path:
    """``builtin:NAME`` (resources/decks) or ``./NAME`` (beside the deck file, else as given): must exist."""
    if value.startswith(BUILTIN_PREFIX):
        name = value[len(BUILTIN_PREFIX):]
        path = builtin_folder() / name
        if "/" in name or "\\" in name or name.startswith("."):
            raise DeckError(f"{label}: {value!r} must name a file of the built-in deck folder")
    else:
        path = (folder / value) if folder is not None and not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise DeckError(f"{label}: no file {value!r} ({path})")
    return path


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
