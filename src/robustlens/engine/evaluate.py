"""Clean and robust accuracy of a model on a dataset: under our PGD, and under the stronger attacks
the field reports (APGD, AutoAttack; Croce & Hein 2020, from torchattacks).

An image counts as robust under an attack only if the model still classifies the attack's output
correctly; under a composition (APGD-CE then APGD-T; AutoAttack) only if it survives every member,
each member attacking the images the ones before it did not break.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .attacks import model_device, pgd

ATTACKS = ("pgd", "apgd", "autoattack")
ATTACK_LABELS = {"pgd": "PGD", "apgd": "APGD-CE+APGD-T", "autoattack": "AutoAttack (standard)"}
APGD_STEPS = 100       # Croce & Hein 2020's standard: 100 iterations for APGD-CE and APGD-T
SQUARE_QUERIES = 5000  # and 5000 queries for Square


def default_step_size(eps: float, steps: int) -> float:
    """2.5·ε/steps: lets PGD cross the ball from a random start (Madry et al. 2018)."""
    return 2.5 * eps / max(1, steps)


@torch.no_grad()
def predict_labels(model, images: torch.Tensor, batch_size: int = 1000, device=None) -> torch.Tensor:
    device = device or model_device(model)
    out = [model(images[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    return (predict_labels(model, images, batch_size) == labels).float().mean().item()


def pgd_robust_mask(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                    steps: int = 20, step_size: float | None = None, restarts: int = 1,
                    batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """Per image (bool, CPU): still classified correctly after untargeted PGD at ε."""
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    step_size = step_size or default_step_size(eps, steps)
    masks = []
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
        adversarial = pgd(model, x, y, norm=norm, eps=eps, step_size=step_size, steps=steps,
                          restarts=restarts, generator=generator)
        with torch.no_grad():
            masks.append((model(adversarial).argmax(1) == y).cpu())
    return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)


def robust_accuracy(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                    steps: int = 20, step_size: float | None = None, restarts: int = 1,
                    batch_size: int = 500, seed: int = 0) -> float:
    """Fraction of images still classified correctly after untargeted PGD at ε."""
    mask = pgd_robust_mask(model, images, labels, norm=norm, eps=eps, steps=steps, step_size=step_size,
                           restarts=restarts, batch_size=batch_size, seed=seed)
    return mask.float().sum().item() / max(1, len(images))


def _torchattacks():
    from .tv import torchvision

    torchvision()  # torchattacks imports torchvision, which needs the workaround in tv.py first
    import torchattacks

    return torchattacks


def _strong_members(model, attack: str, norm: str, eps: float, num_classes: int, seed: int) -> list:
    """The attacks of a composition, in order. torchattacks' own AutoAttack class runs APGD for its
    default 10 steps; the standard version (Croce & Hein 2020, Sec. 5) runs 100, so it is composed
    here: APGD-CE, APGD-T (9 target classes), FAB-T, Square (5000 queries)."""
    ta = _torchattacks()
    ta_norm = {"l2": "L2", "linf": "Linf"}[norm]
    targets = max(1, min(9, num_classes - 1))
    members = [
        ("apgd-ce", ta.APGD(model, norm=ta_norm, eps=eps, steps=APGD_STEPS, n_restarts=1, seed=seed, loss="ce")),
        ("apgd-t", ta.APGDT(model, norm=ta_norm, eps=eps, steps=APGD_STEPS, n_restarts=1, seed=seed,
                            n_classes=targets + 1)),
    ]
    if attack == "autoattack":
        members += [
            ("fab-t", ta.FAB(model, norm=ta_norm, eps=eps, steps=APGD_STEPS, n_restarts=1, seed=seed,
                             multi_targeted=True, n_classes=targets + 1)),
            ("square", ta.Square(model, norm=ta_norm, eps=eps, n_queries=SQUARE_QUERIES, n_restarts=1, seed=seed)),
        ]
    return members


def strong_robust_mask(model, images: torch.Tensor, labels: torch.Tensor, *, attack: str, norm: str, eps: float,
                       num_classes: int, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """Per image (bool, CPU): correctly classified after every member of ``attack`` ("apgd": APGD-CE
    then APGD-T; "autoattack": the standard AutoAttack), each run on the images still standing."""
    if attack not in ("apgd", "autoattack"):
        raise ValueError(f"unknown attack {attack!r}: choose apgd or autoattack")
    device = model_device(model)
    robust = (predict_labels(model, images, device=device) == labels)
    if eps == 0:
        return robust
    for _name, member in _strong_members(model, attack, norm, eps, num_classes, seed):
        standing = robust.nonzero().flatten()
        for i in range(0, len(standing), batch_size):
            chunk = standing[i:i + batch_size]
            x, y = images[chunk].to(device), labels[chunk].to(device)
            adversarial = member(x, y)
            adversarial = _inside_ball(adversarial, x, norm, eps)
            with torch.no_grad():
                robust[chunk] = (model(adversarial).argmax(1) == y).cpu()
    return robust


def _inside_ball(adversarial: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Refuse an attack output outside the threat model (a bug there would overstate its strength)."""
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    if bool((size > eps * (1 + 1e-4) + 1e-6).any()) or adversarial.min() < 0 or adversarial.max() > 1:
        raise RuntimeError(f"the attack left the {norm} ball of radius {eps:g} or [0, 1]")
    return adversarial


@dataclass
class EvaluationResult:
    """What `robustlens evaluate --json` prints: accuracies as fractions, robust ones by ε (as text)."""
    model: str
    norm: str
    attack: str
    images: int
    clean_images: int
    clean_accuracy: float
    pgd: dict = field(default_factory=dict)        # steps, restarts, step_size rule
    robust_accuracy: dict = field(default_factory=dict)  # attack -> {ε: accuracy}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_robustness(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps_values,
                        attack: str = "pgd", steps: int = 20, restarts: int = 1, seed: int = 0,
                        progress=None) -> dict[str, dict[float, float]]:
    """Robust accuracy by ε under PGD and, for ``attack`` apgd / autoattack, under it too and per image
    under both ("worst": robust only when neither breaks it). ``progress(text)`` is told each result."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(ATTACKS)}")
    num_classes = len(getattr(getattr(model, "meta", None), "classes", ())) or 10
    table: dict[str, dict[float, float]] = {"pgd": {}}
    if attack != "pgd":
        table[attack], table["worst"] = {}, {}
    count = max(1, len(images))
    for eps in eps_values:
        pgd_mask = pgd_robust_mask(model, images, labels, norm=norm, eps=eps, steps=steps, restarts=restarts,
                                   seed=seed)
        table["pgd"][eps] = pgd_mask.float().sum().item() / count
        if progress:
            progress(f"PGD-{steps} {norm} ε={eps:g}: {100 * table['pgd'][eps]:.2f}%")
        if attack != "pgd":
            strong = strong_robust_mask(model, images, labels, attack=attack, norm=norm, eps=eps,
                                        num_classes=num_classes, seed=seed)
            table[attack][eps] = strong.float().sum().item() / count
            table["worst"][eps] = (strong & pgd_mask).float().sum().item() / count
            if progress:
                progress(f"{ATTACK_LABELS[attack]} {norm} ε={eps:g}: {100 * table[attack][eps]:.2f}%")
    return table
