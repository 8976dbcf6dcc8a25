"""What a job running on the GUI's engine thread may use: the device, the loaded models and their
smoothed classifiers, each built once.

The GUI's engine thread (``app/engine_thread.py``) owns one :class:`ModelCache` and passes it to every
job it runs as ``job(cache, cancel)``; the CLI and tests can make their own. It holds no lock: one
thread uses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .jobs import CancelToken, Finished, Progress, predict_job
from .models import load_checkpoint, load_model, zoo_file, zoo_names
from .published import split_model_key
from .smoothing import Smooth


def load_by_key(key: str, device: torch.device | str | None = None) -> torch.nn.Module:
    """A model by key: a zoo name (also before the zoo's manifest lists it: the file suffices), a path,
    or a path with what the file does not say, ``PATH::arch=NAME::sigma=S`` (``published.model_key``)."""
    if key in zoo_names():
        return load_model(key, device=device)
    path, arch, sigma = split_model_key(key)
    if arch is None and sigma is None and "/" in key and not Path(key).exists() and zoo_file(key).exists():
        return load_checkpoint(zoo_file(key), device=device, name=key)
    return load_model(path, device=device, arch=arch, sigma=sigma)


class ModelCache:
    """Models by key on one device, loaded on first use, and a ``Smooth`` per model and σ (its fast
    traced forward is built once, on the first certificate, and reused by every later one)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._models: dict[str, torch.nn.Module] = {}
        self._smooths: dict[tuple[str, float | None], Smooth] = {}
        self.active_keys: list[str] = []  # the models the window shows, in display order

    def model(self, key: str) -> torch.nn.Module:
        """A model by key (a zoo name or a file path), loaded onto the device on first use."""
        if key not in self._models:
            self._models[key] = load_by_key(key, self.device)
        return self._models[key]

    def models(self, keys: Iterable[str] | None = None) -> dict[str, torch.nn.Module]:
        """Several models by key, in order; ``None`` means the models the window shows."""
        return {key: self.model(key) for key in (self.active_keys if keys is None else keys)}

    def smooth(self, key: str, sigma: float | None = None) -> Smooth:
        """The smoothed classifier g of model ``key`` at σ (default: the σ it was trained with)."""
        slot = (key, None if sigma is None else float(sigma))
        if slot not in self._smooths:
            self._smooths[slot] = Smooth.from_model(self.model(key), sigma=sigma)
        return self._smooths[slot]

    def forget(self, key: str) -> None:
        """Drop a model and its smoothed classifiers (its file changed, or it was unloaded)."""
        self._models.pop(key, None)
        for slot in [s for s in self._smooths if s[0] == key]:
            del self._smooths[slot]

    @property
    def cached_keys(self) -> list[str]:
        return list(self._models)


def load_models_job(cache: ModelCache, keys: tuple[str, ...]):
    """Load the models the window shows, in order, and make them the cache's active ones.

    Finished.result is ``(loaded, errors)``: ``[(key, ModelMeta)]`` for the models that loaded and
    ``{key: one line}`` for those that did not (a bad file does not keep the others from loading).
    """

    def job(cancel: CancelToken):
        loaded, errors = [], {}
        for i, key in enumerate(keys):
            cancel.check()
            yield Progress(i, len(keys), f"loading {key}")
            try:
                loaded.append((key, cache.model(key).meta))
            except Exception as error:  # noqa: BLE001 - reported per model, the others still load
                errors[key] = " ".join(str(error).split()) or type(error).__name__
        cache.active_keys = [key for key, _ in loaded]
        yield Finished((loaded, errors))

    return job


PREDICTIONS_STEP_S = 0.1  # the predictions job's steps: about this long (cancellation is checked per model)


@dataclass(frozen=True)
class PredictionsRequest:
    """Which models judge which images: ``images`` {name: [0,1] (N,C,H,W) or (C,H,W) array or tensor};
    ``keys`` the models by key, ``None`` for the models the window shows."""
    images: Mapping[str, Any]
    keys: tuple[str, ...] | None = None


def predictions_job(cache: ModelCache, request: PredictionsRequest):
    """Softmax probabilities of the requested models on the requested images (``jobs.predict_job``).

    Finished.result is {image name: {model key: (N, classes) float32 array, or a one-line string
    saying why not}}; a model that does not load fails the job with its one-line error."""
    keys = None if request.keys is None else tuple(request.keys)

    def job(cancel: CancelToken):
        # one model's forward pass is a few ms: yield (a step the engine may switch at) only every
        # PREDICTIONS_STEP_S, so the click's predictions do not wait behind a long job's chunk per model
        last = time.monotonic()
        for event in predict_job(cache.models(keys), dict(request.images))(cancel):
            if isinstance(event, Progress) and time.monotonic() - last < PREDICTIONS_STEP_S:
                continue
            last = time.monotonic()
            yield event

    return job
