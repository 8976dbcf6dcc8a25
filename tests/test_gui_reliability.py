"""The GUI's bookkeeping and loads under abuse (issue 11, items 2 and 8): the engine holds only what
runs, held PgDown starts one round of jobs, a FIFO or a device file never blocks the engine thread
or the close, and a job stuck inside one long chunk does not hold the window's close hostage.

No wall-clock bounds are asserted (the machine is shared): counts, orders and generous timeouts."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, Qt

from robustlens.app import engine_thread
from robustlens.app.engine_thread import Engine
from robustlens.app.window import MainWindow
from robustlens.engine.jobs import Aborted, Finished, Progress, run_to_end
from robustlens.engine.model_cache import ModelCache, PredictionsRequest, predictions_job
from robustlens.engine.models import zoo_names

FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")]  # no other panel's jobs
MODELS = ["fashion-mnist/standard", "fashion-mnist/noise-0.25"]


class Result:
    """A job's result that the test can watch die (weakref)."""

    def __init__(self, i: int) -> None:
        self.i = i
        self.payload = np.zeros(1000, dtype=np.float32)


def make_window(qtbot, tmp_path, models, select=0) -> MainWindow:
    win = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                     models=models, select=select, use_settings=False, panels=FRAME_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.selection is not None, timeout=60_000)
    return win


def predictions_shown_for(win: MainWindow, index: int) -> bool:
    strip = win.strip
    return (win.ctx.selection is not None and win.ctx.selection.index == index
            and strip.has_all_predictions("original")
            and strip.predicted_for.get("original") == strip._generation["original"])


@pytest.fixture
def window(qtbot, tmp_path):
    if not set(MODELS) <= set(zoo_names()):
        pytest.skip("the built-in zoo is not complete")
    win = make_window(qtbot, tmp_path, MODELS)
    qtbot.waitUntil(lambda: predictions_shown_for(win, 0), timeout=60_000)
    yield win
    win.close()


# ----------------------------------------------------------------------------- item 8: bookkeeping

def test_two_hundred_submissions_leave_o_of_slots_handles_and_no_results(qtbot):
    engine = Engine()
    results, finished = [], []
    slots = ("a", "b", "c", "d")

    def job(i):
        def factory(cancel):
            result = Result(i)
            results.append(weakref.ref(result))
            yield Progress(0, 1)
            yield Finished(result)
        return factory

    for i in range(200):
        engine.submit(slots[i % len(slots)], job(i),
                      on_event=lambda e: finished.append(1) if isinstance(e, Finished) else None)
        if i % 7 == 0:  # some finish, some are superseded while they run
            qtbot.waitUntil(lambda: not engine.active_jobs(), timeout=10_000)
    qtbot.waitUntil(lambda: not engine.active_jobs(), timeout=10_000)
    assert finished  # jobs did finish (the others were superseded)
    counts = engine.bookkeeping()
    assert counts["running"] == 0 and len(engine._jobs) == 0
    assert counts["slots"] + counts["ended"] <= len(slots)
    qtbot.wait(50)
    gc.collect()
    alive = [ref().i for ref in results if ref() is not None]
    assert alive == [], f"the engine still holds the results of jobs {alive}"
    assert engine.shutdown(timeout_ms=10_000)


def test_a_slots_current_handle_stays_while_someone_holds_it(qtbot):
    engine = Engine()
    handle = engine.submit("s", lambda cancel: iter([Finished("x")]))
    qtbot.waitUntil(lambda: handle.state == "finished", timeout=10_000)
    assert engine.current("s") is handle and handle.result == "x"
    assert handle.on_event is None  # its drawing closure went with the job
    del handle
    gc.collect()
    assert engine.current("s") is None
    assert engine.shutdown(timeout_ms=10_000)


def test_two_hundred_selections_keep_the_engines_bookkeeping_small(window, qtbot):
    for i in range(1, 201):
        window.select_index(i, settle=i % 2 == 0)  # clicks and keyboard steps
        if i % 25 == 0:
            qtbot.waitUntil(lambda: not window.engine.active_jobs(), timeout=60_000)
    window.settle_selection()
    qtbot.waitUntil(lambda: predictions_shown_for(window, 200) and not window.engine.active_jobs(), timeout=60_000)
    counts = window.engine.bookkeeping()
    assert counts["running"] == 0
    assert counts["slots"] + counts["ended"] <= 10, counts  # a few slots, not one per selection


# ----------------------------------------------------------------------------- item 8: settling

def test_fifty_rapid_steps_settle_once_on_the_last_image(window, qtbot):
    emitted, shown = [], []
    window.ctx.selectionChanged.connect(emitted.append)
    window.ctx.selectionShown.connect(shown.append)
    start = window.ctx.selection.index
    for step in range(1, 51):
        window.gallery.step(1)  # PgDown, as a held key repeats it
        # the selection and the strip's original follow every step at once
        assert window.ctx.selection.index == start + step
        expected = window.ctx.dataset.images[start + step].numpy()
        assert window.strip.images["original"].tobytes() == expected.tobytes()
        qtbot.wait(2)  # the event loop runs between two repeats, far faster than SETTLE_MS
    assert len(shown) == 50
    qtbot.waitUntil(lambda: predictions_shown_for(window, start + 50), timeout=60_000)
    assert 1 <= len(emitted) <= 10, f"selectionChanged fired {len(emitted)} times for 50 steps"
    assert emitted[-1] is window.ctx.selection and emitted[-1].index == start + 50
    probs = window.strip.predictions["original"]
    assert set(probs) == set(MODELS) and all(abs(p.sum() - 1) < 1e-4 for p in probs.values())


def test_a_click_starts_its_jobs_at_once(window, qtbot):
    emitted = []
    window.ctx.selectionChanged.connect(emitted.append)
    view = window.gallery.view
    rect = view.visualRect(window.gallery.model.index(9))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert [s.index for s in emitted] == [9]  # no debounce for a click
    qtbot.waitUntil(lambda: predictions_shown_for(window, 9), timeout=60_000)


def test_arrow_keys_in_the_gallery_settle_too(window, qtbot):
    emitted = []
    window.ctx.selectionChanged.connect(emitted.append)
    window.gallery.view.setFocus()
    start = window.ctx.selection.index
    for _ in range(5):
        qtbot.keyClick(window.gallery.view, Qt.Key.Key_Right)
    assert window.ctx.selection.index == start + 5
    assert emitted == []  # not yet: the steps have not settled
    qtbot.waitUntil(lambda: predictions_shown_for(window, start + 5), timeout=60_000)
    assert [s.index for s in emitted] == [start + 5]


# ----------------------------------------------------------------------------- item 3: predict

def test_predict_is_the_engine_function_the_cli_can_run(window, qtbot):
    image = window.ctx.dataset.images[3:4]
    got = {}
    window.ctx.predict("test-predict", {"x": image}, got.update, keys=MODELS)
    qtbot.waitUntil(lambda: "x" in got, timeout=60_000)
    headless = run_to_end(predictions_job(ModelCache("cpu"), PredictionsRequest({"x": image}, tuple(MODELS))))
    for key in MODELS:
        np.testing.assert_allclose(got["x"][key], headless["x"][key], atol=1e-5)


# ----------------------------------------------------------------------------- item 2: FIFOs, devices

def special_file(kind: str, tmp_path, suffix: str) -> str:
    if kind == "fifo":
        path = tmp_path / f"pipe{suffix}"
        os.mkfifo(path)
        return str(path)
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    return "/dev/zero"


@pytest.mark.parametrize("what", ["model", "image"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_device_never_blocks_the_engine_or_the_close(window, qtbot, tmp_path, kind, what):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path = special_file(kind, tmp_path, ".pt" if what == "model" else ".png")
    before = window.ctx.model_keys()
    if what == "model":
        window.open_model(path)
    else:
        window.open_image(path)
    qtbot.waitUntil(lambda: window.banner.isVisible() and "not a regular file" in window.banner.text.text(),
                    timeout=30_000)
    assert window.banner.property("level") == "error"
    qtbot.waitUntil(lambda: window._models_ready, timeout=30_000)
    assert window.ctx.model_keys() == before
    assert path not in window.model_picker.keys()
    # the engine thread is free: the next image's predictions arrive
    window.select_index(21)
    qtbot.waitUntil(lambda: predictions_shown_for(window, 21), timeout=60_000)
    # and Cancel still stops a running job
    events = []

    def long_job(cancel):
        for i in range(100_000):
            cancel.check()
            threading.Event().wait(0.01)
            yield Progress(i, 100_000)
        yield Finished(None)

    handle = window.engine.submit("long", long_job, on_event=events.append, label="a long job")
    qtbot.waitUntil(lambda: any(isinstance(e, Progress) for e in events), timeout=10_000)
    qtbot.waitUntil(lambda: window.status.cancel_button.isEnabled(), timeout=5_000)
    qtbot.mouseClick(window.status.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: handle.state == "aborted", timeout=10_000)
    assert isinstance(events[-1], Aborted)
    # closing right after: the thread has ended when close returns (no wait ran out)
    thread = window.engine._thread
    window.close()
    assert thread.isFinished()


# ----------------------------------------------------------------------------- item 2: a stuck chunk

def test_close_does_not_wait_for_a_job_stuck_in_one_chunk(qtbot, tmp_path, monkeypatch):
    from robustlens.app import window as window_module

    monkeypatch.setattr(window_module, "CLOSE_WAIT_MS", 200)
    win = make_window(qtbot, tmp_path, [])
    inside, release, closed = threading.Event(), threading.Event(), {}

    def stuck(cancel):
        try:
            yield Progress(0, 1)
            inside.set()
            release.wait(120)  # one chunk that no cancel.check() can interrupt
            closed["released_first"] = release.is_set()
            yield Progress(1, 1)
        finally:
            closed["on"] = threading.get_ident()

    win.engine.submit("stuck", stuck, label="a stuck job")
    qtbot.waitUntil(inside.is_set, timeout=10_000)
    thread, engine = win.engine._thread, win.engine
    win.close()  # returns although the chunk goes on
    assert not release.is_set() and thread.isRunning() and engine.thread_running
    assert any(t is thread for t, _ in engine_thread._ABANDONED)
    release.set()
    qtbot.waitUntil(thread.isFinished, timeout=30_000)
    assert closed["released_first"] and closed["on"] != threading.get_ident()  # closed on the engine thread
    engine_thread._prune_abandoned()
    assert not any(t is thread for t, _ in engine_thread._ABANDONED)


def test_the_process_exits_cleanly_while_a_job_is_stuck_in_a_chunk(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import sys, threading
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        import robustlens.app
        from robustlens.app import engine_thread, window as window_module
        from robustlens.engine.jobs import Progress

        window_module.CLOSE_WAIT_MS = 200
        engine_thread.EXIT_WAIT_MS = 200
        app = QApplication([])
        win = window_module.MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat), models=[],
                                       use_settings=False,
                                       panels=[("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")])
        win.show()
        inside = threading.Event()

        def stuck(cancel):
            yield Progress(0, 1)
            inside.set()
            threading.Event().wait(600)  # a chunk that never ends in this test's lifetime
            yield Progress(1, 1)

        win.engine.submit("stuck", stuck)
        while not inside.is_set():
            app.processEvents()
        win.close()
        print("closed", flush=True)
        del win
        sys.exit(0)
    """))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "s.ini")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert "closed" in done.stdout
    assert "Destroyed while thread" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "still inside a long step" in done.stderr
