"""The headless command line: `robustlens SUBCOMMAND ...` (no subcommand opens the window).

Each topic registers its subcommands from its own module (see COMMAND_MODULES). Known failures
(bad file, bad dataset, bad option) end with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

# modules that define register(subparsers); each subcommand sets `func` via set_defaults
COMMAND_MODULES = (
    "robustlens.engine.cli_zoo",
    "robustlens.engine.cli_attack",
    "robustlens.engine.cli_smoothing",
    "robustlens.engine.cli_features",
    "robustlens.engine.cli_planted",
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

def _number_type(name: str, kind: type, what: str, accept, bound: str, doc: str):
    """An argparse type: ``kind(text)``, finite, and ``accept(value)``; otherwise one line saying why."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:g}")
        return value

    parse.__name__ = parse.__qualname__ = name  # argparse names the type in its messages
    parse.__doc__ = doc
    return parse


positive_int = _number_type("positive_int", int, "a whole number of at least 1", lambda v: v >= 1, "at least 1",
                            "A whole number ≥ 1 (counts, sizes, --threads, --max).")
nonnegative_int = _number_type("nonnegative_int", int, "a whole number of at least 0", lambda v: v >= 0, "at least 0",
                               "A whole number ≥ 0 (--skip, indices).")
positive_float = _number_type("positive_float", float, "a finite number above 0", lambda v: v > 0, "above 0",
                              "A finite number > 0 (σ, step sizes, learning rates).")
nonnegative_float = _number_type("nonnegative_float", float, "a finite number of at least 0", lambda v: v >= 0, "at least 0",
                                 "A finite number ≥ 0 (ε: 0 means no perturbation).")


def positive_int_or_auto(text: str):
    """``auto`` (left to the command to choose, e.g. a batch that fits the GPU) or a whole number ≥ 1."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)


positive_int_or_auto.__name__ = "positive_int_or_auto"

probability = _number_type("probability", float, "a number between 0 and 1", lambda v: 0 < v < 1,
                           "between 0 and 1 (exclusive)", "A number strictly between 0 and 1 (α).")


# ---------------------------------------------------------------- --model and --arch

ARCH_HELP = ("architecture of a model file that does not name it (a plain state_dict, a Madry et al. "
             "robustness-library checkpoint): {choices}; or robustbench:DATASET:THREAT:NAME")


def add_model_arguments(parser, *flags: str, **model_kwargs) -> None:
    """``--model`` (with the caller's argparse options) and ``--arch NAME`` beside it. After parsing,
    ``main`` turns each model file given with ``--arch`` into a model key ``PATH::arch=NAME``, which every
    loader (``models.load_model``, ``ModelCache``) understands, so subcommands load models unchanged."""
    from .models import architecture_choices

    parser.add_argument(*(flags or ("--model",)), **model_kwargs)
    if not any(action.dest == "arch" for action in parser._actions):
        parser.add_argument("--arch", metavar="NAME", help=ARCH_HELP.format(choices=architecture_choices()))
    add_device_argument(parser)


def add_device_argument(parser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default auto: CUDA when present); read with :func:`chosen_device`."""
    if not any(action.dest == "device" for action in parser._actions):
        parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                            help="where the models run: auto (CUDA when present, else the CPU), cpu, cuda or "
                                 "cuda:N")


def chosen_device(args):
    """The torch.device of ``--device`` (one line, exit 1, when CUDA is asked for and absent)."""
    from .accelerate import DeviceUnavailable, select_device

    try:
        return select_device(getattr(args, "device", None))
    except DeviceUnavailable as error:
        raise UsageError(str(error)) from None


MODEL_DESTS = ("model", "robust_model", "standard_model", "also")


def _apply_arch(args) -> None:
    """Give ``--arch`` to the model files among the parsed --model values (zoo names need none)."""
    arch = getattr(args, "arch", None)
    if not arch or getattr(args, "command", None) == "train":
        return
    from .models import zoo_names
    from .published import model_key

    zoo = set(zoo_names())

    def keyed(value):
        if isinstance(value, list):
            return [keyed(v) for v in value]
        return value if not isinstance(value, str) or value in zoo or "::" in value else model_key(value, arch)

    for dest in MODEL_DESTS:
        if getattr(args, dest, None) is not None:
            setattr(args, dest, keyed(getattr(args, dest)))


def _check_common_options(args) -> None:
    """Options several subcommands share, checked here whatever type their parser gave them."""
    threads = getattr(args, "threads", None)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"argument --threads: must be at least 1, got {threads}")


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:  # e.g. "/dev/full: No space left on device"
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------- defaults in --help


def default_text(default) -> str:
    """A default as the user would type it: ``0.001``, ``100000``, ``0.25 0.5`` for a list."""
    if isinstance(default, (list, tuple)):
        return " ".join(default_text(v) for v in default)
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def shows_default(action: argparse.Action) -> bool:
    """Whether --help must state this option's default: an option (not a positional, not a flag) whose
    default is a value rather than "not given"."""
    if not action.option_strings or action.help == argparse.SUPPRESS:
        return False
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, []):  # flags; "not given"
        return False
    return True


def states_default(help_text: str | None, default) -> bool:
    """Whether a help text already says the default ("default 20", "(default: fashion-mnist/standard)")."""
    text = help_text or ""
    return "default" in text and default_text(default) in text


def add_defaults_to_help(parser: argparse.ArgumentParser) -> None:
    """Every option of ``parser`` and its subcommands whose default is a value ends its help with
    "(default: VALUE)" unless the help says it already: a new user reads what a run costs (certify's
    n = 100000) before starting one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):  # aliases share a parser
                add_defaults_to_help(subparser)
        elif shows_default(action) and not states_default(action.help, action.default):
            said = default_text(action.default).replace("%", "%%")
            action.help = f"{action.help} (default: {said})" if action.help else f"default: {said}"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="robustlens",
        description="Explore adversarial examples: robust features, PGD, randomized smoothing. "
                    "Run without a subcommand to open the app.")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    add_defaults_to_help(parser)
    return parser


def subcommand_names() -> set[str]:
    """Every subcommand the parser knows (and their aliases): what `robustlens NAME ...` sends here."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture)
        pass


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
        _apply_arch(args)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `robustlens … | head`: the reader has all it wanted; nothing to report
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a shell command killed by the closed pipe
    except (CLIError, DatasetError, ModelError, ValueError, OSError) as error:
        print(f"robustlens {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robustlens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
