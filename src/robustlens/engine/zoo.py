"""The built-in model zoo as one catalogue: what each model is (kind, norm, ε, σ, architecture,
dataset), read once from the manifest, so no caller parses model names.

While the zoo is being built its files appear before the manifest lists them; such a model is still
catalogued, from the name it was trained under (``fashion-mnist/noise-0.50``), and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .models import zoo_dir, zoo_file, zoo_manifest


@dataclass(frozen=True)
class ZooEntry:
    """One built-in model: ``name`` is its key everywhere (``fashion-mnist/l2-robust``)."""
    name: str
    kind: str | None            # "standard" | "adversarial" | "noise" (None: unknown)
    norm: str | None = None     # "l2" | "linf" for adversarial models
    eps: float | None = None
    sigma: float | None = None
    arch: str | None = None
    manifest: dict = field(default_factory=dict, compare=False)  # the manifest's entry ({} when unlisted)

    @property
    def dataset(self) -> str:
        return self.name.rsplit("/", 1)[0] if "/" in self.name else ""

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def listed(self) -> bool:
        """Whether the manifest lists it (accuracies, command); False while the zoo is being built."""
        return bool(self.manifest)

    def trained_at_sigma(self, sigma: float) -> bool:
        return self.kind == "noise" and self.sigma is not None and math.isclose(self.sigma, sigma, rel_tol=1e-6)


def _from_name(name: str) -> ZooEntry:
    """What a zoo file's name says while the manifest lacks it: the names follow tools/build_zoo.py."""
    tail = name.rsplit("/", 1)[-1]
    if tail.startswith("noise-"):
        try:
            return ZooEntry(name, "noise", sigma=float(tail[len("noise-"):]))
        except ValueError:
            return ZooEntry(name, "noise")
    if tail.endswith("-robust"):
        norm = tail[: -len("-robust")]
        return ZooEntry(name, "adversarial", norm=norm if norm in ("l2", "linf") else None)
    if tail == "standard":
        return ZooEntry(name, "standard")
    return ZooEntry(name, None)


def _number(value) -> float | None:
    return None if value is None else float(value)


def catalogue() -> list[ZooEntry]:
    """Every built-in model: the manifest's entries in its order, then files it does not list yet."""
    listed = dict(zoo_manifest().get("models", {}))
    entries = []
    for name, info in listed.items():
        guess = _from_name(name)
        entries.append(ZooEntry(name, info.get("kind") or guess.kind, info.get("norm") or guess.norm,
                                _number(info.get("eps")) if info.get("eps") is not None else guess.eps,
                                _number(info.get("sigma")) if info.get("sigma") is not None else guess.sigma,
                                info.get("arch"), dict(info)))
    folder = zoo_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.pt")):
            name = path.stem.replace("__", "/")
            if name not in listed:
                entries.append(_from_name(name))
    return entries


def entry(name: str) -> ZooEntry | None:
    """The catalogue's entry for a zoo name, or None when ``name`` is not a built-in model."""
    return next((e for e in catalogue() if e.name == name), None)


def is_zoo_name(name: str) -> bool:
    """A built-in model's name (listed, or a zoo file not yet listed)."""
    return entry(str(name)) is not None and zoo_file(str(name)).exists()
