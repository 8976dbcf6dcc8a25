"""A rerun continues finished work instead of destroying it (engine/resumable.py): certify, predict and
attack --curve keep their rows, append the missing ones, and end equal to an uninterrupted run; other
settings are refused without --overwrite; a half-written last line is redone."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from robustlens.engine.certify_tsv import TSV_HEADER, read_certify_tsv
from robustlens.engine.cli import main
from robustlens.engine.models import build_model, load_model, save_checkpoint
from robustlens.engine.resumable import OutputRefused, ResumableTSV
from robustlens.engine.robustness import robustness_curves


@pytest.fixture(scope="module")
def noise_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "noise.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/noise-0.50", kind="noise", sigma=0.5), path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows_without_time(path):
    """Every line after the header, without the time column (the only one that differs between runs)."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# robustlens ") and lines[1] in (TSV_HEADER, "idx\tlabel\tpredict\tcorrect\ttime")
    return lines[:2], [tuple(line.split("\t")[:-1]) for line in lines[2:]]


def certify_argv(model, out, *extra):
    return ["certify", "--model", model, "--n0", 10, "--n", 1000, "--batch", 500, "--skip", 1000, "--seed", 3,
            "--threads", 1, "--out", out, *extra]


def test_certify_killed_mid_run_resumes_to_the_uninterrupted_file(tmp_path, capsys, noise_checkpoint):
    killed = tmp_path / "killed.tsv"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen([sys.executable, "-m", "robustlens", *map(str, certify_argv(noise_checkpoint, killed))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if killed.exists() and killed.read_text().count("\n") >= 2 + 3:  # settings, header, 3 rows
                break
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = killed.read_text().splitlines()
    assert 3 <= len(before) - 2 < 10, len(before)
    # and as if it died in the middle of writing a row: a partial line without its newline
    with killed.open("a") as f:
        f.write("9999\t3\t")

    code, out, err = run(capsys, *certify_argv(noise_checkpoint, killed))
    assert code == 0, err
    assert f"{len(before) - 2} of 10 rows already there are kept" in err
    assert killed.read_text().splitlines()[:len(before)] == before  # kept rows are untouched, byte for byte

    fresh = tmp_path / "fresh.tsv"
    assert run(capsys, *certify_argv(noise_checkpoint, fresh))[0] == 0
    assert rows_without_time(killed) == rows_without_time(fresh)
    assert [int(r[0]) for r in rows_without_time(killed)[1]] == list(range(0, 10_000, 1000))
    # analyze reads it (the settings line is a comment), and the same certificates as the fresh run
    table = read_certify_tsv(killed)
    assert len(table) == 10 and table.radius.tolist() == read_certify_tsv(fresh).radius.tolist()


def test_certify_rerun_of_a_finished_file_changes_nothing(tmp_path, capsys, noise_checkpoint):
    out = tmp_path / "c.tsv"
    argv = ["certify", "--model", noise_checkpoint, "--n0", 5, "--n", 50, "--skip", 2500, "--out", out]
    assert run(capsys, *argv)[0] == 0
    finished = out.read_bytes()
    code, stdout, err = run(capsys, *argv)
    assert code == 0 and "0 images certified" in stdout and "4 of 4 rows" in err
    assert out.read_bytes() == finished


@pytest.mark.parametrize("change, says", [
    (["--n", 60], 'n 50 there, 60 now'),
    (["--sigma", 0.25], 'sigma 0.5 there, 0.25 now'),
    (["--seed", 1], 'seed 0 there, 1 now'),
    (["--max", 5000], 'max null there, 5000 now'),
    (["--alpha", 0.01], 'alpha 0.001 there, 0.01 now'),
])
def test_certify_with_other_settings_refuses_unless_overwrite(tmp_path, capsys, noise_checkpoint, change, says):
    out = tmp_path / "c.tsv"
    argv = ["certify", "--model", noise_checkpoint, "--n0", 5, "--n", 50, "--skip", 2500, "--out", out]
    assert run(capsys, *argv)[0] == 0
    finished = out.read_bytes()
    code, _, err = run(capsys, *argv, *change)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "holds results for other settings" in err and says in err and "--overwrite" in err
    assert out.read_bytes() == finished
    code, _, err = run(capsys, *argv, *change, "--overwrite")
    assert code == 0, err
    assert says.split()[0] in out.read_text().splitlines()[0]


def test_certify_refuses_other_weights_and_foreign_files(tmp_path, capsys, noise_checkpoint):
    out = tmp_path / "c.tsv"
    argv = ["certify", "--n0", 5, "--n", 50, "--skip", 5000, "--out", out]
    assert run(capsys, *argv, "--model", noise_checkpoint)[0] == 0
    other = tmp_path / "other.pt"  # same name and σ, other weights
    save_checkpoint(_perturbed(noise_checkpoint), other)
    code, _, err = run(capsys, *argv, "--model", other)
    assert code == 1 and "weights_sha256" in err

    reference = tmp_path / "reference.tsv"  # the reference implementation's output: no settings line
    reference.write_text(TSV_HEADER + "\n0\t9\t9\t0.5\t1\t0:00:01\n")
    code, _, err = run(capsys, "certify", "--model", noise_checkpoint, "--n0", 5, "--n", 50, "--out", reference)
    assert code == 1 and "has no '# robustlens certify settings' line" in err and "--overwrite" in err
    assert reference.read_text() == TSV_HEADER + "\n0\t9\t9\t0.5\t1\t0:00:01\n"
    assert len(read_certify_tsv(reference)) == 1  # and analyze still reads such files


def _perturbed(path):
    model = load_model(path)
    model.head.bias.data += 0.01
    return model


def test_predict_resumes_after_a_cut_file(tmp_path, capsys, noise_checkpoint):
    out, fresh = tmp_path / "p.tsv", tmp_path / "fresh.tsv"
    argv = ["predict", "--model", noise_checkpoint, "--n", 400, "--alpha", 0.01, "--skip", 1000, "--seed", 2]
    assert run(capsys, *argv, "--out", fresh)[0] == 0
    lines = fresh.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2 + 4]) + lines[6][:5])  # four rows and a partial fifth
    code, stdout, err = run(capsys, *argv, "--out", out)
    assert code == 0 and "6 images" in stdout and "4 of 10 rows" in err, (stdout, err)
    assert rows_without_time(out) == rows_without_time(fresh)
    code, _, err = run(capsys, *argv, "--n", 500, "--out", out)
    assert code == 1 and "n 400 there, 500 now" in err


def test_resumable_tsv_refuses_damaged_files(tmp_path):
    path = tmp_path / "r.tsv"
    with ResumableTSV(path, "a\tb", {"x": 1}, tool="robustlens test") as table:
        table.append("1\tone")
        table.append("2\ttwo")
    assert ResumableTSV(path, "a\tb", {"x": 1}, tool="robustlens test").rows == {"1": ["1", "one"], "2": ["2", "two"]}
    text = path.read_text()
    path.write_text(text + "2\tagain\n")
    with pytest.raises(OutputRefused, match="line 5 repeats the row '2'"):
        ResumableTSV(path, "a\tb", {"x": 1}, tool="robustlens test")
    path.write_text(text + "3\n")
    with pytest.raises(OutputRefused, match="line 5 has 1 fields instead of 2"):
        ResumableTSV(path, "a\tb", {"x": 1}, tool="robustlens test")
    with pytest.raises(OutputRefused, match="columns"):
        ResumableTSV(path, "a\tc", {"x": 1}, tool="robustlens test")
    # killed while writing the header: nothing to keep, written afresh
    path.write_text("# robustlens test sett")
    with ResumableTSV(path, "a\tb", {"x": 1}, tool="robustlens test") as table:
        assert table.kept == 0
        table.append("1\tone")
    assert path.read_text().splitlines()[1:] == ["a\tb", "1\tone"]


def test_attack_curve_resumes_point_by_point_and_equals_one_job(tmp_path, capsys):
    names = ["fashion-mnist/standard", "fashion-mnist/l2-robust"]
    argv = ["attack", "--curve", "--model", *names, "--norm", "l2", "--eps", 0, 0.5, 1.5, "--steps", 3, "--max", 40,
            "--batch", 20, "--threads", 1]
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    assert run(capsys, *argv, "--out", fresh)[0] == 0
    points = (fresh / "curve-l2.points.tsv").read_text().splitlines(keepends=True)
    assert len(points) == 2 + 6
    resumed.mkdir()
    (resumed / "curve-l2.points.tsv").write_text("".join(points[:2 + 3]) + points[5][:8])
    code, _, err = run(capsys, *argv, "--out", resumed)
    assert code == 0 and "3 points already there are kept" in err, err
    for name in ("curve-l2.json", "curve-l2.tsv"):
        assert (resumed / name).read_text() == (fresh / name).read_text()
    # each point computed alone is the point of one job over every model and ε
    from robustlens.engine.data import load_dataset
    test = load_dataset("fashion-mnist", "test").subset(range(40))
    models = {name: load_model(name) for name in names}
    whole = robustness_curves(models, test.images, test.labels, norm="l2", eps_values=[0, 0.5, 1.5], steps=3,
                              batch_size=20)
    assert json.loads((fresh / "curve-l2.json").read_text())["accuracy"] == whole.accuracy
    code, _, err = run(capsys, *argv, "--steps", 4, "--out", resumed)
    assert code == 1 and "steps 3 there, 4 now" in err and "--overwrite" in err


def test_attack_transfer_never_replaces_a_finished_matrix_without_overwrite(tmp_path, capsys):
    argv = ["attack", "--transfer", "--model", "fashion-mnist/standard", "fashion-mnist/l2-robust", "--eps", 1.0,
            "--steps", 2, "--max", 20, "--out", tmp_path]
    assert run(capsys, *argv)[0] == 0
    finished = (tmp_path / "transfer-l2-eps1.json").read_text()
    code, _, err = run(capsys, *argv, "--steps", 3)
    assert code == 1 and "already holds a transfer matrix" in err and "--overwrite" in err
    assert (tmp_path / "transfer-l2-eps1.json").read_text() == finished
    assert run(capsys, *argv, "--steps", 3, "--overwrite")[0] == 0
    assert json.loads((tmp_path / "transfer-l2-eps1.json").read_text())["settings"]["steps"] == 3
