"""Checkpoints in the layouts researchers publish (Cohen et al.'s, Madry et al.'s, plain state_dicts),
written here from freshly built networks with random weights, load through one loader (Python API,
the CLI's --arch, the GUI's ModelCache key) and give the source network's logits."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlens.engine.architectures import CifarResNet, TorchvisionResNet
from robustlens.engine.cli import main
from robustlens.engine.data import load_dataset
from robustlens.engine.evaluate import accuracy
from robustlens.engine.model_cache import ModelCache, load_by_key
from robustlens.engine.models import (COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, ModelError,
                                      build_model, load_checkpoint, load_model)
from robustlens.engine.published import model_key, sigma_from_path, split_model_key


class CohenNormalizeLayer(nn.Module):
    """As Cohen et al.'s datasets.NormalizeLayer: mean / std as plain attributes, not in the state_dict."""

    def __init__(self, means, sds):
        super().__init__()
        self.means, self.sds = torch.tensor(means), torch.tensor(sds)

    def forward(self, x):
        return (x - self.means.view(1, -1, 1, 1)) / self.sds.view(1, -1, 1, 1)


def randomised(net: nn.Module) -> nn.Module:
    """Random batch-norm statistics too, so a loader that dropped them would give other logits."""
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return net.eval()


def calibrated(net: nn.Module, shape) -> nn.Module:
    """Batch-norm statistics of one random batch (a deep random network in eval mode with unit running
    variances overflows to inf); random affine parameters as in ``randomised``."""
    randomised(net)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one batch sets the statistics exactly
    net.train()
    with torch.no_grad():
        net(torch.randn(4, *shape))
    return net.eval()


def functional_cifar_resnet(state: dict, x: torch.Tensor, blocks: int) -> torch.Tensor:
    """He et al.'s CIFAR ResNet computed straight from a state_dict's tensors (an independent reading
    of the key names: conv-BN-ReLU stem, 3 stages of BasicBlocks, projection shortcut where the shape
    changes, global average pooling, linear)."""
    def bn(t, prefix):
        return F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)

    out = F.relu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"))
    for stage in (1, 2, 3):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            h = F.relu(bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            h = bn(F.conv2d(h, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            shortcut = out
            if f"{p}.downsample.0.weight" in state:
                shortcut = bn(F.conv2d(out, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            out = F.relu(h + shortcut)
    return F.linear(out.mean((2, 3)), state["fc.weight"], state["fc.bias"])


def cohen_checkpoint(path, arch: str, net: nn.Module, mean, std):
    """As Cohen et al.'s train.py saves it: the state_dict of Sequential(NormalizeLayer, net)."""
    model = nn.Sequential(CohenNormalizeLayer(mean, std), net).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model(torch.rand(2, 3, 32, 32) if arch.startswith("cifar") else torch.rand(1, 3, 64, 64)).sum().backward()
    optimizer.step()  # a real momentum buffer in the optimizer state, as in their files
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 90, "arch": arch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
               path)
    return model


def test_cifar_resnet_keys_and_sizes_are_he_et_al_s():
    net20, net110 = CifarResNet(20), CifarResNet(110)
    keys = set(net20.state_dict())
    assert {"conv1.weight", "layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight",
            "layer3.2.conv2.weight", "fc.weight"} <= keys
    assert "layer1.0.downsample.0.weight" not in keys and "layer3.3.conv1.weight" not in keys
    assert net20.layer3[0].conv1.weight.shape == (64, 32, 3, 3)
    # He et al. 2016, Table 6: 0.27 M and 1.7 M parameters
    assert 0.26e6 < sum(p.numel() for p in net20.parameters()) < 0.28e6
    assert 1.6e6 < sum(p.numel() for p in net110.parameters()) < 1.8e6


def test_cohen_cifar_checkpoint_gives_the_source_logits_and_sigma_from_its_folder(tmp_path):
    path = tmp_path / "models" / "cifar10" / "resnet20" / "noise_0.25" / "checkpoint.pth.tar"
    source = cohen_checkpoint(path, "cifar_resnet20", randomised(CifarResNet(20)), COHEN_CIFAR10_MEAN,
                              COHEN_CIFAR10_STD)
    model = load_model(str(path), device="cpu")
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
        assert torch.allclose(model(x), expected, atol=1e-5)
        normalised = (x - torch.tensor(COHEN_CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(COHEN_CIFAR10_STD).view(1, 3, 1, 1)
        saved = torch.load(path, weights_only=True)["state_dict"]
        by_hand = functional_cifar_resnet({k[len("1."):]: v for k, v in saved.items()}, normalised, 3)
        assert torch.allclose(by_hand, expected, atol=1e-4)
    meta = model.meta
    assert (meta.arch, meta.dataset, meta.input_shape, len(meta.classes)) == ("cifar_resnet20", "cifar10", (3, 32, 32), 10)
    assert meta.kind == "noise" and meta.sigma == 0.25 and meta.name == "resnet20/noise_0.25"
    assert load_model(str(path), device="cpu", sigma=0.5).meta.sigma == 0.5  # the user's σ wins
    with pytest.raises(ModelError, match="Cohen et al. checkpoint of 'cifar_resnet20', not 'cifar_resnet110'"):
        load_checkpoint(path, arch="cifar_resnet110", device="cpu")


def test_cohen_resnet50_under_dataparallel_gives_the_source_logits(tmp_path):
    net = calibrated(TorchvisionResNet(50), (3, 96, 96))
    path = tmp_path / "imagenet" / "resnet50" / "noise_0.50" / "checkpoint.pth.tar"
    source = cohen_checkpoint(path, "resnet50", nn.DataParallel(net), IMAGENET_MEAN, IMAGENET_STD)
    assert "1.module.conv1.weight" in torch.load(path, weights_only=True)["state_dict"]
    model = load_model(str(path), device="cpu")
    x = torch.rand(1, 3, 96, 96)  # the network pools globally: a small input keeps the test quick
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-4)
    assert model.meta.input_shape == (3, 224, 224) and len(model.meta.classes) == 1000
    assert model.meta.classes[0] == "tench" and model.meta.sigma == 0.5


def madry_checkpoint(path, net: nn.Module, mean, std):
    """As the robustness library saves an AttackerModel under DataParallel."""
    state = {}
    for prefix in ("module.normalizer.", "module.attacker.normalize."):
        state[prefix + "new_mean"] = torch.tensor(mean).view(3, 1, 1)
        state[prefix + "new_std"] = torch.tensor(std).view(3, 1, 1)
    for prefix in ("module.model.", "module.attacker.model."):
        state.update({prefix + k: v for k, v in net.state_dict().items()})
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "schedule": None, "epoch": 150}, path)


def test_madry_checkpoint_loads_with_its_normaliser_and_needs_an_arch(tmp_path, capsys):
    net = randomised(CifarResNet(20))
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]  # not the dataset's: the file's must be used
    path = tmp_path / "cifar_l2_0_5.pt"
    madry_checkpoint(path, net, mean, std)
    model = load_model(str(path), device="cpu", arch="cifar_resnet20")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        assert torch.allclose(model(x), expected, atol=1e-5)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu")
    message = str(error.value)
    assert "\n" not in message and "--arch" in message and "cifar_resnet110 (3×32×32, 10 classes)" in message
    assert "resnet50 (3×224×224, 1000 classes)" in message
    with pytest.raises(ModelError, match="robustlens' own architecture"):
        load_model(str(path), device="cpu", arch="fmnist-cnn")


def test_plain_state_dicts_with_or_without_prefixes_and_a_wrong_arch(tmp_path):
    net = randomised(CifarResNet(20))
    x = torch.rand(2, 3, 32, 32)
    normalise = CohenNormalizeLayer(COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)
    with torch.no_grad():
        expected = net(normalise(x))
    for prefix in ("", "module.", "1."):
        path = tmp_path / f"plain{prefix or '-'}pt"
        torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
        model = load_model(str(path), device="cpu", arch="cifar_resnet20")
        with torch.no_grad():
            assert torch.allclose(model(x), expected, atol=1e-5), prefix
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    with torch.no_grad():
        assert torch.allclose(load_model(str(tmp_path / "wrapped.pt"), device="cpu", arch="cifar_resnet20")(x),
                              expected, atol=1e-5)
    with pytest.raises(ModelError) as error:
        load_model(str(tmp_path / "plain-pt"), device="cpu", arch="cifar_resnet110")
    message = str(error.value)
    assert "\n" not in message and "does not fit architecture 'cifar_resnet110'" in message
    assert "missing 540 keys (layer1.3.conv1.weight" in message  # 45 more blocks × 12 tensors
    with pytest.raises(ModelError, match=r"shapes differ \(fc.weight is 10×64 in the file, 1000×2048"):
        torch.save({"fc.weight": torch.zeros(10, 64)}, tmp_path / "fc.pt")
        load_model(str(tmp_path / "fc.pt"), device="cpu", arch="resnet50")


def test_a_torch_file_that_is_no_checkpoint_names_what_it_holds(tmp_path):
    torch.save({"weights": [1, 2], "note": "hello"}, tmp_path / "odd.pt")
    with pytest.raises(ModelError) as error:
        load_model(str(tmp_path / "odd.pt"), device="cpu")
    assert "'weights', 'note'" in str(error.value) and "Cohen" in str(error.value) and "\n" not in str(error.value)


def test_model_keys_carry_arch_and_sigma_through_the_gui_cache(tmp_path):
    net = randomised(CifarResNet(20))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    key = model_key(str(path), "cifar_resnet20", 0.25)
    assert split_model_key(key) == (str(path), "cifar_resnet20", 0.25)
    assert split_model_key("fashion-mnist/standard") == ("fashion-mnist/standard", None, None)
    with pytest.raises(ModelError, match="unknown part"):
        split_model_key(str(path) + "::color=red")
    cache = ModelCache("cpu")
    model = cache.model(key)
    assert model.meta.sigma == 0.25 and model.meta.kind == "noise"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), load_by_key(key, "cpu")(x))
        assert torch.allclose(model(x), net(CohenNormalizeLayer(COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)(x)), atol=1e-5)
    assert abs(cache.smooth(key).sigma - 0.25) < 1e-9


def test_sigma_from_cohen_folder_names():
    from pathlib import Path

    assert sigma_from_path(Path("models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar")) == 0.25
    assert sigma_from_path(Path("models/imagenet/resnet50/noise_1.00/checkpoint.pth.tar")) == 1.0
    assert sigma_from_path(Path("mine/checkpoint.pt")) is None


def test_cli_arch_loads_a_plain_state_dict_and_its_absence_is_one_line(tmp_path, capsys):
    source = build_model("fmnist-cnn").eval()
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    assert main(["evaluate", "--model", str(path), "--eps", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robustlens evaluate: error: plain.pt is a plain state_dict: name")
    assert "--arch NAME" in err and "fmnist-cnn (1×28×28, 10 classes)" in err
    assert main(["evaluate", "--model", str(path), "--arch", "fmnist-cnn", "--eps", "0", "--max", "20",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == f"{path}::arch=fmnist-cnn"
    test = load_dataset("fashion-mnist", "test")
    assert abs(result["clean_accuracy"] - accuracy(source, test.images, test.labels)) < 1e-9


def test_robustbench_architectures_say_why_they_are_unavailable(tmp_path):
    torch.save(CifarResNet(20).state_dict(), tmp_path / "rb.pt")
    try:
        from robustlens.engine.tv import torchvision

        torchvision()
        import robustbench  # noqa: F401
    except Exception:  # noqa: BLE001 - not importable here: the loader must say so in one line
        with pytest.raises(ModelError, match="robustbench package, which does not import"):
            load_model(str(tmp_path / "rb.pt"), device="cpu", arch="robustbench:cifar10:Linf:Standard")
    else:
        with pytest.raises(ModelError, match="does not fit"):
            load_model(str(tmp_path / "rb.pt"), device="cpu", arch="robustbench:cifar10:Linf:Standard")
    with pytest.raises(ModelError, match="robustbench:DATASET:THREAT:NAME"):
        load_model(str(tmp_path / "rb.pt"), device="cpu", arch="robustbench:Standard")


def test_cli_wrong_arch_names_the_mismatching_keys_in_one_line(tmp_path, capsys):
    path = tmp_path / "resnet20.pt"
    torch.save(CifarResNet(20).state_dict(), path)
    for command in (["evaluate"], ["certify", "--out", str(tmp_path / "c.tsv")], ["attack", "--index", "0"]):
        assert main([*command, "--model", str(path), "--arch", "cifar_resnet110"]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"robustlens {command[0]}: error: resnet20.pt does not fit "
                                                  "architecture 'cifar_resnet110': missing 540 keys"), err


def test_zoo_prints_the_strong_attack_beside_pgd():
    from robustlens.engine.cli_zoo import format_strong_table

    manifest = {"models": {"fashion-mnist/l2-robust": {"strong_attack": {
        "images": 500, "robust_accuracy": {"l2": {"1.5": 0.636}}, "pgd_robust_accuracy": {"l2": {"1.5": 0.682}}}},
        "fashion-mnist/standard": {}}}
    table = format_strong_table(manifest).splitlines()
    assert table[0].split() == ["model", "ε", "PGD-20", "APGD-CE+APGD-T"]
    assert table[2].split() == ["fashion-mnist/l2-robust", "L2", "1.5", "68.2", "63.6"] and len(table) == 3
    assert format_strong_table({"models": {"a": {}}}) == ""
