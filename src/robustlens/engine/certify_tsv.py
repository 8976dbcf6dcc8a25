"""The reference implementation's certify / predict output (locuslab/smoothing ``certify.py`` /
``predict.py``): one TSV line per image, ``idx label predict radius correct time``, written by
``robustlens certify`` / ``predict`` and read back by ``robustlens analyze``.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import MiB, read_regular
from .smoothing_bounds import certified_accuracy

TSV_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
PREDICT_TSV_HEADER = "idx\tlabel\tpredict\tcorrect\ttime"
CERTIFY_TSV_LIMIT = 256 * MiB  # a million rows are about 40 MiB


def format_elapsed(seconds: float) -> str:
    """The reference's time column: str(datetime.timedelta), e.g. '0:00:01.234567'."""
    return str(datetime.timedelta(seconds=seconds))


def certify_tsv_row(idx: int, label: int, prediction: int, radius: float, seconds: float) -> str:
    """One line of the reference certify output (radius to 3 significant digits, as ``{:.3}``)."""
    return f"{idx}\t{label}\t{prediction}\t{radius:.3}\t{int(prediction == label)}\t{format_elapsed(seconds)}"


def predict_tsv_row(idx: int, label: int, prediction: int, seconds: float) -> str:
    return f"{idx}\t{label}\t{prediction}\t{int(prediction == label)}\t{format_elapsed(seconds)}"


def parse_elapsed(text: str) -> float:
    """Seconds from '0:00:01.234567' (or 'N days, H:MM:SS') or a plain number."""
    text = text.strip()
    days = 0.0
    if "day" in text:
        day_part, text = text.split(",", 1)
        days = float(day_part.split()[0])
        text = text.strip()
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a time: {text!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return days * 86400 + seconds


@dataclass
class CertifyTable:
    """A certify TSV read back: one entry per image."""

    path: Path
    idx: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    radius: np.ndarray
    correct: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)

    def accuracy_at(self, radii) -> np.ndarray:
        return certified_accuracy(self.radius, self.correct, radii)


def read_certify_tsv(path: Path | str) -> CertifyTable:
    """Read a certify TSV (ours, with or without its settings line, or the reference's). Raises
    ValueError naming the file and line."""
    path = Path(path)
    text = read_regular(path, limit=CERTIFY_TSV_LIMIT, what="a certify TSV").decode("utf-8", errors="replace")
    # '#' lines (the settings line robustlens certify writes first) are comments, as in pandas' comment="#"
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
                if line.strip() and not line.startswith("#")]
    lines = [line for _, line in numbered]
    if not lines:
        raise ValueError(f"{path}: empty file (expected the header {TSV_HEADER!r})")
    header = lines[0].strip().split("\t")
    if header == PREDICT_TSV_HEADER.split("\t"):
        raise ValueError(f"{path} is a predict output (no radius column): analyze reads certify outputs")
    if header != TSV_HEADER.split("\t"):
        raise ValueError(f"{path}: header {lines[0].strip()!r} is not {TSV_HEADER!r}")
    columns: list[list] = [[] for _ in range(6)]
    for number, line in numbered[1:]:
        fields = line.split("\t")
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected 6 tab-separated fields, found {len(fields)}")
        try:
            values = (int(fields[0]), int(fields[1]), int(fields[2]), float(fields[3]), int(fields[4]),
                      parse_elapsed(fields[5]))
        except ValueError:
            raise ValueError(f"{path}:{number}: malformed row {line.strip()!r}") from None
        if values[4] not in (0, 1) or values[3] < 0 or math.isnan(values[3]):
            raise ValueError(f"{path}:{number}: correct must be 0/1 and radius ≥ 0 in {line.strip()!r}")
        for column, value in zip(columns, values):
            column.append(value)
    idx, label, prediction, radius, correct, seconds = (np.asarray(c) for c in columns)
    return CertifyTable(path, idx.astype(np.int64), label.astype(np.int64), prediction.astype(np.int64),
                        radius.astype(np.float64), correct.astype(bool), seconds.astype(np.float64))
