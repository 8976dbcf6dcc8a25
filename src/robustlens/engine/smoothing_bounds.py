"""The numbers of a randomized-smoothing certificate (Cohen, Rosenfeld, Kolter 2019): one-sided
Clopper–Pearson bounds on pA and pB, the certified radius of Theorem 1, the radius curve and the ceiling
no run of n samples can pass, the typical noise norm, and certified accuracy at a radius.

Plain numbers in and out (``scipy.stats``, no hand-written quantiles): the smoothed classifier
(``smoothing.py``), the CLI, the Certify panel's drawings and the tests all use these.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, norm


def lower_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound on a binomial proportion.

    The α-quantile of Beta(k, n − k + 1) (Clopper & Pearson 1934); 0 when k = 0. This is what the
    reference implementation computes as ``proportion_confint(k, n, alpha=2α, method="beta")[0]``.
    """
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def upper_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson upper bound: the (1 − α)-quantile of Beta(k + 1, n − k); 1 when k = n."""
    if successes >= trials:
        return 1.0
    return float(beta.ppf(1.0 - alpha, successes + 1, trials - successes))


def certified_radius(sigma: float, p_a: float, p_b: float | None = None) -> float:
    """Theorem 1: R = σ/2 (Φ⁻¹(pA) − Φ⁻¹(pB)); with pB = 1 − pA (the default) R = σ Φ⁻¹(pA).

    Returns 0 when the bound certifies nothing (pA ≤ pB).
    """
    if p_b is None:
        return float(sigma * norm.ppf(p_a)) if p_a > 0.5 else 0.0
    if not p_a > p_b:
        return 0.0
    return float(sigma / 2 * (norm.ppf(p_a) - norm.ppf(p_b)))


def radius_curve(sigma: float, p_a) -> np.ndarray:
    """R(pA) = σ Φ⁻¹(pA) for an array of pA values (the curve the Certify panel draws)."""
    return sigma * norm.ppf(np.asarray(p_a, dtype=np.float64))


def radius_curve_points(sigma: float, n: int | None = None, alpha: float | None = None,
                        points: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(pA, R(pA)) from pA = 1/2 up to the ceiling α^(1/n) when n and α are given (the largest pA lower bound
    any run of size n can reach), else up to 1 − 10⁻⁶: ready to plot."""
    top = alpha ** (1.0 / n) if n and alpha else 1.0 - 1e-6
    p_a = np.linspace(0.5, top, points)
    return p_a, radius_curve(sigma, p_a)


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with n samples: all n agree, so the Clopper–Pearson bound is
    α^(1/n) and R = σ Φ⁻¹(α^(1/n)) (3.81σ at n = 10⁵, α = 0.001)."""
    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


def expected_noise_norm(sigma: float, dim: int) -> float:
    """E‖ε‖₂ for ε ~ N(0, σ²I_d): σ √2 Γ((d+1)/2) / Γ(d/2), which is σ√d to within 1/(4d)."""
    return float(sigma * math.sqrt(2.0) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2)))


def certified_accuracy(radii, correct, at) -> np.ndarray:
    """Certified accuracy at radius r: the fraction of images whose prediction is correct and whose
    certified radius is at least r (abstentions count as wrong). ``at`` may be a number or an array."""
    radii = np.asarray(radii, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    at = np.atleast_1d(np.asarray(at, dtype=np.float64))
    if radii.size == 0:
        return np.zeros_like(at)
    return ((radii[None, :] >= at[:, None]) & correct[None, :]).mean(axis=1)
