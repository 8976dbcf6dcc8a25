"""Screenshots of the Certify tab mid-run and after, as the README shows them (offscreen, reproducible).

    python -m robustlens.app.panels.certify_screenshots docs/certify [--select 4] [--sigma 0.25]
           [--images 100] [--accuracy-n 1000] [--size 1440x920] [--lecture]

Opens the window with default settings and every built-in model, clicks image ``--select``, starts the
certified-accuracy job, saves ``panel-running.png`` while both jobs are half way and ``panel-done.png``
when both have finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, condition, timeout: float, what: str) -> None:
    began = time.monotonic()
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - began > timeout:
            raise SystemExit(f"certify_screenshots: gave up waiting for {what} after {timeout:g} s")


def _settle(app, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="certify_screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for panel-running.png and panel-done.png")
    parser.add_argument("--select", type=int, default=4, help="test image to certify (default 4, a shirt)")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--images", type=int, default=100, help="certified-accuracy subset size")
    parser.add_argument("--accuracy-n", type=int, default=1000, help="n per image for the accuracy curves")
    parser.add_argument("--size", default="1440x920")
    parser.add_argument("--lecture", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import pyqtgraph as pg
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from robustlens.app.pickers import available_zoo_models
    from robustlens.app.window import MainWindow

    pg.setConfigOptions(antialias=True)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="robustlens-") as scratch:
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.Format.IniFormat)
        models = [name for name, _ in available_zoo_models()]
        window = MainWindow(settings=settings, models=models, select=args.select, use_settings=False)
        window.resize(width, height)
        if args.lecture:
            window.set_lecture_mode(True, full_screen=False)
        window.show()
        panel = window.panels["Certify"]
        _wait(app, lambda: window._models_ready and window.ctx.selection is not None, args.timeout, "the models")
        panel.set_sigma(args.sigma)
        panel.accuracy.images_box.setValue(args.images)
        panel.accuracy.n_box.setValue(args.accuracy_n)
        panel.run()
        panel.run_accuracy()
        n = panel.current_params().n
        total = args.images * len(window.ctx.models_of_kind("noise"))

        def half_way() -> bool:
            rows = sum(len(r) for r in panel.accuracy.rows.values())
            return (panel.certificate is None and panel.histogram.counts().sum() >= 0.45 * n
                    and rows >= 0.3 * total)

        # the certificate for one image comes far sooner than the curves: hold it back until the curves
        # are a third done, by certifying again (same seed, same result) if it finished too early
        began = time.monotonic()
        while not half_way():
            app.processEvents()
            time.sleep(0.01)
            if panel.certificate is not None and sum(len(r) for r in panel.accuracy.rows.values()) < 0.3 * total:
                _wait(app, lambda: sum(len(r) for r in panel.accuracy.rows.values()) >= 0.3 * total,
                      args.timeout, "a third of the accuracy rows")
                panel.run()
            if time.monotonic() - began > args.timeout:
                raise SystemExit("certify_screenshots: gave up waiting for the half-way point")
        _settle(app, 0.2)
        window.grab().save(str(out / "panel-running.png"))
        print(f"saved {out / 'panel-running.png'}")
        _wait(app, lambda: panel.certificate is not None and not panel.job_running("certify-accuracy"), args.timeout, "both jobs to finish")
        _settle(app)
        window.grab().save(str(out / "panel-done.png"))
        print(f"saved {out / 'panel-done.png'}")
        print(panel.certificate.summary(window.ctx.classes))
        print(panel.accuracy.status.text())
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
