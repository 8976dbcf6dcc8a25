"""`robustlens merge OUT.tsv PARTS...`: join the shards of a certify / predict run (``--shard I/K``, e.g. the
tasks of a Slurm array) into the file the single run would have written.

The parts must come from the same tool with the same settings apart from their shard (the settings line
engine/resumable.py writes first), and the same columns. Rows are merged in index order. Then, one line
each: duplicates (an idx in more than one part; identical rows are kept once, differing rows are a
conflict) and gaps (shards not given, shards with fewer rows than their slice has). A settings mismatch or
a conflict writes nothing; gaps write OUT (with the unsharded settings, so ``certify`` on OUT without
``--shard`` fills them in) and exit non-zero.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .cli import CLIError
from .files import read_regular
from .resumable import RESULTS_LIMIT, ResumableTSV, prepare_output_file

SETTINGS_LINE = re.compile(r"^# (?P<tool>.+?) settings (?P<json>\{.*\})$")


def register(sub) -> None:
    p = sub.add_parser("merge", help="merge the --shard parts of a certify / predict run into one TSV")
    p.add_argument("out", metavar="OUT.tsv", help="the merged file to write")
    p.add_argument("parts", nargs="+", metavar="PART.tsv", help="the shards' TSVs (in any order)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.tsv")
    p.set_defaults(func=run_merge)


@dataclass
class Part:
    path: Path
    tool: str
    settings: dict
    columns: str
    rows: list[list[str]]
    cut: bool  # the last line had no newline (the shard was killed while writing it): dropped

    @property
    def shard(self) -> tuple[int, int, int] | None:
        """(index, count, images of the whole run), or None for an unsharded part."""
        shard = self.settings.get("shard")
        if shard is None:
            return None
        return int(shard["index"]), int(shard["count"]), int(shard["images"])


def read_part(path: Path) -> Part:
    data = read_regular(path, limit=RESULTS_LIMIT, what="a result file to merge", error=CLIError)
    complete = data[:data.rfind(b"\n") + 1]
    try:
        lines = complete.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text file written by robustlens") from None
    match = SETTINGS_LINE.match(lines[0]) if lines else None
    if match is None or len(lines) < 2:
        raise CLIError(f"{path} has no '# robustlens … settings' line and header (not written by robustlens "
                       f"certify / predict)")
    try:
        settings = json.loads(match["json"])
        shard = settings.get("shard")
        if shard is not None:
            int(shard["index"]), int(shard["count"]), int(shard["images"])
    except (ValueError, TypeError, KeyError):
        raise CLIError(f"{path} has an unreadable settings line") from None
    columns = lines[1]
    width = len(columns.split("\t"))
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split("\t")
        if len(fields) != width or not fields[0].lstrip("-").isdigit():
            raise CLIError(f"{path} line {number} is not a row of {width} fields starting with an idx")
        rows.append(fields)
    return Part(path, match["tool"], settings, columns, rows, cut=len(complete) < len(data))


def _without_shard(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "shard"}


def _check_same_run(parts: list[Part]) -> None:
    first = parts[0]
    for part in parts[1:]:
        if part.tool != first.tool:
            raise CLIError(f"{part.path} was written by {part.tool}, {first.path} by {first.tool}")
        if part.columns != first.columns:
            raise CLIError(f"{part.path} has other columns than {first.path}")
        a, b = _without_shard(first.settings), _without_shard(part.settings)
        if a != b:
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = "; ".join(f"{k} {json.dumps(a.get(k))} vs {json.dumps(b.get(k))}" for k in changed[:3])
            raise CLIError(f"settings differ between {first.path} and {part.path}: {shown}")
    shards = {p.shard[1:] if p.shard else None for p in parts}
    if len(shards) > 1:
        raise CLIError("the parts are not slices of one split: " + ", ".join(
            f"{p.path.name} " + (f"shard {p.shard[0]}/{p.shard[1]} of {p.shard[2]}" if p.shard else "unsharded")
            for p in parts))


def _gaps(parts: list[Part]) -> list[str]:
    """What is missing, as phrases: shards not given, shards short of their slice."""
    first = parts[0].shard
    if first is None:
        return []
    _, count, images = first
    given: dict[int, int] = {}
    for part in parts:
        given[part.shard[0]] = max(given.get(part.shard[0], 0), len(part.rows))
    missing = [i for i in range(count) if i not in given]
    phrases = []
    if missing:
        rows = sum(len(range(i, images, count)) for i in missing)
        phrases.append(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{count}' for i in missing)} "
                       f"not given ({rows} image{'s' if rows != 1 else ''})")
    for index in sorted(given):
        expected = len(range(index, images, count))
        if given[index] < expected:
            phrases.append(f"shard {index}/{count} has {given[index]} of {expected} rows")
    return phrases


def run_merge(args) -> int:
    out = prepare_output_file(args.out)
    paths = [Path(p).expanduser() for p in args.parts]
    if any(out.exists() and path.exists() and path.samefile(out) for path in paths):
        raise CLIError(f"{out} is also one of the parts: write the merged file elsewhere")
    if out.exists() and not args.overwrite:
        raise CLIError(f"{out} exists: give --overwrite to replace it, or another OUT.tsv")
    parts = [read_part(path) for path in paths]
    _check_same_run(parts)

    by_idx: dict[int, tuple[list[str], Path]] = {}
    duplicates, conflicts = [], []
    for part in parts:
        for fields in part.rows:
            idx = int(fields[0])
            if idx in by_idx:
                kept, where = by_idx[idx]
                # the last column is the time: equal rows up to it are the same result computed twice
                (duplicates if kept[:-1] == fields[:-1] else conflicts).append((idx, where, part.path))
                continue
            by_idx[idx] = (fields, part.path)
    if conflicts:
        idx, a, b = conflicts[0]
        raise CLIError(f"conflict: {len(conflicts)} idx with different rows in two parts (first: idx {idx} in "
                       f"{a.name} and {b.name}); nothing written")
    if duplicates:
        shown = ", ".join(str(d[0]) for d in duplicates[:5]) + (" …" if len(duplicates) > 5 else "")
        print(f"duplicates: {len(duplicates)} idx in more than one part with identical rows, kept once ({shown})",
              file=sys.stderr)
    gaps = _gaps(parts)
    cut = [p.path.name for p in parts if p.cut]
    if cut:
        gaps.append(f"a half-written last line dropped from {', '.join(cut)}")
    if gaps:
        print("gaps: " + "; ".join(gaps), file=sys.stderr)

    tool = parts[0].tool
    with ResumableTSV(out, parts[0].columns, _without_shard(parts[0].settings), tool=tool, overwrite=True) as table:
        for idx in sorted(by_idx):
            table.append("\t".join(by_idx[idx][0]))
    print(f"merged {len(parts)} parts into {len(by_idx)} rows; wrote {out}")
    if gaps:
        raise CLIError(f"{out} is incomplete (see gaps above): rerun the missing shards and merge again, or run "
                       f"{tool.split()[-1]} on {out} without --shard to fill it in")
    return 0
