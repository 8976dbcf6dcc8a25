"""Result files that a rerun continues instead of destroying: one TSV row per finished unit of work.

A file written through :class:`ResumableTSV` starts with two lines,

    # robustlens certify settings {"alpha": 0.001, "model": "fashion-mnist/noise-0.25", ...}
    idx	label	predict	radius	correct	time

(a ``#`` comment with the run's settings as JSON, then the column header), followed by one row per
finished unit, each written with a single ``write`` and flushed at once. Readers that skip ``#`` lines
(``robustlens analyze``, pandas ``comment="#"``) see the reference TSV unchanged.

Opening an existing file with the same settings keeps its rows (``.rows``, keyed by ``key(fields)``)
and appends after them; a last line without its newline (the process was killed in the middle of
writing it) is cut off and that unit is redone. Different settings, or a file that is not one of
ours, are refused with one line unless ``overwrite`` is set. Run the units in a fixed order and skip
the keys already in ``.rows``: the finished file then has the rows of an uninterrupted run, in the
same order.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

from .files import MiB, describe_kind, read_regular

RESULTS_LIMIT = 256 * MiB  # the largest existing result file read back to resume


class OutputRefused(ValueError):
    """An output path that cannot be written or resumed; the message is one line."""


def prepare_output_file(path: Path | str) -> Path:
    """``path`` as a place to write a file: refused with one line if it (or a folder above it) is not
    what it must be — an existing non-regular file (a directory, a device such as ``/dev/full``, a
    named pipe) or a regular file where a folder is needed. Creates the missing folders."""
    path = Path(path).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as failure:  # e.g. ENOTDIR: a file where a folder should be
        raise OutputRefused(_blocked(path) or f"cannot write {path}: {failure.strerror or failure}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"cannot write {path}: it is {describe_kind(st.st_mode)}, not a regular file")
    prepare_output_folder(path.parent)
    return path


def prepare_output_folder(folder: Path | str) -> Path:
    """``folder`` created if missing; refused with one line if it or a folder above it is a file."""
    folder = Path(folder).expanduser()
    blocked = _blocked(folder / "x", what=f"create the folder {folder}")
    if blocked:
        raise OutputRefused(blocked)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as failure:
        raise OutputRefused(f"cannot create the folder {folder}: {failure.strerror or failure}") from None
    return folder


def _blocked(path: Path, what: str = "") -> str | None:
    """Why the folders above ``path`` cannot hold it (one of them exists and is not a folder), if so."""
    what = what or f"write {path}"
    for parent in reversed(path.parents):
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            return None
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a file" if stat.S_ISREG(st.st_mode) else describe_kind(st.st_mode)
            return f"cannot {what}: {parent} is {kind}, not a folder"
    return None


def _normalized(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True))


def _differences(old: dict, new: dict, limit: int = 3) -> str:
    keys = sorted(set(old) | set(new))
    changed = [k for k in keys if old.get(k) != new.get(k)]
    shown = [f"{k} {json.dumps(old.get(k))} there, {json.dumps(new.get(k))} now" for k in changed[:limit]]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(shown) + more


def first_field(fields: list[str]) -> str:
    return fields[0]


class ResumableTSV:
    """A TSV result file continued across runs (see the module docstring).

    ``columns`` is the column header line (tab-separated), ``settings`` a JSON-able dict that must be
    equal for rows to be reused, ``tool`` names the writer in the comment line and in messages
    (e.g. "robustlens certify"). Use as a context manager; ``rows`` maps each kept row's key to its
    fields, ``append(line)`` writes and flushes one row.
    """

    def __init__(self, path: Path | str, columns: str, settings: dict, *, tool: str, overwrite: bool = False,
                 key: Callable[[list[str]], object] = first_field):
        self.path = prepare_output_file(path)
        self.columns = columns
        self.settings = _normalized(settings)
        self.tool = tool
        self.key = key
        self.rows: dict[object, list[str]] = {}
        self._file = None
        self._keep_bytes = self._read_existing(overwrite)

    @property
    def settings_line(self) -> str:
        return f"# {self.tool} settings {json.dumps(self.settings, sort_keys=True, ensure_ascii=False)}"

    @property
    def kept(self) -> int:
        return len(self.rows)

    def _refuse(self, why: str) -> OutputRefused:
        return OutputRefused(f"{self.path} {why}: give --overwrite to replace it, or another --out")

    def _read_existing(self, overwrite: bool) -> int | None:
        """Bytes of the existing file to keep (None: write it afresh), after checking it."""
        if overwrite or not self.path.exists():
            return None
        data = read_regular(self.path, limit=RESULTS_LIMIT, what="a result file to resume", error=OutputRefused)
        head = (self.settings_line + "\n" + self.columns + "\n").encode()
        if head.startswith(data):  # empty, or killed while writing the header: nothing to keep
            return None
        complete = data[:data.rfind(b"\n") + 1]  # a last line without its newline is redone
        try:
            lines = complete.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError:
            raise self._refuse("is not a text file written by " + self.tool) from None
        if not lines or not lines[0].startswith(f"# {self.tool} settings "):
            raise self._refuse(f"exists and has no '# {self.tool} settings' line (written by something else or an "
                               f"older version)")
        try:
            stored = json.loads(lines[0][len(f"# {self.tool} settings "):])
        except ValueError:
            raise self._refuse("has an unreadable settings line") from None
        if not isinstance(stored, dict):
            raise self._refuse("has an unreadable settings line")
        if stored != self.settings:
            raise self._refuse(f"holds results for other settings ({_differences(stored, self.settings)})")
        if len(lines) < 2:
            return None
        if lines[1] != self.columns:
            raise self._refuse(f"has the columns {lines[1]!r}, not {self.columns!r}")
        width = len(self.columns.split("\t"))
        for number, line in enumerate(lines[2:], start=3):
            fields = line.split("\t")
            if len(fields) != width:
                raise self._refuse(f"line {number} has {len(fields)} fields instead of {width}")
            key = self.key(fields)
            if key in self.rows:
                raise self._refuse(f"line {number} repeats the row {key!r}")
            self.rows[key] = fields
        return len(complete)

    def __enter__(self) -> "ResumableTSV":
        if self._keep_bytes is None:
            self._file = open(self.path, "w", encoding="utf-8")
            self._file.write(self.settings_line + "\n" + self.columns + "\n")
            self._file.flush()
        else:
            with open(self.path, "r+b") as f:
                f.truncate(self._keep_bytes)  # drop a half-written last line
            self._file = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, line: str) -> None:
        """Write one finished row and flush it, so that a kill loses at most the row being written."""
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __exit__(self, *exc) -> None:
        self.close()

