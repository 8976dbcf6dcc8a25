"""Where and how fast the base classifier runs: the device a command asks for, reduced precision for
the smoothed classifier's forwards, and on CUDA the memory layout and the noise batch.

A certificate (Cohen et al. 2019, Theorem 1) is about the classifier that produced the votes. Run in
bf16 or fp16 the base classifier is a slightly different function from the fp32 one, and the
certificate holds for it as run (autocast in that precision), not for the fp32 model: the TSV header says
so (``precision_settings``).
"""

from __future__ import annotations

from typing import Callable

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# CUDA noise batches tried by tune_batch: doubling from the requested size up to this many samples
MAX_TUNED_BATCH = 32_768
TUNE_MEMORY_SHARE = 0.5  # a batch may take at most this share of the GPU's memory at its peak


class DeviceUnavailable(ValueError):
    """A device the command line asked for is not here (one line)."""


def select_device(choice: str | None) -> torch.device:
    """``auto`` (or None): CUDA when present, else the CPU; ``cpu``; ``cuda`` / ``cuda:N``, refused in one
    line when this torch has no CUDA or sees no such GPU."""
    choice = (choice or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise DeviceUnavailable(f"--device {choice}: {why} (torch {torch.__version__}); use --device cpu")
        device = torch.device(choice)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"--device {choice}: only {torch.cuda.device_count()} CUDA GPU(s) here "
                                    f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
        return device
    raise DeviceUnavailable(f"--device {choice}: choose auto, cpu, cuda or cuda:N")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def precision_forward(forward: Callable, device: torch.device, precision: str) -> Callable:
    """``forward`` under autocast in ``precision`` (fp32: ``forward`` itself), logits back in fp32 so that
    argmax and the finiteness check see what the reduced-precision model gave."""
    if check_precision(precision) == "fp32":
        return forward
    dtype = AUTOCAST_DTYPES[precision]

    def reduced(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=dtype):
            return forward(x).float()

    return reduced


def precision_settings(precision: str) -> dict:
    """What a certify / predict TSV header adds for a reduced precision (nothing for fp32, so earlier
    fp32 runs resume unchanged)."""
    if check_precision(precision) == "fp32":
        return {}
    return {"precision": precision,
            "certificate": f"holds for the model as run in {precision} autocast, not for its fp32 weights"}


def uses_channels_last(device: torch.device, image_shape) -> bool:
    """On CUDA, convolutions on (N, C, H, W) batches run fastest in channels-last layout (NHWC, tensor
    cores); on the CPU the frozen oneDNN graph picks its own blocked layout, so nothing changes there."""
    return device.type == "cuda" and image_shape is not None and len(tuple(image_shape)) == 3


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The model's 4-D weights in channels-last layout (in place, as ``Module.to`` does; same values)."""
    return model.to(memory_format=torch.channels_last)


def largest_fitting_batch(try_batch: Callable[[int], int], start: int, limit: int, budget: int) -> int:
    """The largest of start, 2·start, 4·start, … ≤ ``limit`` whose trial fits: ``try_batch(b)`` runs a
    batch of b and returns its peak memory in bytes, or raises ``torch.cuda.OutOfMemoryError``. A batch
    fits when it runs and peaks at most at ``budget`` bytes; ``start`` is kept even if it does not."""
    best, batch = start, start
    while batch <= limit:
        try:
            peak = try_batch(batch)
        except torch.cuda.OutOfMemoryError:
            break
        if peak > budget:
            break
        best, batch = batch, batch * 2
    return best


def tune_batch(forward: Callable, image: torch.Tensor, sigma: float, start: int, limit: int) -> int:
    """On CUDA, the noise batch for this model and image: the largest doubling of ``start`` (up to
    ``limit``, at most MAX_TUNED_BATCH) whose forward fits in TUNE_MEMORY_SHARE of the GPU's memory. Peak
    memory, not speed, decides, so the same GPU, model and image give the same batch on every run (the
    batch is part of a run's settings: a rerun with the same settings resumes)."""
    device = image.device
    if device.type != "cuda":
        return start
    budget = int(torch.cuda.get_device_properties(device).total_memory * TUNE_MEMORY_SHARE)
    memory_format = torch.channels_last if uses_channels_last(device, image.shape[1:]) else torch.contiguous_format

    def trial(batch: int) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            noisy = torch.empty((batch,) + tuple(image.shape[1:]), device=device, memory_format=memory_format)
            noisy.normal_(0.0, sigma).add_(image)
            forward(noisy).argmax(1)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)

    return largest_fitting_batch(trial, start, min(limit, MAX_TUNED_BATCH), budget)
