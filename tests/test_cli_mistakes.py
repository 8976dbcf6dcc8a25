"""Every subcommand answers a mistake — a missing required argument, a count out of range, a bad file —
with a non-zero exit and exactly one line on stderr ("robustlens SUB: error: …"), never a traceback.

MISTAKES lists them per subcommand; the first test makes sure a new subcommand cannot be added without
its mistakes. Placeholders: {garbage} a regular file of random bytes, {file} an empty regular file,
{dir} an existing folder, {new} a path that does not exist yet."""

import io
import json
import os
import sys

import pytest

from robustlens.engine.cli import main, subcommand_names

NOISE = "fashion-mnist/noise-0.25"

MISTAKES = {
    "train": [
        [],                                                            # --out is required
        ["--out", "{new}/m.pt", "--epochs", "-1"],
        ["--out", "{new}/m.pt", "--batch", "0"],
        ["--out", "{new}/m.pt", "--lr", "nan"],
        ["--out", "{new}/m.pt", "--threads", "-3"],
    ],
    "zoo": [
        ["--bogus"],
        ["extra"],
    ],
    "evaluate": [
        [],                                                            # --model is required
        ["--model", "fashion-mnist/standard", "--max", "-5"],
        ["--model", "fashion-mnist/standard", "--restarts", "-2"],
        ["--model", "{garbage}"],
        ["--model", "{dir}"],
        ["--model", "{new}/missing.pt"],
    ],
    "attack": [
        ["--steps", "-1"],
        ["--index", "-3"],
        ["--restarts", "-2"],
        ["--eps", "nan"],
        ["--curve", "--batch", "0"],
        ["--curve", "--max", "-5"],
        ["--model", "{garbage}"],
        ["--out", "{file}/sub", "--index", "0", "--steps", "1"],
        ["--target", "class", "--target-class", "42", "--index", "0", "--steps", "1", "--out", "{new}"],
        ["--transfer", "--model", "fashion-mnist/standard", "--target", "class", "--target-class", "10",
         "--max", "2", "--out", "{new}"],
    ],
    "certify": [
        [],                                                            # --model and --out are required
        ["--model", NOISE],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--n", "-1"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--n0", "0"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--max", "-5"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--batch", "0"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--alpha", "1.5"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--sigma", "inf"],
        ["--model", "{garbage}", "--out", "{new}/c.tsv"],
        ["--model", NOISE, "--out", "{file}/c.tsv"],                   # under a regular file
        ["--model", NOISE, "--out", "{dir}"],                          # a folder
        ["--model", NOISE, "--out", "/dev/full"],                      # a device
        ["--model", NOISE, "--out", "{garbage}", "--max", "1"],        # a file that is not ours
        ["--model", NOISE, "--out", "{new}/c.tsv", "--shard", "2/2"],   # I must be below K
        ["--model", NOISE, "--out", "{new}/c.tsv", "--shard", "half"],
        ["--model", NOISE, "--out", "{new}/c.tsv", "--workers", "2"],  # needs --ray
        ["--model", NOISE, "--out", "{new}/c.tsv", "--ray", "local", "--workers", "0"],
    ],
    "predict": [
        [],
        ["--model", NOISE, "--out", "{new}/p.tsv", "--n", "-1"],
        ["--model", NOISE, "--out", "{new}/p.tsv", "--skip", "0"],
        ["--model", NOISE, "--out", "{new}/p.tsv", "--max", "-5"],
        ["--model", "{garbage}", "--out", "{new}/p.tsv"],
        ["--model", NOISE, "--out", "{dir}"],
        ["--model", NOISE, "--out", "/dev/full"],
        ["--model", NOISE, "--out", "{new}/p.tsv", "--shard", "-1/3"],
        ["--model", NOISE, "--out", "{new}/p.tsv", "--ray", "local", "--gpus-per-worker", "-1"],
    ],
    "merge": [
        [],                                                            # OUT.tsv and PARTS are required
        ["{new}/m.tsv"],
        ["{new}/m.tsv", "{garbage}"],
        ["{new}/m.tsv", "{file}"],
        ["{new}/m.tsv", "{dir}"],
        ["{new}/m.tsv", "{new}/missing.tsv"],
        ["{file}", "{new}/part.tsv"],                                  # OUT exists
        ["{dir}", "{new}/part.tsv"],                                   # OUT is a folder
    ],
    "analyze": [
        [],                                                            # FILE.tsv is required
        ["{garbage}"],
        ["{file}"],
        ["{dir}"],
        ["{new}/missing.tsv"],
        ["{garbage}", "--step", "-1"],
    ],
    "invert": [
        [],                                                            # --out is required
        ["--out", "{new}/g.png", "--per-class", "-1"],
        ["--out", "{new}/g.png", "--steps", "0", "--index", "0"],
        ["--out", "{new}/g.png", "--robust-model", "{garbage}", "--index", "0"],
    ],
    "build-dataset": [
        [],                                                            # --kind, --count, --out are required
        ["--kind", "robust", "--count", "-5", "--out", "{new}"],
        ["--kind", "robust", "--count", "2", "--chunk", "0", "--out", "{new}"],
        ["--kind", "robust", "--count", "2", "--out", "{file}"],     # an existing file
        ["--kind", "robust", "--count", "2", "--out", "{new}", "--model", "{garbage}"],
    ],
    "experiment": [
        [],                                                            # neither --data nor --build-in
        ["--build-in", "{new}", "--count", "-1"],
        ["--build-in", "{file}"],
        ["--show", "{garbage}"],
        ["--show", "{dir}"],
        ["--show", "{incomplete}"],                                    # rows, but no settings
        ["--data", "{new}/missing"],
    ],
    "planted": [
        [],                                                            # neither --workdir nor --show
        ["--workdir", "{file}"],                                       # a file where a folder is needed
        ["--workdir", "{new}", "--out", "{dir}"],
        ["--workdir", "{new}", "--count", "-1"],
        ["--workdir", "{new}", "--count", "100", "--model-images", "50"],
        ["--workdir", "{new}", "--robust-model", "{garbage}"],           # refused before any training
        ["--show", "{garbage}"],
        ["--show", "{dir}"],
        ["--show", "{incomplete}"],
    ],
}


def test_every_subcommand_has_its_mistakes():
    assert set(MISTAKES) == subcommand_names()


CASES = [(name, k) for name in sorted(MISTAKES) for k in range(len(MISTAKES[name]))]


@pytest.fixture
def places(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    incomplete = tmp_path / "incomplete.json"  # a results file's format and rows, none of its settings
    incomplete.write_text(json.dumps({"format": "robustlens-features-experiment", "rows": [
        {"dataset": "D", "clean_accuracy": 0.5, "robust_accuracy": {"1.0": 0.1}}]}))
    return dict(garbage=garbage, file=tmp_path / "empty", dir=tmp_path / "folder", new=tmp_path / "new",
                incomplete=incomplete)


@pytest.mark.parametrize("name, k", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_a_mistake_is_one_line_and_a_nonzero_exit(capsys, places, name, k):
    argv = [name] + [part.format(**places) for part in MISTAKES[name][k]]
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code != 0, (argv, out, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith(f"robustlens {name}: error: "), lines[0]
    for place in ("garbage", "file", "dir", "incomplete"):  # a refused file is named in the message
        if "{" + place + "}" in MISTAKES[name][k] and not any(w in err for w in ("argument --", "one of the two")):
            assert places[place].name in err, err
    assert os.path.getsize(places["garbage"]) == 4096  # a file it refused is left as it was


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch):
    """`robustlens planted --show FILE | head -1`: once the reader has gone, no error line, exit 141."""
    from importlib.resources import files

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    results = files("robustlens") / "resources" / "decks" / "planted-results.json"
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["planted", "--show", str(results)]) == 141
    assert capsys.readouterr().err == ""
