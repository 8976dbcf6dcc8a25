"""CLI mistakes end with one line on stderr and exit code 1, never a traceback or a hang."""

import argparse
import os
import subprocess
import sys

import pytest
from helpers import one_line_error
import torch

from robustlens.engine.cli import build_parser, main
from robustlens.engine.models import build_model, save_checkpoint




def run_cli(*argv, timeout=120):
    """`python -m robustlens ARGV` in a subprocess, bounded by ``timeout`` seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "robustlens", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_evaluate_refuses_a_device_or_fifo_as_model_without_reading_it(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "model.pt"
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    done = run_cli("evaluate", "--model", path)  # a hang raises TimeoutExpired: the test fails
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    what = "a named pipe" if kind == "fifo" else "a character device"
    assert lines[0] == f"robustlens evaluate: error: {path} is not a regular file ({what})"


def subcommands_with(option):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: parser for name, parser in sub.choices.items()
            if any(option in a.option_strings for a in parser._actions)}


def required_arguments(parser, tmp_path):
    """Placeholder values for a subparser's required options, so that only the option under test is wrong."""
    argv = []
    for action in parser._actions:
        if not action.required or not action.option_strings:
            continue
        if action.choices:
            value = str(next(iter(action.choices)))
        elif action.type in (int, float) or getattr(action.type, "__name__", "").endswith(("_int", "_float")):
            value = "1"
        else:
            value = str(tmp_path / f"placeholder-{action.dest}")
        argv += [action.option_strings[-1], value]
    return argv


@pytest.mark.parametrize("name", sorted(subcommands_with("--threads")))
@pytest.mark.parametrize("threads", ["-3", "0"])
def test_every_subcommand_refuses_a_thread_count_below_one(capsys, tmp_path, name, threads):
    parser = subcommands_with("--threads")[name]
    err = one_line_error(capsys, [name, *required_arguments(parser, tmp_path), "--threads", threads])
    assert "--threads" in err and "at least 1" in err


def test_train_and_evaluate_take_threads():
    assert {"train", "evaluate"} <= set(subcommands_with("--threads"))


@pytest.mark.parametrize("command, argv, says", [
    ("evaluate", ["--max", "0"], "argument --max: must be at least 1, got 0"),
    ("evaluate", ["--max", "-5"], "argument --max: must be at least 1, got -5"),
    ("evaluate", ["--restarts", "-2"], "argument --restarts: must be at least 1"),
    ("evaluate", ["--steps", "0"], "argument --steps: must be at least 1"),
    ("evaluate", ["--eps", "-1"], "argument --eps: must be at least 0"),
    ("evaluate", ["--eps", "nan"], "argument --eps: expected a finite number"),
    ("evaluate", ["--max", "lots"], "argument --max: expected a whole number"),
    ("train", ["--epochs", "0"], "argument --epochs: must be at least 1"),
    ("train", ["--batch", "-1"], "argument --batch: must be at least 1"),
    ("train", ["--lr", "0"], "argument --lr: must be above 0"),
    ("train", ["--sigma", "inf"], "argument --sigma: expected a finite number above 0"),
    ("train", ["--eps", "-0.5"], "argument --eps: must be above 0"),
])
def test_numbers_out_of_range_are_refused(capsys, tmp_path, command, argv, says):
    base = {"evaluate": ["--model", "fashion-mnist/standard"], "train": ["--out", tmp_path / "m.pt"]}[command]
    assert says in one_line_error(capsys, [command, *base, *argv])


def test_an_unknown_option_or_a_missing_one_is_one_line(capsys):
    assert "unrecognized arguments: --bogus" in one_line_error(capsys, ["zoo", "--bogus"])
    assert "required: --model" in one_line_error(capsys, ["evaluate"])


@pytest.fixture
def checkpoint_payload(tmp_path):
    path = tmp_path / "good.pt"
    save_checkpoint(build_model("fmnist-cnn"), path)
    return torch.load(path, weights_only=True)


def test_evaluate_on_checkpoints_without_meta_or_classes_is_one_line(capsys, tmp_path, checkpoint_payload):
    del checkpoint_payload["meta"]["classes"]
    torch.save(checkpoint_payload, tmp_path / "no-classes.pt")
    err = one_line_error(capsys, ["evaluate", "--model", tmp_path / "no-classes.pt"])
    assert "no-classes.pt" in err and "'classes'" in err
    del checkpoint_payload["meta"]
    torch.save(checkpoint_payload, tmp_path / "no-meta.pt")
    assert "no-meta.pt" in one_line_error(capsys, ["evaluate", "--model", tmp_path / "no-meta.pt"])


def test_evaluate_on_a_damaged_zip_is_one_line(capsys, tmp_path):
    path = tmp_path / "damaged.pt"
    save_checkpoint(build_model("fmnist-cnn"), path)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central:central + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    assert "damaged.pt is not a readable checkpoint" in one_line_error(capsys, ["evaluate", "--model", path])


def test_evaluate_on_stale_weights_hash_is_one_line(capsys, tmp_path, checkpoint_payload):
    checkpoint_payload["state_dict"]["head.bias"] += 1
    torch.save(checkpoint_payload, tmp_path / "changed.pt")
    err = one_line_error(capsys, ["evaluate", "--model", tmp_path / "changed.pt"])
    assert "changed.pt: the weights do not match their recorded SHA-256" in err


def test_evaluate_runs_a_torchscript_model_without_parameters(capsys, tmp_path):
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10) + torch.arange(10.0) * x.flatten(1).mean(1, keepdim=True)

    torch.jit.script(Constant()).save(str(tmp_path / "constant.pt"))
    code = main(["evaluate", "--model", str(tmp_path / "constant.pt"), "--max", "2", "--steps", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "clean accuracy" in out and "on 2 images" in out
