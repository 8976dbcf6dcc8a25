"""`robustlens` with no subcommand: open the window (or, with --screenshot, save a picture of it).

    robustlens                                   the app, as you left it
    robustlens --lecture                         full screen, large fonts
    robustlens --dataset mnist --select 42       start on an image
    robustlens --model my.pt                     add a checkpoint to the loaded models
    robustlens --setting Certify/n=1000          start a tab with this setting (repeatable)
    robustlens --screenshot out.png [--select 7] [--tab Certify] [--lecture] [--size 1440x920]
                                    [--run] [--click BUTTON] [--click-at F BUTTON]
                                    [--settle | --progress F] [--delay S] [--hide gallery,strip]
                                                 start offscreen, wait for the first predictions
                                                 (--run: then press F5 on the tab; --click: then
                                                 click the tab's button of that text; --click-at:
                                                 click it once every job is F done; --settle:
                                                 then wait for every job to end; --progress: until
                                                 every running job is that far), save the window,
                                                 exit 0
    robustlens --deck [FILE] [--deck-step K]     the guided lecture (built in, or a deck file); with
                                                 --screenshot: step K (1-based) applied, then saved
    robustlens --deck-template > my.toml         write the built-in deck out, to copy and edit

The docs' screenshots are made with these flags only: tools/screenshots.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

SETTLE_POLL_MS = 100
PROGRESS_POLL_MS = 20  # a job mid-run moves on: look often


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustlens", description="Open the robustlens window.")
    parser.add_argument("--screenshot", metavar="PNG", help="save the window to this file and exit")
    parser.add_argument("--select", type=int, metavar="INDEX", help="select this image of the dataset")
    parser.add_argument("--dataset", metavar="NAME",
                        help="fashion-mnist (built in), fashion-mnist:train, mnist, cifar10 or folder (an image "
                             "folder, one subfolder per class); the last three from --data-root, else from the "
                             "folder chosen before in the app")
    parser.add_argument("--data-root", metavar="DIR", help="the folder of --dataset mnist, cifar10 or folder")
    parser.add_argument("--model", action="append", default=[], metavar="FILE",
                        help="also load this model file (repeatable)")
    parser.add_argument("--only-model", action="append", default=None, metavar="KEY",
                        help="load exactly these models, zoo names or files, instead of the remembered ones "
                             "(repeatable)")
    parser.add_argument("--lecture", action="store_true", help="lecture mode: full screen, large fonts")
    parser.add_argument("--tab", metavar="TITLE", help="show this tab (e.g. Predictions, Certify)")
    parser.add_argument("--hide", default="", metavar="PARTS",
                        help="hide parts of the window: gallery, strip (comma-separated)")
    parser.add_argument("--setting", action="append", default=[], metavar="TAB/KEY=VALUE",
                        help="start the tab with this setting, read as the tab reads its remembered ones "
                             "(repeatable), e.g. Attack/eps_linf=0.1")
    parser.add_argument("--run", action="store_true",
                        help="with --screenshot: run the shown tab's job (as F5 does) after the first predictions")
    parser.add_argument("--click", action="append", default=[], metavar="BUTTON",
                        help="with --screenshot: after --run, click the shown tab's button with this text "
                             "(repeatable, in order)")
    parser.add_argument("--click-at", nargs=2, metavar=("F", "BUTTON"),
                        help="with --screenshot: once every running job has done this fraction (0-1) of its "
                             "work, click the shown tab's button with this text (e.g. 0.3 Stop); then wait "
                             "as --settle or --progress say")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--settle", action="store_true",
                      help="with --screenshot: wait until every engine job has finished before saving")
    wait.add_argument("--progress", type=float, metavar="F",
                      help="with --screenshot: wait until every running job has done this fraction (0-1) "
                           "of its work before saving (a job mid-run)")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S",
                        help="with --screenshot: wait this many more seconds before saving (a job mid-run)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="window size for --screenshot (default 1440x920, 1920x1080 in lecture mode)")
    parser.add_argument("--deck", nargs="?", const="", default=None, metavar="FILE",
                        help="walk a lecture deck (TOML or JSON; no FILE: the built-in one) with PgDown / PgUp")
    parser.add_argument("--deck-step", type=int, default=1, metavar="K",
                        help="with --deck: start at step K (1-based); with --screenshot: save step K")
    parser.add_argument("--deck-template", action="store_true",
                        help="print the built-in deck (a documented TOML file) and exit")
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


def _apply_settings(window, pairs: list[str]) -> str | None:
    """``--setting TAB/KEY=VALUE``: stored where the tab remembers its settings, then read by the tab
    (so a value is checked as a remembered one is). Returns what went wrong, or None."""
    titles = {title.lower(): title for title in window.panels}
    touched = []
    for pair in pairs:
        path, equals, value = pair.partition("=")
        tab, slash, key = path.partition("/")
        title = titles.get(tab.strip().lower())
        if not (equals and slash and key.strip()) or title is None:
            return f"--setting takes TAB/KEY=VALUE with a tab of {', '.join(window.panels)}, not {pair!r}"
        declared = {setting.key for setting in getattr(window.panels[title], "SETTINGS", ())}
        if declared and key.strip() not in declared:
            return f"the {title} tab has no setting {key.strip()!r} (it has {', '.join(sorted(declared))})"
        window.settings.setValue(f"panels/{title}/{key.strip()}", value)
        touched.append(title)
    problems = window.restore_panel_settings(list(dict.fromkeys(touched)))
    return "; ".join(problems) or None


def _click(panel, text: str) -> bool:
    """Click the first visible, enabled button of ``panel`` whose text is ``text`` (no mnemonics, any case)."""
    from PySide6.QtWidgets import QAbstractButton

    wanted = text.replace("&", "").strip().lower()
    for button in panel.findChildren(QAbstractButton) if panel is not None else ():
        if button.text().replace("&", "").strip().lower() == wanted and button.isVisible() and button.isEnabled():
            button.click()
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.click_at is not None:
        try:
            args.click_at = (float(args.click_at[0]), args.click_at[1])
        except ValueError:
            parser.error(f"--click-at: {args.click_at[0]!r} is not a fraction (a number from 0 to 1)")
    if args.deck_template:
        from robustlens.engine.deck_file import builtin_deck_text

        sys.stdout.write(builtin_deck_text())
        return 0
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
                        use_settings=not screenshot, models=args.only_model,
                        # remembered absolute; a screenshot says the folder as it was given
                        data_root=args.data_root if screenshot or not args.data_root
                        else str(Path(args.data_root).expanduser().absolute()))
    if args.tab:
        titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        matches = [i for i, t in enumerate(titles) if t.lower() == args.tab.lower()]
        if not matches:
            print(f"robustlens: error: no tab {args.tab!r} (tabs: {', '.join(titles)})", file=sys.stderr)
            return 1
        window.tabs.setCurrentIndex(matches[0])

    if args.setting:
        problem = _apply_settings(window, args.setting)
        if problem:
            print(f"robustlens: error: {problem}", file=sys.stderr)
            window.close()
            return 1

    deck = None
    if args.deck is not None:
        from .deck import DeckError, load_deck

        try:
            deck = load_deck(window, args.deck)
            if not 1 <= args.deck_step <= len(deck.steps):
                raise DeckError(f"deck {deck.source}: no step {args.deck_step} (it has {len(deck.steps)})")
        except DeckError as error:
            print(f"robustlens: error: {error}", file=sys.stderr)
            window.close()
            return 1

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

    if deck is not None and not screenshot:
        from .deck import open_deck

        open_deck(window, deck, args.deck_step)  # its first step once the predictions are in
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

    def when(condition, then, every_ms: int = SETTLE_POLL_MS) -> None:
        poll = QTimer(window)

        def check() -> None:
            if condition():
                poll.stop()
                then()

        poll.timeout.connect(check)
        poll.start(every_ms)

    def idle() -> bool:
        return not window.engine.active_jobs()

    def far_enough(fraction: float) -> bool:
        return all(h.progress is not None and h.progress.fraction >= fraction
                   for h in window.engine.active_jobs() if h.user_cancellable)

    def click_or_quit(text: str) -> bool:
        if _click(window.current_panel(), text):
            return True
        print(f"robustlens: error: no button {text!r} to click on the "
              f"{window.tabs.tabText(window.tabs.currentIndex())} tab", file=sys.stderr)
        window.close()
        app.quit()
        return False

    def first_predictions() -> None:
        if deck is not None:
            from .deck import open_deck

            controller = open_deck(window, deck, args.deck_step)
            if controller.problems:
                print(f"robustlens: error: deck step {args.deck_step}: {'; '.join(controller.problems)}",
                      file=sys.stderr)
                window.close()
                app.quit()
                return
        if args.run:
            window.request_run()
        for text in args.click:
            if not click_or_quit(text):
                return
        if args.click_at is not None:  # e.g. Stop a run part-way, then wait as asked
            fraction, text = args.click_at
            when(lambda: far_enough(fraction), lambda: click_or_quit(text) and wait_and_save(), PROGRESS_POLL_MS)
            return
        wait_and_save()

    def wait_and_save() -> None:
        delay = int(1000 * args.delay)
        if args.progress is not None:  # mid-run: grab at once, the jobs move on
            when(lambda: far_enough(args.progress), lambda: QTimer.singleShot(delay, save), PROGRESS_POLL_MS)
            return
        # let late paints (status bar, tabs) land before grabbing
        pause = 400 + delay
        if args.settle:
            QTimer.singleShot(300, lambda: when(idle, lambda: QTimer.singleShot(pause, save)))
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
