"""The reference implementation's certify / predict output (locuslab/smoothing ``certify.py`` /
``predict.py``): one TSV line per image, ``idx label predict radius correct time``, written by
``robustlens certify`` / ``predict`` and read back by ``robustlens analyze``.
"""

from __future__ import annotations

import datetime
import json
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

    def accuracy_curve(self, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """Certified accuracy (correct and radius ≥ r) on a grid of r from 0 a little past the largest
        certified radius, each radius in the file among the grid points, so every step is drawn."""
        top = float(self.radius.max(initial=0.0))
        grid = np.linspace(0.0, max(top * 1.05, 1e-3), points)
        radii = np.unique(np.concatenate([grid, self.radius[self.correct]]))
        return radii, self.accuracy_at(radii)


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


# ---------------------------------------------------------------- radius decisions (robustlens certify --radius)

DECISION_TSV_HEADER = "idx\tlabel\tpredict\tcertified\tcorrect\tsamples\ttime"
DECISION_TOOL = "robustlens certify --radius"


def decision_tsv_row(idx: int, label: int, prediction: int, certified: bool, samples: int, seconds: float) -> str:
    """One line of ``robustlens certify --radius R``: is image idx certified at R (1/0), is its prediction
    correct, and how many noise samples the decision took (selection included)."""
    return (f"{idx}\t{label}\t{prediction}\t{int(certified)}\t{int(prediction == label)}\t{samples}\t"
            f"{format_elapsed(seconds)}")


@dataclass
class DecisionTable:
    """A radius-decision TSV read back; ``radius`` (and the other settings) from its settings line."""

    path: Path
    radius: float | None
    settings: dict
    idx: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    certified: np.ndarray
    correct: np.ndarray
    samples: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def certified_accuracy(self) -> float:
        """The fraction of images correct and certified at R (abstentions count as wrong)."""
        return float((self.certified & self.correct).mean()) if len(self) else 0.0

    @property
    def mean_samples(self) -> float:
        return float(self.samples.mean()) if len(self) else 0.0


def tsv_header(path: Path | str) -> list[str]:
    """The column names of a result TSV (its first line that is not a '#' comment)."""
    path = Path(path)
    text = read_regular(path, limit=CERTIFY_TSV_LIMIT, what="a certify TSV").decode("utf-8", errors="replace")
    return next((line.strip().split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")),
                [])


def is_decision_tsv(path: Path | str) -> bool:
    return tsv_header(path) == DECISION_TSV_HEADER.split("\t")


def read_decision_tsv(path: Path | str) -> DecisionTable:
    """Read a ``robustlens certify --radius`` TSV. Raises ValueError naming the file and line."""
    path = Path(path)
    text = read_regular(path, limit=CERTIFY_TSV_LIMIT, what="a certify TSV").decode("utf-8", errors="replace")
    settings: dict = {}
    prefix = f"# {DECISION_TOOL} settings "
    numbered = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(prefix):
            try:
                settings = json.loads(line[len(prefix):])
            except ValueError:
                raise ValueError(f"{path}:{number}: unreadable settings line") from None
        elif line.strip() and not line.startswith("#"):
            numbered.append((number, line))
    if not numbered or numbered[0][1].strip().split("\t") != DECISION_TSV_HEADER.split("\t"):
        raise ValueError(f"{path}: not a radius-decision TSV (header {DECISION_TSV_HEADER!r})")
    columns: list[list] = [[] for _ in range(7)]
    for number, line in numbered[1:]:
        fields = line.split("\t")
        if len(fields) != 7:
            raise ValueError(f"{path}:{number}: expected 7 tab-separated fields, found {len(fields)}")
        try:
            values = (int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]), int(fields[5]),
                      parse_elapsed(fields[6]))
        except ValueError:
            raise ValueError(f"{path}:{number}: malformed row {line.strip()!r}") from None
        if values[3] not in (0, 1) or values[4] not in (0, 1) or values[5] < 0:
            raise ValueError(f"{path}:{number}: certified and correct must be 0/1, samples ≥ 0 in {line.strip()!r}")
        for column, value in zip(columns, values):
            column.append(value)
    idx, label, prediction, certified, correct, samples, seconds = (np.asarray(c) for c in columns)
    radius = settings.get("radius")
    return DecisionTable(path, float(radius) if isinstance(radius, (int, float)) else None, settings,
                         idx.astype(np.int64), label.astype(np.int64), prediction.astype(np.int64),
                         certified.astype(bool), correct.astype(bool), samples.astype(np.int64),
                         seconds.astype(np.float64))
