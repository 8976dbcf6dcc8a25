"""The job protocol: long work as a generator of small events, cancellable between yields.

A job factory ``factory(cancel)`` returns an iterator of the events below. The engine thread (in
``app/``), :func:`run_to_end` (CLI, tests) and :func:`run_job` iterate it and check the job's
:class:`CancelToken` between events; jobs call ``cancel.check()`` between chunks of work so a
cancelled job stops within one chunk. Nothing here knows about Qt. ``engine/smoothing.py``'s
``certify_job``, for instance::

    def certify_job(smooth, x, *, n0=100, n=10_000, alpha=0.001, batch_size=1000, generator=None):
        def job(cancel):
            for update in smooth.certify_steps(x, n0, n, alpha, batch_size, generator):
                cancel.check()
                yield Partial("counts", update)
                yield Progress(update.done, update.total)
                if update.certificate is not None:
                    yield Finished(update.certificate)
        return job

    certificate = run_to_end(certify_job(smooth, x, n=1000))

The GUI runs engine functions ``fn(cache, request) -> factory``: ``cache`` is the engine thread's
``engine/model_cache.py`` ModelCache, ``request`` a frozen dataclass of the values captured when
the run started (``app/README.md``).
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator


class Cancelled(Exception):
    """Raised inside a job by CancelToken.check() once cancellation was requested."""


class ThreadFlag:
    """A flag one thread raises (the GUI's Cancel or Stop button) and a job reads between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def _raise(self) -> None:
        self._event.set()

    def _is_raised(self) -> bool:
        return self._event.is_set()


class CancelToken(ThreadFlag):
    """Cancel: the job ends at its next check, without a result."""

    def cancel(self) -> None:
        self._raise()

    @property
    def cancelled(self) -> bool:
        return self._is_raised()

    def check(self) -> None:
        if self._is_raised():
            raise Cancelled()


@dataclass(frozen=True)
class Progress:
    """How far the job is: drives the status-bar progress bar."""
    done: float
    total: float
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.done / self.total))


@dataclass(frozen=True)
class Partial:
    """Something worth drawing now (running counts, a curve point, a row of a table...)."""
    kind: str
    value: Any = None


@dataclass(frozen=True)
class Snapshot:
    """An intermediate image (a (C, H, W) or (N, C, H, W) [0,1] array) with what it shows."""
    kind: str
    image: Any
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """The final result; the job ends after it."""
    result: Any = None


@dataclass(frozen=True)
class Failed:
    """The job raised: ``message`` is one readable line, ``details`` the traceback."""
    message: str
    details: str = ""


@dataclass(frozen=True)
class Aborted:
    """The job was cancelled before it finished."""
    reason: str = "cancelled"


Event = Progress | Partial | Snapshot | Finished | Failed | Aborted
JobFactory = Callable[[CancelToken], Iterable[Any]]


def describe_error(error: BaseException) -> str:
    """One line a user can act on: the message of the error, prefixed by its kind when that helps."""
    text = " ".join(str(error).split()) or type(error).__name__
    known = ("DatasetError", "ModelError", "ValueError", "FileNotFoundError", "CLIError")
    return text if type(error).__name__ in known else f"{type(error).__name__}: {text}"


def run_job(factory: JobFactory, cancel: CancelToken) -> Iterator[Any]:
    """Drive a job to its end, turning cancellation and exceptions into events.

    Always ends with exactly one of Finished, Failed or Aborted (a job that returns without
    yielding Finished gets ``Finished(None)``).
    """
    try:
        if not (yield from _unguarded(factory, cancel)):
            yield Finished(None)
    except Cancelled:
        yield Aborted()
    except Exception as error:  # noqa: BLE001 - a job's failure must never take the engine thread down
        yield Failed(describe_error(error), traceback.format_exc())


def run_to_end(factory: JobFactory, cancel: CancelToken | None = None, on_event=None, *,
               keep_errors: bool = False) -> Any:
    """Run a job synchronously (CLI, tests): returns Finished.result, raises on failure (RuntimeError
    with the one-line message; with ``keep_errors`` the job's own exception, so a ValueError stays a
    ValueError that the CLI prints as one line) and Cancelled once ``cancel`` is set."""
    cancel = cancel or CancelToken()
    for event in (_unguarded(factory, cancel) if keep_errors else run_job(factory, cancel)):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Finished):
            return event.result
        if isinstance(event, Failed):
            raise RuntimeError(event.message)
        if isinstance(event, Aborted):
            raise Cancelled()
    return None


def _unguarded(factory: JobFactory, cancel: CancelToken):
    """The job's events up to Finished, with cancellation checked between them and its exceptions
    let through; returns whether it finished."""
    cancel.check()
    for event in factory(cancel):
        yield event
        if isinstance(event, Finished):
            return True
        cancel.check()
    return False


def predict_job(models, images, batch_size: int = 512) -> JobFactory:
    """Softmax class probabilities of every model on every image (the window's prediction bars).

    ``models``: {key: model}; ``images``: {key: [0,1] array or tensor, (C, H, W) or (N, C, H, W)}.
    Finished.result is {image key: {model key: float32 numpy array (N, classes)}}; a model whose
    input shape differs from an image's gets a one-line string saying why instead of an array.
    """

    def job(cancel: CancelToken):
        import torch

        result: dict = {}
        total, done = max(1, len(models) * len(images)), 0
        for image_key, image in images.items():
            x = torch.as_tensor(image, dtype=torch.float32)
            x = x[None] if x.dim() == 3 else x
            row = result.setdefault(image_key, {})
            for model_key, model in models.items():
                cancel.check()
                expected = tuple(getattr(getattr(model, "meta", None), "input_shape", ()) or ())
                if expected and tuple(x.shape[1:]) != expected:
                    row[model_key] = ("expects " + "×".join(map(str, expected)) + " input, not "
                                      + "×".join(map(str, x.shape[1:])))
                    continue
                device = next(iter(model.parameters()), torch.empty(0)).device
                with torch.no_grad():
                    probs = [torch.softmax(model(x[i:i + batch_size].to(device)).float(), dim=1).cpu()
                             for i in range(0, len(x), batch_size)]
                row[model_key] = torch.cat(probs).numpy()
                done += 1
                yield Progress(done, total, "predicting")
        yield Finished(result)

    return job
