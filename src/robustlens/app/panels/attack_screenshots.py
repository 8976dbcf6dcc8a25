"""Screenshots of the Attack tab (mid-run and finished) and of the Experiments tab's two PGD sections,
made offscreen with the built-in models at the window's default size:

    python -m robustlens.app.panels.attack_screenshots docs/attacks [--image 4] [--size 1440x920] [--lecture]

writes panel-running.png, panel-done.png, experiments.png and experiments-transfer.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ZOO = ("fashion-mnist/standard", "fashion-mnist/l2-robust", "fashion-mnist/linf-robust",
       "fashion-mnist/noise-0.25", "fashion-mnist/noise-0.50", "fashion-mnist/noise-1.00")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attack_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for the PNG files")
    parser.add_argument("--image", type=int, default=4, help="test image to attack (default 4, a shirt)")
    parser.add_argument("--size", default="1440x920", help="window size (default 1440x920)")
    parser.add_argument("--lecture", action="store_true", help="lecture mode (large fonts)")
    parser.add_argument("--steps", type=int, default=40, help="PGD steps of the single-image attack")
    parser.add_argument("--images", type=int, default=100, help="test images for the experiments")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import pyqtgraph as pg
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from robustlens.app.window import MainWindow
    from robustlens.engine.models import zoo_file

    pg.setConfigOptions(antialias=True)
    app = QApplication.instance() or QApplication(["attack_screenshots"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    models = [name for name in ZOO if zoo_file(name).exists()]
    if not models:
        print("attack_screenshots: error: no built-in model found", file=sys.stderr)
        return 1

    def wait(condition, timeout: float = 900.0) -> bool:
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
        return condition()

    def settle() -> None:
        for _ in range(30):
            app.processEvents()
            time.sleep(0.02)

    def window(tab: str, select: int, scratch: str) -> MainWindow:
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat)
        win = MainWindow(settings=settings, models=models, select=select, use_settings=False)
        win.tabs.setCurrentIndex([win.tabs.tabText(i) for i in range(win.tabs.count())].index(tab))
        win.resize(width, height)
        win.show()
        if args.lecture:
            win.set_lecture_mode(True, full_screen=False)
        wait(lambda: win._models_ready and win.ctx.selection is not None
             and win.strip.has_all_predictions("original"))
        return win

    with tempfile.TemporaryDirectory(prefix="robustlens-") as scratch:
        # the Attack tab: L∞ PGD on the standard model, grabbed half way and at the end
        win = window("Attack", args.image, scratch)
        panel = win.panels["Attack"]
        panel.set_params(source=ZOO[0], norm="linf", eps=0.1, steps=args.steps, random_start="none", restarts=1,
                         target="untargeted", loss="ce")
        win.request_run()
        wait(lambda: len(panel._steps_seen) > 0.45 * args.steps or panel.state != "running")
        settle()
        win.grab().save(str(out / "panel-running.png"))
        wait(lambda: panel.state != "running")
        wait(lambda: win.strip.has_all_predictions("adversarial"), 60)
        settle()
        win.grab().save(str(out / "panel-done.png"))
        print(f"attack: {panel.state}; " + "; ".join(" | ".join(row) for row in panel.table.row_texts()))
        win.close()

        # the Experiments tab: robust accuracy vs ε and the transfer matrix, L∞, PGD-10
        win = window("Experiments", 0, scratch)
        experiments = win.panels["Experiments"]
        curves = experiments.sections["Robust accuracy vs ε"]
        matrix = experiments.sections["Transfer matrix"]
        for section in (curves, matrix):
            section.steps_box.setValue(10)
            section.images_box.setValue(args.images)
        curves.run()
        matrix.run()
        wait(lambda: curves.state != "running" and matrix.state != "running", 1800)
        settle()
        win.grab().save(str(out / "experiments.png"))
        experiments.show_section("Transfer matrix")
        settle()
        win.grab().save(str(out / "experiments-transfer.png"))
        print(f"experiments: {curves.state}, {matrix.state}")
        if curves.result is not None:
            print(curves.result.to_tsv(), end="")
        if matrix.result is not None:
            print(matrix.result.to_tsv(), end="")
        win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
