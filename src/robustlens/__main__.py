"""The `robustlens` command: a first argument that names a CLI subcommand runs the headless CLI;
anything else (no argument, or window flags such as --model FILE) opens the window.

The dispatch lives here, outside both `engine/` (which never imports Qt) and `app/`. The CLI's own
parser says which subcommands exist, so a new subcommand needs no change here.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from robustlens.engine.cli import subcommand_names

    first = argv[0] if argv else ""
    if first in subcommand_names() or first in ("-h", "--help"):
        from robustlens.engine.cli import main as cli_main

        if first in ("-h", "--help"):
            print("robustlens: with no subcommand, opens the window (robustlens --help-window lists its "
                  "options)\n")
        return cli_main(argv)
    if first == "--help-window":
        argv = ["--help"]
    if first == "gui":  # an explicit name for the window, kept for scripts that use it
        argv = argv[1:]
    from robustlens.app.main import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
