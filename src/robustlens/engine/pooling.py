"""2×2 max-pooling with PyTorch's values and gradients, faster on the CPU, for PGD's gradient passes.

PyTorch's CPU kernel for ``max_pool2d`` on NCHW tensors walks every window element by element. For
the built-in Fashion-MNIST CNN its two 2×2 poolings take about 40 % of one forward + backward pass
(one thread, sub-batch 64): 9–10 ms forward for the 64×32×28×28 activation, against ~1 ms for its
backward. Here the maxima come from two vectorised passes over strided views (pairs along W, then pairs
of those rows along H, ~2 ms), and the winner's index is kept for PyTorch's own backward kernel
(``max_pool2d_with_indices_backward``), so the gradient lands on the same pixels as PyTorch's.

The winner is PyTorch's: the kernel scans a window in row-major order and keeps the first maximum
(``val > maxval``). Taking the first maximum of each row (the left one on a tie) and then the first
row whose maximum is the window's (the upper one on a tie) picks that same element, since the first
maximum in row-major order lies in the first row that holds the maximum, leftmost there. The values are
the window maxima (``torch.maximum``, NaN-propagating as the kernel); a tie of −0 and +0 may keep the
other sign, and the two compare equal. ``tests/test_attacks.py`` checks values and gradients against
``F.max_pool2d`` on plateaus and ties and the PGD iterates against the unchanged model.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def is_pool_2x2(module: nn.Module) -> bool:
    """An ``nn.MaxPool2d`` with a 2×2 window, stride 2, no padding or dilation, floor mode, no indices."""
    if type(module) is not nn.MaxPool2d:
        return False

    def pair(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

    return (pair(module.kernel_size) == (2, 2) and pair(module.stride) == (2, 2)
            and pair(module.padding) == (0, 0) and pair(module.dilation) == (1, 1)
            and not module.ceil_mode and not module.return_indices)


@functools.lru_cache(maxsize=16)
def _window_origins(height: int, width: int, device: torch.device) -> torch.Tensor:
    """The flat index of each 2×2 window's top-left pixel in an H×W plane."""
    return (torch.arange(0, height, 2, device=device).view(-1, 1) * width
            + torch.arange(0, width, 2, device=device))


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        left, right = images[..., 0::2], images[..., 1::2]
        rows = torch.maximum(left, right)
        top, bottom = rows[..., 0::2, :], rows[..., 1::2, :]
        pooled = torch.maximum(top, bottom)
        if ctx.needs_input_grad[0]:
            # strict: on a tie the earlier element, as PyTorch's kernel; as bytes, since byte
            # arithmetic runs several times faster than torch.where on strided boolean views
            right_wins = torch.gt(right, left).view(torch.uint8)
            bottom_wins = torch.gt(bottom, top).view(torch.uint8)
            upper, lower = right_wins[..., 0::2, :], right_wins[..., 1::2, :]
            # the winning row's column bit: lower where the bottom row wins, else upper
            column = torch.bitwise_xor(upper, lower).bitwise_and_(bottom_wins).bitwise_xor_(upper)
            # flat index into each H×W plane: (2i + bottom) · W + 2j + column
            index = bottom_wins.to(torch.int64).mul_(width).add_(column)
            index.add_(_window_origins(height, width, images.device))
            ctx.save_for_backward(images, index)
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor) -> torch.Tensor:
        images, index = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_pooled.contiguous(), images, [2, 2], [2, 2], [0, 0], [1, 1], False, index)


def max_pool_2x2(images: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(images, 2)``: the same values and gradient; the faster path for contiguous 4-D
    CPU float tensors of even height and width, PyTorch's kernel otherwise."""
    if (images.dim() == 4 and images.device.type == "cpu" and images.is_floating_point()
            and images.is_contiguous() and images.shape[-1] % 2 == 0 and images.shape[-2] % 2 == 0):
        return _MaxPool2x2.apply(images)
    return F.max_pool2d(images, 2)
