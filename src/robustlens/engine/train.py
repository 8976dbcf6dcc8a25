"""Training: standard, PGD adversarial (Madry et al. 2018) and Gaussian-noise augmentation (Cohen et al.
2019, Sec. 4: train the base classifier on x + N(0, σ²I) so that f is accurate under noise).

Checkpoints every epoch to ``OUT.state`` so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .attacks import pgd
from .data import Dataset
from .files import CHECKPOINT_LIMIT, open_regular
from .models import Classifier, build_model, save_checkpoint

MODES = ("standard", "adversarial", "noise")


@dataclass
class TrainConfig:
    arch: str = "fmnist-cnn"
    mode: str = "standard"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    norm: str = "l2"          # adversarial: threat model
    eps: float = 1.5          # adversarial: radius in [0,1]-pixel units
    steps: int = 7            # adversarial: PGD steps inside the training loop
    step_size: float | None = None  # adversarial: default 2.5·ε/steps (Madry et al.)
    sigma: float = 0.25       # noise: Gaussian augmentation σ
    name: str | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be positive")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a finite number above 0, got {self.lr}")
        if self.mode == "noise" and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"σ must be a finite number above 0, got {self.sigma}")
        if self.mode == "adversarial":
            if not (math.isfinite(self.eps) and self.eps > 0):
                raise ValueError(f"ε must be a finite number above 0, got {self.eps}")
            if self.steps < 1:
                raise ValueError(f"PGD steps must be at least 1, got {self.steps}")
            if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
                raise ValueError(f"the PGD step size must be a finite number above 0, got {self.step_size}")

    @property
    def pgd_step_size(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


@dataclass
class TrainResult:
    model: Classifier
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _meta_fields(config: TrainConfig, dataset: Dataset) -> dict:
    fields = dict(name=config.name or f"{dataset.name}/{config.mode}", dataset=dataset.name,
                  classes=dataset.classes, input_shape=dataset.image_shape, kind=config.mode)
    if config.mode == "adversarial":
        fields.update(norm=config.norm, eps=config.eps)
    if config.mode == "noise":
        fields.update(sigma=config.sigma)
    fields["extra"] = {"train": asdict(config), "train_images": len(dataset)}
    return fields


def training_batch(model, images, labels, config: TrainConfig, generator: torch.Generator):
    """The images the model is trained on for one batch, per the training mode."""
    if config.mode == "adversarial":
        model.eval()
        images = pgd(model, images, labels, norm=config.norm, eps=config.eps,
                     step_size=config.pgd_step_size, steps=config.steps, random_start=True,
                     generator=generator)
        model.train()
    elif config.mode == "noise":
        images = images + config.sigma * torch.randn(images.shape, generator=generator, device=images.device)
    return images


def optimization_step(model, optimizer, schedule, images, labels) -> tuple[float, int]:
    """One cross-entropy step on a batch; returns the batch's summed loss and its correct count."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item() * len(labels), (logits.argmax(1) == labels).sum().item()


STATE_KEYS = ("config", "model", "optimizer", "schedule", "generator", "order_generator", "history", "epoch",
              "elapsed")


def _read_state(path: Path, device) -> dict:
    """The resume state OUT.state (weights_only), or a one-line ValueError saying to delete it."""
    with open_regular(path, limit=CHECKPOINT_LIMIT, what="a training state", error=ValueError) as f:
        try:
            state = torch.load(f, map_location=device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - truncated by a crash, or not a state file at all
            reason = " ".join(str(error).split())[:160] or type(error).__name__
            raise ValueError(f"{path} is not a readable training state ({reason}): delete it or pass "
                             "--no-resume") from None
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise ValueError(f"{path} is not a training state robustlens wrote: delete it or pass --no-resume")
    return state


def train(config: TrainConfig, dataset: Dataset, out: Path | str | None = None, *, resume: bool = True,
          device=None, progress: bool = True, max_batches: int | None = None) -> TrainResult:
    """Train ``config.arch`` on ``dataset``; save the final checkpoint to ``out`` (and ``out.state``
    after every epoch, removed at the end). ``max_batches`` caps batches per epoch (for quick tests)."""
    config.validate()
    device = torch.device(device or "cpu")
    torch.manual_seed(config.seed)
    model = build_model(config.arch, **_meta_fields(config, dataset)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = math.ceil(len(dataset) / config.batch_size)
    if max_batches:
        batches = min(batches, max_batches)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * batches,
                                                   pct_start=0.15)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    order_generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    start_epoch, elapsed = 0, 0.0
    state_path = Path(str(out) + ".state") if out else None
    if resume and state_path and state_path.exists():
        state = _read_state(state_path, device)
        if state["config"] != asdict(config):
            raise ValueError(f"{state_path} was written with other settings; delete it or train with "
                             "the same settings to resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"].to(torch.uint8) if device.type == "cpu" else state["generator"])
        order_generator.set_state(state["order_generator"])
        history, start_epoch, elapsed = list(state["history"]), int(state["epoch"]), float(state["elapsed"])
        if progress:
            print(f"resuming from {state_path} at epoch {start_epoch + 1}/{config.epochs}")
    images_all, labels_all = dataset.images, dataset.labels
    for epoch in range(start_epoch, config.epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(len(dataset), generator=order_generator)
        total_loss = total_correct = seen = 0
        bar = tqdm(range(batches), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False, unit="batch")
        for b in bar:
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            images, labels = images_all[idx].to(device), labels_all[idx].to(device)
            images = training_batch(model, images, labels, config, generator)
            batch_loss, batch_correct = optimization_step(model, optimizer, schedule, images, labels)
            total_loss += batch_loss
            total_correct += batch_correct
            seen += len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{total_correct / seen:.3f}")
        elapsed += time.perf_counter() - began
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "train_accuracy": total_correct / seen,
                        "seconds": round(elapsed, 1)})
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}: loss {total_loss / seen:.4f}, "
                  f"train accuracy {total_correct / seen:.4f} ({elapsed:.0f} s)")
        if state_path:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"config": asdict(config), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "generator": generator.get_state(),
                        "order_generator": order_generator.get_state(), "history": history,
                        "epoch": epoch + 1, "elapsed": elapsed}, state_path)
    model.eval()
    model.meta.extra["history"] = history
    model.meta.extra["train_seconds"] = round(elapsed, 1)
    if out:
        save_checkpoint(model, out)
        if state_path and state_path.exists():
            state_path.unlink()
    return TrainResult(model, history, elapsed)
