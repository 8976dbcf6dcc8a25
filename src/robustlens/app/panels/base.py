"""What every tab shares, written once: declared settings that save and restore themselves, and the
wiring of engine jobs (one slot per job, latest wins, cancel buttons, the end-of-job branches).

A panel subclasses :class:`Panel`, lists ``SETTINGS`` and maps each key to a control in
``setting_widgets()`` (or overrides :meth:`Panel.setting_value` / :meth:`Panel.apply_setting` for a
value no single control holds), and runs work with :meth:`Panel.run_engine`::

    class CertifyPanel(Panel):
        SETTINGS = (Setting("n", 10_000, 1, 1_000_000, step=1000, help="noise samples"), ...)

        def run(self):
            request = CertifyRequest(...)                       # plain values, captured now
            self.run_engine("certify", certify_selection_job, request, label="certifying #17",
                            on_partial=self._draw, on_done=self._show, cancel_button=self.cancel_button)

The engine function has the shape ``fn(cache, request) -> job`` where ``cache`` is the engine thread's
:class:`~robustlens.engine.model_cache.ModelCache` and ``job(cancel)`` yields the events of
``engine/jobs.py``. The handlers run on the GUI thread and only draw. This is Orange's
``ConcurrentWidgetMixin`` (``start(task)``, ``on_partial_result``, ``on_done``, ``on_exception``) in
our job protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from PySide6.QtWidgets import QAbstractButton, QWidget

from robustlens.engine.cost import ESTIMATE
from robustlens.engine.jobs import Aborted, Failed, Finished, Partial, Progress, Snapshot

from ..context import AppContext
from ..controls import set_widget_value, widget_value
from ..settings import Setting, read_settings

Handler = Callable[[Any], None] | None


class Panel(QWidget):
    """A tab of the main window: ``Panel(ctx)``; talks to the rest of the app through ``ctx`` only."""

    SETTINGS: tuple[Setting, ...] = ()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._runs: dict[str, int] = {}                      # slot -> id of the run whose events are drawn
        self._handles: dict[str, Any] = {}                   # slot -> JobHandle of the latest run
        self._cancel_buttons: dict[str, QAbstractButton] = {}
        ctx.cancelRequested.connect(self._after_cancel_all)
        ctx.lectureModeChanged.connect(self.set_lecture_mode)

    def follow(self, *, selection: Handler = None, models: Handler = None, dataset: Handler = None) -> None:
        """Call ``selection(Selection)``, ``models(list[ModelInfo])``, ``dataset(Dataset)`` whenever the
        window's selection, loaded models or dataset change."""
        for signal, handler in ((self.ctx.selectionChanged, selection), (self.ctx.modelsChanged, models),
                                (self.ctx.datasetChanged, dataset)):
            if handler is not None:
                signal.connect(handler)

    # ---------------------------------------------------------------- settings

    def setting_widgets(self) -> dict[str, QWidget]:
        """{setting key: the control that shows it}; keys left out go through setting_value/apply_setting."""
        return {}

    def setting_value(self, key: str) -> Any:
        """The current value of a declared setting (from its control by default)."""
        return widget_value(self.setting_widgets()[key])

    def apply_setting(self, key: str, value: Any) -> None:
        """Show a declared setting's value (in its control by default); ValueError if it cannot be shown."""
        set_widget_value(self.setting_widgets()[key], value)

    def settings_applied(self) -> None:
        """Called after restore / reset: redraw what depends on the settings."""

    def save_settings(self, store) -> None:
        """Write every declared setting into ``store`` (a QSettings already in this panel's group)."""
        for setting in self.SETTINGS:
            value = self.setting_value(setting.key)
            if value is not None:
                store.setValue(setting.key, value)

    def restore_settings(self, store) -> list[str]:
        """Read every declared setting from ``store``; a value that does not parse, is out of range or
        cannot be shown falls back to its default. Returns one line per value ignored (the window
        shows them once)."""
        values, problems = read_settings(store, self.SETTINGS, where=self.objectName() or type(self).__name__)
        for setting in self.SETTINGS:
            if setting.key not in values:
                continue
            try:
                self.apply_setting(setting.key, values[setting.key])
            except (TypeError, ValueError) as error:
                problems.append(f"{setting.key} = {values[setting.key]!r}: {error}; using {setting.default!r}")
                self.apply_setting(setting.key, setting.default)
        self.settings_applied()
        return problems

    def reset_settings(self) -> None:
        """Every declared setting back to its default."""
        for setting in self.SETTINGS:
            self.apply_setting(setting.key, setting.default)
        self.settings_applied()

    # ---------------------------------------------------------------- jobs

    def run_engine(self, slot: str, function: Callable, request: Any, **options):
        """Run the engine function ``function(cache, request)`` in ``slot`` (see the module docstring)."""
        return self.start_job(slot, lambda cache, cancel: function(cache, request)(cancel), **options)

    def start_job(self, slot: str, job: Callable, *, label: str, on_partial: Handler = None,
                  on_progress: Handler = None, on_snapshot: Handler = None, on_done: Handler = None,
                  on_aborted: Handler = None, on_failed: Handler = None, on_end: Handler = None,
                  keep_every: Iterable[str] = (), cancel_button: QAbstractButton | None = None):
        """Run ``job(cache, cancel)`` on the engine thread in ``slot``; a running job there is cancelled
        and its events are no longer drawn (latest wins). ``on_partial`` / ``on_progress`` /
        ``on_snapshot`` get the events, ``on_done`` the result, ``on_aborted`` the Aborted event,
        ``on_failed`` the Failed event (the window's banner shows it already), ``on_end`` the end
        state ("finished" | "aborted" | "failed") after any of those. ``cancel_button`` is enabled
        while the job runs and cancels it."""
        run = self._runs.get(slot, 0) + 1
        self._runs[slot] = run

        def on_event(event) -> None:
            if self._runs.get(slot) != run:
                return  # a run that was forgotten (cancel_job) or replaced
            if isinstance(event, Partial) and event.kind == ESTIMATE:
                self.show_estimate(slot, event.value)  # the status bar shows it too (JobStatus)
            elif isinstance(event, Partial):
                _call(on_partial, event)
            elif isinstance(event, Progress):
                _call(on_progress, event)
            elif isinstance(event, Snapshot):
                _call(on_snapshot, event)
            else:
                state = {Finished: "finished", Aborted: "aborted", Failed: "failed"}.get(type(event))
                if state is None:
                    return
                self._job_ended(slot)
                if state == "finished":
                    _call(on_done, event.result)
                elif state == "aborted":
                    _call(on_aborted, event)
                else:
                    _call(on_failed, event)
                _call(on_end, state)

        handle = self.ctx.submit_with_models(slot, job, on_event=on_event, label=label, keep_every=keep_every)
        self._handles[slot] = handle
        if cancel_button is not None:
            if slot not in self._cancel_buttons:
                cancel_button.clicked.connect(lambda: self.cancel_job(slot, forget=False))
            self._cancel_buttons[slot] = cancel_button
            cancel_button.setEnabled(True)
        return handle

    def cancel_job(self, slot: str, *, forget: bool = True) -> None:
        """Cancel the job in ``slot``. ``forget``: its Aborted event is not drawn either (the panel has
        moved on, e.g. to a new selection); otherwise ``on_aborted`` / ``on_end`` still run."""
        if forget:
            self._runs[slot] = self._runs.get(slot, 0) + 1
            self._job_ended(slot)
        self.ctx.cancel(slot)

    def job_running(self, slot: str) -> bool:
        handle = self._handles.get(slot)
        return handle is not None and handle.running

    def job_handle(self, slot: str):
        return self._handles.get(slot)

    def _job_ended(self, slot: str) -> None:
        button = self._cancel_buttons.get(slot)
        if button is not None:
            button.setEnabled(False)

    def _after_cancel_all(self) -> None:
        for button in self._cancel_buttons.values():
            button.setEnabled(False)

    def show_estimate(self, slot: str, estimate) -> None:
        """The job in ``slot`` announced its cost (engine.cost.CostEstimate) before its work: a panel
        with a progress line of its own shows it there."""

    # ---------------------------------------------------------------- the window calls these

    def run(self) -> None:
        """F5 / Ctrl+Return while this tab shows."""

    def set_lecture_mode(self, on: bool) -> None:
        """Lecture mode changed (the app font is scaled already; plots scale their own fonts). The base
        connects it to ``ctx.lectureModeChanged``: a panel only overrides it."""


def _call(handler: Handler, value: Any) -> None:
    if handler is not None:
        handler(value)
