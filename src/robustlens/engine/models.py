"""Architectures, the built-in model zoo, and checkpoint loading/saving.

Every model takes [0,1] images (normalisation is its first layer, so ε, σ and radii are in pixel
units) and exposes ``representation(x)``: the penultimate-layer features g(x) that representation
inversion (Ilyas et al. 2019, Sec. 3.1) matches. Each carries ``meta``: dataset, class names, kind
(standard / adversarial / noise), and the ε (with its norm) or σ it was trained with.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field, fields
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checks import check_finite_weights
from .data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
from .files import CHECKPOINT_LIMIT, MANIFEST_LIMIT, open_regular, read_regular

CHECKPOINT_FORMAT = "robustlens-checkpoint"


class ModelError(Exception):
    """A model could not be loaded; the message says which file and why in one line."""


@dataclass
class ModelMeta:
    name: str
    arch: str
    dataset: str
    classes: tuple[str, ...]
    kind: str = "standard"  # "standard" | "adversarial" | "noise"
    norm: str | None = None  # "l2" | "linf" for adversarial models
    eps: float | None = None
    sigma: float | None = None
    input_shape: tuple[int, int, int] = (1, 28, 28)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelMeta":
        d = dict(d)
        d["classes"] = tuple(d["classes"])
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)

    @property
    def label(self) -> str:
        """Short human label, e.g. 'l2-robust (ε=1.5)' or 'noise σ=0.25'."""
        if self.kind == "adversarial":
            return f"{self.name.split('/')[-1]} ({self.norm.upper() if self.norm else ''} ε={self.eps:g})"
        if self.kind == "noise":
            return f"{self.name.split('/')[-1]} (σ={self.sigma:g})"
        return self.name.split("/")[-1]


class Normalize(nn.Module):
    """First layer of every model: (x - mean) / std on [0,1] input."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalize -> backbone (gives the representation g(x)) -> linear head (gives logits)."""

    def __init__(self, normalize: Normalize, backbone: nn.Module, head: nn.Linear, meta: ModelMeta):
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.head = head
        self.meta = meta

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))


def fmnist_cnn(meta: ModelMeta) -> Classifier:
    """Small CNN for 28×28 grayscale: about 8.5 MFLOPs per image, so n = 10,000 noise samples for one
    certificate take about a second on a laptop CPU. Representation: the 256-unit hidden layer."""
    backbone = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
    )
    return Classifier(Normalize(*FMNIST_NORMALIZE), backbone, nn.Linear(256, len(meta.classes)), meta)


FMNIST_NORMALIZE = ([0.2860], [0.3530])  # Fashion-MNIST's training-set pixel mean and std


def fmnist_wide(meta: ModelMeta) -> Classifier:
    """fmnist-cnn with twice the filters (64, 128) and a 512-unit hidden layer: about 4× its
    multiply-adds (18 M per image), a higher-capacity standard model for the Ilyas et al. ablation.
    Representation: the 512-unit hidden layer."""
    backbone = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 512), nn.ReLU(),
    )
    return Classifier(Normalize(*FMNIST_NORMALIZE), backbone, nn.Linear(512, len(meta.classes)), meta)


def _fmnist_resnet(num_classes: int) -> nn.Module:
    from .architectures import CifarResNet

    return CifarResNet(8, num_classes, in_channels=1)


def cifar_resnet18(meta: ModelMeta) -> Classifier:
    """torchvision's ResNet-18 adapted to 32×32 input (3×3 stem, no max-pool), for user checkpoints."""
    from .tv import torchvision

    net = torchvision().models.resnet18(num_classes=len(meta.classes))
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    head = net.fc
    net.fc = nn.Identity()
    return Classifier(Normalize([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]), net,
                      nn.Linear(head.in_features, head.out_features), meta)


def _published(net_builder, mean, std):
    """A builder for a published network behind a normaliser with the dataset's mean / std."""
    from .architectures import NetClassifier

    def build(meta: ModelMeta) -> nn.Module:
        return NetClassifier(Normalize(mean, std), net_builder(len(meta.classes)), meta)

    return build


def _cifar_resnet(depth: int):
    from .architectures import CifarResNet

    return lambda num_classes: CifarResNet(depth, num_classes)


def _torchvision_resnet50(num_classes: int) -> nn.Module:
    from .architectures import TorchvisionResNet

    return TorchvisionResNet(50, num_classes)


def _imagenet_classes() -> tuple[str, ...]:
    from .architectures import imagenet_classes

    return imagenet_classes()


# Cohen et al.'s normaliser (their datasets.py): CIFAR-10's channel mean / std, torchvision's for ImageNet
COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

ARCHITECTURES: dict[str, tuple[Callable[[ModelMeta], nn.Module], str, object, tuple]] = {
    # name: (builder, dataset, classes (or a function giving them), input shape)
    "fmnist-cnn": (fmnist_cnn, "fashion-mnist", FASHION_MNIST_CLASSES, (1, 28, 28)),
    "fmnist-wide": (fmnist_wide, "fashion-mnist", FASHION_MNIST_CLASSES, (1, 28, 28)),
    # He et al.'s residual net of depth 8 (16/32/64 filters, batch norm) on 28×28 grayscale
    "fmnist-resnet": (lambda meta: _published(_fmnist_resnet, *FMNIST_NORMALIZE)(meta), "fashion-mnist",
                      FASHION_MNIST_CLASSES, (1, 28, 28)),
    "cifar-resnet18": (cifar_resnet18, "cifar10", CIFAR10_CLASSES, (3, 32, 32)),
    # the names Cohen et al.'s train.py writes into its checkpoints ('arch')
    "cifar_resnet20": (_published(_cifar_resnet(20), COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD), "cifar10",
                       CIFAR10_CLASSES, (3, 32, 32)),
    "cifar_resnet110": (_published(_cifar_resnet(110), COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD), "cifar10",
                        CIFAR10_CLASSES, (3, 32, 32)),
    "resnet50": (_published(_torchvision_resnet50, IMAGENET_MEAN, IMAGENET_STD), "imagenet",
                 _imagenet_classes, (3, 224, 224)),
}


def architecture_info(arch: str) -> tuple[Callable[[ModelMeta], nn.Module], str, tuple[str, ...], tuple]:
    """(builder, dataset, class names, input shape) of a known architecture, else a ModelError naming them."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}: choose one of {architecture_choices()}")
    builder, dataset, classes, shape = ARCHITECTURES[arch]
    return builder, dataset, tuple(classes() if callable(classes) else classes), shape


def architecture_summaries() -> list[tuple[str, str, tuple, int]]:
    """(name, dataset, input shape, class count) of every architecture, without building any."""
    return [(name, dataset, shape, 1000 if callable(classes) else len(classes))
            for name, (_, dataset, classes, shape) in ARCHITECTURES.items()]


def architectures_for(dataset: str) -> tuple[str, ...]:
    """The robustlens-trainable architectures of ``dataset``'s images, e.g. fmnist-cnn, fmnist-wide and
    fmnist-resnet for Fashion-MNIST (the published CIFAR / ImageNet nets are left out)."""
    return tuple(name for name, (builder, data, _, _) in ARCHITECTURES.items()
                 if data == dataset and not name.startswith(("cifar_", "resnet")))


def architecture_choices() -> str:
    """The architectures with their input shape and class count, for error messages and --help."""
    return "; ".join(f"{name} ({'×'.join(map(str, shape))}, {count} classes)"
                     for name, _, shape, count in architecture_summaries())


def build_model(arch: str, meta: ModelMeta | None = None, **meta_fields) -> nn.Module:
    builder, dataset, classes, shape = architecture_info(arch)
    if meta is None:
        fields = dict(name=arch, arch=arch, dataset=dataset, classes=classes, input_shape=shape)
        fields.update(meta_fields)
        meta = ModelMeta(**fields)
    return builder(meta)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_interactive_cpu_threads() -> int:
    """Give torch all CPU cores but one for an interactive session, so the GUI thread always has a
    core (on 2 cores, two torch threads next to a busy GUI were measured 20× slower than one).
    ROBUSTLENS_THREADS overrides. Returns the thread count set."""
    override = os.environ.get("ROBUSTLENS_THREADS", "").strip()
    threads = int(override) if override.isdigit() and int(override) > 0 else max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


# ---------------------------------------------------------------- checkpoints

def weights_sha256(state_dict: dict) -> str:
    """SHA-256 of a state_dict's tensors in a canonical order: for each name (sorted) its name, dtype
    and shape as a JSON line, then its bytes. Independent of how torch lays out the file, so it
    changes exactly when a weight does."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        header = json.dumps([name, str(tensor.dtype), list(tensor.shape)]) + "\n"
        digest.update(header.encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(model: Classifier, path: Path | str, **extra) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "arch": model.meta.arch,
               "meta": model.meta.to_dict(), "state_dict": state, "weights_sha256": weights_sha256(state)}
    payload.update(extra)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def _read(path: Path, map_location, sha256: str | None = None) -> object:
    """Unpickle nothing but tensors and plain data (weights_only), or load TorchScript. The file is
    opened only if it is a regular file within CHECKPOINT_LIMIT; with ``sha256`` its bytes must hash
    to it (the zoo manifest's record)."""
    if not os.path.lexists(path):
        raise ModelError(f"no such model file: {path} (built-in models: {', '.join(zoo_names()) or 'none'})")
    with open_regular(path, limit=CHECKPOINT_LIMIT, what="a model checkpoint", error=ModelError) as stream:
        if sha256 is not None:
            data = stream.read()
            if hashlib.sha256(data).hexdigest() != sha256.lower():
                raise ModelError(f"{path} does not match the SHA-256 its manifest records: the file is "
                                 "damaged or was replaced (reinstall robustlens)")
            return _parse(io.BytesIO(data), path, map_location)
        return _parse(stream, path, map_location)


def _parse(stream, path: Path, map_location) -> object:
    if zipfile.is_zipfile(stream):
        try:
            stream.seek(0)
            with zipfile.ZipFile(stream) as archive:
                scripted = any(name.endswith("constants.pkl") for name in archive.namelist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
            raise ModelError(f"{path.name} is not a readable checkpoint (a damaged zip archive): "
                             f"{_first_line(error)}") from None
        if scripted:
            stream.seek(0)
            try:
                return torch.jit.load(stream, map_location=map_location)
            except Exception as error:  # noqa: BLE001 - any failure means an unreadable file
                raise ModelError(f"{path.name} is not a loadable TorchScript model ({_first_line(error)})") from None
    stream.seek(0)
    try:
        return torch.load(stream, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - corrupted, truncated, pickled code, not torch at all
        raise ModelError(f"{path.name} is not a readable checkpoint (corrupted, truncated or not a "
                         f"torch file): {_first_line(error)}") from None


_META_FIELDS = {f.name for f in fields(ModelMeta)}


def _checkpoint_meta(obj: dict, path: Path) -> ModelMeta:
    """The checkpoint's ModelMeta, or a ModelError naming what is missing (never a KeyError)."""
    meta = obj.get("meta")
    if not isinstance(meta, dict):
        raise ModelError(f"{path.name} is a robustlens checkpoint without its metadata ('meta': dataset, "
                         "classes, architecture): the file is damaged or was not written by robustlens")
    missing = [key for key in ("arch", "dataset", "classes") if key not in meta]
    if missing:
        raise ModelError(f"{path.name}: the checkpoint's metadata lacks {', '.join(map(repr, missing))}: "
                         "the file is damaged or was not written by robustlens")
    classes, shape = meta["classes"], meta.get("input_shape", (1, 28, 28))
    if (not isinstance(classes, (list, tuple)) or not classes
            or not all(isinstance(c, str) for c in classes)):
        raise ModelError(f"{path.name}: the checkpoint's metadata has no valid class names ('classes')")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(n, int) and n > 0 for n in shape)):
        raise ModelError(f"{path.name}: the checkpoint's input shape {shape!r} is not (channels, height, width)")
    known = {k: v for k, v in meta.items() if k in _META_FIELDS}
    known.setdefault("name", path.stem)
    known.setdefault("input_shape", shape)
    try:
        return ModelMeta.from_dict(known)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{path.name}: the checkpoint's metadata is not readable ({_first_line(error)})") from None


def _checkpoint_state(obj: dict, path: Path) -> dict:
    """The checkpoint's state_dict, verified against its recorded SHA-256 when it has one (checkpoints
    written before robustlens recorded it load unverified)."""
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} is a robustlens checkpoint without its weights ('state_dict')")
    recorded = obj.get("weights_sha256")
    if recorded is not None and recorded != weights_sha256(state):
        raise ModelError(f"{path}: the weights do not match their recorded SHA-256: the file is damaged")
    return state


def _load_state(model: nn.Module, state: dict, path: Path, arch: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise ModelError(f"{path.name} does not fit architecture {arch!r}: {detail[:200]}") from None


class ScriptedClassifier(nn.Module):
    """A TorchScript model behind the same interface; representation() needs a scripted method."""

    def __init__(self, scripted, meta: ModelMeta):
        super().__init__()
        self.scripted = scripted
        self.meta = meta
        if next(scripted.parameters(), None) is None:
            # a frozen or weight-free script: an empty parameter tells callers the model's device
            self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x):
        return self.scripted(x)

    def representation(self, x):
        if not hasattr(self.scripted, "representation"):
            raise ModelError(f"{self.meta.name} (TorchScript) has no representation() method")
        return self.scripted.representation(x)


def load_checkpoint(path: Path | str, arch: str | None = None, device=None, name: str | None = None,
                    sha256: str | None = None, sigma: float | None = None) -> nn.Module:
    """Load a model file: a robustlens checkpoint, TorchScript, or a checkpoint as researchers publish
    it (a plain state_dict, Cohen et al.'s, Madry et al.'s: see ``published.py``; ``arch`` names the
    architecture where the file does not, ``sigma`` the σ it was trained with). Raises ModelError with
    one clear line for a missing, corrupted, damaged (weights not matching their recorded SHA-256; the
    file not matching ``sha256``) or mismatched file."""
    path = Path(path).expanduser()
    device = torch.device(device) if device is not None else default_device()
    obj = _read(path, "cpu", sha256)
    if isinstance(obj, torch.jit.ScriptModule):
        _, dataset, classes, shape = architecture_info(arch or "fmnist-cnn")
        meta = ModelMeta(name=name or path.stem, arch="torchscript", dataset=dataset, classes=classes,
                         input_shape=shape, kind="noise" if sigma else "standard", sigma=sigma)
        model = ScriptedClassifier(obj, meta)
    elif isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = _checkpoint_meta(obj, path)
        state = _checkpoint_state(obj, path)
        if name:
            meta.name = name
        if arch and arch != meta.arch:
            raise ModelError(f"{path.name} holds a {meta.arch!r} model, not {arch!r}")
        model = build_model(meta.arch, meta)
        _load_state(model, state, path, meta.arch)
    else:
        from .published import load_published

        model = load_published(obj, path, arch, sigma, name)
    check_finite_weights(model, path.name, ModelError)  # NaN weights give NaN logits: votes for class 0
    return model.to(device).eval()


# ---------------------------------------------------------------- the zoo

def zoo_dir() -> Path:
    return Path(str(importlib_resources.files("robustlens.resources").joinpath("models")))


def read_manifest(path: Path) -> dict:
    """A zoo manifest: a JSON object whose "models" maps names to entries. ModelError naming the file
    when it is not one."""
    data = read_regular(path, limit=MANIFEST_LIMIT, what="a manifest", error=ModelError)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{path} is not a valid manifest: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ModelError(f"{path} is not a valid manifest: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    if (not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict)
            or not all(isinstance(entry, dict) for entry in manifest["models"].values())):
        raise ModelError(f"{path} is not a valid manifest: expected an object whose \"models\" maps "
                         "names to entries")
    return manifest


def zoo_manifest() -> dict:
    path = zoo_dir() / "manifest.json"
    return read_manifest(path) if os.path.lexists(path) else {"models": {}}


def zoo_names() -> list[str]:
    return list(zoo_manifest()["models"])


def zoo_file(name: str) -> Path:
    return zoo_dir() / (name.replace("/", "__") + ".pt")


def load_model(name_or_path: str | Path, device=None, arch: str | None = None,
               sigma: float | None = None) -> nn.Module:
    """A built-in zoo model by name (e.g. 'fashion-mnist/l2-robust') or a model file, in eval mode. A model
    key ``PATH::arch=NAME::sigma=S`` (``published.model_key``) carries the architecture and σ."""
    from .published import split_model_key

    name, key_arch, key_sigma = split_model_key(str(name_or_path))
    arch, sigma = arch or key_arch, sigma or key_sigma
    listed = zoo_manifest()["models"]
    if name in listed:
        sha256 = listed[name].get("sha256")
        return load_checkpoint(zoo_file(name), device=device, name=name,
                               sha256=sha256 if isinstance(sha256, str) else None)
    if "/" in name and not os.path.lexists(Path(name).expanduser()) and not name.endswith(
            (".pt", ".pth", ".ts", ".tar", ".ckpt")):
        raise ModelError(f"unknown model {name!r}: built-in models are {', '.join(listed)}")
    return load_checkpoint(name, arch=arch, device=device, sigma=sigma)
