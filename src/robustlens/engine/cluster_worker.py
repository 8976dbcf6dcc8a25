"""What a Ray worker of ``engine/cluster.py`` runs: one actor class, :class:`BlockWorker`, that loads what a
run needs once (models, a smoothed classifier, a source dataset) and then runs whole blocks of it.

A run's ``job`` is a dict of plain values sent to every worker; its ``"command"`` picks one of the kinds
below, each written with the very function the single-process run calls, so a block computed here gives
the rows that run would write:

- ``certify`` / ``predict``: CERTIFY / PREDICT per image, seeded ``SEED + idx`` (:func:`smooth_image`);
- ``decide``: the anytime radius decision per image (``engine/anytime.py``), seeded ``SEED + idx``;
- ``curve``: the robust-or-not verdicts of a block of images at one (model, ε) point
  (``robustness.robust_block``); ``transfer``: a block's hit / eligible masks for one source model
  (``robustness.transfer_block``); both on whole PGD batches, seeded by the batch's first image;
- ``chunk``: one chunk of a constructed dataset (``constructed.build_chunk``), seeded by its number.

Nothing here imports Ray: the driver makes :class:`BlockWorker` an actor.
"""

from __future__ import annotations

import socket
import time
from functools import lru_cache

from .cli import CLIError

SMOOTHING = ("certify", "predict", "decide")


def smooth_image(smooth, job: dict, image, idx: int) -> tuple:
    """(prediction, radius or None, seconds) of one image for certify / predict, (prediction, certified,
    samples, seconds) for a radius decision; image idx is seeded ``SEED + idx`` as in every run
    (Cohen et al. 2019, CERTIFY / PREDICT)."""
    start = time.perf_counter()
    generator = job["seed"] + idx
    if job["command"] == "certify":
        prediction, radius = smooth.certify(image, job["n0"], job["n"], job["alpha"], job["batch"],
                                            generator=generator)
    elif job["command"] == "predict":
        prediction, radius = smooth.predict(image, job["n"], job["alpha"], job["batch"], generator=generator), None
    else:
        from .anytime import decide_radius

        decision = decide_radius(smooth, image, job["radius"], job["n0"], job["max_n"], job["alpha"], job["batch"],
                                 generator=generator)
        return int(decision.prediction), bool(decision.certified), int(decision.samples), time.perf_counter() - start
    return int(prediction), radius, time.perf_counter() - start


def state_key(job: dict) -> tuple:
    """What a worker's loaded state depends on: it keeps one per key, for later runs too."""
    gpu = job.get("gpus", 0.0) > 0
    if job["command"] in SMOOTHING:
        return "smooth", job["model"], job["weights_sha256"], job["classes"], job["sigma"], job["eager"], gpu, \
            job.get("precision", "fp32")
    if job["command"] == "chunk":
        return "chunk", job["kind"], job["model"], job["weights_sha256"], repr(job["source"]), \
            repr(sorted(job["options"].items())), gpu
    return "models", tuple(sorted((name, ref, sha) for name, (ref, sha) in job["models"].items())), gpu


def _device(job: dict):
    # Ray hides the GPUs a worker was not given only when it was given some (CUDA_VISIBLE_DEVICES is left
    # alone at num_gpus=0): a worker without GPUs must not use one it did not reserve
    import torch

    from .models import default_device

    if job.get("gpus", 0.0) > 0:
        if not torch.cuda.is_available():
            raise CLIError("--gpus-per-worker is set but this node's torch sees no CUDA GPU")
        return default_device()
    return torch.device("cpu")


def _model(ref: str, sha: str, device):
    from .model_cache import load_by_key
    from .models import weights_sha256

    model = load_by_key(ref, device)
    if weights_sha256(model.state_dict()) != sha:
        raise CLIError(f"{ref} has other weights here than on the driver")
    return model.eval()


@lru_cache(maxsize=1)
def _source(name: str, split: str, root: str | None):
    """The split a dataset's chunks come from, read once for the datasets built from it (the pipeline's
    four kinds share one)."""
    from .data import load_dataset

    return load_dataset(name, split, root)


def _load(job: dict):
    device = _device(job)
    if job["command"] in SMOOTHING:
        from .smoothing import Smooth

        model = _model(job["model"], job["weights_sha256"], device)
        smooth = Smooth(model, job["classes"], job["sigma"], optimize=not job["eager"],
                        precision=job.get("precision", "fp32"))
        smooth.prepare(tuple(model.meta.input_shape))
        return smooth
    if job["command"] == "chunk":
        from .constructed import chunk_maker

        model = _model(job["model"], job["weights_sha256"], device)
        return chunk_maker(job["kind"], model, _source(*job["source"]), job["options"])
    return {name: _model(ref, sha, device) for name, (ref, sha) in job["models"].items()}


def _run(state, job: dict, payload: tuple):
    import torch

    command = job["command"]
    if command in SMOOTHING:
        indices, images = payload
        return [smooth_image(state, job, image, idx) for idx, image in zip(indices, images)]
    if command == "chunk":
        from .constructed import build_chunk

        k, positions = payload
        began = time.perf_counter()
        chunk = build_chunk(state, k, torch.as_tensor(positions, dtype=torch.long), job["seed"])
        return chunk, time.perf_counter() - began
    from .robustness import curve_config, robust_block, transfer_block, transfer_config

    if command == "curve":  # one (model, ε) point on a block of whole PGD batches from image `offset` on
        name, eps, images, labels, offset = payload
        config = curve_config(job["norm"], eps, **job["attack"])
        return robust_block(state[name], _tensor(images), _tensor(labels), config, job["batch"], offset).numpy()
    source, eps, images, labels, offset, targets = payload  # a transfer row's block, crafted on `source`
    config = transfer_config(job["norm"], eps, **job["attack"])
    masks = transfer_block(state, source, _tensor(images), _tensor(labels), _tensor(targets), config, job["batch"],
                           offset)
    return {name: (hit.numpy(), eligible.numpy()) for name, (hit, eligible) in masks.items()}


def _tensor(array):
    """A tensor of its own (what Ray hands a worker is read-only); None stays None."""
    import torch

    return None if array is None else torch.tensor(array)


class BlockWorker:
    """One Ray worker: loads each run's state once (kept for later runs with the same key), then runs
    whole blocks. Made a Ray actor by ``cluster._actor_class``; plain Python here so it reads without Ray."""

    def __init__(self):
        self.loaded: dict[tuple, object] = {}

    def _state(self, job: dict):
        key = state_key(job)
        if key not in self.loaded:
            if job.get("threads"):
                import torch

                torch.set_num_threads(job["threads"])
            self.loaded[key] = _load(job)
        return self.loaded[key]

    def load(self, job: dict) -> dict:
        """{"error": why the run cannot go on here, or None; "backend": the forward it runs, if any}."""
        try:
            state = self._state(job)
            return {"error": None, "backend": getattr(state, "backend", None)}
        except Exception as failure:  # noqa: BLE001 — the driver ends with this one line
            why = " ".join(str(failure).split()) or type(failure).__name__
            return {"error": f"worker on {socket.gethostname()}: {why}", "backend": None}

    def run(self, block: int, job: dict, *payload):
        return _run(self._state(job), job, payload)
