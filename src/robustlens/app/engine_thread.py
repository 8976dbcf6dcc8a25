"""The engine thread: one long-lived QThread that owns the device and the loaded models.

The GUI thread hands it jobs (``engine/jobs.py``: ``factory(cancel) -> iterator of events``) through
queued signals and gets the jobs' events back as signals; it never waits on the engine.

Scheduling. The worker advances its jobs round robin, one time slice (~10 ms, or one chunk when
chunks are longer) at a time, returning to the thread's event loop between slices; a job not yet
started goes before the running ones. So a quick job (the predictions for a clicked image) runs between two
chunks of a long one (an experiment), new requests are picked up between chunks, and cancellation
takes effect at the job's next step. Every job keeps its own torch grad mode across its yields, as
if it had a thread of its own (a ``with torch.no_grad()`` in one generator must not leak into another).

Latest wins. Every job runs in a named *slot*; submitting to a busy slot cancels the job there. A
superseded job's events are no longer delivered: the slot's owner only ever sees the current job.

Throttling. Progress, Snapshot and Partial events are coalesced per job and kind to about 25 per
second (the latest one wins, and the last one before the end is always delivered); Finished,
Failed and Aborted are always delivered, after any pending coalesced event.

Bookkeeping. The GUI side remembers only what is running (``Engine._jobs``) and, per slot, its
current job (``current(slot)``: a finished one only as long as someone else still holds its handle).
A finished job's handle forgets its event handler, so nothing grows with the number of jobs run.

Shutdown. ``shutdown(timeout_ms)`` cancels every job and waits a bounded time for the thread to
end; the thread ends as soon as the running job returns from its current chunk (the worker closes
every generator, so their ``finally`` blocks run on the engine thread, then quits). A job stuck
inside one long chunk (a torch call that takes minutes) cannot be interrupted from outside: after
the wait the thread is *abandoned* — kept referenced here until it ends by itself, so its QThread is
never destroyed while running. If the process exits while one is still inside its chunk, an
``atexit`` hook waits once more (``EXIT_WAIT_MS``) and then ends the process with ``os._exit``
(stdout and stderr flushed; status 0: it only happens on a user's close), because letting Python
tear down a running QThread aborts the process ("QThread: Destroyed while thread is still running").
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import weakref

import torch
from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QObject, QThread, Qt, QTimer, Signal, Slot

from robustlens.engine.cost import ESTIMATE
from robustlens.engine.jobs import (Aborted, CancelToken, Failed, Finished, Partial, Progress,
                                    Snapshot, describe_error, run_job)
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.models import default_device

TERMINAL = (Finished, Failed, Aborted)
COALESCED = (Progress, Snapshot, Partial)
DEFAULT_INTERVAL_S = 0.04  # 25 updates per second: smooth to the eye, cheap for the GUI thread
TRACE = bool(os.environ.get("ROBUSTLENS_ENGINE_TRACE"))  # print every time slice (diagnostics)
SLICE_S = 0.01  # a job keeps the engine for this long (or one chunk) before the others get a turn
SHUTDOWN_WAIT_MS = 10_000  # Engine.shutdown's default wait for the running job's chunk
EXIT_WAIT_MS = 3_000       # at process exit, the last wait for an abandoned engine thread

# ----------------------------------------------------------------------------- engine side

ENGINE_NICENESS = 5


def _yield_to_the_gui() -> None:
    """Lower this thread's CPU priority (Linux: per-thread nice) so that, when the engine's torch
    threads keep every core busy, the GUI thread still gets a core the moment it has work. Torch's
    worker threads are started from the engine thread and inherit its priority. Elsewhere a no-op."""
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + ENGINE_NICENESS))
    except (AttributeError, OSError):
        pass


@dataclass
class _Job:
    id: int
    label: str
    events: Any  # the run_job generator
    keep_every: frozenset
    interval: float
    grad_enabled: bool = True
    last_emit: float = 0.0
    pending: dict = field(default_factory=dict)  # (event type, kind) -> latest coalesced event


@dataclass(frozen=True)
class _Request:
    id: int
    label: str
    factory: Callable
    token: CancelToken
    with_engine: bool
    keep_every: frozenset
    interval: float


class EngineWorker(QObject):
    """Lives on the engine thread; runs jobs a step at a time and emits their events."""

    event = Signal(int, object)     # job id, event
    _kick = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.context: ModelCache | None = None
        self._jobs: collections.deque[_Job] = collections.deque()    # started jobs, round robin
        self._fresh: collections.deque[_Job] = collections.deque()   # not yet started, first come first
        self._step_scheduled = False
        self._flush_timer: QTimer | None = None
        self.stopping = False  # set from the GUI thread by Engine.shutdown: start no further slice
        self._kick.connect(self._step, Qt.ConnectionType.QueuedConnection)

    @Slot()
    def start(self) -> None:
        """Runs first on the engine thread: claim the device, set up the timer that flushes."""
        _yield_to_the_gui()
        self.context = ModelCache(default_device())
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush_due)

    @Slot(object)
    def accept(self, request: _Request) -> None:
        if request.with_engine:
            context, job = self.context, request.factory
            factory = lambda cancel: job(context, cancel)  # noqa: E731 - bind the context late
        else:
            factory = request.factory
        self._fresh.append(_Job(request.id, request.label, run_job(factory, request.token),
                                request.keep_every, request.interval))
        self._schedule()

    @Slot()
    def stop(self) -> None:
        """Close every job (their ``finally`` blocks run here, on the engine thread) and quit."""
        for queue in (self._fresh, self._jobs):
            while queue:
                queue.popleft().events.close()
        QThread.currentThread().quit()

    def _schedule(self) -> None:
        if (self._jobs or self._fresh) and not self._step_scheduled and not self.stopping:
            self._step_scheduled = True
            self._kick.emit()

    @Slot()
    def _step(self) -> None:
        """Advance the next job for one time slice (several cheap events, or one long chunk).

        A job not yet started goes first: a click's quick job (predictions) then never waits
        behind more than one chunk of the long jobs already running."""
        self._step_scheduled = False
        if self.stopping or not (self._jobs or self._fresh):
            return  # (stop, queued behind this step, closes the jobs)
        job = self._fresh.popleft() if self._fresh else self._jobs.popleft()
        began = time.monotonic()
        deadline = began + SLICE_S
        outer_grad = torch.is_grad_enabled()
        torch.set_grad_enabled(job.grad_enabled)
        try:
            while True:
                event = next(job.events, None)
                if event is None or isinstance(event, TERMINAL):
                    self._flush(job)
                    self.event.emit(job.id, event if event is not None else Finished(None))
                    break
                self._offer(job, event)
                if time.monotonic() >= deadline:
                    self._jobs.append(job)
                    break
        except Exception as error:  # noqa: BLE001 - run_job catches the job's own errors; this is ours
            job.events.close()
            self.event.emit(job.id, Failed(describe_error(error), traceback.format_exc()))
        finally:
            job.grad_enabled = torch.is_grad_enabled()
            torch.set_grad_enabled(outer_grad)
            if TRACE:
                print(f"engine: {job.label!r} ran {1000 * (time.monotonic() - began):.1f} ms", file=sys.stderr)
        self._schedule()

    def _offer(self, job: _Job, event: Any) -> None:
        if not isinstance(event, COALESCED) or (isinstance(event, Partial) and event.kind in job.keep_every):
            self._flush(job)  # keep the order: pending coalesced events go first
            self.event.emit(job.id, event)
            return
        job.pending[(type(event), getattr(event, "kind", None))] = event
        now = time.monotonic()
        if now - job.last_emit >= job.interval:
            self._flush(job)
        elif not self._flush_timer.isActive():
            self._flush_timer.start(max(1, int(1000 * (job.last_emit + job.interval - now))))

    def _flush(self, job: _Job) -> None:
        if job.pending:
            for event in job.pending.values():
                self.event.emit(job.id, event)
            job.pending.clear()
            job.last_emit = time.monotonic()

    @Slot()
    def _flush_due(self) -> None:
        now, next_due = time.monotonic(), None
        for job in self._jobs:  # (fresh jobs have emitted nothing yet)
            if job.pending:
                if now - job.last_emit >= job.interval - 1e-3:
                    self._flush(job)
                else:
                    due = job.last_emit + job.interval - now
                    next_due = due if next_due is None else min(next_due, due)
        if next_due is not None:
            self._flush_timer.start(max(1, int(1000 * next_due)))


# ----------------------------------------------------------------------------- GUI side

def bind_request(function: Callable, request: Any) -> Callable:
    """The ``job(cache, cancel)`` that runs the engine function ``function(cache, request)``
    (``request``: plain values captured now, typically a frozen dataclass)."""
    return functools.partial(_run_engine_function, function, request)


def _run_engine_function(function: Callable, request: Any, cache: ModelCache, cancel: CancelToken):
    return function(cache, request)(cancel)


class JobHandle:
    """The GUI's view of one submitted job. ``state``: running, finished, failed or aborted."""

    def __init__(self, job_id: int, slot: str, label: str, token: CancelToken,
                 on_event: Callable[[Any], None] | None, user_cancellable: bool) -> None:
        self.id = job_id
        self.slot = slot
        self.label = label
        self.token = token
        self.on_event = on_event
        self.user_cancellable = user_cancellable
        self.state = "running"
        self.superseded = False
        self.progress: Progress | None = None
        self.estimate = None  # engine.cost.CostEstimate, when the job announced what it will cost
        self.error: Failed | None = None
        self.result: Any = None
        self.submitted_at = time.monotonic()
        self.ended_at: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def cancel(self) -> None:
        self.token.cancel()

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.slot!r} {self.label!r} {self.state}>"


_gui_thread_collector: GarbageCollector | None = None


def collect_garbage_on_the_gui_thread() -> GarbageCollector:
    """Python's cyclic garbage collection only on the GUI thread, from here on (idempotent).

    Python collects cycles in whichever thread allocates past a threshold: with the engine thread
    busy in torch, mostly the engine thread. A cycle that holds a Qt object (a closed window or
    dialog, a replaced plot item and the closures connected to it) would then be freed there, and
    Qt objects must be destroyed on the thread they live in: PySide6 crashes with a segmentation
    fault, at random (seen once in a full test run). pyqtgraph's ``GarbageCollector`` turns automatic
    collection off and collects with the same generation thresholds on a GUI-thread timer (once a
    second); it must be created on the GUI thread, as the Engine is.
    """
    global _gui_thread_collector
    if _gui_thread_collector is None:
        _gui_thread_collector = GarbageCollector(interval=1.0)
    return _gui_thread_collector


class Engine(QObject):
    """The bridge the GUI talks to. Owns the engine thread; all methods return at once.

    ``submit(slot, factory, ...)`` runs ``factory(cancel)``; ``submit(..., with_engine=True)`` runs
    ``job(cache, cancel)`` where ``cache`` is the engine thread's
    :class:`~robustlens.engine.model_cache.ModelCache` (device, models, smoothed classifiers).
    """

    jobStarted = Signal(object)            # JobHandle
    jobProgress = Signal(object)           # JobHandle (its .progress was updated)
    jobEnded = Signal(object)              # JobHandle (finished, failed or aborted; not superseded)
    jobFailed = Signal(object, object)     # JobHandle, Failed
    stopped = Signal()

    _submit = Signal(object)
    _stop = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        collect_garbage_on_the_gui_thread()
        _prune_abandoned()
        self._ids = itertools.count(1)
        self._jobs: dict[int, JobHandle] = {}         # the running jobs (not superseded), oldest first
        self._slots: dict[str, JobHandle] = {}        # slot -> its running job
        self._ended: dict[str, weakref.ref] = {}      # slot -> its last job, once ended (held by others only)
        self.device = default_device()
        self._thread = QThread()
        self._thread.setObjectName("robustlens-engine")
        self._worker = EngineWorker()
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.start)
        self._submit.connect(self._worker.accept)
        self._stop.connect(self._worker.stop)
        self._worker.event.connect(self._on_event)
        self._thread.finished.connect(self._worker.deleteLater)
        self._thread.start()
        self._stopping = False

    # -- requests

    def submit(self, slot: str, factory: Callable, *, on_event: Callable[[Any], None] | None = None,
               label: str = "", with_engine: bool = False, keep_every: Iterable[str] = (),
               interval: float = DEFAULT_INTERVAL_S, user_cancellable: bool = True) -> JobHandle:
        """Run a job in ``slot``, cancelling the job already there (latest wins).

        ``on_event(event)`` is called on the GUI thread for each event of this job while it is the
        slot's current job. Partial kinds listed in ``keep_every`` are never coalesced (table rows).
        """
        if self._stopping:  # the window is closing: nothing runs any more
            handle = JobHandle(next(self._ids), slot, label or slot, CancelToken(), on_event, user_cancellable)
            handle.token.cancel()
            handle.state = "aborted"
            return handle
        previous = self._slots.pop(slot, None)
        if previous is not None and previous.running:
            previous.superseded = True  # its remaining events are dropped: the slot moved on
            previous.cancel()
            previous.state = "aborted"
            previous.ended_at = time.monotonic()
            previous.on_event = None
            self._jobs.pop(previous.id, None)
        self._ended.pop(slot, None)
        handle = JobHandle(next(self._ids), slot, label or slot, CancelToken(), on_event, user_cancellable)
        self._jobs[handle.id] = handle
        self._slots[slot] = handle
        self._submit.emit(_Request(handle.id, handle.label, factory, handle.token, with_engine,
                                   frozenset(keep_every), interval))
        self.jobStarted.emit(handle)
        return handle

    def cancel(self, slot: str) -> None:
        handle = self._slots.get(slot)
        if handle is not None and handle.running:
            handle.cancel()

    def cancel_all(self, user_only: bool = True) -> list[JobHandle]:
        """Cancel the running jobs (only those a user may cancel, unless ``user_only`` is False); returns them."""
        cancelled = [h for h in self.active_jobs() if h.user_cancellable or not user_only]
        for handle in cancelled:
            handle.cancel()
        return cancelled

    def current(self, slot: str) -> JobHandle | None:
        """The slot's running job, else its last one while anyone still holds that handle."""
        handle = self._slots.get(slot)
        if handle is None:
            ended = self._ended.get(slot)
            handle = ended() if ended is not None else None
        return handle

    def bookkeeping(self) -> dict[str, int]:
        """How many handles the engine holds (running, per-slot current, ended still alive), for tests."""
        return {"running": len(self._jobs), "slots": len(self._slots),
                "ended": sum(1 for ref in self._ended.values() if ref() is not None)}

    def active_jobs(self, slot: str | None = None) -> list[JobHandle]:
        """Jobs still running and not superseded, oldest first."""
        return [h for h in self._jobs.values() if h.running and (slot is None or h.slot == slot)]

    def shutdown(self, timeout_ms: int = SHUTDOWN_WAIT_MS) -> bool:
        """Cancel everything and stop the thread: waits for the running job's chunk, at most
        ``timeout_ms``. True when the thread has ended; False when a job is still inside one long
        chunk: the thread is then abandoned (see the module docstring) and ends when the chunk does."""
        if self._stopping:
            return not self._thread.isRunning()
        self._stopping = True
        self._worker.stopping = True  # no further time slice, whatever is queued
        for handle in list(self._jobs.values()):
            handle.cancel()
        self._stop.emit()  # the worker closes every job on its thread, then quits the thread
        finished = self._thread.wait(max(0, int(timeout_ms)))
        if not finished:
            _abandon(self._thread, self._worker)
        self.stopped.emit()
        return finished

    @property
    def thread_running(self) -> bool:
        return self._thread.isRunning()

    # -- events from the engine thread

    @Slot(int, object)
    def _on_event(self, job_id: int, event: Any) -> None:
        handle = self._jobs.get(job_id)
        if handle is None or not handle.running or self._stopping:
            return  # superseded, or already ended (a drawing failure cancels its job)
        if isinstance(event, Progress):
            handle.progress = event
            self.jobProgress.emit(handle)
        elif isinstance(event, Partial) and event.kind == ESTIMATE:
            handle.estimate = event.value
        if handle.on_event is not None:
            try:
                handle.on_event(event)
            except Exception:  # noqa: BLE001 - a drawing bug must not stop the job bookkeeping
                details = traceback.format_exc()
                self._fail(handle, Failed(f"drawing the result of '{handle.label}' failed: "
                                          f"{details.strip().splitlines()[-1]}", details))
                return
        if isinstance(event, Finished):
            handle.result = event.result
            self._end(handle, "finished")
        elif isinstance(event, Failed):
            self._fail(handle, event)
        elif isinstance(event, Aborted):
            self._end(handle, "aborted")

    def _fail(self, handle: JobHandle, failure: Failed) -> None:
        handle.error = failure
        handle.token.cancel()
        self._end(handle, "failed")
        self.jobFailed.emit(handle, failure)

    def _end(self, handle: JobHandle, state: str) -> None:
        if not handle.running:
            return
        handle.state = state
        handle.ended_at = time.monotonic()
        handle.on_event = None  # its drawing closures (and what they hold) go with the job
        # keep the bookkeeping small: only running jobs are held; an ended one is remembered weakly
        self._jobs.pop(handle.id, None)
        if self._slots.get(handle.slot) is handle:
            del self._slots[handle.slot]
            self._ended[handle.slot] = weakref.ref(handle)
        self.jobEnded.emit(handle)


# ----------------------------------------------------------------------------- abandoned threads

_ABANDONED: list[tuple[QThread, EngineWorker]] = []  # engine threads that outlived their Engine
_EXIT_HOOK: list[bool] = []  # whether the atexit hook is registered


def _prune_abandoned() -> None:
    _ABANDONED[:] = [(thread, worker) for thread, worker in _ABANDONED if not thread.isFinished()]


def _abandon(thread: QThread, worker: EngineWorker) -> None:
    """Keep a thread that is still inside a job's chunk referenced until it ends by itself."""
    _prune_abandoned()
    if not _EXIT_HOOK:
        atexit.register(_exit_without_waiting_for_a_stuck_chunk)
        _EXIT_HOOK.append(True)
    _ABANDONED.append((thread, worker))


def _exit_without_waiting_for_a_stuck_chunk() -> None:
    """At exit (before PySide6 tears its objects down): give abandoned threads one last bounded wait;
    if one is still inside a chunk, end the process now instead of aborting in QThread's destructor."""
    deadline = time.monotonic() + EXIT_WAIT_MS / 1000
    for thread, _ in list(_ABANDONED):
        thread.wait(max(0, int(1000 * (deadline - time.monotonic()))))
    _prune_abandoned()
    if _ABANDONED:
        print("robustlens: a job is still inside a long step on the engine thread; exiting without it",
              file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
