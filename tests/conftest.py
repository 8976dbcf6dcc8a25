"""Shared fixtures. GUI tests run on Qt's offscreen platform."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402

from robustlens.engine.data import load_dataset  # noqa: E402
from robustlens.engine.models import load_model  # noqa: E402

_models: dict = {}


@pytest.fixture(scope="session")
def fmnist_test():
    """The built-in Fashion-MNIST test split (10,000 images)."""
    return load_dataset("fashion-mnist", "test")


@pytest.fixture(scope="session")
def zoo_model():
    """zoo_model(name) -> the built-in model on the CPU, loaded once per session."""

    def get(name: str):
        if name not in _models:
            _models[name] = load_model(name, device="cpu")
        return _models[name]

    return get


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test():
    """Once an Engine exists, automatic garbage collection is off and a GUI-thread timer collects
    (app/engine_thread.collect_garbage_on_the_gui_thread); tests that never run Qt's event loop would
    never collect, so each test ends with the windows it closed deleted and the same check."""
    yield
    engine_thread = sys.modules.get("robustlens.app.engine_thread")
    collector = getattr(engine_thread, "_gui_thread_collector", None)
    if collector is None:
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    if QCoreApplication.instance() is not None:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    collector.check()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared, busy CPU two OpenMP threads wait on each other and
    small batches run orders of magnitude slower; one thread keeps such files fast everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def noise_checkpoint(tmp_path_factory):
    """A small untrained noise model (σ = 0.5) saved as a robustlens checkpoint."""
    from robustlens.engine.models import build_model, save_checkpoint

    path = tmp_path_factory.mktemp("models") / "noise.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/noise-0.50", kind="noise", sigma=0.5), path)
    return path


def run_cli(capsys, *argv):
    """``robustlens ARGV`` in this process: (exit code, stdout, stderr)."""
    from robustlens.engine.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run(capsys):
    """run(*argv) -> (exit code, stdout, stderr) of ``robustlens ARGV`` in this process."""
    return lambda *argv: run_cli(capsys, *argv)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for one test module (starting one costs seconds; its idle workers are
    kept between the module's runs)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install robustlens[cluster])")
    from pathlib import Path

    import robustlens

    # workers import robustlens from the same sources as this process
    source = str(Path(robustlens.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
