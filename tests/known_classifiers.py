"""Classifiers whose smoothed behaviour is known exactly, for checking the guarantees of CERTIFY and
PREDICT against independent computations (tests and bench/bench_guarantee.py share them).

f(x) = [w·x + b > 0]: under ε ~ N(0, σ²I), P[f(x + ε) = 1] = Φ(d/σ) with d the signed distance of x to
the hyperplane, so g(x) = 1 exactly when d > 0 and the true certified radius is d (Cohen et al. 2019,
Theorem 2 is tight for it).
"""

from __future__ import annotations

import torch
from torch import nn

SHAPE = (1, 4, 4)


class LinearBinary(nn.Module):
    """f(x) = 1 if w·x + b > 0 else 0, as two logits (−s, s)."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone(), requires_grad=False)
        self.b = nn.Parameter(torch.tensor(float(b)), requires_grad=False)

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], dim=1)


def linear_case(distance: float, seed: int = 0):
    """A [0,1] image x and a linear classifier whose boundary is ``distance`` away (class 1 side)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(SHAPE, generator=g)
    w = torch.randn(SHAPE, generator=g)
    b = distance * w.norm() - (w * x).sum()
    return x, LinearBinary(w, float(b))
