"""Screenshots of the Geometry tab, made offscreen with the built-in models (for docs/ and the README).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/geometry/make_screenshots.py [--select 4] [--n 100] [--grid 41]

Writes, next to this file: geometry-refining.png (g's map while the 41×41 level fills in),
geometry-panel.png (the finished tab), geometry-window.png (the whole window) and geometry-figure.svg
(the figure as the tab's Export… writes it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", type=int, default=4, help="test image index")
    parser.add_argument("--n", type=int, default=100, help="noise samples per grid point of g")
    parser.add_argument("--grid", type=int, default=41, help="g's final grid side")
    parser.add_argument("--size", default="1750x1150", help="window size WxH")
    parser.add_argument("--prefix", default="geometry", help="file name prefix")
    parser.add_argument("--lecture", action="store_true", help="lecture mode (larger fonts)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    app = QApplication([])
    from robustlens.app.panels.geometry import SLOT
    from robustlens.app.window import MainWindow
    from robustlens.engine.models import zoo_names

    settings = QSettings(str(Path("/tmp") / "robustlens-geometry-shots.ini"), QSettings.Format.IniFormat)
    settings.clear()
    window = MainWindow(settings=settings, models=zoo_names(), select=args.select, use_settings=False)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()

    def wait(condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)
        return condition()

    if not wait(lambda: window._models_ready and window.ctx.selection is not None, 300):
        raise SystemExit("the window did not load its models and image in time")
    if args.lecture:
        window.set_lecture_mode(True, full_screen=False)
    window.centre_split.setSizes([250, height])
    panel = window.panels["Geometry"]
    panel.model_box.setCurrentIndex(panel.model_box.findData("fashion-mnist/noise-0.25"))
    panel.n_box.setValue(args.n)
    panel.g_size_box.setCurrentIndex(panel.g_size_box.findData(args.grid))
    window.tabs.setCurrentIndex(list(window.panels).index("Geometry"))  # shown: it slices the selection
    wait(lambda: panel.job_handle(SLOT) is not None, 30)
    refining = wait(lambda: panel.smoothed is not None and panel.smoothed.size == args.grid
                    and panel.smoothed.computed.mean() > 0.4, 3600)
    if refining:
        panel.grab().save(str(HERE / f"{args.prefix}-refining.png"))
    if not wait(lambda: panel.result is not None, 3600):
        raise SystemExit(f"the slice did not finish: {panel.status.text()}")
    for _ in range(10):
        app.processEvents()
    panel.grab().save(str(HERE / f"{args.prefix}-panel.png"))
    window.grab().save(str(HERE / f"{args.prefix}-window.png"))
    panel.export(HERE / f"{args.prefix}-figure.svg")
    print(panel.summary.text().replace("<br>", "\n"))
    window.close()


if __name__ == "__main__":
    main()
