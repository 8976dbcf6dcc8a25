"""The loss and its input gradient for PGD, computed in sub-batches that stay in the CPU's cache.

One PGD step needs ∇ₓ L(f(x), y) for every image of the batch. The backward pass reads back every
activation the forward pass saved; for the built-in Fashion-MNIST CNN those are about 350 KB per
image, so a batch of 1,000 images keeps ~350 MB alive between the two passes and every layer streams
it through main memory. Splitting the batch into sub-batches whose activations fit in the last-level
cache gives the same numbers (each image's loss depends on that image only, so the gradient of the
summed loss splits exactly) at about half the cost at batch 1,000 (bench/bench_pgd.py).

Splitting is only exact when the model treats every image on its own. It is done only when every
module is in eval mode (batch-norm in train mode uses batch statistics; dropout in train mode draws
noise over the whole batch) and of a type known to be per-sample (:data:`PER_SAMPLE_MODULES`); any
other model (a user's custom layer, the Monte-Carlo smoothed classifier, whose noise draw depends on
the batch shape) runs on the whole batch at once, exactly as before.

Measured and not kept (one torch thread, fmnist-cnn, 20 L∞ steps over 1,000 images):
- channels_last weights and activations: ~20 % faster (max-pooling is vectorised over channels), but
  the convolutions round differently, the gradient's sign flips on near-zero entries and ~3,000 pixels
  of the final iterate move by 2α: not the same iterates, so not used.
- torch.jit.trace, and trace + freeze, of the model: no faster than eager for forward + backward;
  optimize_for_inference's oneDNN graph has no backward at all.
- torch.compile (inductor) of the model: 143 s to compile on this loaded 2-core machine, then forward +
  backward at batch 256 in sub-batches of 64 took 0.32 s against eager's 0.16 s, and its gradient
  differs from eager's by up to 6e-6: slower and not the same numbers, so not used (not even warmed
  in the background).

- PyTorch's own convolution instead of oneDNN's (``torch.backends.mkldnn.enabled = False``): 37.5 ms
  against 31.6 ms per forward + backward of 64 images, and a different gradient: not used.
- The first convolution (1 → 32 channels) alone in channels-last layout: its forward takes 0.55 ms
  against 0.8 ms per 64 images (oneDNN writes NHWC directly, with no reorder), but it rounds
  differently. Its input gradient, oneDNN's slowest kernel here (3.2 ms per 64 images: the one input
  channel is padded to a block of 16), as a forward convolution with the flipped, transposed weights:
  no faster, and different numbers. Neither is used.

Small sub-batches also spare the allocator: glibc maps a block of more than a threshold (at most
32 MiB) afresh and unmaps it on free, so a whole batch of 1,000 pays page faults and zeroing on every
layer of every step, which a sub-batch of 64 (6.4 MB for the largest activation, reused from the heap)
does not (``bench/bench_pgd.py --retain-freed-memory`` measures without that difference).

Kept, by a torch.fx rewrite of the model that shares its modules and weights (:func:`gradient_model`):
a ReLU that feeds a 2×2 max-pooling moves after it (:func:`_pool_before_relu`), and the 2×2
max-poolings run through ``engine/pooling.py`` (PyTorch's values and gradients, faster forward).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Callable

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .checks import FiniteOutputs
from .pooling import is_pool_2x2, max_pool_2x2

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, classes) -> loss per sample

# Layer types whose output for one image depends only on that image (in eval mode), and the
# containers of the built-in architectures whose forward composes such layers image by image.
PER_SAMPLE_MODULES: tuple[type, ...] = (
    nn.Sequential, nn.ModuleList, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.Bilinear,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d,  # per-sample in eval mode only
    nn.LayerNorm, nn.GroupNorm, nn.Softmax, nn.LogSoftmax,
)
_PER_SAMPLE_NAMES = {  # by qualified name: importing torchvision just to compare types would be slow
    "robustlens.engine.models.Classifier", "robustlens.engine.models.Normalize",
    # the residual networks (fmnist-resnet, Cohen et al.'s CIFAR ResNets, ResNet-50): convolutions, batch
    # norm, ReLU, a shortcut sum and global pooling. Measured (fmnist-resnet, one thread, batch 256):
    # 140–155 ms per forward + input gradient in sub-batches of 32–128 against 202 ms unsplit, the same
    # gradient bit for bit
    "robustlens.engine.architectures.BasicBlock", "robustlens.engine.architectures.CifarResNet",
    "robustlens.engine.architectures.TorchvisionResNet", "robustlens.engine.architectures.NetClassifier",
    "torchvision.models.resnet.ResNet", "torchvision.models.resnet.BasicBlock",
    "torchvision.models.resnet.Bottleneck",
}

# The activations of one sub-batch (the sum of every leaf module's output, which the backward pass
# reads back) should fit in the last-level cache. For fmnist-cnn (~350 KB per image) and a 32 MiB L3
# this gives 64; measured on such a machine, per step at batch 1,000 (one thread): sub-batch 32:
# 0.60 s, 64: 0.56 s, 128: 0.58 s, 256: 0.55–0.73 s, unsplit 1,000: 1.10 s. A virtual machine may
# report a whole server socket's L3 (480 MiB on another machine here, of which one core gets a
# share), where 64 is still the best (L2 step, one thread, batch 1,000: 32: 0.53 s, 64: 0.50 s,
# 128: 0.53 s, 256: 0.57 s, unsplit: 0.84 s): the budget is the cache, at most 32 MiB.
_DEFAULT_CACHE_BYTES = 32 * 2**20
MIN_SUB_BATCH, MAX_SUB_BATCH = 16, 512


def _last_level_cache_bytes() -> int:
    """The largest CPU cache of cpu0 as Linux reports it, at most (and by default) 32 MiB."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
        except (OSError, ValueError):
            continue
    return min(max(sizes), _DEFAULT_CACHE_BYTES) if sizes else _DEFAULT_CACHE_BYTES


CACHE_BYTES = _last_level_cache_bytes()


def splits_exactly(model) -> bool:
    """True when the model's output for an image depends on that image alone, so the batch may be
    split: every module in eval mode and of a known per-sample type."""
    if isinstance(model, FiniteOutputs):  # the NaN check on the logits is per sample too
        model = model.model
    if not isinstance(model, nn.Module):
        return False
    for module in model.modules():
        if module.training:
            return False
        kind = type(module)
        if kind not in PER_SAMPLE_MODULES and f"{kind.__module__}.{kind.__qualname__}" not in _PER_SAMPLE_NAMES:
            return False
    return True


def activation_bytes_per_image(model: nn.Module, image: torch.Tensor) -> int:
    """Bytes of all leaf modules' outputs for one image: what a forward pass saves for the backward."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(image[:1])
    finally:
        for handle in handles:
            handle.remove()
    return max(total, 1)


_SUB_BATCHES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def gradient_sub_batch(model, images: torch.Tensor) -> int | None:
    """The sub-batch for PGD's forward/backward passes, or None for the whole batch (off the CPU, or
    when the model does not split exactly): the largest power of two whose activations fit in
    :data:`CACHE_BYTES`, within [MIN_SUB_BATCH, MAX_SUB_BATCH]."""
    if images.device.type != "cpu" or len(images) <= MIN_SUB_BATCH or not splits_exactly(model):
        return None
    sizes = _SUB_BATCHES.setdefault(model, {})
    key = (tuple(images.shape[1:]), images.dtype)
    if key not in sizes:
        fits = CACHE_BYTES // activation_bytes_per_image(model, images)
        size = MIN_SUB_BATCH
        while size * 2 <= min(fits, MAX_SUB_BATCH):
            size *= 2
        sizes[key] = size
    size = sizes[key]
    return None if size >= len(images) else size


_REWRITTEN: "weakref.WeakKeyDictionary[nn.Module, nn.Module | None]" = weakref.WeakKeyDictionary()


def _with_fast_pooling(model: nn.Module) -> nn.Module | None:
    """A torch.fx graph of ``model`` whose 2×2 max-pooling modules call :func:`max_pool_2x2`, or None
    when it has none or does not trace. The graph holds the model's own submodules (not copies), so it
    follows weight updates made in place."""
    if not any(is_pool_2x2(module) for module in model.modules()):
        return None
    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow and the like: keep the model as it is
        return None
    for node in list(graph.graph.nodes):
        if node.op == "call_module" and is_pool_2x2(graph.get_submodule(node.target)):
            node.op, node.target = "call_function", max_pool_2x2
            _pool_before_relu(graph, node)
    graph.graph.lint()
    graph.recompile()
    return graph


def _is_relu(graph: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return type(graph.get_submodule(node.target)) is nn.ReLU
    return node.op == "call_function" and node.target in (torch.relu, F.relu) and len(node.args) == 1 \
        and not node.kwargs.get("inplace", False)


def _pool_before_relu(graph: torch.fx.GraphModule, pool: torch.fx.Node) -> None:
    """``maxpool(relu(x))`` becomes ``relu(maxpool(x))`` where the ReLU feeds only the pooling: the
    same values (ReLU is monotone, so it commutes with a maximum) and the same gradient (where the
    window's maximum is positive both pick the same first maximal element, since ReLU keeps positive
    entries as they are and maps the rest below them, to 0; where it is ≤ 0 both gradients are 0,
    ReLU's derivative at 0 being 0 in PyTorch), with the ReLU on a quarter of the entries."""
    relu = pool.args[0]
    if not isinstance(relu, torch.fx.Node) or len(relu.users) != 1 or not _is_relu(graph, relu):
        return
    source = relu.args[0]
    pool.replace_all_uses_with(relu)
    pool.args = (source, *pool.args[1:])
    relu.args = (pool, *relu.args[1:])
    relu.prepend(pool)  # pool now runs first: fx nodes run in list order


def gradient_model(model, images: torch.Tensor):
    """The model PGD's passes call: on the CPU, for a model that treats every image on its own
    (:func:`splits_exactly`), the same model with faster 2×2 max-pooling (the same numbers); else
    ``model`` itself. A :class:`FiniteOutputs` wrapper is kept around the result."""
    inner = model.model if isinstance(model, FiniteOutputs) else model
    if images.device.type != "cpu" or not splits_exactly(inner):
        return model
    if inner not in _REWRITTEN:
        _REWRITTEN[inner] = _with_fast_pooling(inner)
    rewritten = _REWRITTEN[inner]
    if rewritten is None:
        return model
    return FiniteOutputs(rewritten, model.what) if isinstance(model, FiniteOutputs) else rewritten


def loss_and_gradient(model, images: torch.Tensor, classes: torch.Tensor, objective: Objective,
                      sub_batch: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, per-sample losses and ∇ₓ Σ loss of ``images`` (detached), ``sub_batch`` images at a
    time (None: all at once). Gradients are taken with respect to the input only."""
    with torch.enable_grad():
        if sub_batch is None:
            x = images.detach().requires_grad_(True)
            logits = model(x)
            losses = objective(logits, classes)
            (grad,) = torch.autograd.grad(losses.sum(), x)
            return logits.detach(), losses.detach(), grad
        grad = torch.empty_like(images)
        logit_parts, loss_parts = [], []
        for begin in range(0, len(images), sub_batch):
            x = images[begin:begin + sub_batch].detach().requires_grad_(True)
            logits = model(x)
            losses = objective(logits, classes[begin:begin + sub_batch])
            (part,) = torch.autograd.grad(losses.sum(), x)
            grad[begin:begin + sub_batch] = part
            logit_parts.append(logits.detach())
            loss_parts.append(losses.detach())
        return torch.cat(logit_parts), torch.cat(loss_parts), grad


def loss_only(model, images: torch.Tensor, classes: torch.Tensor, objective: Objective,
              sub_batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-sample losses without a gradient (the final iterate), in the same sub-batches."""
    with torch.no_grad():
        if sub_batch is None:
            logits = model(images)
        else:
            logits = torch.cat([model(images[b:b + sub_batch]) for b in range(0, len(images), sub_batch)])
        return logits, objective(logits, classes)
