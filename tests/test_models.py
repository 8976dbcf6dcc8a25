import json

import pytest
import torch

from robustlens.engine.evaluate import accuracy
from robustlens.engine.models import (ModelError, build_model, load_checkpoint, load_model, save_checkpoint,
                                      zoo_file, zoo_manifest, zoo_names)

EXPECTED_ZOO = {"fashion-mnist/standard", "fashion-mnist/l2-robust", "fashion-mnist/linf-robust",
                "fashion-mnist/noise-0.25", "fashion-mnist/noise-0.50", "fashion-mnist/noise-1.00"}


def test_zoo_has_the_six_models_with_metadata():
    assert EXPECTED_ZOO <= set(zoo_names())
    for name in EXPECTED_ZOO:
        model = load_model(name, device="cpu")
        meta = model.meta
        assert meta.name == name and meta.dataset == "fashion-mnist" and len(meta.classes) == 10
        assert not model.training
        if "robust" in name:
            assert meta.kind == "adversarial" and meta.norm in ("l2", "linf") and meta.eps > 0
        elif "noise" in name:
            assert meta.kind == "noise" and meta.sigma == float(name.split("-")[-1])
        else:
            assert meta.kind == "standard"
        x = torch.rand(2, 1, 28, 28)
        assert model(x).shape == (2, 10) and model.representation(x).shape == (2, 256)


@pytest.mark.parametrize("name", sorted(EXPECTED_ZOO))
def test_zoo_model_reaches_its_manifest_clean_accuracy(name, zoo_model, fmnist_test):
    entry = zoo_manifest()["models"][name]
    measured = accuracy(zoo_model(name), fmnist_test.images, fmnist_test.labels)
    assert abs(measured - entry["clean_accuracy"]) <= 0.005


def test_zoo_files_match_their_manifest_hashes():
    import hashlib

    for name, entry in zoo_manifest()["models"].items():
        assert hashlib.sha256(zoo_file(name).read_bytes()).hexdigest() == entry["sha256"], name


def test_zoo_meets_the_accuracy_and_robustness_bars():
    models = zoo_manifest()["models"]
    standard = models["fashion-mnist/standard"]
    assert standard["clean_accuracy"] >= 0.90
    for name in ("fashion-mnist/l2-robust", "fashion-mnist/linf-robust"):
        robust = models[name]
        eps = str(robust["eps"])
        ours = robust["robust_accuracy"][robust["norm"]][eps]
        theirs = standard["robust_accuracy"][robust["norm"]][eps]
        assert ours >= 3 * theirs and ours > 0.3, (name, ours, theirs)


def test_normalisation_is_the_first_layer():
    model = build_model("fmnist-cnn")
    x = torch.full((1, 1, 28, 28), 0.2860)
    assert torch.allclose(model.normalize(x), torch.zeros_like(x), atol=1e-6)


def test_checkpoint_round_trip_plain_state_dict_and_torchscript(tmp_path):
    model = build_model("fmnist-cnn", name="mine", kind="noise", sigma=0.5).eval()
    x = torch.rand(3, 1, 28, 28)
    save_checkpoint(model, tmp_path / "mine.pt")
    loaded = load_checkpoint(tmp_path / "mine.pt", device="cpu")
    assert loaded.meta.sigma == 0.5 and loaded.meta.kind == "noise"
    assert torch.allclose(loaded(x), model(x))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    plain = load_checkpoint(tmp_path / "plain.pt", arch="fmnist-cnn", device="cpu")
    assert torch.allclose(plain(x), model(x))
    torch.jit.trace(model, x).save(str(tmp_path / "scripted.pt"))
    scripted = load_checkpoint(tmp_path / "scripted.pt", device="cpu")
    assert torch.allclose(scripted(x), model(x), atol=1e-6)


def test_bad_model_files_give_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.pt")
    with pytest.raises(ModelError, match="unknown model"):
        load_model("fashion-mnist/nonexistent")
    good = tmp_path / "good.pt"
    save_checkpoint(build_model("fmnist-cnn"), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    (tmp_path / "text.pt").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save(build_model("fmnist-cnn").state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="name its architecture"):
        load_checkpoint(tmp_path / "plain.pt")
    wrong = {k: v for k, v in build_model("fmnist-cnn").state_dict().items() if "head" not in k}
    wrong["backbone.0.weight"] = torch.zeros(16, 1, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="does not fit architecture 'fmnist-cnn'"):
        load_checkpoint(tmp_path / "wrong.pt", arch="fmnist-cnn")
    with pytest.raises(ModelError, match="unknown architecture"):
        load_checkpoint(tmp_path / "plain.pt", arch="vgg99")


# ---------------------------------------------------------------- damaged and incomplete files

def saved_checkpoint(tmp_path, name="good.pt", model=None):
    path = tmp_path / name
    save_checkpoint(model or build_model("fmnist-cnn"), path)
    return path


def test_a_checkpoint_without_meta_or_classes_names_what_is_missing(tmp_path):
    payload = torch.load(saved_checkpoint(tmp_path), weights_only=True)
    no_meta = {k: v for k, v in payload.items() if k != "meta"}
    torch.save(no_meta, tmp_path / "no-meta.pt")
    with pytest.raises(ModelError, match=r"no-meta.pt is a robustlens checkpoint without its metadata"):
        load_checkpoint(tmp_path / "no-meta.pt", device="cpu")
    payload["meta"].pop("classes")
    torch.save(payload, tmp_path / "no-classes.pt")
    with pytest.raises(ModelError, match=r"no-classes.pt: the checkpoint's metadata lacks 'classes'"):
        load_checkpoint(tmp_path / "no-classes.pt", device="cpu")
    payload["meta"]["classes"] = "abc"
    torch.save(payload, tmp_path / "bad-classes.pt")
    with pytest.raises(ModelError, match="no valid class names"):
        load_checkpoint(tmp_path / "bad-classes.pt", device="cpu")


def test_a_damaged_zip_central_directory_is_one_model_error(tmp_path):
    path = saved_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")  # a central-directory record; the end record stays intact
    data[central:central + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="good.pt is not a readable checkpoint"):
        load_checkpoint(path, device="cpu")


def test_a_torchscript_model_without_parameters_reports_its_device():
    from robustlens.engine.evaluate import robust_accuracy
    from robustlens.engine.models import ModelMeta, ScriptedClassifier

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x.flatten(1).mean(1, keepdim=True), 1 - x.flatten(1).mean(1, keepdim=True)], 1)

    meta = ModelMeta(name="fixed", arch="torchscript", dataset="fashion-mnist", classes=("a", "b"))
    model = ScriptedClassifier(torch.jit.script(Fixed()), meta)
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    assert accuracy(model, x, y) in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert 0.0 <= robust_accuracy(model, x, y, norm="l2", eps=0.1, steps=2) <= 1.0


def test_a_garbage_manifest_is_a_model_error_naming_the_file(tmp_path, monkeypatch):
    from robustlens.engine import models

    monkeypatch.setattr(models, "zoo_dir", lambda: tmp_path)
    for garbage in (b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"models": [1]}', b'{"models": {"a": 3}}'):
        (tmp_path / "manifest.json").write_bytes(garbage)
        with pytest.raises(ModelError, match=r"manifest.json is not a valid manifest"):
            zoo_manifest()
        with pytest.raises(ModelError, match=str(tmp_path / "manifest.json")):
            load_model("fashion-mnist/standard", device="cpu")


# ---------------------------------------------------------------- integrity (SHA-256 of the weights)

def test_saved_checkpoints_record_the_sha256_of_their_weights(tmp_path):
    from robustlens.engine.models import weights_sha256

    model = build_model("fmnist-cnn")
    payload = torch.load(saved_checkpoint(tmp_path, model=model), weights_only=True)
    assert payload["weights_sha256"] == weights_sha256(model.state_dict())
    changed = {k: v.clone() for k, v in model.state_dict().items()}
    changed["head.bias"][0] += 1e-6
    assert weights_sha256(changed) != payload["weights_sha256"]
    renamed = dict(changed, **{"x": changed.pop("head.bias")})
    assert weights_sha256(renamed) != weights_sha256(changed)


def test_changed_weights_with_a_stale_hash_are_refused_naming_the_file(tmp_path):
    path = saved_checkpoint(tmp_path)
    payload = torch.load(path, weights_only=True)
    weight = payload["state_dict"]["backbone.7.weight"].view(-1)
    weight[:1024] = -weight[:1024]  # 4 KiB of float32 changed, the recorded hash left as it was
    torch.save(payload, path)
    with pytest.raises(ModelError, match=r"good.pt: the weights do not match their recorded SHA-256: "
                                         r"the file is damaged"):
        load_checkpoint(path, device="cpu")


def flip_bytes_inside_the_largest_tensor(path, count=4096):
    """Flip ``count`` bytes in the middle of the largest stored tensor, keeping the zip readable."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_saved_checkpoint_are_a_model_error(tmp_path):
    path = saved_checkpoint(tmp_path)
    flip_bytes_inside_the_largest_tensor(path)
    with pytest.raises(ModelError, match="good.pt"):
        load_checkpoint(path, device="cpu")


def test_a_zoo_file_that_does_not_match_its_manifest_hash_is_refused(tmp_path, monkeypatch):
    import shutil

    from robustlens.engine import models

    name = "fashion-mnist/standard"
    shutil.copy(zoo_file(name), tmp_path / zoo_file(name).name)
    shutil.copy(models.zoo_dir() / "manifest.json", tmp_path / "manifest.json")
    monkeypatch.setattr(models, "zoo_dir", lambda: tmp_path)
    assert load_model(name, device="cpu").meta.name == name  # the intact copy matches
    flip_bytes_inside_the_largest_tensor(zoo_file(name))
    with pytest.raises(ModelError, match=r"standard.pt does not match the SHA-256 its manifest records"):
        load_model(name, device="cpu")


def test_old_checkpoints_without_a_recorded_hash_still_load(tmp_path):
    payload = torch.load(saved_checkpoint(tmp_path), weights_only=True)
    del payload["weights_sha256"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", device="cpu").meta.arch == "fmnist-cnn"
    assert "weights_sha256" not in torch.load(zoo_file("fashion-mnist/standard"), weights_only=True)


def test_a_malicious_pickle_never_runs(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    torch.save({"format": "robustlens-checkpoint", "meta": Evil()}, tmp_path / "evil-zip.pt")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "evil.pt", device="cpu")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "evil-zip.pt", device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("arch, width", [("fmnist-wide", 512), ("fmnist-resnet", 64)])
def test_fashion_mnist_architectures_build_learn_and_reload(arch, width, tmp_path):
    """The ablation's wider and residual standard models: the forward pass and g(x) have the stated
    shapes, a few Adam steps on a fixed batch lower its loss (gradients reach every layer), and a
    saved checkpoint reloads with identical outputs."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(arch, name=f"test/{arch}")
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    assert model(x).shape == (16, 10) and model.representation(x).shape == (16, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    save_checkpoint(model, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert loaded.meta.arch == arch and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(ModelError, match="does not fit architecture"):
        state = torch.load(tmp_path / "m.pt", weights_only=True)
        state["meta"]["arch"] = "fmnist-cnn" if arch != "fmnist-cnn" else "fmnist-wide"
        state.pop("weights_sha256")
        torch.save(state, tmp_path / "wrong.pt")
        load_checkpoint(tmp_path / "wrong.pt", device="cpu")
