"""Clean and PGD-robust accuracy of a model on a dataset."""

from __future__ import annotations

import torch

from .attacks import pgd


def default_step_size(eps: float, steps: int) -> float:
    """2.5·ε/steps: lets PGD cross the ball from a random start (Madry et al. 2018)."""
    return 2.5 * eps / max(1, steps)


@torch.no_grad()
def predict_labels(model, images: torch.Tensor, batch_size: int = 1000, device=None) -> torch.Tensor:
    device = device or next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    return (predict_labels(model, images, batch_size) == labels).float().mean().item()


def robust_accuracy(model, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                    steps: int = 20, step_size: float | None = None, restarts: int = 1,
                    batch_size: int = 500, seed: int = 0) -> float:
    """Fraction of images still classified correctly after untargeted PGD at ε."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    step_size = step_size or default_step_size(eps, steps)
    correct = 0
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
        adversarial = pgd(model, x, y, norm=norm, eps=eps, step_size=step_size, steps=steps,
                          restarts=restarts, generator=generator)
        with torch.no_grad():
            correct += (model(adversarial).argmax(1) == y).sum().item()
    return correct / max(1, len(images))
