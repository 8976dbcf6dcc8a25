"""Screenshots of the Features tab mid-run and after, as the README shows them (offscreen, reproducible).

    python -m robustlens.app.panels.features_screenshots docs/features [--select 2] [--steps 1000]
           [--extra fashion-mnist/noise-0.50] [--seed other-class] [--size 1440x920] [--lecture]
           [--threads N]

Opens the window with default settings and every built-in model, selects test image ``--select``,
reconstructs it with the robust, the standard and (``--extra``) a noise-trained model, saves
``panel-running.png`` about a third of the way and ``panel.png`` when the run and the predictions are
done. With a results file in ``docs/features/results.json`` it also saves the Experiments tab's
Ilyas et al. section as ``panel-experiments.png``.
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
        time.sleep(0.005)
        if time.monotonic() - began > timeout:
            raise SystemExit(f"features_screenshots: gave up waiting for {what} after {timeout:g} s")


def _settle(app, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="features_screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for panel-running.png, panel.png (and panel-experiments.png)")
    parser.add_argument("--select", type=int, default=2, help="test image to reconstruct (default 2, a trouser)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--seed", default="other-class", help="other-class, random or noise")
    parser.add_argument("--extra", default="fashion-mnist/noise-0.50", help="noise-trained model for the 3rd "
                                                                             "column ('' for none)")
    parser.add_argument("--size", default="1440x920")
    parser.add_argument("--lecture", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import pyqtgraph as pg
    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from robustlens.app.pickers import available_zoo_models
    from robustlens.app.window import MainWindow

    from .features import JOB_SLOT

    if args.threads:
        torch.set_num_threads(args.threads)
    pg.setConfigOptions(antialias=True)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("robustlens")  # as the app itself: the same data folder is shown
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
        _wait(app, lambda: window._models_ready and window.ctx.selection is not None, args.timeout, "the models")
        panel = window.panels["Features"]
        window.tabs.setCurrentIndex(list(window.panels).index("Features"))
        window.cancel_jobs()  # the first tab's automatic run is not in these pictures
        panel.set_params(steps=args.steps, step_size=args.step_size, seed_mode=args.seed, auto=False)
        panel.set_model("extra", args.extra)
        window.select_index(args.select)  # again: the strip's predictions were cancelled with the rest
        _wait(app, lambda: window.strip.has_all_predictions("original"), args.timeout, "the predictions")
        began = time.monotonic()
        panel.run()
        _wait(app, lambda: len(next(iter(panel.curves.values()), [])) >= args.steps // 3, args.timeout,
              "a third of the steps")
        window.grab().save(str(out / "panel-running.png"))
        print(f"saved {out / 'panel-running.png'}", flush=True)
        _wait(app, lambda: not panel.job_running(JOB_SLOT), args.timeout, "the run to finish")
        seconds = time.monotonic() - began
        _wait(app, lambda: window.strip.has_all_predictions("robust") and window.strip.has_all_predictions("non_robust")
              and len(panel.prediction_rows) >= 4, args.timeout, "the predictions on the reconstructions")
        _settle(app)
        window.grab().save(str(out / "panel.png"))
        print(f"saved {out / 'panel.png'}")
        print(panel.status.text())
        print(f"{args.steps} steps of {len(panel.run_roles)} models in {seconds:.1f} s "
              f"({torch.get_num_threads()} CPU threads)" if panel.ctx.engine.device.type == "cpu" else
              f"{args.steps} steps of {len(panel.run_roles)} models in {seconds:.1f} s on {panel.ctx.engine.device}")
        experiments = window.panels.get("Experiments")
        title = "Dataset experiments (Ilyas et al.)"
        results = out / "results.json"  # the experiment's results beside the pictures
        if results.exists() and experiments is not None and title in getattr(experiments, "sections", {}):
            window.tabs.setCurrentIndex(list(window.panels).index("Experiments"))
            experiments.show_section(title)
            experiments.sections[title].load_results(results)
            _settle(app)
            window.grab().save(str(out / "panel-experiments.png"))
            print(f"saved {out / 'panel-experiments.png'}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
