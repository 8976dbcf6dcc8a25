"""The planted-feature dataset: its patterns, its predictivity, the measures, and that a model trained
on it follows the pattern."""

import json

import pytest
import torch

from helpers import one_line_error
from robustlens.engine.attacks import pgd
from robustlens.engine.data import load_dataset, load_fashion_mnist
from robustlens.engine.ilyas_experiment import ExperimentSettings, train_standard_job
from robustlens.engine.jobs import run_to_end
from robustlens.engine.planted import (DEFAULT_SPEC, PatternSpec, class_patterns, pattern_cosines, planted_dataset,
                                       planted_norms, with_patterns)
from robustlens.engine.planted_measures import adversarial_alignment, dataset_pattern_strength, pattern_following

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def patterns():
    return class_patterns(DEFAULT_SPEC)


def test_patterns_are_orthogonal_block_patterns_of_the_promised_norm(patterns):
    flat = patterns.flatten(1).double()
    assert patterns.shape == (10, 1, 28, 28)
    gram = flat @ flat.T
    assert torch.allclose(gram, torch.eye(10, dtype=torch.float64) * DEFAULT_SPEC.norm ** 2, atol=1e-5)
    # orthogonal to the constant image and to each class's mean image, computed here independently
    train = load_fashion_mnist("train", builtin_only=True)
    means = torch.stack([train.images[train.labels == c].mean(0).flatten().double() for c in range(10)])
    assert flat.sum(1).abs().max() < 1e-4
    assert (means @ flat.T).abs().max() < 1e-4
    # constant on each 4×4 square, and the same patterns again for the same seed, others for another
    blocks = patterns.view(10, 1, 7, 4, 7, 4)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert torch.equal(class_patterns(DEFAULT_SPEC), patterns)
    assert not torch.allclose(class_patterns(PatternSpec(seed=1)), patterns)


@pytest.mark.parametrize("spec", [PatternSpec(block=5), PatternSpec(block=14), PatternSpec(norm=0.0),
                                  PatternSpec(norm=float("nan"))])
def test_impossible_pattern_specs_are_refused(spec):
    with pytest.raises(ValueError):
        class_patterns(spec)


def test_planted_split_carries_exactly_its_own_class_pattern(patterns, fmnist_test):
    planted = load_dataset("fashion-mnist-planted", "test")
    assert torch.equal(planted.labels, fmnist_test.labels)
    assert torch.equal(planted.images, (fmnist_test.images + patterns[fmnist_test.labels]).clamp(0, 1))
    assert planted.images.min() >= 0 and planted.images.max() <= 1
    carried = planted.images - fmnist_test.images
    # perfectly predictive: what was added names the label for every one of the 10,000 images
    assert torch.equal(pattern_cosines(carried, patterns).argmax(1), fmnist_test.labels)
    norms = planted_norms(fmnist_test.images, fmnist_test.labels, patterns)
    assert norms.max() <= DEFAULT_SPEC.norm + 1e-5  # clipping only removes
    assert 0.6 < norms.mean() < DEFAULT_SPEC.norm
    # the measure sees it: about ‖p‖ along the own pattern on planted images, about zero on real ones
    real = dataset_pattern_strength(fmnist_test.images, fmnist_test.labels, patterns)
    strong = dataset_pattern_strength(planted.images, planted.labels, patterns)
    assert abs(real["label_pattern"]) < 0.05 and abs(real["other_patterns"]) < 0.05
    assert strong["label_pattern"] > 0.6 and abs(strong["other_patterns"]) < 0.05
    assert strong["label_readable"] > 0.5 > real["label_readable"]


class PatternReader(torch.nn.Module):
    """A linear model that reads only the patterns: logits_c = gain · ⟨x, p_c⟩ / ‖p_c‖."""

    def __init__(self, patterns, gain=20.0):
        super().__init__()
        units = patterns.flatten(1)
        self.weight = torch.nn.Parameter(gain * units / units.norm(dim=1, keepdim=True), requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_measures_against_a_model_that_reads_only_the_patterns(patterns, fmnist_test):
    test = fmnist_test.subset(range(300))
    reader = PatternReader(patterns)
    other = (test.labels + 3) % 10
    following = pattern_following(reader, test, patterns, other)
    with torch.no_grad():  # the same by hand
        crossed = reader(with_patterns(test.images, other, patterns)).argmax(1)
        own = reader(with_patterns(test.images, test.labels, patterns)).argmax(1)
    assert following["follows_pattern"] == pytest.approx((crossed == other).float().mean().item())
    assert following["true_class"] == pytest.approx((crossed == test.labels).float().mean().item())
    assert following["own_pattern_accuracy"] == pytest.approx((own == test.labels).float().mean().item())
    with torch.no_grad():
        clean = reader(test.images).argmax(1)
    switched = ((crossed == other) & (clean != other)).float().mean().item()
    assert following["switched_to_pattern"] == pytest.approx(switched)
    assert following["follows_pattern"] > 0.5
    # its gradient lies in the patterns' span: a perturbation toward t goes along p_t and away from p_y
    alignment = adversarial_alignment(reader, test.subset(range(100)), patterns, eps=1.5, steps=10)
    targeted = alignment["targeted"]
    assert targeted["success"] > 0.9
    assert targeted["cos_reached_class_pattern"] > 0.4 > 0 > targeted["cos_true_class_pattern"]
    assert targeted["span_energy_share"] > 0.8 > 0.05 > targeted["random_direction_span_share"]


def _follows(model, test, patterns, other):
    return pattern_following(model, test, patterns, other)["follows_pattern"]


def test_a_model_trained_on_planted_images_follows_the_pattern(fmnist_test):
    """Tiny end to end: 256 planted training images teach fmnist-cnn, in 16 updates, to answer c on
    a real test image carrying p_c, where the same training on the unplanted images answers c about
    never. (The pattern is made ten times stronger than the demo's, so that so little training
    suffices: at the demo's norm even 10,000 images mostly keep the shape's answer.)"""
    spec = PatternSpec(norm=10.0)
    patterns = class_patterns(spec)
    train = load_fashion_mnist("train", builtin_only=True).subset(range(256))
    settings = ExperimentSettings()
    planted_model = run_to_end(train_standard_job(planted_dataset(train, spec), settings, epochs=8))
    clean_model = run_to_end(train_standard_job(train, settings, epochs=8))
    test = fmnist_test.subset(range(300))
    other = (test.labels + 1 + torch.arange(300) % 9) % 10
    planted_following = pattern_following(planted_model, test, patterns, other)
    assert planted_following["follows_pattern"] > 0.4 > planted_following["true_class"]
    assert planted_following["own_pattern_accuracy"] > 0.9
    assert _follows(clean_model, test, patterns, other) < 0.15


def test_the_planted_perturbation_of_pgd_is_bounded(patterns, fmnist_test):
    x = with_patterns(fmnist_test.images[:20], fmnist_test.labels[:20], patterns)
    adversarial = pgd(PatternReader(patterns), x, fmnist_test.labels[:20], norm="l2", eps=1.5, step_size=0.3, steps=5)
    assert ((adversarial - x).flatten(1).norm(dim=1) <= 1.5 + 1e-5).all()


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    from robustlens.engine.cli import main

    argv = ["planted", "--workdir", tmp_path / "work", "--count", 30, "--model-images", 60, "--test-images", 40,
            "--eval-images", 10, "--eval-steps", 2, "--attack-images", 10, "--steps", 2, "--pgd-steps", 2, "--epochs", 1,
            "--threads", 1]
    assert main([str(a) for a in argv]) == 0
    first = json.loads((tmp_path / "work" / "planted.json").read_text())
    assert [r["dataset"] for r in first["rows"]][:4] == ["D_planted", "D_det", "D_R", "D"]
    for row in first["rows"]:
        assert set(row["robust_accuracy"]) == {"0.5", "1.5"} and 0 <= row["clean_accuracy"] <= 1
        assert 0 <= row["follows_pattern"] + row["true_class"] <= 1
    models = sorted((tmp_path / "work" / "models").glob("*.pt"))
    stamps = [path.stat().st_mtime_ns for path in models]
    # every stage read back, nothing retrained: the same numbers; and the figure from the finished folder
    assert main([str(a) for a in argv + ["--figure", tmp_path / "figure.png"]]) == 0
    out = capsys.readouterr().out
    second = json.loads((tmp_path / "work" / "planted.json").read_text())
    assert first["rows"] == second["rows"] and first["pattern_strength"] == second["pattern_strength"]
    assert [path.stat().st_mtime_ns for path in models] == stamps and len(models) == 4
    assert "D_planted" in out and "answers c" in out
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_cli_mistakes_are_one_line(tmp_path, capsys):
    one_line_error(capsys, ["planted"])
    one_line_error(capsys, ["planted", "--workdir", tmp_path, "--count", 50, "--model-images", 40])
    (tmp_path / "other.json").write_text(json.dumps({"format": "robustlens-features-experiment", "rows": []}))
    one_line_error(capsys, ["planted", "--show", tmp_path / "other.json"])
    one_line_error(capsys, ["planted", "--workdir", tmp_path, "--count", 0])


def test_build_dataset_takes_the_planted_training_split(tmp_path, capsys):
    from robustlens.engine.cli import main
    from robustlens.engine.constructed import load_built_dataset, positions_in

    out = tmp_path / "D_det"
    assert main(["build-dataset", "--kind", "det", "--dataset", "fashion-mnist-planted", "--count", "20",
                 "--pgd-steps", "2", "--out", str(out), "--threads", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["source"]["name"] == "fashion-mnist-planted"
    assert "class pattern" in manifest["settings"]["source"]["origin"]
    built = load_built_dataset(out)
    planted = load_dataset("fashion-mnist-planted", "train")
    # each image stays within the PGD ball around the *planted* image it was made from
    distance = (built.images - planted.images[positions_in(planted, built.indices, out)]).flatten(1).norm(dim=1)
    assert (distance <= 1.5 + 1e-2).all()  # float16 storage


@pytest.mark.parametrize("command", ["planted", "experiment"])
def test_either_show_prints_either_kind_of_results_file_as_its_own_table(capsys, command):
    """``planted --show`` and ``experiment --show`` take both shipped results files; each prints the
    table of its kind, with the file's own rows and numbers."""
    from importlib.resources import files

    from robustlens.engine.cli import main

    decks = files("robustlens") / "resources" / "decks"
    for name, first_column in (("planted-results.json", "own pattern"), ("ilyas-results.json", "paper")):
        results = json.loads((decks / name).read_text())
        assert main([command, "--show", str(decks / name)]) == 0
        table = capsys.readouterr().out
        assert first_column in table.splitlines()[0]
        for row in results["rows"]:
            line = next(line for line in table.splitlines() if line.startswith(row["dataset"] + " "))
            assert f"{100 * row['clean_accuracy']:.1f}" in line.split()
