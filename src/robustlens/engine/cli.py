"""The headless command line: `robustlens SUBCOMMAND ...` (no subcommand opens the window).

Each topic registers its subcommands from its own module (see COMMAND_MODULES). Known failures
(bad file, bad dataset, bad option) end with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# modules that define register(subparsers); each subcommand sets `func` via set_defaults
COMMAND_MODULES = (
    "robustlens.engine.cli_zoo",
    "robustlens.engine.cli_attack",
    "robustlens.engine.cli_smoothing",
    "robustlens.engine.cli_features",
)


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, DatasetError, ModelError, ValueError, FileNotFoundError, PermissionError) as error:
        print(f"robustlens {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robustlens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
