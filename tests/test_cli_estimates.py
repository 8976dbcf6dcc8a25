"""The cost estimate a long CLI command prints as it starts: from a probe on the actual model and input,
within a generous factor of what the same command then takes (a ratio of two times, never a time)."""

import json
import re

import pytest

from robustlens.engine.cli import main
from robustlens.engine.cli_estimates import images_left_to_build

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a probe of a fraction of a second against a run of a few seconds on a shared machine: a factor of 4
# either way still catches an estimate that forgets a factor of the job's size (n, steps, images)
FACTOR = 4.0
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "days": 86400.0}


def estimated_seconds(stderr: str) -> float:
    """The total of the one estimate line ("estimate: about 7 s (3.7 s per image, 2 images …)")."""
    lines = [line for line in stderr.splitlines() if line.startswith("estimate")]
    assert len(lines) == 1, stderr
    if ": under a second (" in lines[0]:
        return 0.5
    value, unit = re.match(r"estimate[^:]*: about ([0-9.]+) (s|min|h|days) \(", lines[0]).groups()
    return float(value) * UNITS[unit]


def test_certify_estimate_is_near_the_time_it_then_takes(tmp_path, capsys):
    out = tmp_path / "cert.tsv"
    code = main(["certify", "--model", "fashion-mnist/noise-0.25", "--max", "2", "--n", "6000", "--n0", "100",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    measured = float(re.search(r"certified in ([0-9.]+) s", captured.out).group(1))
    estimate = estimated_seconds(captured.err)
    assert "per image, 2 images at n0 = 100, n = 6,000)" in captured.err
    assert 1 / FACTOR < estimate / measured < FACTOR, (estimate, measured)
    # a rerun finds every row done: nothing to estimate, nothing probed
    assert main(["certify", "--model", "fashion-mnist/noise-0.25", "--max", "2", "--n", "6000", "--n0", "100",
                 "--out", str(out)]) == 0
    assert "estimate: " not in capsys.readouterr().err


def write_image_folder(root, dataset, count: int) -> None:
    """The first ``count`` test images as PNGs in an ImageFolder (one folder per class, named by its
    index so the folder order is the label order): a small test split without the 10,000-image pass."""
    from PIL import Image

    for i in range(count):
        label = int(dataset.labels[i])
        folder = root / "test" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (dataset.images[i, 0].numpy() * 255).round().astype("uint8")
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def test_evaluate_estimate_is_near_the_time_it_then_takes(tmp_path, capsys, fmnist_test):
    write_image_folder(tmp_path, fmnist_test, 200)
    code = main(["evaluate", "--model", "fashion-mnist/standard", "--dataset", "folder", "--data-root", str(tmp_path),
                 "--max", "200", "--steps", "20", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    measured = json.loads(captured.out)["seconds"]
    estimate = estimated_seconds(captured.err)
    assert "per image, 200 images × PGD-20 at 1 ε, and the clean pass over 200)" in captured.err
    assert 1 / FACTOR < estimate / measured < FACTOR, (estimate, measured)


def test_a_resumed_build_is_estimated_on_the_images_left(tmp_path):
    (tmp_path / "chunks").mkdir()
    for k in (0, 2):
        (tmp_path / "chunks" / f"chunk-{k:05d}.npz").write_bytes(b"")
    assert images_left_to_build(tmp_path, count=250, chunk=100) == 250 - 100 - 50
    assert images_left_to_build(tmp_path / "new", count=250, chunk=100) == 250


def test_a_radius_decision_is_estimated_at_its_most(tmp_path, capsys):
    """It stops as soon as the bound decides R: the estimate is for max n samples on every image."""
    code = main(["certify", "--model", "fashion-mnist/noise-0.25", "--max", "1", "--radius", "0.3", "--max-n", "800",
                 "--out", str(tmp_path / "decide.tsv")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "estimate, if every image needs max n: " in err and "1 image at n0 = 100, max n = 800)" in err
