"""CERTIFY and PREDICT keep their α guarantee at scale: 2,000 seeded trials per distance on a linear
classifier with known pA (bench/bench_guarantee.py runs the same trials and prints the README's table).

The failure count must lie within the binomial tolerance of α (a one-sided 1e-4 test), and, so the test
can fail for a broken bound in either direction, near the exact failure probability computed
independently (scipy's beta / binomial functions, not the engine's code)."""

import importlib.util
from pathlib import Path

import pytest
from scipy.stats import binom

spec = importlib.util.spec_from_file_location("bench_guarantee",
                                              Path(__file__).parents[1] / "bench" / "bench_guarantee.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def check(row):
    trials, failures, exact, alpha = row["trials"], row["failures"], row["exact"], row["alpha"]
    assert trials >= 2000
    assert exact <= alpha, row  # the bound itself is valid (independent computation)
    assert failures <= binom.ppf(1 - 1e-4, trials, alpha), row  # observed: at most an α fraction
    # ...and the trials measure what they claim: the failures occur about as often as exactly computed
    assert binom.ppf(1e-4, trials, exact) <= failures <= binom.ppf(1 - 1e-4, trials, exact), row


@pytest.mark.slow
@pytest.mark.parametrize("p_a", bench.CERTIFY_P_A)
def test_certify_radius_passes_the_boundary_at_most_an_alpha_fraction_over_2000_trials(p_a):
    index = bench.CERTIFY_P_A.index(p_a)
    check(bench.certify_trials(p_a, bench.TRIALS, offset=1_000_000 * index))


@pytest.mark.slow
@pytest.mark.parametrize("p_a", bench.PREDICT_P_A)
def test_predict_returns_a_wrong_class_at_most_an_alpha_fraction_over_2000_trials(p_a):
    index = bench.PREDICT_P_A.index(p_a)
    check(bench.predict_trials(p_a, bench.TRIALS, offset=1_000_000 * (10 + index)))


def test_exact_failure_rates_against_direct_sums():
    # CERTIFY at n = 3, α = 0.5: the bound is the median of Beta(k, 4 − k): 0.206, 0.5, 0.794 for k = 1, 2, 3;
    # it exceeds pA = 0.45 for k ≥ 2, so the exact rate is P[Bin(3, 0.45) ≥ 2] = 3·0.45²·0.55 + 0.45³
    assert bench.exact_certify_failure(0.45, 3, 0.5) == pytest.approx(3 * 0.45 ** 2 * 0.55 + 0.45 ** 3)
    # PREDICT at n = 10, α = 0.05, pA = 1/2: the two-sided test rejects for k ≤ 1 or k ≥ 9 (p = 22/1024)
    assert bench.exact_predict_failure(0.5, 10, 0.05) == pytest.approx(22 / 1024)
