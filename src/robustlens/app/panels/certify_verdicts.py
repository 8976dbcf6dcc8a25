"""What the Certify tab says in words: the verdict of a certificate (a class and its radius, or ABSTAIN and
why), the running evidence while CERTIFY samples, the lengths to scale and why nothing can be certified.
Each function turns numbers the engine computed into the HTML (or plain text) the panel shows."""

from __future__ import annotations

from typing import Callable, Sequence

from robustlens.engine.anytime import AnytimeCertificate, AnytimeUpdate, anytime_max_radius
from robustlens.engine.certify_jobs import CertifyParams
from robustlens.engine.smoothing import Certificate, CertifyUpdate
from robustlens.engine.smoothing_bounds import expected_noise_norm, max_certifiable_radius

from .. import style

ClassName = Callable[[int], str]


def idle_html(text: str, error: bool = False) -> str:
    color = f" style='color:{style.WRONG.name()}'" if error else ""
    return f"<span{color}>{text}</span>"


def certifying_html(source: str, params: CertifyParams) -> str:
    if params.mode == "anytime":
        return (f"<span style='font-size:x-large'><b>Certifying, anytime…</b></span><br>"
                f"{source} · σ = {params.sigma:g} · n0 = {params.n0:,} · at most {params.n:,} · α = {params.alpha:g}"
                f" · <b>Stop</b> keeps a valid certificate")
    return (f"<span style='font-size:x-large'><b>Certifying…</b></span><br>"
            f"{source} · σ = {params.sigma:g} · n0 = {params.n0:,} · n = {params.n:,} · α = {params.alpha:g}")


CANCELLED_HTML = "<span style='font-size:x-large'><b>Cancelled</b></span>"
CANCELLED_NOTE = "The counts below are partial evidence, not a certificate."
OUTDATED_NOTE = "Settings changed since this certificate: F5 certifies again."


def update_texts(update: CertifyUpdate, n: int, class_name: ClassName) -> tuple[str, str]:
    """(histogram title, grey note) for a CERTIFY still sampling; ``n`` is the run's estimation size."""
    if update.phase == "selection":
        return (f"Selection (n0): {update.drawn:,} / {update.phase_total:,}",
                f"n0 = {update.phase_total:,} samples pick the top class ĉA; {n:,} fresh ones then bound pA.")
    if isinstance(update, AnytimeUpdate):
        return anytime_update_texts(update, class_name)
    n_a = int(update.counts[update.top_class])
    radius = "abstain so far" if update.pA_lower is None or update.pA_lower < 0.5 else f"R = {update.radius:.3f}"
    return (f"Estimation: {update.drawn:,} / {update.phase_total:,}",
            f"so far: {n_a:,} of {update.drawn:,} are {class_name(update.top_class)} → "
            f"pA ≥ {update.pA_lower:.4f}, {radius} (the certificate uses all n)")


def certificate_html(cert: Certificate, label: int | None, class_name: ClassName, seed: int) -> str:
    """The verdict: ĉA and R (✓ or ✗ against the true class) or ABSTAIN and why; then the evidence —
    nA of n, the Clopper–Pearson bound, the paper's radius (pB = 1 − pA) and the general one
    (Theorem 1 with a Bonferroni bound on pB), the ceiling, the time and the seed."""
    top = class_name(cert.top_class)
    confidence = f"{100 * (1 - cert.alpha):.6g}%"
    if cert.abstained:
        head = (f"<span style='font-size:x-large; color:{style.WRONG.name()}'><b>ABSTAIN</b></span><br>"
                f"<b>pA lower bound {cert.pA_lower:.4f} &lt; 0.5</b>: only {cert.nA:,} of {cert.n:,} noise "
                f"samples gave {top} (the n0 samples' top class)")
    else:
        right = ""
        if label is not None:
            right = "✓ the true class" if cert.prediction == label else f"✗ the true class is {class_name(label)}"
        color = style.CORRECT if label is None or cert.prediction == label else style.WRONG
        head = (f"<span style='font-size:x-large; color:{color.name()}'><b>{top}</b> · "
                f"certified R = {cert.radius:.3f}</span><br>{right}")
    general = f"R = {cert.radius_general:.3f}" if cert.radius_general > 0 else "nothing certified"
    paper = "nothing certified" if cert.abstained else f"R = {cert.radius:.3f}"
    return (f"{head}"
            f"<br>nA = {cert.nA:,} of n = {cert.n:,} noise samples"
            f"<br>pA ≥ {cert.pA_lower:.4f} ({confidence} Clopper–Pearson)"
            f"<br>paper: {paper} with pB = 1 − pA"
            f"<br>general: {general}, Bonferroni pB ≤ {cert.pB_upper:.4f}"
            f"<br>ceiling {cert.max_radius:.3f} · {cert.seconds:.1f} s · seed {seed}")


def _radius_text(p_lower: float, radius: float) -> str:
    return f"R = {radius:.3f}" if p_lower >= 0.5 else "abstain"


def anytime_update_texts(update: AnytimeUpdate, class_name: ClassName) -> tuple[str, str]:
    """(histogram title, grey note) while the anytime run samples: both bounds on the same samples."""
    n_a = int(update.counts[update.top_class]) if update.top_class >= 0 else 0
    return (f"{update.drawn:,} samples (max {update.phase_total:,})",
            f"{n_a:,} of {update.drawn:,} are {class_name(update.top_class)} → anytime pA ≥ {update.pA_lower:.4f}, "
            f"{_radius_text(update.pA_lower, update.radius)} (valid if you stop now); fixed n would say "
            f"{_radius_text(update.pA_lower_fixed_n, update.radius_fixed_n)}")


def anytime_certificate_html(cert: AnytimeCertificate, label: int | None, class_name: ClassName, seed: int) -> str:
    """The verdict of an anytime run: as :func:`certificate_html`, then what it cost and what the fixed-n
    bound would have said on the same samples, both ceilings and why the run ended."""
    head = certificate_html(cert, label, class_name, seed).split("<br>nA = ")[0]
    if cert.n == 0:
        return f"{head}<br>{cert.stop_reason}"
    confidence = f"{100 * (1 - cert.alpha):.6g}%"
    fixed = _radius_text(cert.pA_lower_fixed_n, cert.radius_fixed_n)
    return (f"{head}"
            f"<br>nA = {cert.nA:,} of {cert.n:,} samples (at most {cert.max_n:,}) · {cert.stop_reason}"
            f"<br>anytime pA ≥ {cert.pA_lower:.4f} ({confidence}, valid whenever you stop) · pA ≤ {cert.pA_upper:.4f}"
            f"<br>fixed n = {cert.n:,} on the same samples: pA ≥ {cert.pA_lower_fixed_n:.4f}, {fixed} "
            f"— valid only had n been fixed in advance"
            f"<br>ceilings at {cert.max_n:,}: anytime {cert.max_radius:.3f} (α/{cert.looks} per look), "
            f"fixed n {cert.max_radius_fixed_n:.3f}"
            f"<br>{cert.seconds:.1f} s · seed {seed}")


def no_model_html(sigma: float, zoo_name: str | None, loaded_sigmas: Sequence[float]) -> str:
    how = (f"press <b>Load {zoo_name.split('/')[-1]}</b> above (or tick it under Models)" if zoo_name else
           "open a noise-trained checkpoint (File → Open model…)")
    also = f" Loaded noise models have σ = {', '.join(f'{s:g}' for s in loaded_sigmas)}." if loaded_sigmas else ""
    return idle_html(f"<b>No noise model with σ = {sigma:g} is loaded</b>, so nothing can be certified at this σ: "
                     f"{how}.{also}", error=True)


def lengths(params: CertifyParams, dim: int, cert: Certificate | None):
    """What the noise-vs-radius bars show: (‖ε‖₂ ≈ σ√d, its text, R or None, its text, the ceiling
    σ Φ⁻¹(α^(1/n)), the footer). ``cert`` only when it was certified at ``params.sigma``."""
    sigma = params.sigma
    expected = expected_noise_norm(sigma, dim)
    # each text as its forms from the longest down: the bars draw the longest that fits their column
    noise_text = (f"noise ‖ε‖₂ ≈ σ√d = {sigma:g}·√{dim} = {expected:.2f}", f"noise ‖ε‖₂ ≈ σ√d = {expected:.2f}",
                  f"‖ε‖₂ ≈ {expected:.2f}")
    ceiling = (anytime_max_radius(sigma, params.n, params.alpha) if params.mode == "anytime"
               else max_certifiable_radius(sigma, params.n, params.alpha))
    if cert is None:
        radius = None
        radius_text = (f"certified R: —  (at most {ceiling:.2f}, dashed)", f"certified R: — (at most {ceiling:.2f})")
        footer = ("R = σ Φ⁻¹(pA) = O(σ), while ‖ε‖₂ = O(σ√d).", "R = O(σ), ‖ε‖₂ = O(σ√d).")
    elif cert.abstained:
        radius, radius_text = 0.0, ("certified R = 0 (abstained)", "R = 0 (abstained)")
        footer = ("Abstained: no radius is certified.", "Abstained.")
    else:
        radius = cert.radius
        radius_text = (f"certified R = {radius:.3f}  (dashed: ceiling {cert.max_radius:.3f})",
                       f"certified R = {radius:.3f} (ceiling {cert.max_radius:.3f})", f"certified R = {radius:.3f}")
        times = expected / radius if radius > 0 else 0
        footer = (f"A typical noise draw is {times:.0f}× longer than R.", f"A noise draw is {times:.0f}× longer than R.",
                  f"noise ≈ {times:.0f}× R") if radius > 0 else ("",)
    return expected, noise_text, radius, radius_text, ceiling, footer
