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
