"""The engine thread: progress, cancel, latest wins, errors, throttling, grad mode, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from PySide6.QtCore import QSettings, Qt

from robustlens.app.engine_thread import Engine
from robustlens.app.window import MainWindow
from robustlens.engine.jobs import Aborted, Finished, Partial, Progress

FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")]  # no other panel's jobs


@pytest.fixture
def engine(qtbot):
    engine = Engine()
    yield engine
    engine.shutdown()
    assert not engine.thread_running


def slow_job(chunks: int, chunk_s: float = 0.02, result=None, log=None):
    """A dummy long job: sleeps in chunks, reporting progress, checking for cancellation."""

    def factory(cancel):
        if log is not None:
            log.append(("start", result))
        for i in range(chunks):
            cancel.check()
            time.sleep(chunk_s)
            yield Progress(i + 1, chunks, f"chunk {i + 1}")
        if log is not None:
            log.append(("end", result))
        yield Finished(result)

    return factory


def test_a_job_runs_off_the_gui_thread_and_reports_progress(engine, qtbot):
    seen, threads = [], []

    def factory(cancel):
        threads.append(threading.get_ident())
        yield from slow_job(5, 0.01, result="done")(cancel)

    handle = engine.submit("work", factory, on_event=seen.append)
    assert handle.running  # submit returned before the job ran
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=5000)
    assert threads and threads[0] != threading.get_ident()
    assert isinstance(seen[-1], Finished) and seen[-1].result == "done"
    assert any(isinstance(e, Progress) for e in seen)
    assert handle.result == "done"


def test_cancel_button_stops_a_long_job_within_half_a_second(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     models=[], use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    events, stopped = [], {}

    def long_job(cancel):
        try:
            yield from slow_job(10_000, 0.02)(cancel)
        finally:  # runs on the engine thread when the job ends
            stopped["at"] = time.monotonic()

    handle = win.engine.submit("long", long_job, on_event=events.append, label="a long job")
    qtbot.waitUntil(lambda: any(isinstance(e, Progress) for e in events), timeout=5000)
    qtbot.waitUntil(lambda: win.status.cancel_button.isEnabled(), timeout=2000)
    qtbot.waitUntil(lambda: "a long job" in win.status.job_label.text(), timeout=2000)
    qtbot.waitUntil(lambda: win.status.progress.maximum() == 1000, timeout=2000)
    assert win.status.progress.isVisible()  # the bar shows while a job runs, and only then (below)
    clicked = time.monotonic()
    qtbot.mouseClick(win.status.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: handle.state == "aborted", timeout=5000)
    shown = time.monotonic()
    assert stopped["at"] - clicked < 0.5, f"the job ran on for {stopped['at'] - clicked:.3f} s"
    print(f"cancel: job stopped {1000 * (stopped['at'] - clicked):.0f} ms after the click, "
          f"the window knew after {1000 * (shown - clicked):.0f} ms")
    assert isinstance(events[-1], Aborted)
    done = [e for e in events if isinstance(e, Progress)][-1].done
    assert done < 10_000
    qtbot.waitUntil(lambda: not win.status.progress.isVisible(), timeout=2000)
    win.close()


def test_latest_wins_in_a_slot(engine, qtbot):
    log, results = [], []
    for i in range(10):
        engine.submit("slot", slow_job(15, 0.02, result=i, log=log),
                      on_event=lambda e: results.append(e.result) if isinstance(e, Finished) else None)
    assert len(engine.active_jobs("slot")) == 1
    qtbot.waitUntil(lambda: not engine.active_jobs(), timeout=10_000)
    assert results == [9]
    ended = [r for what, r in log if what == "end"]
    assert ended == [9]


def test_ten_rapid_clicks_leave_one_job_and_the_last_images_result(qtbot, tmp_path):
    """Clicks in the gallery drive a (slow) job per image, as the Certify panel will."""
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     models=[], select=0, use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.ctx.selection is not None, timeout=10_000)
    log, shown = [], []

    def on_selection(selection):
        index = selection.index
        win.ctx.submit("per-image", slow_job(10, 0.03, result=index, log=log),
                       on_event=lambda e: shown.append(e.result) if isinstance(e, Finished) else None)

    win.ctx.selectionChanged.connect(on_selection)
    view = win.gallery.view
    rows = [3, 8, 1, 12, 7, 2, 9, 4, 11, 6]
    for row in rows:
        rect = view.visualRect(win.gallery.model.index(row))
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert win.ctx.selection.index == rows[-1]
    assert len(win.engine.active_jobs("per-image")) == 1
    assert len(win.engine.active_jobs("strip-predictions:original")) <= 1
    qtbot.waitUntil(lambda: not win.engine.active_jobs("per-image"), timeout=10_000)
    assert shown == [rows[-1]]
    assert [r for what, r in log if what == "end"] == [rows[-1]]
    assert win.strip.images["original"].tobytes() == win.ctx.dataset.images[rows[-1]].numpy().tobytes()
    win.close()


def test_an_exception_shows_an_error_and_the_next_job_runs(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     models=[], use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()

    def broken(cancel):
        yield Progress(0, 1)
        raise ZeroDivisionError("the job divided by zero")

    failing = win.engine.submit("work", broken, label="a broken job")
    qtbot.waitUntil(lambda: failing.state == "failed", timeout=5000)
    assert win.banner.isVisible()
    assert "the job divided by zero" in win.banner.text.text()
    assert "ZeroDivisionError" in failing.error.details
    following = win.engine.submit("work", slow_job(3, 0.01, result=42))
    qtbot.waitUntil(lambda: following.state == "finished", timeout=5000)
    assert following.result == 42
    assert win.engine.thread_running
    win.close()


def test_throttling_keeps_the_last_event_and_drops_most(engine, qtbot):
    seen = []

    def chatty(cancel):
        start = time.monotonic()
        for i in range(3000):
            time.sleep(0.0002)
            yield Partial("counts", i)
        yield Partial("duration", time.monotonic() - start)
        yield Finished("end")

    handle = engine.submit("chatty", chatty, on_event=seen.append)
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=20_000)
    counts = [e.value for e in seen if isinstance(e, Partial) and e.kind == "counts"]
    duration = [e.value for e in seen if isinstance(e, Partial) and e.kind == "duration"][0]
    assert counts[-1] == 2999                       # the last state always arrives
    assert counts == sorted(counts)                  # in order
    assert len(counts) <= duration * 25 * 1.5 + 5    # about 25 per second, not 3000
    assert isinstance(seen[-1], Finished)


def test_keep_every_delivers_every_row(engine, qtbot):
    seen = []

    def rows(cancel):
        for i in range(500):
            yield Partial("row", i)
        yield Finished(None)

    handle = engine.submit("rows", rows, on_event=seen.append, keep_every=("row",))
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=10_000)
    assert [e.value for e in seen if isinstance(e, Partial)] == list(range(500))


def test_each_job_keeps_its_own_grad_mode(engine, qtbot):
    observed = {}

    def inside_no_grad(cancel):
        with torch.no_grad():
            for i in range(20):
                observed.setdefault("a", []).append(torch.is_grad_enabled())
                yield Progress(i, 20)
        yield Finished(None)

    def needs_grad(cancel):
        for i in range(20):
            x = torch.ones(3, requires_grad=True)
            (x * 2).sum().backward()  # fails if another job's no_grad leaked in
            observed.setdefault("b", []).append(torch.is_grad_enabled())
            yield Progress(i, 20)
        yield Finished(None)

    a = engine.submit("a", inside_no_grad)
    b = engine.submit("b", needs_grad)
    qtbot.waitUntil(lambda: a.state != "running" and b.state != "running", timeout=10_000)
    assert (a.state, b.state) == ("finished", "finished"), (a.error, b.error)
    assert observed["a"] == [False] * 20 and observed["b"] == [True] * 20


def test_a_quick_job_runs_between_chunks_of_a_long_one(engine, qtbot):
    long = engine.submit("long", slow_job(200, 0.02))
    qtbot.wait(100)
    started = time.monotonic()
    quick = engine.submit("quick", slow_job(1, 0.0, result="quick"))
    qtbot.waitUntil(lambda: quick.state == "finished", timeout=5000)
    assert time.monotonic() - started < 1.0
    assert long.running
    long.cancel()
    qtbot.waitUntil(lambda: long.state == "aborted", timeout=2000)


def test_models_are_loaded_and_cached_on_the_engine_thread(engine, qtbot, tmp_path):
    from robustlens.engine.models import build_model, save_checkpoint

    path = str(tmp_path / "m.pt")
    save_checkpoint(build_model("fmnist-cnn", name="test/m"), path)
    seen = []

    def job(ctx, cancel):
        first = ctx.model(path)
        second = ctx.models([path])[path]
        yield Finished((first is second, str(next(first.parameters()).device), ctx.cached_keys,
                        threading.get_ident()))

    handle = engine.submit("load", job, with_engine=True, on_event=seen.append)
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=10_000)
    same, device, cached, thread = handle.result
    assert same and cached == [path] and thread != threading.get_ident()
    assert device.split(":")[0] == engine.device.type


def test_shutdown_with_a_running_job_ends_the_thread(qtbot):
    engine = Engine()
    engine.submit("long", slow_job(100_000, 0.01))
    qtbot.wait(50)
    assert engine.shutdown(timeout_ms=3000)
    assert not engine.thread_running


def test_many_signal_emits_do_not_exhaust_the_singletons(qtbot):
    """PySide6 6.12 drops a reference to True on every Signal.emit (see app/__init__.py); thousands
    of emits, as a streaming job makes, must not abort the interpreter."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        fired = Signal(int)

    emitter = Emitter()
    received = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(20_000):
        emitter.fired.emit(i)
    assert len(received) == 20_000
    if sys.version_info < (3, 12):
        assert sys.getrefcount(True) > 1 << 39 and before - sys.getrefcount(True) <= 20_000


def test_a_drawing_error_is_reported_and_stops_its_job(engine, qtbot):
    failures = []
    engine.jobFailed.connect(lambda handle, failure: failures.append(failure.message))

    def draw(event):
        if isinstance(event, Progress):
            raise KeyError("no such bar")

    handle = engine.submit("draw", slow_job(1000, 0.01), on_event=draw, label="a job drawn badly")
    qtbot.waitUntil(lambda: handle.state == "failed", timeout=5000)
    assert failures and "a job drawn badly" in failures[0] and "no such bar" in failures[0]
    assert handle.token.cancelled
    following = engine.submit("draw", slow_job(2, 0.01, result="fine"))
    qtbot.waitUntil(lambda: following.state == "finished", timeout=5000)


def test_cycles_are_collected_on_the_gui_thread_while_the_engine_allocates(engine, qtbot):
    """Garbage cycles (which may hold Qt objects) are freed on the GUI thread, never in the engine
    thread, however much the engine allocates: Qt objects destroyed off their thread crash PySide6."""
    import gc

    freed_on_main: list[bool] = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            freed_on_main.append(threading.current_thread() is threading.main_thread())

    for _ in range(50):
        Cycle()  # unreachable at once: only the cyclic collector frees them

    def allocate(cancel):
        kept = []
        for i in range(20):  # containers past every generation's threshold, many times over
            kept.append([[j] for j in range(20_000)])
            yield Progress(i + 1, 20, "allocating")
        yield Finished(kept)  # kept alive past the collector's next tick, which collects only when
        # the count of live new containers is past the threshold (freeing them lowers the count again)

    handle = engine.submit("allocate", allocate)
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=30_000)
    assert not gc.isenabled()  # automatic collection is off: it would run in whichever thread allocates
    qtbot.waitUntil(lambda: len(freed_on_main) == 50, timeout=10_000)  # the GUI thread's timer collects
    assert all(freed_on_main)
