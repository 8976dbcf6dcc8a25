"""`robustlens certify / predict / analyze`: the reference TSV format, hand-checked numbers, clear errors."""

import re

import numpy as np
import pytest
from PIL import Image

from robustlens.engine.cli import main
from robustlens.engine.cli_smoothing import PALETTE, step_curve
from robustlens.engine.models import build_model, load_checkpoint, save_checkpoint
from robustlens.engine.certify_tsv import TSV_HEADER, certify_tsv_row, parse_elapsed
from robustlens.engine.smoothing import Smooth

TIME = re.compile(r"^\d+:\d\d:\d\d(\.\d{6})?$")


@pytest.fixture(scope="module")
def noise_checkpoint(tmp_path_factory):
    """A small untrained noise model (σ = 0.5) saved as a robustlens checkpoint."""
    path = tmp_path_factory.mktemp("models") / "noise.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/noise-0.50", kind="noise", sigma=0.5), path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path):
    """The column header and rows, after the '#' settings line every robustlens output starts with."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# robustlens ") and " settings {" in lines[0]
    return lines[1], [line.split("\t") for line in lines[2:]]


def test_certify_writes_the_reference_tsv(tmp_path, capsys, noise_checkpoint, fmnist_test):
    out = tmp_path / "sub" / "noise-0.50.tsv"
    code, stdout, _ = run(capsys, "certify", "--model", noise_checkpoint, "--n0", 10, "--n", 200, "--batch", 64,
                          "--skip", 2500, "--out", out, "--seed", 5, "--threads", 1)
    assert code == 0 and "4 images certified" in stdout
    header, rows = read_rows(out)
    assert header == "idx\tlabel\tpredict\tradius\tcorrect\ttime" == TSV_HEADER
    assert [int(r[0]) for r in rows] == [0, 2500, 5000, 7500]
    # every row is CERTIFY of that image with seed SEED + idx, σ from the checkpoint
    smooth = Smooth(load_checkpoint(noise_checkpoint, device="cpu"), 10, 0.5)
    for idx, label, predict, radius, correct, elapsed in rows:
        idx = int(idx)
        assert int(label) == int(fmnist_test.labels[idx])
        expected = smooth.certify(fmnist_test.images[idx], 10, 200, 0.001, 64, generator=5 + idx)
        assert (int(predict), radius) == (expected[0], f"{expected[1]:.3}")
        assert int(correct) == int(int(predict) == int(label))
        assert TIME.match(elapsed) and parse_elapsed(elapsed) > 0


def test_certify_max_is_an_index_bound_like_the_reference(tmp_path, capsys, noise_checkpoint):
    out = tmp_path / "a.tsv"
    code, _, _ = run(capsys, "certify", "--model", noise_checkpoint, "--n0", 5, "--n", 20, "--skip", 2,
                     "--max", 7, "--out", out, "--sigma", 0.25)
    assert code == 0
    assert [int(r[0]) for r in read_rows(out)[1]] == [0, 2, 4, 6]


def test_predict_writes_the_reference_predict_tsv(tmp_path, capsys, noise_checkpoint, fmnist_test):
    out = tmp_path / "p.tsv"
    code, _, _ = run(capsys, "predict", "--model", noise_checkpoint, "--n", 10, "--alpha", 0.001,
                     "--skip", 5000, "--out", out)
    assert code == 0
    header, rows = read_rows(out)
    assert header == "idx\tlabel\tpredict\tcorrect\ttime"
    # n = 10 at α = 0.001 can never pass the binomial test
    assert [(int(r[0]), int(r[2]), int(r[3])) for r in rows] == [(0, -1, 0), (5000, -1, 0)]


def write_tsv(path, rows):
    path.write_text(TSV_HEADER + "\n" + "\n".join(certify_tsv_row(*row) for row in rows) + "\n")


def test_analyze_prints_hand_computed_certified_accuracy_and_plots(tmp_path, capsys):
    # (idx, label, predict, radius, seconds); correct = predict == label
    a = tmp_path / "noise-0.25.tsv"
    write_tsv(a, [(0, 3, -1, 0.0, 1.0), (20, 1, 1, 0.3, 2.0), (40, 2, 2, 0.61, 1.5), (60, 4, 5, 0.1, 0.5),
                  (80, 7, 7, 1.2, 1.0)])
    b = tmp_path / "noise-0.50.tsv"
    write_tsv(b, [(0, 3, 3, 0.26, 1.0), (20, 1, 0, 0.9, 1.0)])
    plot = tmp_path / "plots" / "curves.png"
    code, out, err = run(capsys, "analyze", a, b, "--plot", plot)
    assert code == 0, err
    table = {float(line.split()[0]): [float(v) for v in line.split()[1:]]
             for line in out.splitlines() if re.match(r"^\d+\.\d\d\s", line)}
    # by hand: a has correct radii {0.3, 0.61, 1.2} of 5 rows; b has {0.26} of 2 rows
    assert table == {0.0: [0.6, 0.5], 0.25: [0.6, 0.5], 0.5: [0.4, 0.0], 0.75: [0.2, 0.0], 1.0: [0.2, 0.0]}
    assert "noise-0.25 (σ = 0.25): 5 images, abstained 1 (20.0%)" in out
    with Image.open(plot) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    for color in PALETTE[:2]:  # one line per file
        assert (pixels == color).all(axis=1).sum() > 200
    assert step_curve(np.array([0.3, 0.61, 0.0]), np.array([1, 1, 0]), 1.0) == [
        (0.0, 2 / 3), (0.3, 2 / 3), (0.3, 1 / 3), (0.61, 1 / 3), (0.61, 0.0), (1.0, 0.0)]


def test_analyze_default_plot_goes_beside_the_first_file(tmp_path, capsys):
    a = tmp_path / "x.tsv"
    write_tsv(a, [(0, 1, 1, 0.5, 1.0)])
    code, out, _ = run(capsys, "analyze", a)
    assert code == 0 and (tmp_path / "certified_accuracy.png").exists()
    assert "0.50" in out


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ("idx\tlabel\tpredict\n0\t1\t1\n", "header"),
    (TSV_HEADER + "\n0\t1\t1\tabc\t1\t0:00:01\n", "malformed row"),
    (TSV_HEADER + "\n0\t1\t1\t0.5\t1\n", "expected 6"),
    ("idx\tlabel\tpredict\tcorrect\ttime\n0\t1\t1\t1\t0:00:01\n", "predict output"),
])
def test_analyze_rejects_bad_files_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    code, out, err = run(capsys, "analyze", path)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_cli_errors_are_one_line(tmp_path, capsys, noise_checkpoint):
    code, _, err = run(capsys, "analyze", tmp_path / "missing.tsv")
    assert code == 1 and "no such file" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "certify", "--model", "fashion-mnist/no-such-model", "--out", tmp_path / "o.tsv")
    assert code == 1 and "unknown model" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "certify", "--model", tmp_path / "nothing.pt", "--out", tmp_path / "o.tsv")
    assert code == 1 and "no such model file" in err
    standard = tmp_path / "standard.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/standard"), standard)
    code, _, err = run(capsys, "certify", "--model", standard, "--out", tmp_path / "o.tsv")
    assert code == 1 and "--sigma" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "certify", "--model", noise_checkpoint, "--alpha", 2, "--out", tmp_path / "o.tsv")
    assert code == 1 and "--alpha" in err
