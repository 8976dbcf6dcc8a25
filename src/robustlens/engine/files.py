"""Opening the files a user names: regular files only, their size checked before anything is read.

Opening a named pipe blocks until a writer appears, and reading ``/dev/zero`` never ends, so every
path the engine reads (model checkpoints, images, dataset files, manifests) goes through
``open_regular``: it refuses anything that is not a regular file with one line saying what it is,
and refuses a file above the limit for its kind with the limit in the message. It looks with
``os.stat`` before opening, opens with ``O_NONBLOCK`` (so a file swapped for a FIFO in between cannot
block either) and checks the opened descriptor again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# The largest file of each kind the engine will read; a bigger one is refused before it is opened.
CHECKPOINT_LIMIT = 2 * GiB
IMAGE_LIMIT = 256 * MiB
DATASET_FILE_LIMIT = 1 * GiB
MANIFEST_LIMIT = 16 * MiB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefused(ValueError):
    """A path that is missing, not a regular file, too large or unreadable; the message is one line."""


def describe_kind(mode: int) -> str:
    """'a named pipe', 'a character device', ... for a stat mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def format_size(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _refusal(path: Path, st: os.stat_result, limit: int | None, what: str) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file ({describe_kind(st.st_mode)})"
    if limit is not None and st.st_size > limit:
        return (f"{path} is too large for {what}: {format_size(st.st_size)}, "
                f"the limit is {format_size(limit)}")
    return None


def check_regular(path: Path | str, *, limit: int | None = None, what: str = "a file",
                  error: type[Exception] = FileRefused) -> Path:
    """Raise ``error`` with one line unless ``path`` is an existing regular file of at most ``limit``
    bytes. Only stats the path; opens nothing."""
    path = Path(path).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"no such file: {path}") from None
    except OSError as failure:
        raise error(f"cannot read {path}: {failure.strerror or failure}") from None
    reason = _refusal(path, st, limit, what)
    if reason:
        raise error(reason)
    return path


def open_regular(path: Path | str, *, limit: int | None, what: str = "a file",
                 error: type[Exception] = FileRefused) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of at most ``limit`` bytes; otherwise
    raise ``error`` with one line ("… is not a regular file (a named pipe)", "… is too large …")."""
    path = check_regular(path, limit=limit, what=what, error=error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as failure:
        raise error(f"cannot read {path}: {failure.strerror or failure}") from None
    try:  # the path may have been replaced between the stat and the open: check what was opened
        reason = _refusal(path, os.fstat(fd), limit, what)
    except OSError as failure:
        reason = f"cannot read {path}: {failure.strerror or failure}"
    if reason:
        os.close(fd)
        raise error(reason)
    return os.fdopen(fd, "rb")


def read_regular(path: Path | str, *, limit: int, what: str = "a file",
                 error: type[Exception] = FileRefused) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (also if it grows while being read)."""
    with open_regular(path, limit=limit, what=what, error=error) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{Path(path).expanduser()} is too large for {what}: the limit is {format_size(limit)}")
    return data
