"""Every subcommand's --help states each option's default, as a new user reads it before a long run."""

import argparse
import os
import re
import subprocess
import sys

from robustlens.engine.cli import build_parser


def subparsers():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def option_blocks(help_text: str) -> dict[str, str]:
    """{option string: its help paragraph, unwrapped} from argparse's formatted help."""
    blocks, current = {}, None
    for line in help_text.splitlines():
        head = re.match(r"^  (-[^ ,]+(?:, -[^ ,]+)*)", line)
        if head:
            current = head.group(1).split(", ")[-1]
            blocks[current] = line[len(head.group(0)):]
        elif current and line.startswith("   "):
            # argparse wraps after hyphens too ("fashion-\nmnist"): join those without a space
            previous = blocks[current]
            blocks[current] = previous + ("" if previous.endswith("-") else " ") + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def typed(value) -> str:
    """The default as a user types it on the command line (independent of the formatter's own code)."""
    if isinstance(value, list):
        return " ".join(typed(v) for v in value)
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value == int(value) else repr(value)
    return str(value)


def test_every_option_with_a_default_says_it_in_help():
    checked, missing = 0, []
    for name, parser in subparsers().items():
        blocks = option_blocks(parser.format_help())
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
                continue
            block = blocks.get(action.option_strings[-1], "")
            said = re.findall(r"default:? ([^()]+?)(?:\)|$|;)", block)
            if not any(typed(action.default) in s for s in said):
                missing.append(f"{name} {action.option_strings[-1]} (default {action.default!r}): {block!r}")
            checked += 1
    assert checked > 60 and not missing, "\n".join(missing)


def test_certify_help_names_the_sample_count_a_new_user_pays_for():
    """The case that cost a user 9 minutes: `certify --max 20` at the default n = 100,000."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "robustlens", "certify", "--help"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0
    blocks = option_blocks(done.stdout)
    assert "default: 100000" in blocks["--n"] and "default: 100" in blocks["--n0"]
    assert "default: 0.001" in blocks["--alpha"]


def test_flags_and_unset_options_get_no_invented_default():
    parser = subparsers()["certify"]
    blocks = option_blocks(parser.format_help())
    assert "default: False" not in blocks["--eager"] and "default: None" not in blocks["--threads"]
