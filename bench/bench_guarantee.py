"""The α guarantee of CERTIFY and PREDICT (Cohen et al. 2019, Prop. 1 and 2) at scale, on a classifier
whose smoothed behaviour is known exactly.

f(x) = [w·x + b > 0] on 4×4 images. Under ε ~ N(0, σ²I), P[f(x + ε) = 1] = Φ(d/σ) with d the signed
distance of x to the boundary, so g(x) = 1 and the exact certified radius is d (Theorem 2 is tight).

* CERTIFY fails when it returns a class other than g(x) = 1 or a radius beyond d: this may happen with
  probability at most α. The exact failure probability of the one-sided Clopper–Pearson bound is
  computed independently (sum of the binomial pmf over the counts whose bound exceeds pA).
* PREDICT fails when it returns a class other than g(x). At pA = 1/2 (x on the boundary, g undefined)
  every returned class counts as a failure; its exact probability is that of the two-sided binomial
  test rejecting at level α.

Each row: TRIALS seeded trials (seed = offset + trial), the observed failures, their Clopper–Pearson
two-sided 95 % interval's upper end, and the exact failure probability. ``python bench/bench_guarantee.py``
prints the table (Markdown) that README.md quotes; tests/test_guarantee.py runs the same trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import betaincinv
from scipy.stats import binom, binomtest, norm

from robustlens.engine.smoothing import ABSTAIN, Smooth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from known_classifiers import SHAPE, linear_case  # noqa: E402 - the classifiers the tests use

SIGMA = 0.5
CERTIFY = dict(alpha=0.05, n0=20, n=300)
PREDICT = dict(alpha=0.05, n=200)
CERTIFY_P_A = (0.8, 0.97)
PREDICT_P_A = (0.5, 0.55)
TRIALS = 2000


def exact_certify_failure(p_a: float, n: int, alpha: float) -> float:
    """P[the (1 − α) Clopper–Pearson lower bound of k ~ Bin(n, pA) exceeds pA]: how often the radius
    σΦ⁻¹(bound) passes the boundary, given ĉA = 1 (a wrong ĉA = 0 certifies only if the bound of a
    Bin(n, 1 − pA) count passes 1/2, which at these pA and n is below 1e-20)."""
    k = np.arange(n + 1)
    lower = np.where(k > 0, betaincinv(np.maximum(k, 1), n - k + 1, alpha), 0.0)
    return float(binom.pmf(k, n, p_a)[lower > p_a].sum())


def exact_predict_failure(p_a: float, n: int, alpha: float) -> float:
    """P[PREDICT returns class 0] for two classes with P[class 1] = pA ≥ 1/2; at pA = 1/2, P[it returns
    any class]. Class 0 is returned when it is the top count (ties go to class 0) and the two-sided
    binomial test rejects at α."""
    k1 = np.arange(n + 1)  # count of class 1
    rejects = np.array([binomtest(max(k, n - k), n, 0.5).pvalue <= alpha for k in k1])
    pmf = binom.pmf(k1, n, p_a)
    if p_a == 0.5:
        return float(pmf[rejects].sum())
    return float(pmf[rejects & (n - k1 >= k1)].sum())


def upper_95(failures: int, trials: int) -> float:
    """Upper end of the two-sided 95 % Clopper–Pearson interval of the failure rate."""
    return float(binomtest(failures, trials).proportion_ci(0.95, method="exact").high)


def certify_trials(p_a: float, trials: int = TRIALS, offset: int = 0) -> dict:
    alpha, n0, n = CERTIFY["alpha"], CERTIFY["n0"], CERTIFY["n"]
    distance = SIGMA * norm.ppf(p_a)
    x, model = linear_case(distance)
    smooth = Smooth(model, 2, SIGMA)
    failures = 0
    for trial in range(trials):
        prediction, radius = smooth.certify(x, n0, n, alpha, batch_size=n, generator=offset + trial)
        failures += (prediction not in (1, ABSTAIN)) or radius > distance + 1e-9
    return dict(what="CERTIFY", p_a=p_a, distance=distance, alpha=alpha, n=n, trials=trials, failures=failures,
                upper_95=upper_95(failures, trials), exact=exact_certify_failure(p_a, n, alpha))


def predict_trials(p_a: float, trials: int = TRIALS, offset: int = 0) -> dict:
    alpha, n = PREDICT["alpha"], PREDICT["n"]
    distance = SIGMA * norm.ppf(p_a)
    x, model = linear_case(distance)
    smooth = Smooth(model, 2, SIGMA)
    failures = 0
    for trial in range(trials):
        prediction = smooth.predict(x, n, alpha, batch_size=n, generator=offset + trial)
        failures += prediction != ABSTAIN if p_a == 0.5 else prediction not in (1, ABSTAIN)
    return dict(what="PREDICT", p_a=p_a, distance=distance, alpha=alpha, n=n, trials=trials, failures=failures,
                upper_95=upper_95(failures, trials), exact=exact_predict_failure(p_a, n, alpha))


def all_trials(trials: int = TRIALS) -> list[dict]:
    rows = [certify_trials(p, trials, offset=1_000_000 * i) for i, p in enumerate(CERTIFY_P_A)]
    rows += [predict_trials(p, trials, offset=1_000_000 * (10 + i)) for i, p in enumerate(PREDICT_P_A)]
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| algorithm | pA | distance to the boundary | n | α | trials | failures | observed rate | "
             "95 % upper bound | exact rate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['p_a']:g} | {r['distance']:.4f} | {r['n']} | {r['alpha']:g} | {r['trials']} | "
                     f"{r['failures']} | {r['failures'] / r['trials']:.4f} | {r['upper_95']:.4f} | {r['exact']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    began = time.perf_counter()
    rows = all_trials(args.trials)
    print(markdown(rows))
    print(f"\n{time.perf_counter() - began:.0f} s, one torch thread")
    bad = [r for r in rows if r["failures"] > binom.ppf(1 - 1e-4, r["trials"], r["alpha"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
