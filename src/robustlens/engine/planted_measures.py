"""How much a model, a perturbation or a dataset follows the planted patterns (``planted.py``).

- :func:`pattern_following`: a model's answers on real test images that carry a pattern, their own
  class's or another class's.
- :func:`adversarial_alignment`: where a model's PGD perturbations point: their cosine with the
  pattern of the class they reach, of the true class and of the others, and the share of their energy
  in the patterns' span (a random direction puts classes/dimension there, 1.3 % for 10 patterns on 28×28).
- :func:`dataset_pattern_strength`: the component of a dataset's images along their label's pattern,
  against the other patterns'; the patterns are orthogonal to every class's mean image, so on real
  images both are about zero and what stands out was planted (or kept).
"""

from __future__ import annotations

import torch

from .attacks import pgd
from .data import Dataset
from .evaluate import default_step_size
from .inversion import model_device
from .planted import pattern_cosines, pattern_projections, with_patterns

BATCH = 500


def _predict(model, images: torch.Tensor) -> torch.Tensor:
    device = model_device(model)
    with torch.no_grad():
        return torch.cat([model(images[s:s + BATCH].to(device)).argmax(1).cpu() for s in range(0, len(images), BATCH)])


def pattern_following(model, test: Dataset, patterns: torch.Tensor, other: torch.Tensor) -> dict:
    """On the real test images: accuracy with each image's own class's pattern added
    (``own_pattern_accuracy``), and with the pattern of class ``other[i]`` ≠ y added: the share answering
    that class (``follows_pattern``), the share answering y (``true_class``), and the share answering
    c only because of the pattern, having answered otherwise without it (``switched_to_pattern``: for
    a model trained on D_det, which answers y + 1 from the shape alone, c = y + 1 is no evidence)."""
    clean = _predict(model, test.images)
    own = _predict(model, with_patterns(test.images, test.labels, patterns))
    crossed = _predict(model, with_patterns(test.images, other, patterns))
    return {"own_pattern_accuracy": (own == test.labels).float().mean().item(),
            "follows_pattern": (crossed == other).float().mean().item(),
            "true_class": (crossed == test.labels).float().mean().item(),
            "switched_to_pattern": ((crossed == other) & (clean != other)).float().mean().item()}


def _span_share(delta: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """‖P δ‖² / ‖δ‖² per sample, P the orthogonal projection onto the (orthogonal) patterns' span."""
    cos = pattern_cosines(delta, patterns)
    return (cos ** 2).sum(1)


def _alignment(delta: torch.Tensor, reached: torch.Tensor, true: torch.Tensor, patterns: torch.Tensor) -> dict:
    cos = pattern_cosines(delta, patterns)
    rows = torch.arange(len(delta))
    others = torch.ones_like(cos, dtype=torch.bool)
    others[rows, reached] = False
    others[rows, true] = False
    return {"cos_reached_class_pattern": cos[rows, reached].mean().item(),
            "cos_true_class_pattern": cos[rows, true].mean().item(),
            "cos_other_patterns": cos[others].mean().item(),
            "span_energy_share": _span_share(delta, patterns).mean().item(),
            "random_direction_span_share": len(patterns) / delta[0].numel()}


def adversarial_alignment(model, test: Dataset, patterns: torch.Tensor, *, eps: float, steps: int, seed: int = 0) -> dict:
    """L2 PGD of radius ``eps`` on the test images carrying their own class's pattern (the planted
    model's own distribution): untargeted (random start, step 2.5·ε/steps, as the evaluation) and
    targeted to t = (y + 1) mod C (as D_det). For the perturbations that changed the answer, the mean
    cosine of δ with the pattern of the class reached, of the true class and of the other classes,
    and the share of δ's energy in the patterns' span."""
    device = model_device(model)
    images = with_patterns(test.images, test.labels, patterns)
    labels = test.labels
    targets = (labels + 1) % len(patterns)
    result = {"images": len(images), "eps": eps, "steps": steps}
    for mode, goal in (("untargeted", labels), ("targeted", targets)):
        deltas, answers = [], []
        for start in range(0, len(images), BATCH):
            x = images[start:start + BATCH].to(device)
            generator = torch.Generator(device=device).manual_seed(seed * 1000 + start)
            adversarial = pgd(model, x, goal[start:start + BATCH].to(device), norm="l2", eps=eps,
                              step_size=default_step_size(eps, steps), steps=steps, random_start=mode == "untargeted",
                              targeted=mode == "targeted", generator=generator)
            deltas.append((adversarial - x).detach().cpu())
            answers.append(_predict(model, adversarial.detach()))
        delta, answer = torch.cat(deltas), torch.cat(answers)
        changed = answer != labels if mode == "untargeted" else answer == targets
        entry = {"success": changed.float().mean().item()}
        if changed.any():
            entry.update(_alignment(delta[changed], answer[changed], labels[changed], patterns))
        result[mode] = entry
    return result


def dataset_pattern_strength(images: torch.Tensor, labels: torch.Tensor, patterns: torch.Tensor,
                             original: torch.Tensor | None = None) -> dict:
    """The mean component ⟨x, p_c⟩/‖p_c‖ of the images along their label's pattern and (averaged) along
    the other patterns; the share of images whose largest component is their label's
    (``label_readable``: chance is 1/classes); with ``original`` (D_det's labels before relabelling)
    also the component along the original class's pattern."""
    projections = pattern_projections(images, patterns)
    labels = torch.as_tensor(labels, dtype=torch.long)
    rows = torch.arange(len(images))
    others = torch.ones_like(projections, dtype=torch.bool)
    others[rows, labels] = False
    result = {"label_pattern": projections[rows, labels].mean().item(),
              "other_patterns": projections[others].mean().item(),
              "label_readable": (projections.argmax(1) == labels).float().mean().item()}
    if original is not None:
        result["original_label_pattern"] = projections[rows, original].mean().item()
        result["original_label_readable"] = (projections.argmax(1) == original).float().mean().item()
    return result
