"""The planted demo's figure: per class, a training image, its planted version, the pattern (amplified),
the planted model's adversarial perturbation toward the next class t (D_det's δ, amplified), the
pattern p_t, and the image's robust reconstruction (D_R). Amplified images show 0.5 + gain·v: gray is 0. Read from a finished demo's work folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .constructed import load_built_dataset, positions_in
from .data import load_dataset
from .models import load_checkpoint
from .planted import BASE_NAME, DEFAULT_SPEC, class_patterns, pattern_cosines, planted_dataset


def _amplified(v: torch.Tensor, gain: float) -> torch.Tensor:
    return (0.5 + gain * v).clamp(0, 1)  # gray is zero, white +, black −


def planted_figure(workdir: Path | str, *, per_class: int = 1, scale: int = 4, device=None):
    """A Pillow image (see the module docstring) of the first ``per_class`` training images of each
    class in the demo's D_det / D_R order. Under the images: the planted model's answers on x and on
    x + p_y, the cosine of D_det's perturbation δ with the target's pattern p_t, and t."""
    from .cli_features import reconstruction_grid

    workdir = Path(workdir).expanduser()
    det, dr = load_built_dataset(workdir / "D_det"), load_built_dataset(workdir / "D_R")
    if not torch.equal(det.indices, dr.indices):
        raise ValueError(f"{workdir}'s D_det and D_R were built from different images")
    model = load_checkpoint(workdir / "models" / "D_planted.pt", device=device)
    clean_train = load_dataset(BASE_NAME, "train")
    planted_train = planted_dataset(clean_train)
    patterns = class_patterns(DEFAULT_SPEC)
    original = torch.from_numpy(np.load(workdir / "D_det" / "dataset.npz")["original_labels"].astype(np.int64))
    chosen = [int(i) for c in range(len(patterns)) for i in (original == c).nonzero().flatten()[:per_class]]
    chosen.sort(key=lambda i: int(original[i]))
    source = positions_in(clean_train, det.indices[chosen], workdir / "D_det")
    x, planted = clean_train.images[source], planted_train.images[source]
    y, t = original[chosen], det.labels[chosen]
    delta = det.images[chosen] - planted
    reconstruction = dr.images[chosen]
    gain = round(0.45 / patterns.abs().max().item())
    with torch.no_grad():
        clean_answers = model(x.to(next(model.parameters()).device)).argmax(1).cpu()
        answers = model(planted.to(next(model.parameters()).device)).argmax(1).cpu()
    rows = torch.arange(len(chosen))
    cos_target = pattern_cosines(delta, patterns)[rows, t]
    classes = clean_train.classes
    short = [name.split("/")[0] for name in classes]
    # Pillow's default font has no Greek letters or arrows: the titles spell them out
    columns = [("image x", x), ("x + p_y", planted), (f"p_y x{gain}", _amplified(patterns[y], gain)),
               (f"PGD to t x{gain}", _amplified(delta, gain)), (f"p_t x{gain}", _amplified(patterns[t], gain)),
               ("D_R image", reconstruction)]
    notes = [[f"model: {short[a]}" for a in clean_answers.tolist()],
             [f"model: {short[a]}" for a in answers.tolist()],
             ["" for _ in chosen],
             [f"cos p_t {c:+.2f}" for c in cos_target.tolist()],
             [f"t = {short[int(c)]}" for c in t.tolist()],
             ["" for _ in chosen]]
    return reconstruction_grid(columns, [short[int(c)] for c in y], scale=scale, blocks=2, notes=notes)
