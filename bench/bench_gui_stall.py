"""How long does the GUI thread stall while the engine thread computes?

A 10 ms QTimer on the GUI thread records how late each tick fires while the window's engine thread
runs a heavy job, and the window draws the job's streamed results (a live class histogram, the
status bar's progress). Two jobs, the two workloads the app streams:

- certify: Monte Carlo noise samples through the model in batches (Cohen et al.'s inner loop), the
  running counts streamed after every batch;
- pgd: L2 PGD on a batch of test images, the current images streamed after every step.

Prints the p50 / p99 / max lateness of the ticks (target: p99 under 50 ms on a 2-core CPU) and
the job's throughput. Run: `QT_QPA_PLATFORM=offscreen python bench/bench_gui_stall.py [--seconds 8]`

``--selections N`` instead holds PgDown: N "next image" steps at ``--rate`` per second (30, a key's
auto-repeat) with every panel (``--panels all``, the default there) or only the frame, while the same
10 ms timer ticks. It prints the GUI thread's CPU time per selection (``time.thread_time`` of the GUI
thread, so other processes' load does not count), the ticks' lateness p50 / p99, how many times
``selectionChanged`` fired, and that the last image's predictions arrived. The machine's load average
is printed beside it: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import robustlens.app  # noqa: E402,F401 - the app's process-wide fixes
from robustlens.app import engine_thread  # noqa: E402
from robustlens.app.window import MainWindow  # noqa: E402
from robustlens.engine.attacks import pgd_steps  # noqa: E402
from robustlens.engine.jobs import Finished, Partial, Progress, Snapshot  # noqa: E402
from robustlens.engine.models import build_model, zoo_names  # noqa: E402

TICK_MS = 10
FRAME_ONLY = [("Predictions", "robustlens.app.panels.predictions:PredictionsPanel")]


def wait_until(app: QApplication, condition, timeout_s: float = 60.0) -> bool:
    """Run the event loop (not a busy loop: its own CPU time would count) until ``condition()``."""
    if condition():
        return True
    loop, end = QEventLoop(), time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(5)
    poll.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > end else None)
    poll.start()
    loop.exec()
    poll.stop()
    return condition()


def idle_cpu_ms(app: QApplication, seconds: float) -> float:
    """The GUI thread's CPU time per second with nothing happening but the 10 ms timer (the baseline)."""
    ticker = QTimer()
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(lambda: None)
    ticker.start()
    cpu0, end = time.thread_time(), time.monotonic() + seconds
    wait_until(app, lambda: time.monotonic() >= end)
    ticker.stop()
    return 1000 * (time.thread_time() - cpu0) / seconds


def lateness_ticker() -> tuple[QTimer, QElapsedTimer, list[float]]:
    """A TICK_MS timer that records how late each tick fires (ms): how long the GUI thread was busy.
    Start the clock and the timer when measuring begins."""
    lateness: list[float] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(TICK_MS)
    last = {"t": None}

    def tick():
        now = clock.nsecsElapsed() / 1e6
        if last["t"] is not None:
            lateness.append(max(0.0, now - last["t"] - TICK_MS))
        last["t"] = now

    ticker.timeout.connect(tick)
    return ticker, clock, lateness


def hold_page_down(window: MainWindow, app: QApplication, count: int, rate: float) -> dict:
    """``count`` next-image steps at ``rate`` per second, as a held PgDown; the GUI thread's CPU time
    and a 10 ms timer's lateness over them, until the last image's predictions are on screen."""
    emitted = []

    def on_emitted(selection):
        emitted.append(selection)

    window.ctx.selectionChanged.connect(on_emitted)
    ticker, clock, lateness = lateness_ticker()
    stepper = QTimer()
    stepper.setInterval(max(1, round(1000 / rate)))
    steps = {"n": 0}

    def step():
        if steps["n"] >= count:
            stepper.stop()
            return
        steps["n"] += 1
        window.gallery.step(1)

    stepper.timeout.connect(step)
    start_index = window.ctx.selection.index
    clock.start()
    ticker.start()
    cpu0, wall0 = time.thread_time(), time.monotonic()
    stepper.start()
    wait_until(app, lambda: steps["n"] >= count)
    steps_wall, steps_cpu, steps_ticks = time.monotonic() - wall0, time.thread_time() - cpu0, len(lateness)
    final = start_index + count
    arrived = wait_until(app, lambda: (window.ctx.selection.index == final and window.strip.has_all_predictions("original")
                                       and window.strip.predicted_for.get("original") == window.strip._generation["original"]))
    settle_wall = time.monotonic() - wall0
    cpu = time.thread_time() - cpu0
    ticker.stop()
    window.ctx.selectionChanged.disconnect(on_emitted)
    window.cancel_jobs()
    wait_until(app, lambda: not window.engine.active_jobs(), 30)
    lat = np.asarray(lateness[:steps_ticks]) if steps_ticks else np.zeros(1)
    return {"cpu_ms_per_selection": 1000 * steps_cpu / count, "cpu_ms_with_settle": 1000 * cpu / count,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max()),
            "ticks": steps_ticks,
            "emitted": len(emitted), "last_emitted": emitted[-1].index if emitted else None, "final": final,
            "arrived": arrived, "steps_s": steps_wall, "settle_s": settle_wall,
            "engine_handles": len(window.engine._jobs)}


def selections_main(args) -> None:
    import tempfile

    from robustlens.app.panels import PANELS

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        key = model_key(tmp)
        panels = PANELS if args.panels == "all" else FRAME_ONLY
        models = [n for n in zoo_names()] if args.panels == "all" and zoo_names() else [key]
        window = MainWindow(settings=QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat),
                            models=models, select=0, use_settings=False, panels=panels)
        window.show()
        wait_until(app, lambda: window._models_ready and window.strip.has_all_predictions("original"))
        window.cancel_jobs()
        wait_until(app, lambda: not window.engine.active_jobs(), 30)
        print(f"device {window.engine.device}, torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}, "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; panels {args.panels} "
              f"(current tab: {window.tabs.tabText(window.tabs.currentIndex())}), {len(models)} models")
        print(f"{args.selections} selections at {args.rate:g}/s (held PgDown), {args.repeats} run(s); "
              f"idle GUI thread: {idle_cpu_ms(app, 2.0) / args.rate:.2f} ms CPU per {1000 / args.rate:.0f} ms")
        print("GUI CPU ms/sel: while the keys repeat; +settle: until the last image's predictions show; "
              "lateness of the 10 ms timer while the keys repeat")
        print(f"{'run':<6}{'GUI CPU ms/sel':>15}{'+settle':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'emitted':>9}"
              f"{'last ok':>9}{'preds':>7}{'settle s':>10}{'handles':>9}")
        for run in range(args.repeats):
            r = hold_page_down(window, app, args.selections, args.rate)
            print(f"{run + 1:<6}{r['cpu_ms_per_selection']:>15.2f}{r['cpu_ms_with_settle']:>9.2f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}"
                  f"{r['emitted']:>9}{str(r['last_emitted'] == r['final']):>9}{str(r['arrived']):>7}"
                  f"{r['settle_s']:>10.2f}{r['engine_handles']:>9}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        window.close()


def model_key(tmp: str) -> str:
    """A zoo model when there is one; otherwise the same architecture, saved to a scratch file."""
    for name in ("fashion-mnist/noise-0.25", "fashion-mnist/standard"):
        if name in zoo_names():
            return name
    from robustlens.engine.models import save_checkpoint

    path = os.path.join(tmp, "bench-model.pt")
    save_checkpoint(build_model("fmnist-cnn", name="bench/fmnist-cnn"), path)
    return path


def certify_like(key: str, image: torch.Tensor, seconds: float, batch: int, sigma: float = 0.25):
    """Noise samples in batches, running class counts after each (the certify inner loop)."""

    def job(cache, cancel):
        model = cache.model(key)
        x = image.to(cache.device)
        counts = torch.zeros(10, dtype=torch.long)
        start, samples = time.monotonic(), 0
        with torch.no_grad():
            while time.monotonic() - start < seconds:
                cancel.check()
                noisy = x.repeat(batch, 1, 1, 1) + sigma * torch.randn(batch, *x.shape[1:], device=x.device)
                counts += torch.bincount(model(noisy).argmax(1).cpu(), minlength=10)
                samples += batch
                yield Partial("counts", counts.numpy().copy())
                yield Progress(time.monotonic() - start, seconds, f"{samples:,} samples")
        yield Finished(samples / (time.monotonic() - start))

    return job


def pgd_like(key: str, images: torch.Tensor, labels: torch.Tensor, seconds: float):
    """L2 PGD steps on a batch, the current adversarial images after each step."""

    def job(cache, cancel):
        model = cache.model(key)
        x, y = images.to(cache.device), labels.to(cache.device)
        start, steps = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            for state in pgd_steps(model, x, y, norm="l2", eps=1.5, step_size=0.2, steps=50):
                cancel.check()
                steps += 1
                yield Snapshot("adversarial", state.adversarial[:1].detach().cpu())
                yield Progress(time.monotonic() - start, seconds, f"{steps} steps")
                if time.monotonic() - start >= seconds:
                    break
        yield Finished(steps * len(x) / (time.monotonic() - start))

    return job


def measure(window: MainWindow, app: QApplication, factory, seconds: float, draw) -> tuple[np.ndarray, float]:
    timer, clock, lateness = lateness_ticker()
    result = {}

    def on_event(event):
        draw(event)
        if isinstance(event, Finished):
            result["rate"] = event.result

    clock.start()
    timer.start()
    handle = window.ctx.submit_with_models("bench", factory, on_event=on_event, label="benchmark job")
    while handle.running:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    if handle.state != "finished":
        raise SystemExit(f"the benchmark job {handle.state}: {handle.error}")
    return np.asarray(lateness), result.get("rate", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each heavy job")
    parser.add_argument("--batch", type=int, default=1000, help="noise samples per batch (certify)")
    parser.add_argument("--images", type=int, default=256, help="images attacked at once (pgd)")
    parser.add_argument("--niceness", type=int, default=None,
                        help="the engine thread's added niceness (default: the app's, "
                             f"{engine_thread.ENGINE_NICENESS}); 0 to compare without it")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads before starting")
    parser.add_argument("--selections", type=int, default=0,
                        help="hold PgDown instead: this many next-image steps (GUI CPU ms per selection)")
    parser.add_argument("--rate", type=float, default=30.0, help="selections per second (--selections)")
    parser.add_argument("--panels", choices=("all", "frame"), default="all", help="tabs of the window (--selections)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of --selections, one after the other")
    args = parser.parse_args()
    if args.niceness is not None:
        engine_thread.ENGINE_NICENESS = args.niceness
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.selections:
        selections_main(args)
        return

    import tempfile

    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(antialias=True)
    with tempfile.TemporaryDirectory() as tmp:
        key = model_key(tmp)
        window = MainWindow(settings=QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat),
                            models=[key], select=0, use_settings=False, panels=FRAME_ONLY)
        window.show()
        while not (window._models_ready and window.strip.has_all_predictions("original")):
            app.processEvents()
            time.sleep(0.005)
        dataset = window.ctx.dataset
        # what the GUI draws from the stream: a live histogram and the adversarial image in the strip
        plot = pg.PlotWidget()
        bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.8)
        plot.addItem(bars)
        window.tabs.addTab(plot, "bench")
        window.tabs.setCurrentWidget(plot)

        def draw(event):
            if isinstance(event, Partial):
                bars.setOpts(height=event.value)
            elif isinstance(event, Snapshot):
                window.ctx.set_strip_image("adversarial", event.image, "PGD (benchmark)", live=True)

        print(f"device {window.engine.device}, torch threads {torch.get_num_threads()}, "
              f"CPU cores {os.cpu_count()}, engine niceness +{engine_thread.ENGINE_NICENESS}, model {key}")
        print(f"{'job':<34}{'ticks':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}   throughput")
        runs = [("idle (no job)", None),
                (f"certify-like, batch {args.batch}", certify_like(key, dataset.images[:1], args.seconds, args.batch)),
                (f"PGD L2, {args.images} images", pgd_like(key, dataset.images[:args.images],
                                                          dataset.labels[:args.images], args.seconds))]
        for name, factory in runs:
            if factory is None:
                lateness, _ = measure(window, app, idle_job(2.0), 2.0, lambda e: None)
                unit = ""
            else:
                lateness, rate = measure(window, app, factory, args.seconds, draw)
                unit = f"{rate:,.0f} samples/s" if "certify" in name else f"{rate:,.0f} image-steps/s"
            p50, p99, peak = np.percentile(lateness, 50), np.percentile(lateness, 99), lateness.max()
            print(f"{name:<34}{len(lateness):>7}{p50:>9.1f}{p99:>9.1f}{peak:>9.1f}   {unit}")
        window.close()


def idle_job(seconds: float):
    """The baseline: a job that only waits, so the ticks measure the GUI loop itself."""

    def job(cache, cancel):
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            cancel.check()
            time.sleep(0.05)
            yield Progress(time.monotonic() - start, seconds)
        yield Finished(None)

    return job


if __name__ == "__main__":
    main()
