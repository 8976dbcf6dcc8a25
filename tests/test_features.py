"""Representation inversion, the D_R / D_NR / D_rand / D_det builders and the experiment (Ilyas et al.)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from robustlens.engine.cli import main
from robustlens.engine.constructed import (load_built_dataset, non_robust_dataset_job, real_images_of,
                                           relabel_targets, relabeled_dataset_job, robust_dataset_job)
from robustlens.engine.data import FASHION_MNIST_CLASSES
from robustlens.engine.ilyas_experiment import (ConstructionSettings, ExperimentSettings, format_experiment_table,
                                                paper_experiment_job, train_standard_job)
from robustlens.engine.inversion import (ReconstructRequest, invert, inversion_steps, make_seeds, reconstruct_image_job,
                                         reconstruct_job, seed_mode_for)
from robustlens.engine.jobs import CancelToken, Cancelled, Partial, Progress, Snapshot, run_to_end
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.models import build_model, save_checkpoint
from robustlens.engine.train import TrainConfig, train

ROBUST = "fashion-mnist/l2-robust"
STANDARD = "fashion-mnist/standard"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_source(fmnist_test):
    """120 images standing in for a training split (every class present)."""
    return fmnist_test.subset(range(120))


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(1)
    return build_model("fmnist-cnn", name="test/random").eval()


def build(job, cancel=None, on_event=None):
    """Run a builder synchronously, its own errors (a ValueError) let through."""
    return run_to_end(job, cancel, on_event, keep_errors=True)


def relative_distance(model, images, targets):
    """d = ‖g(x_r) − g(x)‖₂ / ‖g(x)‖₂ computed independently of the engine (numpy norms)."""
    with torch.no_grad():
        g_r = model.representation(images).flatten(1).numpy().astype(np.float64)
        g = model.representation(targets).flatten(1).numpy().astype(np.float64)
    return np.linalg.norm(g_r - g, axis=1) / np.linalg.norm(g, axis=1)


# ---------------------------------------------------------------- inversion

@pytest.mark.parametrize("name", [ROBUST, STANDARD])
def test_inversion_lowers_the_distance_and_stays_in_the_unit_box(name, zoo_model, fmnist_test):
    model = zoo_model(name)
    targets, labels = fmnist_test.images[:8], fmnist_test.labels[:8]
    seeds, _ = make_seeds(labels, fmnist_test, "other-class", torch.Generator().manual_seed(0))
    means, best = [], None
    for state in inversion_steps(model, targets, seeds, steps=60, step_size=0.2):
        assert state.images.min() >= 0 and state.images.max() <= 1
        means.append(state.distance.mean().item())
        if best is not None:  # the kept iterate never gets worse
            assert torch.all(state.best_distance <= best + 1e-7)
        best = state.best_distance.clone()
    windows = np.array(means[1:]).reshape(6, 10).mean(axis=1)  # decreasing on average, window by window
    assert np.all(np.diff(windows) < 0), windows
    assert means[-1] < 0.5 * means[0]
    # the reported distances are those of the returned images, by an independent computation
    np.testing.assert_allclose(state.best_distance.numpy(), relative_distance(model, state.best_images, targets),
                               rtol=1e-4, atol=1e-5)


def test_invert_returns_best_iterates_and_batches_consistently(zoo_model, fmnist_test):
    model = zoo_model(STANDARD)
    targets = fmnist_test.images[:6]
    result = invert(model, targets, "noise", steps=15, step_size=0.1, batch_size=4,
                    generator=torch.Generator().manual_seed(3))
    assert result.images.shape == targets.shape and len(result.curve) == 16
    assert result.images.min() >= 0 and result.images.max() <= 1
    np.testing.assert_allclose(result.distances.numpy(), relative_distance(model, result.images, targets),
                               rtol=1e-4, atol=1e-5)
    assert result.distances.mean().item() <= min(result.curve) + 1e-6  # best per sample ≤ any batch mean
    # batching does not change the answer
    again = invert(model, targets, "noise", steps=15, step_size=0.1, batch_size=6,
                   generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(result.images, again.images, atol=1e-5, rtol=0)


def test_seeds(fmnist_test):
    generator = torch.Generator().manual_seed(0)
    labels = fmnist_test.labels[:500]
    noise, index = make_seeds(labels, None, "noise", generator, shape=(1, 28, 28))
    assert noise.min() >= 0 and noise.max() <= 1 and torch.all(index == -1)
    assert abs(noise.mean().item() - 0.5) < 0.002 and abs(noise.std().item() - 0.05) < 0.002
    seeds, index = make_seeds(labels, fmnist_test, "other-class", generator)
    assert torch.all(fmnist_test.labels[index] != labels)
    torch.testing.assert_close(seeds, fmnist_test.images[index])
    own = torch.arange(500)
    _, index = make_seeds(labels, fmnist_test.subset(range(500)), "random", generator, own_indices=own)
    assert torch.all(index != own) and len(index.unique()) > 250  # ≈ 316 expected
    with pytest.raises(ValueError, match="seed mode"):
        make_seeds(labels, fmnist_test, "zeros")


def test_reconstruct_job_streams_both_models_and_can_be_cancelled(zoo_model, fmnist_test):
    models = {"robust": zoo_model(ROBUST), "standard": zoo_model(STANDARD)}
    targets = fmnist_test.images[:2]
    events = []
    result = run_to_end(reconstruct_job(models, targets, "other-class", steps=5, snapshot_interval=0.0,
                                        pool=fmnist_test, labels=fmnist_test.labels[:2],
                                        own_indices=torch.arange(2)), on_event=events.append)
    distances = [e.value for e in events if isinstance(e, Partial) and e.kind == "distance"]
    assert sorted({(d["model"], d["step"]) for d in distances}) == sorted(
        (m, s) for m in models for s in range(6))
    seed_snapshot = events[0]
    assert isinstance(seed_snapshot, Snapshot) and seed_snapshot.kind == "seed"
    np.testing.assert_array_equal(seed_snapshot.image, fmnist_test.images[result.seed_indices].numpy())
    assert torch.all(fmnist_test.labels[result.seed_indices] != fmnist_test.labels[:2])
    snapshots = [e for e in events if isinstance(e, Snapshot) and e.kind == "reconstruction"]
    assert {s.info["model"] for s in snapshots} == set(models)
    assert all(s.image.shape == (2, 1, 28, 28) and s.image.dtype == np.float32 for s in snapshots)
    finals = [s for s in snapshots if s.info.get("final")]
    for snapshot in finals:  # the last snapshot is the returned reconstruction
        np.testing.assert_array_equal(snapshot.image, result.results[snapshot.info["model"]].images.numpy())
    for key in models:
        preds = result.predictions[key]
        assert set(preds) == set(models) and len(preds["robust"]) == 2
        assert all(0 <= p["probability"] <= 1 and p["name"] in FASHION_MNIST_CLASSES for p in preds["standard"])
    # cancel after the second step: the job stops with Cancelled, within one step
    cancel, seen = CancelToken(), []

    def stop_early(event):
        seen.append(event)
        if isinstance(event, Progress) and event.done >= 1:
            cancel.cancel()

    with pytest.raises(Cancelled):
        run_to_end(reconstruct_job(models, targets, "noise", steps=200), cancel, stop_early)
    assert max(e.value["step"] for e in seen if isinstance(e, Partial) and e.kind == "distance") <= 2


def test_reconstruct_image_job_keeps_running_minima_and_one_snapshot_kind_per_model(zoo_model, fmnist_test):
    """The Features tab's job: whole curves and their running minima, snapshots re-keyed per model."""
    zoo_model(ROBUST), zoo_model(STANDARD)  # skips without the built-in models
    request = ReconstructRequest(image=fmnist_test.images[5:6], keys=(ROBUST, STANDARD),
                                 label=int(fmnist_test.labels[5]), index=5, pool=fmnist_test, steps=6, step_size=0.3)
    events = []
    result = run_to_end(reconstruct_image_job(ModelCache("cpu"), request), on_event=events.append)
    curves = [e.value for e in events if isinstance(e, Partial) and e.kind == "curves"][-1]
    for key in request.keys:
        d, lowest = curves["d"][key], curves["lowest"][key]
        assert len(d) == 7 and np.allclose(lowest, np.minimum.accumulate(d))
        assert lowest[-1] == pytest.approx(float(result.results[key].distances[0]), rel=1e-5)
    assert {e.kind for e in events if isinstance(e, Snapshot)} == {f"reconstruction:{k}" for k in request.keys}
    seed = next(e.value for e in events if isinstance(e, Partial) and e.kind == "seed")
    assert seed["mode"] == "other-class" and seed["index"] != 5
    assert fmnist_test.labels[seed["index"]] != fmnist_test.labels[5]
    # without a class, or without a dataset to draw from, the seed falls back and says so
    assert seed_mode_for(replace(request, label=None))[0] == "random"
    mode, note = seed_mode_for(replace(request, pool=None))
    assert mode == "noise" and "noise instead" in note


# ---------------------------------------------------------------- relabelled datasets

def test_relabel_targets():
    labels = torch.arange(10).repeat(300)
    det = relabel_targets(labels, 10, "det")
    assert torch.equal(det, (labels + 1) % 10)
    rand = relabel_targets(labels, 10, "rand", torch.Generator().manual_seed(0))
    assert torch.all(rand != labels)
    shifts = np.bincount(((rand - labels) % 10).numpy(), minlength=10)
    assert shifts[0] == 0 and shifts[1:].min() > 250  # uniform over the 9 other classes (333 expected)


@pytest.mark.parametrize("mode", ["det", "rand"])
def test_relabeled_dataset_labels(mode, zoo_model, small_source, tmp_path):
    model = zoo_model(STANDARD)
    built = build(relabeled_dataset_job(model, small_source, tmp_path / mode, mode=mode, count=40, eps=1.0,
                                        steps=5, chunk_size=20))
    data = load_built_dataset(built.path)
    original = small_source.labels[data.indices]  # the true labels of the source images, looked up afresh
    if mode == "det":
        assert torch.equal(data.labels, (original + 1) % 10)
    else:
        assert torch.all(data.labels != original)
    with np.load(built.path / "dataset.npz") as npz:
        assert np.array_equal(npz["original_labels"], original.numpy())
        adversarial = torch.from_numpy(npz["images"].astype(np.float32))
        reached = npz["reached_target"]
    delta = (adversarial - small_source.images[data.indices]).flatten(1).norm(dim=1)
    assert delta.max() <= 1.0 + 0.02  # ε plus float16 rounding
    assert built.manifest["stats"]["target_reached"] == pytest.approx(reached.mean())
    assert built.manifest["counts"]["images"] == 40


# ---------------------------------------------------------------- builders: resume

def _cancel_after_chunks(k):
    cancel, chunks = CancelToken(), []

    def on_event(event):
        if isinstance(event, Partial) and event.kind == "chunk":
            chunks.append(event.value["index"])
            if len(chunks) == k:
                cancel.cancel()

    return cancel, chunks, on_event


def test_builder_resumes_after_cancel_without_duplicates_or_losses(random_model, small_source, tmp_path):
    settings = dict(count=50, chunk_size=10, steps=3, step_size=0.1, seed=7)
    out = tmp_path / "nr"
    cancel, chunks, on_event = _cancel_after_chunks(2)
    with pytest.raises(Cancelled):
        build(non_robust_dataset_job(random_model, small_source, out, **settings), cancel, on_event)
    assert chunks == [0, 1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["index"] for c in manifest["chunks"]] == [0, 1] and not manifest["complete"]
    with pytest.raises(ValueError, match="unfinished"):
        load_built_dataset(out)
    # a crash right after writing chunk 2 but before recording it: the file on disk counts
    cancel, chunks, on_event = _cancel_after_chunks(1)
    with pytest.raises(Cancelled):
        build(non_robust_dataset_job(random_model, small_source, out, **settings), cancel, on_event)
    assert chunks == [2]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["chunks"] = [c for c in manifest["chunks"] if c["index"] != 2]
    (out / "manifest.json").write_text(json.dumps(manifest))
    # resume: only chunks 3 and 4 are computed
    events = []
    built = build(non_robust_dataset_job(random_model, small_source, out, **settings), on_event=events.append)
    assert [e.value["index"] for e in events if isinstance(e, Partial) and e.kind == "chunk"] == [3, 4]
    resumed = [e.value for e in events if isinstance(e, Partial) and e.kind == "resumed"]
    assert resumed and resumed[0]["done"] == 30
    data = built.load()
    assert len(data) == 50 and len(set(data.indices.tolist())) == 50
    assert torch.equal(data.labels, small_source.labels[data.indices])
    # identical to an uninterrupted build
    fresh = build(non_robust_dataset_job(random_model, small_source, tmp_path / "fresh", **settings)).load()
    assert torch.equal(fresh.indices, data.indices)
    torch.testing.assert_close(fresh.images, data.images, atol=0, rtol=0)
    # a finished build is not redone; other settings are refused with one line
    again = []
    build(non_robust_dataset_job(random_model, small_source, out, **settings), on_event=again.append)
    assert not [e for e in again if isinstance(e, Partial) and e.kind == "chunk"]
    with pytest.raises(ValueError, match="other settings"):
        build(non_robust_dataset_job(random_model, small_source, out, **{**settings, "steps": 4}))


def test_robust_dataset_keeps_labels_and_lowers_distance(zoo_model, small_source, tmp_path):
    model = zoo_model(ROBUST)
    built = build(robust_dataset_job(model, small_source, tmp_path / "r", count=12, chunk_size=6, steps=20,
                                     step_size=0.2, schedule="cosine", dtype="uint8"))
    data = built.load()
    assert torch.equal(data.labels, small_source.labels[data.indices])
    assert data.images.min() >= 0 and data.images.max() <= 1
    with np.load(built.path / "dataset.npz") as npz:
        assert npz["images"].dtype == np.uint8
        seeds = npz["seed_indices"]
        assert np.all(npz["distance"] < npz["initial_distance"])
    assert np.all(small_source.labels[seeds].numpy() != data.labels.numpy())  # seeds of another class
    assert built.manifest["settings"]["model"]["name"] == ROBUST


# ---------------------------------------------------------------- the experiment

def test_training_matches_the_zoo_recipe(small_source):
    settings = ExperimentSettings(seed=3)
    job = train_standard_job(small_source, settings, epochs=2)
    ours = run_to_end(job)
    theirs = train(TrainConfig(mode="standard", epochs=2, seed=3), small_source, None, progress=False).model
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_small_experiment_end_to_end(zoo_model, fmnist_test, small_source, tmp_path):
    """The whole pipeline on 40 images: four builds, five trainings (1 epoch), evaluation, resume."""
    construction = ConstructionSettings(count=40, chunk_size=20, steps=3, step_size=0.5, eps=1.0, pgd_steps=3)
    settings = ExperimentSettings(epochs=1, eval_eps=(0.5, 1.5), eval_steps=2, eval_images=40, eval_batch=20)
    test = fmnist_test.subset(range(200, 400))
    job = paper_experiment_job(zoo_model(ROBUST), zoo_model(STANDARD), small_source, test, tmp_path,
                               construction=construction, settings=settings)
    events = []
    results = run_to_end(job, on_event=events.append)
    stages = [e.value["stage"] for e in events if isinstance(e, Partial) and e.kind == "stage"]
    assert stages == ["D_R", "D_NR", "D_rand", "D_det", "experiment"]
    rows = [e.value for e in events if isinstance(e, Partial) and e.kind == "row"]
    names = ["D", "D_R", "D_NR", "D_rand", "D_det"]
    assert [r["dataset"] for r in rows] == names == [r["dataset"] for r in results["rows"]]
    for row in rows:
        assert 0 <= row["clean_accuracy"] <= 1 and set(row["robust_accuracy"]) == {"0.5", "1.5"}
        assert row["train_images"] == 40 and row["epochs"] == 1
        confusion = np.array(row["confusion"])
        assert confusion.shape == (10, 10) and confusion.sum() == len(test)
        assert np.array_equal(confusion.sum(axis=1), np.bincount(test.labels.numpy(), minlength=10))
        assert confusion.trace() / len(test) == pytest.approx(row["clean_accuracy"])
    fractions = [e.fraction for e in events if isinstance(e, Progress)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # the baseline trains on the very images the constructed datasets were made from
    baseline = real_images_of(tmp_path / "D_R", small_source)
    assert torch.equal(baseline.indices, load_built_dataset(tmp_path / "D_det").indices)
    assert torch.equal(baseline.labels, small_source.labels[baseline.indices])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    table = format_experiment_table(results)
    assert "paper (CIFAR-10)" in table and "44.0" in table and "84.0" in table
    markdown = format_experiment_table(results, markdown=True)
    assert markdown.count("\n") == 6 and markdown.startswith("| train on")
    # rerun: every build and every row is kept, nothing is recomputed
    again = []
    run_to_end(job, on_event=again.append)
    assert not [e for e in again if isinstance(e, Partial) and e.kind in ("chunk", "row-started")]


def test_epochs_scale_with_dataset_size():
    settings = ExperimentSettings()
    assert settings.epochs_for(60_000) == 10 and settings.epochs_for(30_000) == 20
    assert settings.epochs_for(10_000) == 30 and settings.epochs_for(100_000) == 10
    assert ExperimentSettings(epochs=3).epochs_for(10_000) == 3


# ---------------------------------------------------------------- CLI

def test_cli_build_invert_experiment(random_model, tmp_path, capsys):
    model_path = tmp_path / "m.pt"
    save_checkpoint(random_model, model_path)
    out = tmp_path / "d"
    args = ["build-dataset", "--kind", "non-robust", "--count", "20", "--chunk", "10", "--steps", "2",
            "--model", str(model_path), "--out", str(out)]
    assert main(args) == 0
    assert load_built_dataset(out).labels.shape == (20,)
    assert main(args) == 0  # already built: returns at once
    png = tmp_path / "grid.png"
    assert main(["invert", "--index", "0", "1", "2", "--steps", "3", "--robust-model", str(model_path),
                 "--standard-model", str(model_path), "--scale", "2", "--out", str(png)]) == 0
    with Image.open(png) as image:
        assert image.width > 3 * 56 and image.height > 3 * 56
    results = tmp_path / "results.json"
    assert main(["experiment", "--data", str(out), "--baseline", "--epochs", "1", "--eval-images", "20",
                 "--eval-steps", "1", "--out", str(results)]) == 0
    rows = json.loads(results.read_text())["rows"]
    assert [r["dataset"] for r in rows] == ["D", "D_NR"] and rows[0]["train_images"] == 20
    capsys.readouterr()
    assert main(["experiment", "--show", str(results), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("| train on")
    assert main(["build-dataset", "--kind", "rand", "--count", "0", "--model", str(model_path),
                 "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustlens build-dataset: error:") and "\n" not in err
    assert main(["experiment", "--show", str(tmp_path / "missing.json")]) == 1
    assert main(["invert", "--out", str(png), "--robust-model", str(model_path), "--standard-model",
                 str(model_path)]) == 1  # no images named
    assert "--index" in capsys.readouterr().err


def test_experiment_arch_and_held_out_images(random_model, tmp_path, capsys):
    """`experiment --arch` trains the chosen architecture; `--holdout N` also scores each row on N
    training images that no dataset holds (the last N of the seeded order the builders draw from)."""
    from robustlens.engine.constructed import select_source_indices
    from robustlens.engine.data import load_dataset
    from robustlens.engine.ilyas_experiment import holdout_images

    train_split = load_dataset("fashion-mnist", "train")
    held = holdout_images(train_split, 30, seed=0)
    order = select_source_indices(train_split, len(train_split), 0)
    # (indices into the whole split: the built-in subset's images keep theirs)
    assert held.indices.tolist() == [train_split.source_index(int(i)) for i in order[-30:]]
    assert torch.equal(held.labels, train_split.labels[order[-30:]])
    model_path = tmp_path / "m.pt"
    save_checkpoint(random_model, model_path)
    out, results = tmp_path / "d", tmp_path / "results.json"
    assert main(["build-dataset", "--kind", "non-robust", "--count", "20", "--steps", "1",
                 "--model", str(model_path), "--out", str(out)]) == 0
    assert not set(load_built_dataset(out).indices.tolist()) & set(held.indices.tolist())
    assert main(["experiment", "--data", str(out), "--baseline", "--epochs", "1", "--eval-images", "10",
                 "--eval-steps", "1", "--eval-eps", "1.0", "--test-images", "50", "--arch", "fmnist-resnet",
                 "--holdout", "30", "--out", str(results)]) == 0
    saved = json.loads(results.read_text())
    assert saved["settings"]["arch"] == "fmnist-resnet"
    assert saved["validation"] == {"dataset": "fashion-mnist", "split": "train (held out)", "images": 30,
                                   "robust_images": 10}
    for row in saved["rows"]:
        accuracy = row["validation"]["clean_accuracy"]
        assert 0 <= accuracy <= 1 and round(accuracy * 30) == pytest.approx(accuracy * 30)
        assert set(row["validation"]["robust_accuracy"]) == {"1.0"}
    capsys.readouterr()
    assert main(["experiment", "--data", str(out), "--arch", "cifar-resnet18", "--epochs", "1",
                 "--out", str(tmp_path / "r2.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert "cifar-resnet18 takes 3×32×32 images" in err and "\n" not in err
