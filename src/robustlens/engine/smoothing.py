"""Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): the smoothed classifier, its certificate, and
the job that streams the evidence as it piles up.

The smoothed classifier is g(x) = argmax_c P[f(x + ε) = c] with ε ~ N(0, σ²I). Theorem 1: if the top
class has probability at least pA and every other class at most pB, g is constant on the L2 ball of
radius R = σ/2 (Φ⁻¹(pA) − Φ⁻¹(pB)); with pB = 1 − pA this is R = σ Φ⁻¹(pA). ``Smooth.certify`` and
``Smooth.predict`` are CERTIFY and PREDICT (the paper's pseudocode, Sec. 3.2) line by line; the names are
the paper's (n0, n, alpha, cA, nA, pA).

Monte Carlo noise is drawn ``batch_size`` samples at a time into one preallocated buffer, so memory is
flat in n. A seed (or a torch.Generator) makes a run reproducible; the streaming form
(``certify_steps``) draws exactly the same noise as the plain form, so the two give the same answer.

Speed on the CPU (see bench/bench_certify.py): the base classifier is run under inference_mode, in
forward sub-batches small enough for the activations to stay in cache, and — when the model can be traced
and the traced copy reproduces it — as a frozen TorchScript graph whose convolutions use prepacked oneDNN
(MKLDNN) weights and a blocked memory layout kept from one layer to the next.

The bounds and radii (Clopper–Pearson, Theorem 1, the ceiling) are in ``smoothing_bounds.py``; the
reference TSV format in ``certify_tsv.py``; the GUI's jobs by model key and certified accuracy over a
dataset in ``certify_jobs.py``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from .accelerate import check_precision, precision_forward, to_channels_last, uses_channels_last
from .checks import (check_count, check_finite_outputs, check_images, check_probability, check_sigma,
                     model_input_shape)
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress
from .smoothing_bounds import (certified_radius, expected_noise_norm, lower_confidence_bound,
                               max_certifiable_radius, upper_confidence_bound)
from .zoo import catalogue

ABSTAIN = -1

# Forward sub-batch on the CPU: conv activations of 256 28×28 images stay in cache; measured fastest among
# 64…1000 for the built-in CNN (bench/bench_certify.py), while the noise chunk (batch_size) can be larger.
CPU_FORWARD_BATCH = 256


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class Certificate:
    """Everything CERTIFY found for one image; ``prediction`` and ``radius`` are the paper's output."""

    prediction: int              # ĉA, or ABSTAIN
    radius: float                # σ Φ⁻¹(pA_lower); 0.0 when abstaining
    top_class: int               # ĉA, the guess from the n0 selection samples (kept when abstaining)
    sigma: float
    n0: int
    n: int
    alpha: float
    counts0: np.ndarray          # class counts of the n0 selection samples
    counts: np.ndarray           # class counts of the n estimation samples
    nA: int                      # counts[ĉA]
    pA_lower: float              # one-sided (1 − α) Clopper–Pearson lower bound of nA / n
    max_radius: float            # σ Φ⁻¹(α^(1/n)): no run of this n can certify more
    runner_up: int               # most frequent other class among the n samples
    pA_lower_simultaneous: float  # lower bound on pA at level α/K (Bonferroni over K classes)
    pB_upper: float              # simultaneous upper bound on max_{c≠A} p_c, at most 1 − pA_lower_simultaneous
    radius_general: float        # σ/2 (Φ⁻¹(pA) − Φ⁻¹(pB)) with the two simultaneous bounds; 0 if none
    abstain_reason: str = ""
    seconds: float = 0.0

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def pA_hat(self) -> float:
        return self.nA / self.n

    @property
    def samples_per_second(self) -> float:
        return (self.n0 + self.n) / self.seconds if self.seconds > 0 else float("inf")

    def summary(self, classes: Sequence[str] | None = None) -> str:
        """One line for a status bar or a log."""
        name = (lambda c: classes[c]) if classes else str
        if self.abstained:
            return f"ABSTAIN: {self.abstain_reason}"
        return (f"{name(self.prediction)} certified within L2 radius {self.radius:.3f} "
                f"(pA ≥ {self.pA_lower:.4f}, nA = {self.nA}/{self.n}, σ = {self.sigma:g}; "
                f"ceiling {self.max_radius:.3f})")


@dataclass(frozen=True)
class Prediction:
    """What PREDICT found: the class, or ABSTAIN when the binomial test cannot separate the top two."""

    prediction: int
    counts: np.ndarray
    top_class: int
    runner_up: int
    nA: int
    nB: int
    p_value: float               # two-sided binomial test of nA against Binomial(nA + nB, 1/2)
    alpha: float
    abstain_reason: str = ""
    seconds: float = 0.0

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


@dataclass(frozen=True)
class CertifyUpdate:
    """The state of a running CERTIFY after one more chunk of noise (what the live histogram draws).

    ``phase`` is "selection" (the n0 samples that pick ĉA) or "estimation" (the n samples that bound
    pA). In the estimation phase ``pA_lower`` and ``radius`` are the bound and radius the samples drawn so
    far would give; they are for watching — the certificate is only the final one, at the fixed n
    (stopping early when the bound looks good would void the (1 − α) guarantee). The last update carries
    the ``certificate``.
    """

    phase: str
    counts: np.ndarray           # running class counts of the current phase
    drawn: int                   # samples drawn in this phase so far
    phase_total: int             # n0 or n
    done: int                    # samples drawn in both phases so far
    total: int                   # n0 + n
    top_class: int               # current argmax (selection) or ĉA (estimation)
    pA_lower: float | None = None
    radius: float | None = None
    certificate: Certificate | None = None


@dataclass(frozen=True)
class NoiseSamples:
    """A few draws x + ε for display, with their noise norms against σ√d."""

    noisy: np.ndarray            # (k, C, H, W) float32: what the base classifier sees (not clipped)
    display: np.ndarray          # the same clipped to [0, 1] for drawing
    noise_norms: np.ndarray      # ‖ε‖₂ of each draw
    predictions: np.ndarray      # the base classifier's class for each draw
    sigma: float
    expected_norm: float         # E‖ε‖₂ ≈ σ√d
    dim: int


# ---------------------------------------------------------------- the smoothed classifier


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _make_generator(generator, device: torch.device) -> torch.Generator | None:
    """An int seeds a fresh generator on the model's device; None uses torch's global generator."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator(device=device).manual_seed(int(generator))


def _check_parameters(n: int, alpha: float, batch_size: int, n0: int | None = None) -> None:
    if n0 is not None:
        check_count(n0, "n0")
    check_count(n, "n")
    check_probability(alpha, "alpha")
    check_count(batch_size, "batch size")


class Smooth:
    """The smoothed classifier g of a base classifier f (``model``: [0,1] images -> logits).

    ``optimize`` (CPU only) runs f as a frozen, oneDNN-optimized TorchScript trace when that trace
    reproduces f on a probe batch; otherwise f runs as is. ``backend`` says which is in use. The frozen
    copy holds the weights as they were at first use: make a new Smooth after changing the model.
    ``precision`` "bf16" / "fp16" runs f under autocast in that precision (eager): the votes, and so the
    certificate, are then those of f as run in it (engine/accelerate.py). On CUDA the noise is drawn on
    the GPU and f runs in channels-last layout.
    """

    def __init__(self, model: nn.Module, num_classes: int, sigma: float, *, optimize: bool = True,
                 forward_batch: int | None = None, precision: str = "fp32"):
        sigma = check_sigma(sigma)
        if num_classes < 2:
            raise ValueError(f"need at least two classes, got {num_classes}")
        self.base_classifier = model.eval()  # dropout / batch-norm statistics must not move under noise
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.device = _model_device(model)
        self.precision = check_precision(precision)
        self.optimize = optimize and self.device.type == "cpu" and self.precision == "fp32"
        self.forward_batch = forward_batch or (CPU_FORWARD_BATCH if self.device.type == "cpu" else None)
        self.backend = "not yet run"
        self.input_shape = model_input_shape(model)  # (C, H, W) from the model's meta, None if unknown
        self.channels_last = uses_channels_last(self.device, self.input_shape)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self._forwards: dict[tuple, Callable] = {}

    @classmethod
    def from_model(cls, model: nn.Module, sigma: float | None = None, **options) -> "Smooth":
        """Smooth a zoo model: classes from ``model.meta``, σ from the noise it was trained with."""
        meta = getattr(model, "meta", None)
        sigma = sigma if sigma is not None else getattr(meta, "sigma", None)
        if sigma is None:
            raise ValueError(f"{getattr(meta, 'name', 'this model')} was not trained with Gaussian noise: "
                             "give σ explicitly")
        if meta is None:
            raise ValueError("the model has no meta: use Smooth(model, num_classes, sigma)")
        return cls(model, len(meta.classes), sigma, **options)

    # ------------------------------------------------------------ sampling

    def _image(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise ValueError(f"expected one image of shape (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
        return x.to(self.device).unsqueeze(0).contiguous()

    def prepare(self, image_shape: Sequence[int]) -> str:
        """Build the (optimized) forward for images of this (C, H, W) shape now rather than on the first
        certify — a GUI calls it when it loads a model — and return the backend description."""
        self._forward_for(torch.zeros((1,) + tuple(image_shape), device=self.device))
        return self.backend

    def _forward_for(self, x: torch.Tensor) -> Callable:
        """The base classifier, optimized once per input shape (tracing takes a fraction of a second)."""
        key = tuple(x.shape[1:])
        if key not in self._forwards:
            self._forwards[key], self.backend = self._build_forward(x)
        return self._forwards[key]

    def _build_forward(self, x: torch.Tensor) -> tuple[Callable, str]:
        model = self.base_classifier
        if self.channels_last:
            try:
                to_channels_last(model)
            except Exception:  # noqa: BLE001 - e.g. a TorchScript file that cannot be re-laid: run it as is
                self.channels_last, self.memory_format = False, torch.contiguous_format
        with torch.inference_mode():
            # a private generator: probing must not move the global RNG that unseeded runs draw from
            noise = torch.randn((5,) + x.shape[1:], device=self.device,
                                generator=torch.Generator(device=self.device).manual_seed(0))
            probe = (x + self.sigma * noise).contiguous()
            reference = model(probe)
        check_finite_outputs(reference)
        if reference.dim() != 2 or reference.shape[1] != self.num_classes:
            raise ValueError(f"the model gives outputs of shape {tuple(reference.shape[1:])}, "
                             f"not {self.num_classes} class scores")
        if self.precision != "fp32":
            return precision_forward(model, self.device, self.precision), f"eager, {self.precision} autocast"
        if not self.optimize:
            return model, "eager" + (", channels-last" if self.channels_last else "")
        try:
            with warnings.catch_warnings():  # torch.jit warns it is deprecated; it is still the fastest here
                warnings.simplefilter("ignore")
                with torch.inference_mode():
                    traced = torch.jit.trace(model, probe[:3], check_trace=False)
                    fast = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                    output = fast(probe)  # a batch size other than the traced one: catches baked-in shapes
            same = (output.shape == reference.shape and torch.allclose(output, reference, rtol=1e-4, atol=1e-4)
                    and torch.equal(output.argmax(1), reference.argmax(1)))
            if same:
                return fast, "frozen TorchScript (oneDNN)"
            return model, "eager (the traced model did not reproduce the model)"
        except Exception as error:  # noqa: BLE001 - any tracing failure just means running the model as is
            return model, f"eager (not traceable: {type(error).__name__})"

    def sample_chunks(self, x, num: int, batch_size: int, generator=None) -> Iterator[np.ndarray]:
        """Class counts of the base classifier on ``num`` draws of x + ε, one array per chunk of at most
        ``batch_size`` draws (the paper's SAMPLEUNDERNOISE, chunked). Memory holds one chunk at a time.
        x need not lie in [0, 1] (the Geometry tab samples a plane through an image) but must be finite;
        non-finite logits raise NonFiniteOutputError instead of counting as votes for class 0."""
        check_images(x, self.input_shape, unit_range=False)
        image = self._image(x)
        forward = self._forward_for(image)
        generator = _make_generator(generator, self.device)
        chunk = max(1, min(batch_size, num))
        buffer = torch.empty((chunk,) + image.shape[1:], device=self.device, memory_format=self.memory_format)
        sub = self.forward_batch or chunk
        remaining = num
        while remaining > 0:
            size = min(chunk, remaining)
            # inference mode per chunk, never across the yield: jobs share the engine thread, and a
            # generator suspended inside inference_mode would leave it on for every other job
            with torch.inference_mode():
                batch = buffer[:size]
                batch.normal_(0.0, self.sigma, generator=generator)  # in place: no new noise tensor per chunk
                batch.add_(image)
                counts = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
                for start in range(0, size, sub):
                    logits = forward(batch[start:start + sub])
                    check_finite_outputs(logits)
                    predictions = logits.argmax(1)
                    counts += torch.bincount(predictions, minlength=self.num_classes)
            remaining -= size
            yield counts.cpu().numpy()

    def sample_counts(self, x, num: int, batch_size: int, generator=None) -> np.ndarray:
        """Class counts of ``num`` noisy draws (int64 array of length num_classes)."""
        total = np.zeros(self.num_classes, dtype=np.int64)
        for counts in self.sample_chunks(x, num, batch_size, generator):
            total += counts
        return total

    # ------------------------------------------------------------ CERTIFY and PREDICT

    def certify(self, x, n0: int, n: int, alpha: float, batch_size: int = 1000,
                generator=None) -> tuple[int, float]:
        """CERTIFY (Cohen et al. 2019, Sec. 3.2): (ĉA, R) or (ABSTAIN, 0.0).

        counts0 ← SAMPLEUNDERNOISE(f, x, n0, σ); ĉA ← top index in counts0;
        counts ← SAMPLEUNDERNOISE(f, x, n, σ); pA_lower ← LOWERCONFBOUND(counts[ĉA], n, 1 − α);
        if pA_lower < 1/2 abstain, else return ĉA and radius σ Φ⁻¹(pA_lower).
        With probability at least 1 − α over the noise, a returned class is g(x) and g is constant on the
        L2 ball of that radius. ``generator``: an int seed or a torch.Generator (None: torch's global one).
        """
        result = self.certify_detailed(x, n0, n, alpha, batch_size, generator)
        return result.prediction, result.radius

    def certify_detailed(self, x, n0: int, n: int, alpha: float, batch_size: int = 1000,
                         generator=None) -> Certificate:
        """CERTIFY with all the evidence: counts, bounds, the general-bound radius, the reason to abstain."""
        for update in self.certify_steps(x, n0, n, alpha, batch_size, generator):
            if update.certificate is not None:
                return update.certificate
        raise AssertionError("certify_steps ended without a certificate")

    def certify_steps(self, x, n0: int, n: int, alpha: float, batch_size: int = 1000,
                      generator=None) -> Iterator[CertifyUpdate]:
        """CERTIFY, streaming: one CertifyUpdate after every chunk of noise; the last carries the
        Certificate. Same draws, hence the same answer, as ``certify`` with the same seed."""
        _check_parameters(n, alpha, batch_size, n0)
        check_images(x, self.input_shape)
        began = time.perf_counter()
        generator = _make_generator(generator, self.device)
        total = n0 + n
        counts0 = np.zeros(self.num_classes, dtype=np.int64)
        drawn = 0
        for chunk in self.sample_chunks(x, n0, batch_size, generator):
            counts0 += chunk
            drawn += int(chunk.sum())
            yield CertifyUpdate("selection", counts0.copy(), drawn, n0, drawn, total, int(counts0.argmax()))
        c_a = int(counts0.argmax())

        counts = np.zeros(self.num_classes, dtype=np.int64)
        drawn = 0
        for chunk in self.sample_chunks(x, n, batch_size, generator):
            counts += chunk
            drawn += int(chunk.sum())
            if drawn < n:
                p_lower = lower_confidence_bound(int(counts[c_a]), drawn, alpha)
                yield CertifyUpdate("estimation", counts.copy(), drawn, n, n0 + drawn, total, c_a, p_lower,
                                    certified_radius(self.sigma, p_lower))
        certificate = self._certificate(counts0, counts, c_a, n0, n, alpha, time.perf_counter() - began)
        yield CertifyUpdate("estimation", counts.copy(), n, n, total, total, c_a, certificate.pA_lower,
                            certificate.radius, certificate)

    def _certificate(self, counts0, counts, c_a, n0, n, alpha, seconds) -> Certificate:
        n_a = int(counts[c_a])
        p_lower = lower_confidence_bound(n_a, n, alpha)
        if p_lower < 0.5:
            prediction, radius = ABSTAIN, 0.0
            reason = (f"pA lower bound {p_lower:.4f} < 0.5: only {n_a} of {n} noise samples gave class "
                      f"{c_a} (the n0 samples' top class)")
        else:
            prediction, radius, reason = c_a, certified_radius(self.sigma, p_lower), ""
        others = np.delete(np.arange(self.num_classes), c_a)
        runner_up = int(others[np.argmax(counts[others])])
        # Theorem 1 with a separate bound on pB: K one-sided bounds (pA from below, every other class from
        # above) hold together with probability ≥ 1 − α when each is taken at level α/K (Bonferroni).
        level = alpha / self.num_classes
        p_lower_sim = lower_confidence_bound(n_a, n, level)
        p_upper_b = max(upper_confidence_bound(int(counts[c]), n, level) for c in others)
        p_upper_b = min(p_upper_b, 1.0 - p_lower_sim)  # pB ≤ 1 − pA always
        return Certificate(
            prediction=prediction, radius=radius, top_class=c_a, sigma=self.sigma, n0=n0, n=n, alpha=alpha,
            counts0=counts0.copy(), counts=counts.copy(), nA=n_a, pA_lower=p_lower,
            max_radius=max_certifiable_radius(self.sigma, n, alpha), runner_up=runner_up,
            pA_lower_simultaneous=p_lower_sim, pB_upper=p_upper_b,
            radius_general=certified_radius(self.sigma, p_lower_sim, p_upper_b),
            abstain_reason=reason, seconds=seconds)

    def certify_anytime(self, x, n0: int, max_n: int, alpha: float, batch_size: int = 1000, *,
                        target_radius: float | None = None, generator=None, **schedule) -> Iterator[CertifyUpdate]:
        """Anytime-valid CERTIFY (``engine/anytime.py``): like ``certify_steps``, but the bound after every
        chunk is a confidence sequence's, valid whenever you stop (P(∀n: pA ≥ bound) ≥ 1 − α); the run
        ends at ``target_radius``, when nothing more can be certified within ``max_n``, or at max_n, and
        its last update carries an AnytimeCertificate with the samples used. ``schedule``: first_look,
        growth of the looks."""
        from .anytime import certify_anytime

        return certify_anytime(self, x, n0, max_n, alpha, batch_size, target_radius=target_radius,
                               generator=generator, **schedule)

    def predict(self, x, n: int, alpha: float, batch_size: int = 1000, generator=None) -> int:
        """PREDICT (Cohen et al. 2019, Sec. 3.1): the top class of n noisy samples, or ABSTAIN unless a
        two-sided binomial test rejects "the top two classes are equally likely" at level α. Returns a
        class other than g(x) with probability at most α."""
        return self.predict_detailed(x, n, alpha, batch_size, generator).prediction

    def predict_detailed(self, x, n: int, alpha: float, batch_size: int = 1000, generator=None) -> Prediction:
        _check_parameters(n, alpha, batch_size)
        check_images(x, self.input_shape)
        began = time.perf_counter()
        counts = self.sample_counts(x, n, batch_size, generator)
        order = np.argsort(-counts, kind="stable")  # ties go to the lower class index, like argmax
        top, second = int(order[0]), int(order[1])
        n_a, n_b = int(counts[top]), int(counts[second])
        p_value = float(binomtest(n_a, n_a + n_b, 0.5).pvalue)
        if p_value > alpha:
            prediction = ABSTAIN
            reason = (f"binomial test p = {p_value:.3g} > α = {alpha:g}: class {top} ({n_a}) not separated "
                      f"from class {second} ({n_b}) by {n} samples")
        else:
            prediction, reason = top, ""
        return Prediction(prediction, counts, top, second, n_a, n_b, p_value, alpha, reason,
                          time.perf_counter() - began)

    # ------------------------------------------------------------ for display

    def noise_samples(self, x, count: int = 8, generator=None) -> NoiseSamples:
        """``count`` draws of x + ε with their noise norms and the base classifier's classes: the lecture
        point that ‖ε‖₂ ≈ σ√d dwarfs the certified radius R = O(σ)."""
        check_images(x, self.input_shape)
        count = check_count(count, "the number of noise draws")
        image = self._image(x)
        generator = _make_generator(generator, self.device)
        noise = torch.empty((count,) + image.shape[1:], device=self.device)
        noise.normal_(0.0, self.sigma, generator=generator)
        noisy = image + noise
        with torch.inference_mode():
            logits = self._forward_for(image)(noisy)
            check_finite_outputs(logits)
            predictions = logits.argmax(1)
        dim = int(image[0].numel())
        return NoiseSamples(noisy=noisy.cpu().numpy(), display=noisy.clamp(0, 1).cpu().numpy(),
                            noise_norms=noise.flatten(1).norm(dim=1).cpu().numpy(),
                            predictions=predictions.cpu().numpy(), sigma=self.sigma,
                            expected_norm=expected_noise_norm(self.sigma, dim), dim=dim)



def noise_models(dataset: str | None = None) -> dict[float, str]:
    """The built-in noise-trained models as {σ: name}, sorted by σ (the Certify panel's σ choices)."""
    found = {entry.sigma: entry.name for entry in catalogue()
             if entry.kind == "noise" and entry.sigma is not None and (dataset is None or entry.dataset == dataset)}
    return dict(sorted(found.items()))


# ---------------------------------------------------------------- jobs (see engine/jobs.py)


def certify_job(smooth: Smooth, x, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
                batch_size: int = 1000, generator=None) -> JobFactory:
    """Certify one image, live: after every chunk Partial("counts", CertifyUpdate) (running counts,
    pA lower bound, radius) and Progress; at the end Finished(Certificate)."""
    _check_parameters(n, alpha, batch_size, n0)  # refused before the job starts, not in its first step
    check_images(x, smooth.input_shape)

    def job(cancel: CancelToken):
        for update in smooth.certify_steps(x, n0, n, alpha, batch_size, generator):
            cancel.check()
            yield Partial("counts", update)
            yield Progress(update.done, update.total, f"{update.phase}: {update.drawn:,}/{update.phase_total:,}")
            if update.certificate is not None:
                yield Finished(update.certificate)

    return job

