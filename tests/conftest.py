"""Shared fixtures. GUI tests run on Qt's offscreen platform."""

import os

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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared, busy CPU two OpenMP threads wait on each other and
    small batches run orders of magnitude slower; one thread keeps such files fast everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
