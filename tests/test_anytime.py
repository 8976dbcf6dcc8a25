"""Anytime-valid CERTIFY (engine/anytime.py): the confidence sequence holds at every look at once, stopping
when the bound looks good keeps the (1 − α) guarantee (where the fixed-n bound does not), radius decisions
are what they say, and the stop rules fire when they should.

The linear binary classifier of test_smoothing has a known pA = Φ(dist/σ), so the exact certified radius
is dist (Cohen et al., Theorem 2) and an overstep is a radius > dist.
"""

import math

import numpy as np
import pytest
from scipy.stats import beta, binom, norm

from robustlens.engine.anytime import (AnytimeCertificate, AnytimeUpdate, BinomialConfidenceSequence,
                                       StopSignal, anytime_ceiling, anytime_max_radius, decide_radius,
                                       look_schedule)
from robustlens.engine.smoothing import ABSTAIN, Certificate, Smooth

from test_smoothing import linear_case


def upper_tolerance(trials: int, rate: float, tail: float = 1e-3) -> int:
    """The count of events of probability ≤ ``rate`` that ``trials`` trials exceed with probability ≤ tail."""
    return int(binom.isf(tail, trials, rate))


# ---------------------------------------------------------------- the schedule and the sequence


def test_look_schedule_is_geometric_fixed_and_ends_at_max_n():
    looks = look_schedule(100_000)
    assert looks[0] == 100 and looks[-1] == 100_000
    assert all(b > a for a, b in zip(looks, looks[1:]))
    assert all(b <= 2 * a for a, b in zip(looks, looks[1:]))  # each look at most doubles the samples
    assert len(looks) == 11
    assert look_schedule(50) == (50,)
    assert look_schedule(1000, first_look=10, growth=10) == (10, 100, 1000)
    for bad in ((0,), (10, 0), (10, 5, 1.0)):
        with pytest.raises(ValueError):
            look_schedule(*bad)


def test_levels_sum_to_alpha_and_the_ceiling_is_all_agree():
    sequence = BinomialConfidenceSequence(100_000, 0.001)
    assert math.isclose(sequence.level * len(sequence.looks), 0.001)
    # all max_n trials agreeing: the Clopper–Pearson bound at level α/K is (α/K)^(1/max_n)
    assert math.isclose(beta.ppf(sequence.level, 100_000, 1), sequence.ceiling, rel_tol=1e-9)
    assert math.isclose(anytime_ceiling(100_000, 0.001), sequence.ceiling)
    assert math.isclose(anytime_max_radius(0.25, 100_000, 0.001), 0.25 * norm.ppf(sequence.ceiling))
    # the price of anytime validity: below the fixed-n ceiling α^(1/n), but only by log K
    fixed = 0.25 * norm.ppf(0.001 ** (1 / 100_000))
    assert 0.95 * fixed < anytime_max_radius(0.25, 100_000, 0.001) < fixed


def test_sequence_bounds_are_running_extremes_of_clopper_pearson_at_each_look():
    sequence = BinomialConfidenceSequence(1000, 0.05, first_look=100)
    level = 0.05 / len(sequence.looks)
    rng = np.random.default_rng(3)
    successes, lowers, uppers = 0, [], []
    for look in sequence.looks:
        successes += int(rng.binomial(look - (sequence.looks[sequence.looks_done - 1] if sequence.looks_done else 0), 0.7))
        sequence.observe(successes, look)
        lowers.append(beta.ppf(level, successes, look - successes + 1))
        uppers.append(beta.ppf(1 - level, successes + 1, look - successes))
        assert math.isclose(sequence.lower, max(lowers), rel_tol=1e-12)
        assert math.isclose(sequence.upper, min(uppers), rel_tol=1e-12)
    with pytest.raises(ValueError):
        sequence.observe(successes, 2000)


def test_confidence_sequence_covers_p_at_every_look_at_once():
    """Simulated Bernoulli streams: the fraction of runs in which the lower (or the upper) bound crosses
    p at *any* look stays within the binomial tolerance of α, while one fixed-n bound per look, each at
    level α, crosses at some look far more often."""
    p, alpha, max_n, runs = 0.9, 0.05, 3000, 4000
    rng = np.random.default_rng(11)
    looks = look_schedule(max_n)
    increments = np.diff((0,) + looks)
    lower_misses = upper_misses = fixed_misses = 0
    for _ in range(runs):
        successes = np.cumsum(rng.binomial(increments, p))
        sequence = BinomialConfidenceSequence(max_n, alpha)
        below = above = fixed = False
        for k, look in zip(successes, looks):
            sequence.observe(int(k), look)
            below |= sequence.lower > p
            above |= sequence.upper < p
            fixed |= beta.ppf(alpha, k, look - k + 1) > p
        lower_misses += below
        upper_misses += above
        fixed_misses += fixed
    assert lower_misses <= upper_tolerance(runs, alpha)
    assert upper_misses <= upper_tolerance(runs, alpha)
    assert fixed_misses > upper_tolerance(runs, alpha, 1e-9)


# ---------------------------------------------------------------- certify_anytime on a known pA


def _linear_smooth(distance: float, sigma: float, seed: int = 0):
    x, model = linear_case(distance, seed)
    return x, Smooth(model, 2, sigma, optimize=False)


@pytest.mark.slow
def test_stopping_when_the_radius_exceeds_the_truth_oversteps_at_most_alpha():
    """The issue's experiment: σ = 0.5, α = 0.05, n ≤ 3,000 in chunks of 100, stop at the first update
    whose radius exceeds the true distance. certify_anytime oversteps in at most an α fraction of 1,200
    seeded trials (binomial tolerance); the fixed-n bound re-checked at every chunk, on the same samples,
    oversteps far more often."""
    sigma, alpha, max_n, trials = 0.5, 0.05, 3000, 1200
    distance = sigma * norm.ppf(0.9)  # pA = 0.9
    x, smooth = _linear_smooth(distance, sigma)
    anytime_oversteps = fixed_oversteps = 0
    for trial in range(trials):
        anytime_over = fixed_over = False
        for update in smooth.certify_anytime(x, 10, max_n, alpha, batch_size=100, generator=trial):
            if update.phase != "estimation":
                continue
            assert isinstance(update, AnytimeUpdate) and update.so_far.radius == update.radius
            fixed_over |= update.radius_fixed_n > distance
            if update.radius > distance:
                anytime_over = True
                break  # the lecturer stops: the bound looks good
        anytime_oversteps += anytime_over
        fixed_oversteps += fixed_over
    assert anytime_oversteps <= upper_tolerance(trials, alpha)
    assert fixed_oversteps > upper_tolerance(trials, alpha, 1e-9)
    assert fixed_oversteps > 3 * alpha * trials  # the issue measured 23 %


def test_updates_chunks_and_the_final_certificate():
    sigma, alpha = 0.5, 0.01
    x, smooth = _linear_smooth(0.6, sigma)
    updates = list(smooth.certify_anytime(x, 50, 5000, alpha, batch_size=1000, generator=4))
    selection = [u for u in updates if u.phase == "selection"]
    estimation = [u for u in updates if u.phase == "estimation"]
    assert [u.drawn for u in selection] == [50]
    looks = look_schedule(5000)
    # chunks of at most batch_size, cut at every look
    drawn = [u.drawn for u in estimation]
    assert set(looks) <= set(drawn) and drawn[-1] == 5000
    assert all(0 < b - a <= 1000 for a, b in zip([0] + drawn, drawn))
    assert all(u.certificate is None for u in updates[:-1])
    cert = updates[-1].certificate
    assert isinstance(cert, AnytimeCertificate) and isinstance(cert, Certificate)
    assert cert.n == 5000 and cert.samples == 5050 and cert.looks == len(looks) == cert.looks_done
    assert cert.stop_reason.startswith("max_n")
    # the anytime bound is the running maximum of Clopper–Pearson at α/K over the looks, below the fixed-n one
    level = alpha / len(looks)
    at_looks = [u for u in estimation if u.drawn in looks]
    expected = max(beta.ppf(level, u.counts[u.top_class], u.drawn - u.counts[u.top_class] + 1) for u in at_looks)
    assert math.isclose(cert.pA_lower, expected, rel_tol=1e-10)
    assert cert.pA_lower < cert.pA_lower_fixed_n <= cert.pA_upper
    assert math.isclose(cert.radius, sigma * norm.ppf(cert.pA_lower), rel_tol=1e-10)
    assert cert.radius < cert.radius_fixed_n and cert.max_radius < cert.max_radius_fixed_n
    # bounds never move the wrong way; between looks they stay put
    lowers = [u.pA_lower for u in estimation]
    uppers = [u.pA_upper for u in estimation]
    assert lowers == sorted(lowers) and uppers == sorted(uppers, reverse=True)
    trace = updates[-1].trace
    assert list(trace.drawn) == drawn and np.allclose(trace.anytime_lower, lowers)
    assert 0 <= cert.radius_general <= cert.radius


def test_target_radius_stops_early_and_out_of_reach_stops_at_once():
    sigma = 0.5
    x, smooth = _linear_smooth(2.0, sigma)  # pA = Φ(4) ≈ 0.99997: every sample agrees
    updates = list(smooth.certify_anytime(x, 100, 100_000, 0.001, target_radius=0.5, generator=1))
    cert = updates[-1].certificate
    assert cert.certified_at_target and cert.n == 100 and cert.samples == 200
    assert cert.stop_reason.startswith("target reached")
    # beyond the anytime ceiling: decided before a single sample
    ceiling = anytime_max_radius(sigma, 100_000, 0.001)
    updates = list(smooth.certify_anytime(x, 100, 100_000, 0.001, target_radius=ceiling + 0.01, generator=1))
    assert len(updates) == 1 and updates[0].certificate.samples == 0
    assert updates[0].certificate.prediction == ABSTAIN and "out of reach within max_n" in updates[0].certificate.stop_reason
    # pA = Φ(0.6) ≈ 0.73 < Φ(1): the upper bound soon shows R = 0.5 cannot be certified at any n
    x, smooth = _linear_smooth(0.3, sigma)
    cert = list(smooth.certify_anytime(x, 100, 100_000, 0.001, target_radius=0.5, generator=2))[-1].certificate
    assert not cert.certified_at_target and cert.n < 20_000 and cert.stop_reason.startswith("out of reach: pA ≤")
    assert cert.pA_upper < norm.cdf(0.5 / sigma) and cert.prediction == 1 and 0 < cert.radius < 0.3
    # no target: a run stops once not even pA > 1/2 is reachable (the ceiling given the evidence)
    sequence = BinomialConfidenceSequence(1000, 0.01)
    for look in sequence.looks[:-1]:
        sequence.observe(0, look)
    assert sequence.best_reachable(0, sequence.looks[-2]) < 0.5


def test_bad_arguments_raise():
    x, smooth = _linear_smooth(0.5, 0.5)
    for kwargs in (dict(n0=0), dict(max_n=0), dict(alpha=1.0), dict(batch_size=0), dict(target_radius=-1.0),
                   dict(target_radius=float("nan"))):
        arguments = dict(n0=10, max_n=100, alpha=0.01, batch_size=10) | kwargs
        with pytest.raises(ValueError):
            list(smooth.certify_anytime(x, arguments.pop("n0"), arguments.pop("max_n"), arguments.pop("alpha"),
                                        **arguments))


# ---------------------------------------------------------------- radius decisions


@pytest.mark.parametrize("distance,radius", [(0.3, 0.25), (0.6, 0.5), (0.2, 0.5), (1.0, 0.5), (0.5, 0.5)])
def test_radius_decision_agrees_with_its_definition(distance, radius):
    """Certified at R exactly when the anytime bound certifies R, with the fewest samples: the untargeted
    run on the same draws reaches R first at the very sample count where the decision stopped; a decision
    against R stopped because R was out of reach, or at max_n."""
    sigma, alpha, max_n = 0.5, 0.001, 20_000
    x, smooth = _linear_smooth(distance, sigma)
    for seed in range(4):
        decision = decide_radius(smooth, x, radius, 100, max_n, alpha, 1000, generator=seed)
        cert = decision.certificate
        assert decision.samples == 100 + cert.n
        assert decision.certified == (cert.prediction != ABSTAIN and cert.radius >= radius)
        if decision.certified:
            assert cert.pA_lower >= norm.cdf(radius / sigma) - 1e-12
        else:
            assert cert.n == max_n or cert.pA_upper < norm.cdf(radius / sigma) or "within max_n" in cert.stop_reason
        untargeted = [u for u in smooth.certify_anytime(x, 100, max_n, alpha, 1000, generator=seed)
                      if u.phase == "estimation"]
        first = next((u.drawn for u in untargeted if u.radius >= radius and u.pA_lower >= 0.5), None)
        if decision.certified:
            assert first == cert.n
        else:
            assert first is None or first > cert.n


def test_radius_decisions_are_wrong_at_most_alpha():
    """True distance just below R: a certificate at R is a false one; it happens in at most an α fraction."""
    sigma, alpha, trials = 0.5, 0.05, 400
    x, smooth = _linear_smooth(0.45, sigma)
    wrong = sum(decide_radius(smooth, x, 0.5, 10, 4000, alpha, 500, generator=t).certified for t in range(trials))
    assert wrong <= upper_tolerance(trials, alpha)


def test_stop_signal():
    signal = StopSignal()
    assert not signal.stopped
    signal.stop()
    assert signal.stopped


def test_fast_clopper_pearson_equals_scipy_stats():
    from robustlens.engine.anytime import clopper_pearson_lower, clopper_pearson_upper
    from robustlens.engine.smoothing_bounds import lower_confidence_bound, upper_confidence_bound

    for k, n, level in [(0, 10, 0.05), (1, 10, 0.05), (7, 10, 1e-4), (990, 1000, 1e-3 / 11), (100, 100, 1e-5),
                        (5000, 10000, 0.01), (99_999, 100_000, 1e-4)]:
        assert math.isclose(clopper_pearson_lower(k, n, level), lower_confidence_bound(k, n, level),
                            rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(clopper_pearson_upper(k, n, level), upper_confidence_bound(k, n, level),
                            rel_tol=1e-9, abs_tol=1e-12)


def test_ceiling_curves_are_the_all_agree_bounds():
    from robustlens.engine.anytime import ceiling_curves

    n, fixed, anytime = ceiling_curves(0.5, 10_000, 0.001)
    assert n[0] == 100 and n[-1] == 10_000 and set(look_schedule(10_000)) <= set(n.astype(int))
    assert np.allclose(fixed, 0.5 * norm.ppf(0.001 ** (1 / n)))
    assert np.all(anytime < fixed) and np.all(np.diff(anytime) >= 0)
    assert math.isclose(anytime[-1], anytime_max_radius(0.5, 10_000, 0.001))
    # an all-agree run reaches the anytime ceiling at every look
    x, smooth = _linear_smooth(3.0, 0.5)
    for update in smooth.certify_anytime(x, 10, 10_000, 0.001, batch_size=1000, generator=0):
        if update.phase == "estimation" and update.drawn in look_schedule(10_000):
            assert math.isclose(update.radius, float(np.interp(update.drawn, n, anytime)), rel_tol=1e-9)


# ---------------------------------------------------------------- robustlens certify --radius, analyze


def test_radius_decision_tsv_round_trips_through_analyze(tmp_path, capsys, zoo_model, fmnist_test):
    """Each row is decide_radius on that image with seed idx; analyze reads certified accuracy at R and
    the mean samples back (beside an ordinary certify TSV); a rerun keeps the rows; bad flags are one line."""
    from robustlens.engine.certify_tsv import DECISION_TSV_HEADER, read_decision_tsv
    from robustlens.engine.cli import main

    out = tmp_path / "decide.tsv"
    argv = ["certify", "--model", "fashion-mnist/noise-0.50", "--radius", "0.5", "--max-n", "3000", "--skip", "1000",
            "--max", "4000", "--alpha", "0.01", "--out", str(out), "--threads", "1"]
    assert main(argv) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# robustlens certify --radius settings {") and lines[1] == DECISION_TSV_HEADER
    table = read_decision_tsv(out)
    assert list(table.idx) == [0, 1000, 2000, 3000] and table.radius == 0.5 and table.settings["max_n"] == 3000
    smooth = Smooth.from_model(zoo_model("fashion-mnist/noise-0.50"))
    for row, idx in enumerate(table.idx):
        decision = decide_radius(smooth, fmnist_test.images[idx], 0.5, 100, 3000, 0.01, 1000, generator=int(idx))
        assert (table.prediction[row], table.certified[row], table.samples[row]) == \
               (decision.prediction, decision.certified, decision.samples)
        assert table.label[row] == fmnist_test.labels[idx]
        assert table.correct[row] == (decision.prediction == fmnist_test.labels[idx])
    ordinary = tmp_path / "fixed.tsv"
    ordinary.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t9\t9\t0.6\t1\t0:00:01\n1\t2\t2\t0.4\t1\t0:00:01\n")
    capsys.readouterr()
    assert main(["analyze", str(out), str(ordinary), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    accuracy = float(np.mean(table.certified & table.correct))
    assert f"R = 0.5, 4 images, certified accuracy at R {accuracy:.3f}, {table.samples.mean():,.0f} samples" in printed
    assert "beside fixed: certified accuracy at R = 0.5 0.500" in printed
    assert "radius" in printed and "0.25" in printed  # the ordinary table still gets its radius table
    # a rerun with the same settings keeps every row; other settings are refused in one line
    before = out.read_text()
    assert main(argv) == 0 and out.read_text() == before
    assert main(argv[:4] + ["0.25"] + argv[5:]) == 1
    err = capsys.readouterr().err
    assert "other settings" in err and "Traceback" not in err
    assert main(argv[:3] + argv[5:]) == 1  # --max-n without --radius
    assert "--radius and --max-n go together" in capsys.readouterr().err
