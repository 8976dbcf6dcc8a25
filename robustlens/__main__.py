"""The `robustlens` command: no subcommand opens the window, a subcommand runs the headless CLI.

The dispatch lives here, outside both `engine/` (which never imports Qt) and `app/`.
"""

from __future__ import annotations

import sys

GUI_FLAGS = {"--screenshot", "--select", "--dataset", "--lecture"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_gui = not argv or argv[0] == "gui" or argv[0].split("=")[0] in GUI_FLAGS
    if wants_gui:
        from robustlens.app.main import main as gui_main

        return gui_main(argv[1:] if argv and argv[0] == "gui" else argv)
    from robustlens.engine.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
