"""Checkpoints as researchers publish them, read with ``weights_only`` (tensors and plain data only):

- a plain ``state_dict`` whose architecture the user names (``--arch``), with or without the
  ``module.`` (DataParallel) or ``1.`` (``Sequential(normalizer, net)``) prefix;
- Cohen et al. 2019's ``train.py`` checkpoints: ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` where
  ``state_dict`` is that of ``Sequential(NormalizeLayer, net)`` (keys ``1.conv1.weight``, or
  ``1.module.conv1.weight`` for their DataParallel ResNet-50). Their normaliser keeps its mean / std
  outside the state_dict, so they come from the dataset; σ is not in the file: it comes from the user,
  else from the path (their folders are named ``noise_0.25``);
- Madry et al.'s ``robustness`` library checkpoints: ``{'model': …, 'epoch': …}`` with keys
  ``module.model.…`` (the network), ``module.attacker.model.…`` (the same weights, for the attacker)
  and ``module.normalizer.new_mean`` / ``new_std``; the architecture is named by the user;
- ``robustbench:DATASET:THREAT:NAME`` architectures when the robustbench package imports, with a
  checkpoint file the user already has (nothing is downloaded).

A model key names a file together with what the file does not say: ``PATH::arch=NAME::sigma=S``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .models import (ModelError, ModelMeta, architecture_choices, architecture_info, build_model)

KEY_SEPARATOR = "::"
STATE_PREFIXES = ("", "module.", "1.", "1.module.", "model.", "module.model.", "net.")
MADRY_NET, MADRY_ATTACKER, MADRY_NORMALIZER = "module.model.", "module.attacker.", "module.normalizer."
COHEN_KEYS = {"arch", "state_dict"}


# ---------------------------------------------------------------- model keys

def model_key(path: str, arch: str | None = None, sigma: float | None = None) -> str:
    """The key of a model file plus what it needs from the user, e.g. ``/m/ckpt.pt::arch=cifar_resnet110``."""
    key = str(path)
    if arch:
        key += f"{KEY_SEPARATOR}arch={arch}"
    if sigma is not None:
        key += f"{KEY_SEPARATOR}sigma={float(sigma):g}"
    return key


def split_model_key(key: str) -> tuple[str, str | None, float | None]:
    """(path or zoo name, arch, σ) of a model key; a key without ``::`` is just a name or path."""
    parts = str(key).split(KEY_SEPARATOR)
    arch = sigma = None
    for part in parts[1:]:
        field, _, value = part.partition("=")
        if field == "arch" and value:
            arch = value
        elif field == "sigma":
            try:
                sigma = float(value)
            except ValueError:
                raise ModelError(f"model key {key!r}: sigma={value!r} is not a number") from None
            if not sigma > 0:
                raise ModelError(f"model key {key!r}: sigma must be above 0")
        else:
            raise ModelError(f"model key {key!r}: unknown part {part!r} (expected arch=NAME or sigma=S)")
    return parts[0], arch, sigma


# ---------------------------------------------------------------- formats

def _tensors(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def checkpoint_format(obj) -> str | None:
    """"cohen", "madry", "state_dict" or None for a file's unpickled top-level object."""
    if isinstance(obj, dict) and COHEN_KEYS <= set(obj) and isinstance(obj["arch"], str) and _tensors(obj["state_dict"]):
        return "cohen"
    if isinstance(obj, dict) and _tensors(obj.get("model")) and any(
            k.startswith((MADRY_NET, MADRY_NORMALIZER)) for k in obj["model"]):
        return "madry"
    if isinstance(obj, dict) and "state_dict" in obj and _tensors(obj["state_dict"]) and "format" not in obj:
        return "state_dict"  # {'state_dict': …} as many training scripts (and robustbench) save it
    if _tensors(obj):
        return "state_dict"
    return None


def needs(obj) -> tuple[bool, bool]:
    """(needs an architecture, σ is not recorded) for a file's top-level object: what the Open model
    dialog must ask. A Cohen checkpoint names its architecture but never its σ."""
    fmt = checkpoint_format(obj)
    return fmt in ("madry", "state_dict"), fmt == "cohen"


def sigma_from_path(path: Path) -> float | None:
    """σ from Cohen et al.'s folder names (``models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar``)."""
    found = re.findall(r"noise[_-]?(\d*\.?\d+)", str(path))
    try:
        value = float(found[-1]) if found else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def _mismatch(state: dict, expected: dict, arch: str, path: Path) -> str:
    """One line naming the keys (or shapes) that keep ``state`` from fitting ``expected``."""
    best = max(STATE_PREFIXES, key=lambda p: len({k[len(p):] for k in state if k.startswith(p)} & set(expected)))
    stripped = {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
    missing = [k for k in expected if k not in stripped]
    unexpected = [k for k in state if not k.startswith(best) or k[len(best):] not in expected]
    shapes = [f"{k} is {'×'.join(map(str, v.shape))} in the file, {'×'.join(map(str, expected[k].shape))} in {arch}"
              for k, v in stripped.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}"
                     f"{', …' if len(unexpected) > 3 else ''})")
    if shapes:
        parts.append(f"{len(shapes)} shapes differ ({'; '.join(shapes[:2])})")
    return f"{path.name} does not fit architecture {arch!r}: {'; '.join(parts)}"


def _fit(state: dict, target: nn.Module, arch: str, path: Path, prefixes=STATE_PREFIXES) -> None:
    """Load ``state`` into ``target`` after removing the one prefix that makes the keys match exactly."""
    expected = target.state_dict()
    for prefix in prefixes:
        if not all(k.startswith(prefix) for k in state):
            continue
        stripped = {k[len(prefix):]: v for k, v in state.items()}
        if set(stripped) == set(expected) and all(
                tuple(v.shape) == tuple(expected[k].shape) for k, v in stripped.items()):
            target.load_state_dict(stripped, strict=True)
            return
    raise ModelError(_mismatch(state, expected, arch, path))


def _need_arch(path: Path, what: str) -> ModelError:
    return ModelError(f"{path.name} is {what}: name its architecture with --arch NAME (in the window: "
                      f"Open model asks) — one of {architecture_choices()}")


def _meta_for(arch: str, name: str, sigma: float | None, **extra) -> ModelMeta:
    _, dataset, classes, shape = architecture_info(arch)
    return ModelMeta(name=name, arch=arch, dataset=dataset, classes=classes, input_shape=shape,
                     kind="noise" if sigma else "standard", sigma=sigma, extra=extra)


def _default_name(path: Path) -> str:
    """checkpoint.pth.tar says nothing; its folders do (``resnet110/noise_0.25``)."""
    if path.name.split(".")[0] in ("checkpoint", "model", "best", "last") and len(path.parts) >= 3:
        return "/".join(path.parts[-3:-1])
    return path.name.split(".")[0]


def from_cohen(obj: dict, path: Path, arch: str | None, sigma: float | None, name: str | None) -> nn.Module:
    written = obj["arch"]
    if arch and arch != written:
        raise ModelError(f"{path.name} is a Cohen et al. checkpoint of {written!r}, not {arch!r}")
    if written not in ("cifar_resnet20", "cifar_resnet110", "resnet50"):
        raise ModelError(f"{path.name} is a Cohen et al. checkpoint of architecture {written!r}, which robustlens "
                         "does not have (cifar_resnet20, cifar_resnet110, resnet50)")
    sigma_source = "given" if sigma else "path"
    sigma = sigma or sigma_from_path(path)
    meta = _meta_for(written, name or _default_name(path), sigma, format="cohen2019",
                     epoch=obj.get("epoch"), sigma_source=sigma_source if sigma else None)
    model = build_model(written, meta)
    prefixes = ("1.module.",) if written == "resnet50" else ("1.",)
    _fit(obj["state_dict"], model.net, written, path, prefixes)
    return model


def from_madry(obj: dict, path: Path, arch: str | None, sigma: float | None, name: str | None) -> nn.Module:
    if not arch:
        raise _need_arch(path, "a robustness-library (Madry et al.) checkpoint")
    state = obj["model"]
    net_state = {k[len(MADRY_NET):]: v for k, v in state.items() if k.startswith(MADRY_NET)}
    if not net_state:
        raise ModelError(f"{path.name}: the robustness-library checkpoint has no '{MADRY_NET}' weights")
    meta = _meta_for(arch, name or _default_name(path), sigma, format="robustness", epoch=_plain(obj.get("epoch")))
    model = build_model(arch, meta)
    if not hasattr(model, "net"):
        raise ModelError(f"{arch!r} is robustlens' own architecture, not one a robustness-library checkpoint "
                         "holds: choose a published one (cifar_resnet20, cifar_resnet110, resnet50)")
    _fit(net_state, model.net, arch, path, ("",))
    mean, std = state.get(MADRY_NORMALIZER + "new_mean"), state.get(MADRY_NORMALIZER + "new_std")
    if mean is not None and std is not None:  # the normaliser the model was trained behind
        if mean.numel() != model.normalize.mean.numel() or std.numel() != model.normalize.std.numel():
            raise ModelError(f"{path.name}: its normaliser has {mean.numel()} channels, {arch!r} takes "
                             f"{model.normalize.mean.numel()}")
        model.normalize.mean.copy_(mean.reshape(model.normalize.mean.shape))
        model.normalize.std.copy_(std.reshape(model.normalize.std.shape))
    return model


def _plain(value):
    return value if isinstance(value, (int, float, str)) or value is None else None


def from_state_dict(obj: dict, path: Path, arch: str | None, sigma: float | None, name: str | None) -> nn.Module:
    state = obj["state_dict"] if "state_dict" in obj and not isinstance(obj["state_dict"], torch.Tensor) else obj
    if not arch:
        raise _need_arch(path, "a plain state_dict")
    if arch.startswith("robustbench:"):
        return from_robustbench(state, path, arch, name)
    model = build_model(arch, _meta_for(arch, name or _default_name(path), sigma))
    # robustlens' own layout first (normalize.* included), then the bare network under any prefix
    own = model.state_dict()
    if set(state) == set(own):
        _fit(state, model, arch, path, ("",))
    elif hasattr(model, "net"):
        _fit(state, model.net, arch, path)
    else:
        _fit(state, model, arch, path)
    return model


class RobustBenchClassifier(nn.Module):
    """A robustbench network (its normalisation, if any, inside it) behind robustlens' interface."""

    def __init__(self, net: nn.Module, meta: ModelMeta):
        super().__init__()
        self.net = net
        self.meta = meta

    def forward(self, x):
        return self.net(x)

    def representation(self, x):
        raise ModelError(f"{self.meta.name}: robustbench models expose no representation layer")


ROBUSTBENCH_SHAPES = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "imagenet": ((3, 224, 224), 1000)}


def from_robustbench(state: dict, path: Path, arch: str, name: str | None) -> nn.Module:
    """``robustbench:DATASET:THREAT:NAME`` (e.g. ``robustbench:cifar10:Linf:Carmon2019Unlabeled``): the
    architecture from robustbench's model zoo, the weights from the user's file."""
    try:
        _, dataset, threat, model_name = arch.split(":", 3)
    except ValueError:
        raise ModelError(f"--arch {arch!r}: write robustbench:DATASET:THREAT:NAME, e.g. "
                         "robustbench:cifar10:Linf:Carmon2019Unlabeled") from None
    try:
        from .tv import torchvision

        torchvision()  # robustbench imports torchvision: the workaround in tv.py comes first
        import robustbench  # noqa: F401 - the package itself, not only whatever submodules a failed import left
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    except Exception as error:  # noqa: BLE001 - missing, or broken by its own dependencies
        raise ModelError(f"robustbench architectures need the robustbench package, which does not import "
                         f"here ({' '.join(str(error).split())[:120]})") from None
    try:
        entry = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)][model_name]
    except (KeyError, ValueError):
        raise ModelError(f"robustbench has no model {model_name!r} for {dataset} {threat}") from None
    shape, count = ROBUSTBENCH_SHAPES.get(dataset, ((3, 32, 32), 10))
    classes = (architecture_info("cifar_resnet20")[2] if dataset == "cifar10" else architecture_info("resnet50")[2]
               if count == 1000 else tuple(str(i) for i in range(count)))
    meta = ModelMeta(name=name or f"robustbench/{model_name}", arch=arch, dataset=dataset, classes=classes,
                     input_shape=shape, extra={"format": "robustbench", "threat": threat})
    net = entry["model"]()
    _fit(state, net, arch, path)
    return RobustBenchClassifier(net, meta)


LOADERS = {"cohen": from_cohen, "madry": from_madry, "state_dict": from_state_dict}


def load_published(obj, path: Path, arch: str | None, sigma: float | None, name: str | None) -> nn.Module:
    """A model from a published checkpoint's top-level object, or a ModelError in one line."""
    fmt = checkpoint_format(obj)
    if fmt is None:
        keys = ", ".join(map(repr, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"{path.name} is a torch file but not a model checkpoint robustlens reads (it holds "
                         f"{keys or 'nothing'}; expected a robustlens checkpoint, a plain state_dict, Cohen et al.'s "
                         "{'arch', 'state_dict', …}, Madry et al.'s {'model', 'epoch'}, or TorchScript)")
    return LOADERS[fmt](obj, path, arch, sigma, name)


# ---------------------------------------------------------------- what a file needs (the Open model dialog)

@dataclass
class ModelFileInfo:
    """What the Open model dialog must ask about a file before it can load: ``needs_arch`` for a plain
    state_dict or a robustness-library checkpoint, ``asks_sigma`` where σ is not in the file."""
    path: str
    format: str            # "robustlens" | "torchscript" | "cohen" | "madry" | "state_dict" | "unknown"
    description: str
    arch: str | None = None  # the architecture the file names
    needs_arch: bool = False
    asks_sigma: bool = False
    sigma: float | None = None  # the σ its folder name suggests


FORMAT_DESCRIPTIONS = {
    "robustlens": "a robustlens checkpoint",
    "torchscript": "a TorchScript model",
    "cohen": "a Cohen et al. (2019) randomized-smoothing checkpoint",
    "madry": "a Madry et al. robustness-library checkpoint",
    "state_dict": "a plain state_dict",
    "unknown": "not a model file robustlens recognises",
}


def describe_model_file(path: str | Path) -> ModelFileInfo:
    """Read just enough of a file (memory-mapped, ``weights_only``: no tensor data is read) to say
    what it is and what it lacks. Never raises for a bad file: ``format`` is then "unknown" and the
    loader reports the error as it loads."""
    import zipfile

    from .files import CHECKPOINT_LIMIT, check_regular

    path = Path(path).expanduser()
    info = ModelFileInfo(str(path), "unknown", FORMAT_DESCRIPTIONS["unknown"])
    try:
        check_regular(path, limit=CHECKPOINT_LIMIT, what="a model checkpoint", error=ModelError)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith("constants.pkl") for name in archive.namelist()):
                    info.format = "torchscript"
        if info.format != "torchscript":
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
                obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and obj.get("format") == "robustlens-checkpoint":
                info.format = "robustlens"
            else:
                info.format = checkpoint_format(obj) or "unknown"
                info.needs_arch, info.asks_sigma = needs(obj)
                if info.format == "cohen":
                    info.arch = obj["arch"]
                if info.needs_arch:
                    info.asks_sigma = True  # a plain file never says how it was trained
    except Exception:  # noqa: BLE001 - the loader will say what is wrong, in one line
        return info
    info.description = FORMAT_DESCRIPTIONS[info.format]
    info.sigma = sigma_from_path(path) if info.asks_sigma else None
    return info
