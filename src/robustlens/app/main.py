"""`robustlens` with no subcommand: open the window (or, with --screenshot, save a picture of it).

    robustlens                                   the app, as you left it
    robustlens --lecture                         full screen, large fonts
    robustlens --dataset mnist --select 42       start on an image
    robustlens --model my.pt                     add a checkpoint to the loaded models
    robustlens --screenshot out.png [--select 7] [--tab Certify] [--lecture] [--size 1440x920]
                                    [--run] [--settle] [--delay S] [--hide gallery,strip]
                                                 start offscreen, wait for the first predictions
                                                 (--run: then press F5 on the tab; --settle: then
                                                 wait for every job to end), save the window, exit 0
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustlens", description="Open the robustlens window.")
    parser.add_argument("--screenshot", metavar="PNG", help="save the window to this file and exit")
    parser.add_argument("--select", type=int, metavar="INDEX", help="select this image of the dataset")
    parser.add_argument("--dataset", metavar="NAME",
                        help="fashion-mnist (built in), fashion-mnist:train, mnist or cifar10 "
                             "(the last two from the folder chosen before in the app)")
    parser.add_argument("--model", action="append", default=[], metavar="FILE",
                        help="also load this model file (repeatable)")
    parser.add_argument("--lecture", action="store_true", help="lecture mode: full screen, large fonts")
    parser.add_argument("--tab", metavar="TITLE", help="show this tab (e.g. Predictions, Certify)")
    parser.add_argument("--hide", default="", metavar="PARTS",
                        help="hide parts of the window: gallery, strip (comma-separated)")
    parser.add_argument("--run", action="store_true",
                        help="with --screenshot: run the shown tab's job (as F5 does) after the first predictions")
    parser.add_argument("--settle", action="store_true",
                        help="with --screenshot: wait until every engine job has finished before saving")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S",
                        help="with --screenshot: wait this many more seconds before saving (a job mid-run)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="window size for --screenshot (default 1440x920, 1920x1080 in lecture mode)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="--screenshot gives up after this many seconds (exit 1)")
    return parser


def _size(text: str | None, lecture: bool) -> tuple[int, int]:
    if not text:
        return (1920, 1080) if lecture else (1440, 920)
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"robustlens: error: --size must look like 1440x920, not {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    import pyqtgraph as pg
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from robustlens.engine.models import use_interactive_cpu_threads

    from .window import MainWindow

    use_interactive_cpu_threads()  # leave the GUI thread a core of its own
    pg.setConfigOptions(antialias=True)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "robustlens"])
    app.setApplicationName("robustlens")
    app.setOrganizationName("robustlens")

    screenshot = args.screenshot
    scratch = tempfile.TemporaryDirectory(prefix="robustlens-") if screenshot else None
    # a screenshot shows the default window, never what the last session left behind
    settings = (QSettings(str(Path(scratch.name) / "settings.ini"), QSettings.Format.IniFormat)
                if screenshot else None)
    select = args.select if args.select is not None else (0 if screenshot else None)
    window = MainWindow(settings=settings, extra_models=args.model, select=select, dataset=args.dataset,
                        use_settings=not screenshot)
    if args.tab:
        titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        matches = [i for i, t in enumerate(titles) if t.lower() == args.tab.lower()]
        if not matches:
            print(f"robustlens: error: no tab {args.tab!r} (tabs: {', '.join(titles)})", file=sys.stderr)
            return 1
        window.tabs.setCurrentIndex(matches[0])

    hidden = {part.strip() for part in args.hide.split(",") if part.strip()}
    if hidden - {"gallery", "strip"}:
        print(f"robustlens: error: --hide takes gallery and/or strip, not {args.hide!r}", file=sys.stderr)
        return 1
    if "gallery" in hidden:
        window.show_gallery(False)
    if "strip" in hidden:
        window.show_strip(False)

    # Ctrl+C in the terminal (or `timeout`'s SIGTERM) closes the window cleanly: settings saved, engine
    # thread stopped (Python handles signals only between Qt events, hence the heartbeat below)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: window.close())
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)

    if not screenshot:
        if args.lecture:
            window.set_lecture_mode(True)
        else:
            window.show()
        return app.exec()

    outcome = {"code": 1}
    width, height = _size(args.size, args.lecture)
    window.resize(width, height)
    if args.lecture:
        window.set_lecture_mode(True, full_screen=False)
    window.show()

    def save() -> None:
        path = Path(screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        if window.grab().save(str(path)):
            print(f"saved {path} ({width}×{height})")
            outcome["code"] = 0
        else:
            print(f"robustlens: error: could not write {path}", file=sys.stderr)
        window.close()
        app.quit()

    def failed(handle, failure) -> None:
        print(f"robustlens: error: {handle.label} failed: {failure.message}", file=sys.stderr)
        window.close()
        app.quit()

    def timed_out() -> None:
        running = ", ".join(h.label for h in window.engine.active_jobs())
        what = f"jobs still running after {args.timeout:g} s: {running}" if running and window._first_done \
            else f"no predictions after {args.timeout:g} s"
        print(f"robustlens: error: {what}", file=sys.stderr)
        window.close()
        app.quit()

    def when_idle(then) -> None:
        poll = QTimer(window)

        def check() -> None:
            if not window.engine.active_jobs():
                poll.stop()
                then()

        poll.timeout.connect(check)
        poll.start(100)

    def first_predictions() -> None:
        if args.run:
            window.request_run()
        # let late paints (status bar, tabs) land before grabbing
        pause = 400 + int(1000 * args.delay)
        if args.settle:
            QTimer.singleShot(300, lambda: when_idle(lambda: QTimer.singleShot(pause, save)))
        else:
            QTimer.singleShot(pause, save)

    window.firstPredictions.connect(first_predictions)
    window.engine.jobFailed.connect(failed)
    QTimer.singleShot(int(args.timeout * 1000), timed_out)
    app.exec()
    window.close()
    scratch.cleanup()
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(main())
