"""--device, --precision and the CUDA batch choice (no GPU needed: CUDA is checked where absent)."""

import json

import numpy as np
import pytest
import torch
from helpers import one_line_error

from robustlens.engine.accelerate import (DeviceUnavailable, largest_fitting_batch, precision_forward,
                                          select_device)
from robustlens.engine.cli import main
from robustlens.engine.smoothing import Smooth

pytestmark = pytest.mark.usefixtures("one_torch_thread")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")


def test_auto_and_cpu_select_a_device_that_exists():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device(None) == select_device("auto")
    with pytest.raises(DeviceUnavailable, match="choose auto, cpu, cuda or cuda:N"):
        select_device("gpu")


@no_cuda
@pytest.mark.parametrize("command", [
    ["certify", "--model", "fashion-mnist/noise-0.25", "--max", "1", "--n", "100", "--out", "{tmp}/c.tsv"],
    ["evaluate", "--model", "fashion-mnist/standard", "--max", "10"],
    ["attack", "--model", "fashion-mnist/standard", "--index", "0", "--out", "{tmp}/a"],
])
def test_cuda_where_there_is_none_is_one_line(capsys, tmp_path, command):
    argv = [a.format(tmp=tmp_path) for a in command] + ["--device", "cuda"]
    line = one_line_error(capsys, argv)
    assert "--device cuda:" in line and "use --device cpu" in line
    assert not (tmp_path / "c.tsv").exists()


def test_cuda_batch_is_the_largest_doubling_that_fits():
    """A fake GPU of 10 units: a batch of b peaks at b / 1000 units and runs out of memory above 20,000."""
    def trial(batch):
        if batch > 20_000:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return batch // 1000

    assert largest_fitting_batch(trial, 1000, 64_000, budget=100) == 16_000  # 32,000 runs out of memory
    assert largest_fitting_batch(trial, 1000, 64_000, budget=5) == 4000      # 8000 peaks above the budget
    assert largest_fitting_batch(trial, 1000, 3000, budget=100) == 2000      # never above the limit
    assert largest_fitting_batch(lambda b: 10 ** 9, 1000, 64_000, budget=5) == 1000  # the start is kept


def test_reduced_precision_returns_float_logits_close_to_fp32(zoo_model, fmnist_test):
    model = zoo_model("fashion-mnist/noise-0.25")
    x = fmnist_test.images[:16]
    with torch.no_grad():
        full = model(x)
        half = precision_forward(model, torch.device("cpu"), "bf16")(x)
    assert half.dtype == torch.float32
    assert not torch.equal(half, full)  # it did run in bf16
    assert (half.argmax(1) == full.argmax(1)).float().mean() >= 0.9
    with pytest.raises(ValueError, match="choose one of fp32, bf16, fp16"):
        Smooth(model, 10, 0.25, precision="fp8")


def test_bf16_certify_on_cpu_agrees_with_fp32_on_zoo_images(zoo_model, fmnist_test):
    model = zoo_model("fashion-mnist/noise-0.25")
    full = Smooth(model, 10, 0.25)
    half = Smooth(model, 10, 0.25, precision="bf16")
    for i in range(3):
        a = full.certify_detailed(fmnist_test.images[i], 100, 2000, 0.001, generator=i)
        b = half.certify_detailed(fmnist_test.images[i], 100, 2000, 0.001, generator=i)
        assert b.prediction == a.prediction == int(fmnist_test.labels[i])
        # the same noise, a slightly different classifier: a few of the 2000 votes may move
        assert abs(b.nA - a.nA) <= 40 and abs(b.radius - a.radius) < 0.1
    assert half.backend == "eager, bf16 autocast"


def settings_line(path):
    first = path.read_text().splitlines()[0]
    return json.loads(first.split(" settings ", 1)[1])


def test_precision_is_recorded_in_the_tsv_header_and_a_rerun_resumes_only_with_it(tmp_path, capsys):
    out = tmp_path / "cert.tsv"
    argv = ["certify", "--model", "fashion-mnist/noise-0.25", "--max", "2", "--n", "500", "--out", str(out)]
    assert main(argv + ["--precision", "bf16"]) == 0
    settings = settings_line(out)
    assert settings["precision"] == "bf16" and "as run in bf16" in settings["certificate"]
    rows = out.read_text().splitlines()[2:]
    assert len(rows) == 2 and all(r.split("\t")[4] == "1" for r in rows)
    capsys.readouterr()
    line = one_line_error(capsys, argv)  # fp32 is another classifier: not appended to the bf16 rows
    assert "other settings" in line and "precision" in line
    fp32 = tmp_path / "fp32.tsv"
    assert main(argv[:-1] + [str(fp32)]) == 0
    assert "precision" not in settings_line(fp32) and settings_line(fp32)["batch"] == 1000  # as before


def test_auto_batch_on_the_cpu_is_the_reference_chunk(tmp_path):
    out = tmp_path / "p.tsv"
    assert main(["predict", "--model", "fashion-mnist/noise-0.25", "--max", "1", "--n", "200", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert settings_line(out)["batch"] == 1000
    rows = [r.split("\t") for r in out.read_text().splitlines()[2:]]
    assert np.array([int(r[0]) for r in rows]).tolist() == [0]


def test_the_cuda_layout_path_certifies_as_the_plain_one(zoo_model, fmnist_test, monkeypatch):
    """What CUDA runs (channels-last model and noise buffer), forced on the CPU: the same image gets the
    same class, and about the same votes, as the plain layout with the same seed."""
    import copy

    import robustlens.engine.smoothing as smoothing

    model = copy.deepcopy(zoo_model("fashion-mnist/noise-0.25"))  # re-laid in place: not the shared copy
    plain = Smooth(model, 10, 0.25, optimize=False).certify_detailed(fmnist_test.images[0], 100, 1000, 0.001,
                                                                      generator=0)
    monkeypatch.setattr(smoothing, "uses_channels_last", lambda device, shape: True)
    laid = Smooth(model, 10, 0.25, optimize=False)
    assert laid.memory_format == torch.channels_last
    result = laid.certify_detailed(fmnist_test.images[0], 100, 1000, 0.001, generator=0)
    assert laid.backend == "eager, channels-last"
    kernels = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert kernels and all(k.is_contiguous(memory_format=torch.channels_last) and not k.is_contiguous()
                           for k in kernels)
    assert result.prediction == plain.prediction and abs(result.nA - plain.nA) <= 5
