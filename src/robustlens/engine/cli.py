"""The headless command line: `robustlens SUBCOMMAND ...` (no subcommand opens the window).

Each topic registers its subcommands from its own module (see COMMAND_MODULES). Known failures
(bad file, bad dataset, bad option) end with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

# modules that define register(subparsers); each subcommand sets `func` via set_defaults
COMMAND_MODULES = (
    "robustlens.engine.cli_zoo",
    "robustlens.engine.cli_attack",
    "robustlens.engine.cli_smoothing",
    "robustlens.engine.cli_features",
    "robustlens.engine.cli_merge",
)


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


class UsageError(CLIError):
    """A mistake on the command line (unknown option, a value out of range)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line ("robustlens evaluate: error: argument --max: …") and
    exit code 1 like every other failure, not the usage text and exit code 2. Subparsers inherit it."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- argparse types for numbers
# Use these as `type=` for every count, size and scale, e.g.
#     p.add_argument("--threads", type=positive_int)     p.add_argument("--sigma", type=positive_float)

def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number ≥ 1 (counts, sizes, --threads, --max)."""
    value = _number(text, int, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number ≥ 0 (--skip, indices)."""
    value = _number(text, int, "a whole number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (σ, step sizes, learning rates)."""
    value = _number(text, float, "a finite number above 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number ≥ 0 (ε: 0 means no perturbation)."""
    value = _number(text, float, "a finite number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def probability(text: str) -> float:
    """A number strictly between 0 and 1 (α)."""
    value = _number(text, float, "a number between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value:g}")
    return value


def _check_common_options(args) -> None:
    """Options several subcommands share, checked here whatever type their parser gave them."""
    threads = getattr(args, "threads", None)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"argument --threads: must be at least 1, got {threads}")


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:  # e.g. "/dev/full: No space left on device"
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return " ".join(str(error).split()) or type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="robustlens",
        description="Explore adversarial examples: robust features, PGD, randomized smoothing. "
                    "Run without a subcommand to open the app.")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def subcommand_names() -> set[str]:
    """Every subcommand the parser knows (and their aliases): what `robustlens NAME ...` sends here."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def main(argv: list[str] | None = None) -> int:
    from .data import DatasetError
    from .models import ModelError

    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # name the subcommand whose options they are not
            command = getattr(args, "command", None)
            prog = f"robustlens {command}" if command else "robustlens"
            raise UsageError(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)")
    except UsageError as error:
        print(error, file=sys.stderr)
        return 1
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _check_common_options(args)
        return int(args.func(args) or 0)
    except (CLIError, DatasetError, ModelError, ValueError, OSError) as error:
        print(f"robustlens {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robustlens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
