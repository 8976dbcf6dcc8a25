"""Anytime-valid CERTIFY: a confidence sequence for pA, so the certificate holds whenever you stop.

Cohen et al.'s CERTIFY fixes n in advance: its Clopper–Pearson bound holds at that n only. Re-checking the
bound as samples arrive and stopping when it looks good oversteps the truth far more often than α. A
*confidence sequence* is a sequence of bounds (L_t) with P(∀t: pA ≥ L_t) ≥ 1 − α, so the bound at any
moment — even one chosen by looking at the data — is a valid certificate.

The construction (a union bound over a geometric schedule of exact looks; Howard, Ramdas, McAuliffe &
Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist., Sec. 3 —
"stitching" fixed-sample bounds over geometrically spaced epochs; used for randomized smoothing by
Voráček 2024, NeurIPS): fix, before any sample is drawn, looks n_1 < n_2 < … < n_K = max_n with
n_{k+1} ≈ growth · n_k, and at look k take the exact one-sided Clopper–Pearson bound L_k at level
α_k = α / K. Proof: each L_k is a fixed-n bound, P(pA < L_k) ≤ α_k, so
P(∃k: pA < L_k) ≤ Σ_k α_k = α (Boole's inequality). On the complementary event every L_k ≤ pA, hence also
the running maximum max_{k' ≤ k} L_k', which is the bound reported after look k and carried unchanged
until the next look. The same holds for the upper bounds U_k (running minimum). Stopping, for any
reason the data suggest, cannot break a statement that holds for all k at once.

Its ceiling: the largest lower bound any run can reach is (α/K)^(1/max_n) (all max_n samples agree),
a little below the fixed-n ceiling α^(1/max_n) — the price of anytime validity, paid in log K.

Radius decisions ("is x certified at R?", Voráček 2024): stop as soon as σ Φ⁻¹(L) ≥ R (certified; wrong
with probability ≤ α, from the lower sequence alone), or as soon as R is out of reach: the upper sequence
says pA ≤ U < Φ(R/σ) (then no n certifies R; the upper sequence at its own level α only governs how often
this gives up on a certifiable image, never a false certificate), or even max_n samples all agreeing
could not lift L to Φ(R/σ) (the ceiling, a deterministic fact).

``certify_anytime`` runs it on a :class:`~robustlens.engine.smoothing.Smooth` (``Smooth.certify_anytime``
calls it): selection of ĉA by n0 separate samples as in CERTIFY, then estimation chunks cut at the looks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from scipy.special import betaincinv, ndtr, ndtri
from scipy.stats import norm

from .jobs import ThreadFlag
from .smoothing import ABSTAIN, Certificate, CertifyUpdate, Smooth, _make_generator

FIRST_LOOK = 100        # samples at the first look: an image whose samples all agree is decided there
GROWTH = 2.0            # n_{k+1} / n_k: each look at most doubles the samples of the one before


# ---------------------------------------------------------------- the confidence sequence


def clopper_pearson_lower(successes, trials: int, level: float):
    """One-sided (1 − level) Clopper–Pearson lower bound: the level-quantile of Beta(k, n − k + 1), 0 at
    k = 0 — ``scipy.stats.beta.ppf(level, k, n − k + 1)`` (smoothing_bounds.lower_confidence_bound),
    evaluated with ``scipy.special.betaincinv``, the function scipy.stats itself calls, minus its per-call
    argument checks (about 100× faster; this runs after every chunk). Vectorised over ``successes``."""
    k = np.asarray(successes, dtype=np.float64)
    value = betaincinv(np.maximum(k, 1.0), trials - k + 1.0, level)
    return np.where(k > 0, value, 0.0)


def clopper_pearson_upper(successes, trials: int, level: float):
    """One-sided (1 − level) upper bound, 1 at k = n: 1 − the lower bound on the failures' proportion
    (the same Beta quantile, by the symmetry of Beta(k + 1, n − k); exact for tiny levels)."""
    return 1.0 - clopper_pearson_lower(trials - np.asarray(successes, dtype=np.float64), trials, level)


def _radius(sigma: float, p_lower: float) -> float:
    """σ Φ⁻¹(pA_lower) (Theorem 1, pB = 1 − pA); 0 when nothing is certified."""
    return float(sigma * ndtri(p_lower)) if p_lower > 0.5 else 0.0


def _radii(sigma: float, p) -> np.ndarray:
    """σ Φ⁻¹(p) of an array, 0 where p ≤ 1/2 (inf at p = 1)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p > 0.5, sigma * ndtri(np.clip(p, 0.5, 1.0)), 0.0)


def _general_radius(sigma: float, p_a: float, p_b: float) -> float:
    """Theorem 1: σ/2 (Φ⁻¹(pA) − Φ⁻¹(pB)) (smoothing_bounds.certified_radius with pB); 0 unless pA > pB."""
    return float(sigma / 2 * (ndtri(p_a) - ndtri(p_b))) if p_a > p_b else 0.0


def look_schedule(max_n: int, first_look: int = FIRST_LOOK, growth: float = GROWTH) -> tuple[int, ...]:
    """The looks n_1 < … < n_K = max_n: first_look · growth^k (rounded up), then max_n. Fixed before any
    sample is drawn (the union bound needs that)."""
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    if first_look < 1:
        raise ValueError(f"the first look must be at least 1 sample, got {first_look}")
    if not growth > 1:
        raise ValueError(f"the looks' growth must exceed 1, got {growth}")
    looks, n = [], float(first_look)
    while math.ceil(n) < max_n:
        if not looks or math.ceil(n) > looks[-1]:
            looks.append(math.ceil(n))
        n *= growth
    looks.append(max_n)
    return tuple(looks)


def anytime_ceiling(max_n: int, alpha: float, first_look: int = FIRST_LOOK, growth: float = GROWTH) -> float:
    """The largest pA lower bound any anytime run can reach: (α/K)^(1/max_n), all max_n samples agreeing."""
    return (alpha / len(look_schedule(max_n, first_look, growth))) ** (1.0 / max_n)


def anytime_max_radius(sigma: float, max_n: int, alpha: float, first_look: int = FIRST_LOOK,
                       growth: float = GROWTH) -> float:
    """σ Φ⁻¹((α/K)^(1/max_n)): no anytime run with at most max_n samples certifies more."""
    return float(sigma * norm.ppf(anytime_ceiling(max_n, alpha, first_look, growth)))


class BinomialConfidenceSequence:
    """Lower and upper (1 − α) confidence sequences for a Bernoulli mean p, by the union bound over the
    looks of :func:`look_schedule` (module docstring). Feed it the running (successes, trials) at every
    look; ``lower`` / ``upper`` are valid at every moment simultaneously."""

    def __init__(self, max_n: int, alpha: float, first_look: int = FIRST_LOOK, growth: float = GROWTH):
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.max_n = int(max_n)
        self.alpha = float(alpha)
        self.looks = look_schedule(self.max_n, first_look, growth)
        self.level = self.alpha / len(self.looks)   # α_k = α / K at every look
        self.ceiling = self.level ** (1.0 / self.max_n)  # the most L can reach: all max_n trials succeed
        self.lower = 0.0
        self.upper = 1.0
        self.looks_done = 0

    def next_look(self) -> int | None:
        """Trials at the next look, or None after the last."""
        return self.looks[self.looks_done] if self.looks_done < len(self.looks) else None

    def observe(self, successes: int, trials: int) -> None:
        """The running totals at the next look (ValueError when ``trials`` is not that look)."""
        if trials != self.next_look():
            raise ValueError(f"the next look is at {self.next_look()} trials, not {trials}")
        self.looks_done += 1
        self.lower = max(self.lower, float(clopper_pearson_lower(successes, trials, self.level)))
        self.upper = min(self.upper, float(clopper_pearson_upper(successes, trials, self.level)))

    def best_reachable(self, successes: int, trials: int) -> float:
        """The largest lower bound still reachable within max_n: every further trial a success, at each
        remaining look (the ceiling given the evidence so far)."""
        remaining = np.asarray(self.looks[self.looks_done:], dtype=np.float64)
        if remaining.size == 0:
            return self.lower
        reachable = betaincinv(successes + remaining - trials, trials - successes + 1.0, self.level)
        return max(self.lower, float(reachable.max()))  # every remaining look lies beyond ``trials``


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class AnytimeTrace:
    """Both bounds after every chunk of one run, on the same samples: ``drawn`` samples, the anytime
    lower / upper bounds on pA, and the fixed-n Clopper–Pearson lower bound at level α (what CERTIFY would
    say had n been fixed in advance at exactly that count; as a stopping rule it is not valid)."""

    drawn: np.ndarray
    anytime_lower: np.ndarray
    anytime_upper: np.ndarray
    fixed_lower: np.ndarray
    radius_lower: np.ndarray      # the same as radii σ Φ⁻¹(p), 0 where p ≤ 1/2
    radius_upper: np.ndarray      # the most any n could certify
    radius_fixed: np.ndarray


@dataclass(frozen=True)
class AnytimeCertificate(Certificate):
    """A :class:`Certificate` from ``certify_anytime``: ``n`` is the estimation samples actually used,
    ``pA_lower`` / ``radius`` the confidence sequence's, valid at whatever moment the run stopped."""

    max_n: int = 0
    looks: int = 0                    # K, the looks of the schedule (each at level α / K)
    looks_done: int = 0
    pA_upper: float = 1.0             # the anytime upper bound on pA
    pA_lower_fixed_n: float = 0.0     # the fixed-n Clopper–Pearson bound on the same samples (for contrast)
    radius_fixed_n: float = 0.0
    max_radius_fixed_n: float = 0.0   # σ Φ⁻¹(α^(1/max_n)), the fixed-n ceiling at max_n
    target_radius: float | None = None
    stop_reason: str = ""

    @property
    def samples(self) -> int:
        """Noise samples drawn in all: selection and estimation."""
        return int(self.counts0.sum()) + self.n

    @property
    def pA_hat(self) -> float:
        return self.nA / self.n if self.n else 0.0

    @property
    def certified_at_target(self) -> bool:
        return (self.target_radius is not None and not self.abstained and self.n > 0
                and self.radius >= self.target_radius)


@dataclass(frozen=True)
class AnytimeUpdate(CertifyUpdate):
    """A :class:`CertifyUpdate` of ``certify_anytime``: in the estimation phase ``pA_lower`` / ``radius``
    are the confidence sequence's (valid now), ``so_far`` the certificate if you stop here; the last one
    carries ``certificate``."""

    pA_upper: float = 1.0
    pA_lower_fixed_n: float | None = None
    radius_fixed_n: float | None = None
    reachable_radius: float = 0.0     # the most radius the rest of max_n could still give
    trace: AnytimeTrace | None = None
    so_far: AnytimeCertificate | None = None


class StopSignal(ThreadFlag):
    """Stop (the panel's Stop button): the run ends with the certificate it has so far."""

    def stop(self) -> None:
        self._raise()

    @property
    def stopped(self) -> bool:
        return self._is_raised()


# ---------------------------------------------------------------- CERTIFY, anytime


class _Run:
    """The evidence of one anytime run and the certificate it supports at any moment. ``refresh`` after
    every chunk computes the numbers once (the bounds of the looks, the fixed-n bound, the ceiling)."""

    def __init__(self, smooth: Smooth, n0: int, max_n: int, alpha: float, target_radius, first_look, growth):
        self.smooth, self.sigma, self.n0, self.max_n, self.alpha = smooth, smooth.sigma, n0, max_n, alpha
        self.target = target_radius
        classes = smooth.num_classes
        self.sequence = BinomialConfidenceSequence(max_n, alpha, first_look, growth)
        # the general bound (Theorem 1 with pB bounded apart): every class at every look at level α / (K·C)
        self.class_level = self.sequence.level / classes
        self.class_lower = 0.0                  # ĉA's lower bound at that level
        self.class_upper = np.ones(classes)     # every other class's upper bound at that level
        self.counts0 = np.zeros(classes, dtype=np.int64)
        self.counts = np.zeros(classes, dtype=np.int64)
        self.c_a = -1
        self.drawn = 0
        self.trace: list[tuple[int, float, float, float]] = []
        self.max_radius = _radius(self.sigma, self.sequence.ceiling)
        self.max_radius_fixed_n = _radius(self.sigma, alpha ** (1.0 / max_n))
        self.fixed = 0.0        # the fixed-n Clopper–Pearson bound on the samples so far
        self.reachable = self.sequence.best_reachable(0, 0)
        self.began = time.perf_counter()

    @property
    def n_a(self) -> int:
        return int(self.counts[self.c_a]) if self.c_a >= 0 else 0

    def look(self) -> None:
        self.sequence.observe(self.n_a, self.drawn)
        self.class_lower = max(self.class_lower, float(clopper_pearson_lower(self.n_a, self.drawn, self.class_level)))
        uppers = clopper_pearson_upper(self.counts, self.drawn, self.class_level)
        uppers[self.c_a] = 1.0
        self.class_upper = np.minimum(self.class_upper, uppers)

    def refresh(self) -> None:
        """After a chunk: the fixed-n bound, the reachable ceiling and the trace."""
        self.fixed = float(clopper_pearson_lower(self.n_a, self.drawn, self.alpha)) if self.drawn else 0.0
        self.reachable = self.sequence.best_reachable(self.n_a, self.drawn)
        self.trace.append((self.drawn, self.sequence.lower, self.sequence.upper, self.fixed))

    def stop_reason(self) -> str:
        """Why the run may end now ('' to go on): target reached, out of reach, or max_n drawn."""
        sequence, target = self.sequence, self.target
        radius = _radius(self.sigma, sequence.lower)
        if target is not None and self.drawn and sequence.lower >= 0.5 and radius >= target:
            return f"target reached: certified R = {radius:.3f} ≥ {target:g}"
        wanted = f"R ≥ {target:g}" if target is not None else "any radius"
        needed = max(0.5, float(ndtr(target / self.sigma))) if target is not None else 0.5
        if sequence.upper < needed:
            return f"out of reach: pA ≤ {sequence.upper:.4f} (anytime upper bound), too small for {wanted} at any n"
        best = self.reachable
        if best < 0.5 or (target is not None and _radius(self.sigma, best) < target):
            return (f"out of reach within max_n = {self.max_n:,}: even if every remaining sample agreed, "
                    f"pA ≥ {best:.4f} → R = {_radius(self.sigma, best):.3f}")
        if self.drawn >= self.max_n:
            return f"max_n = {self.max_n:,} samples drawn"
        return ""

    def trace_arrays(self) -> AnytimeTrace:
        columns = np.array(self.trace, dtype=np.float64).reshape(-1, 4).T
        radii = (_radii(self.sigma, column) for column in columns[1:])
        return AnytimeTrace(columns[0].astype(np.int64), columns[1], columns[2], columns[3], *radii)

    def certificate(self, reason: str) -> AnytimeCertificate:
        sequence, n, c_a = self.sequence, self.drawn, self.c_a
        p_lower = sequence.lower
        if n == 0 or p_lower < 0.5:
            prediction, radius = ABSTAIN, 0.0
            abstain = (f"no estimation samples ({reason})" if n == 0 else
                       f"anytime pA lower bound {p_lower:.4f} < 0.5 after {n:,} samples "
                       f"({self.n_a:,} gave class {c_a}, the n0 samples' top class)")
        else:
            prediction, radius, abstain = c_a, _radius(self.sigma, p_lower), ""
        if c_a >= 0:
            others = np.delete(np.arange(self.smooth.num_classes), c_a)
            runner_up = int(others[np.argmax(self.counts[others])])
            p_lower_sim = self.class_lower
            p_upper_b = min(float(self.class_upper[others].max()), 1.0 - p_lower_sim)
        else:
            runner_up, p_lower_sim, p_upper_b = -1, 0.0, 1.0
        return AnytimeCertificate(
            prediction=prediction, radius=radius, top_class=c_a, sigma=self.sigma, n0=self.n0, n=n,
            alpha=self.alpha, counts0=self.counts0.copy(), counts=self.counts.copy(), nA=self.n_a,
            pA_lower=p_lower, max_radius=self.max_radius, runner_up=runner_up,
            pA_lower_simultaneous=p_lower_sim, pB_upper=p_upper_b,
            radius_general=_general_radius(self.sigma, p_lower_sim, p_upper_b) if n else 0.0,
            abstain_reason=abstain, seconds=time.perf_counter() - self.began,
            max_n=self.max_n, looks=len(sequence.looks), looks_done=sequence.looks_done,
            pA_upper=sequence.upper, pA_lower_fixed_n=self.fixed, radius_fixed_n=_radius(self.sigma, self.fixed),
            max_radius_fixed_n=self.max_radius_fixed_n, target_radius=self.target, stop_reason=reason)

    def update(self, phase: str, reason: str | None = None) -> AnytimeUpdate:
        total = self.n0 + self.max_n
        if phase == "selection":
            drawn = int(self.counts0.sum())
            return AnytimeUpdate(phase, self.counts0.copy(), drawn, self.n0, drawn, total, int(self.counts0.argmax()))
        so_far = self.certificate(reason or "stopped by the caller")
        return AnytimeUpdate(
            phase, self.counts.copy(), self.drawn, self.max_n, self.n0 + self.drawn, total, self.c_a,
            self.sequence.lower, so_far.radius, pA_upper=self.sequence.upper, pA_lower_fixed_n=self.fixed,
            radius_fixed_n=so_far.radius_fixed_n, reachable_radius=_radius(self.sigma, self.reachable),
            trace=self.trace_arrays(), so_far=so_far, certificate=so_far if reason is not None else None)


def certify_anytime(smooth: Smooth, x, n0: int, max_n: int, alpha: float, batch_size: int = 1000, *,
                    target_radius: float | None = None, generator=None, first_look: int = FIRST_LOOK,
                    growth: float = GROWTH) -> Iterator[AnytimeUpdate]:
    """Anytime-valid CERTIFY: ĉA from n0 selection samples (as CERTIFY), then estimation samples in chunks
    of at most ``batch_size``, cut at the looks of the confidence sequence; an :class:`AnytimeUpdate` after
    every chunk whose ``pA_lower`` / ``radius`` (and ``so_far``) hold whenever the caller stops. The last
    update carries the :class:`AnytimeCertificate`; the run ends when ``target_radius`` is certified, when
    it is out of reach (the upper sequence, or the ceiling within max_n: with no target, when no radius at
    all can be certified), or at max_n samples."""
    from .smoothing import _check_parameters

    _check_parameters(max_n, alpha, batch_size, n0)
    if target_radius is not None and not (target_radius >= 0 and math.isfinite(target_radius)):
        raise ValueError(f"the target radius must be a finite number ≥ 0, got {target_radius}")
    run = _Run(smooth, n0, max_n, alpha, target_radius, first_look, growth)
    reason = run.stop_reason()
    if reason:  # the target lies beyond the ceiling: no sample can help
        yield run.update("estimation", reason)
        return
    generator = _make_generator(generator, smooth.device)
    for chunk in smooth.sample_chunks(x, n0, batch_size, generator):
        run.counts0 += chunk
        yield run.update("selection")
    run.c_a = int(run.counts0.argmax())
    while True:
        segment = run.sequence.next_look() - run.drawn
        for chunk in smooth.sample_chunks(x, segment, batch_size, generator):
            run.counts += chunk
            run.drawn += int(chunk.sum())
            if run.drawn == run.sequence.next_look():
                run.look()
            run.refresh()
            reason = run.stop_reason()
            yield run.update("estimation", reason or None)
            if reason:
                return


# ---------------------------------------------------------------- radius decisions


@dataclass(frozen=True)
class RadiusDecision:
    """Whether image x is certified at L2 radius ``radius``, decided with the fewest samples."""

    radius: float
    certified: bool
    prediction: int               # ĉA when the anytime bound reached pA ≥ 1/2, else ABSTAIN
    samples: int                  # noise samples drawn in all (selection + estimation)
    seconds: float
    certificate: AnytimeCertificate = field(repr=False)


def decide_radius(smooth: Smooth, x, radius: float, n0: int, max_n: int, alpha: float, batch_size: int = 1000,
                  generator=None, first_look: int = FIRST_LOOK, growth: float = GROWTH) -> RadiusDecision:
    """The sequential test "is x certified at ``radius``?" at level α: certified means g(x) = ĉA on the
    whole ball of that radius except with probability ≤ α. Runs :func:`certify_anytime` with the target."""
    certificate = None
    for update in certify_anytime(smooth, x, n0, max_n, alpha, batch_size, target_radius=radius,
                                  generator=generator, first_look=first_look, growth=growth):
        certificate = update.certificate
    return RadiusDecision(radius, certificate.certified_at_target, certificate.prediction, certificate.samples,
                          certificate.seconds, certificate)


# ---------------------------------------------------------------- for display


def ceiling_curves(sigma: float, max_n: int, alpha: float, first_look: int = FIRST_LOOK, growth: float = GROWTH,
                   points: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, fixed-n ceiling σ Φ⁻¹(α^(1/n)), anytime ceiling σ Φ⁻¹((α/K)^(1/n_k)) with n_k the last look ≤ n;
    0 before the first look) for n from the first look to max_n, log-spaced plus every look: the most each
    bound can certify after n samples — all of them agreeing."""
    looks = np.asarray(look_schedule(max_n, first_look, growth), dtype=np.float64)
    n = np.unique(np.concatenate([np.geomspace(min(looks[0], max_n), max_n, points), looks]))
    fixed = sigma * ndtri(alpha ** (1.0 / n))
    last_look = looks[np.maximum(np.searchsorted(looks, n, side="right") - 1, 0)]
    anytime = np.where(n >= looks[0], sigma * ndtri((alpha / len(looks)) ** (1.0 / last_look)), 0.0)
    return n, np.maximum(fixed, 0.0), np.maximum(anytime, 0.0)

