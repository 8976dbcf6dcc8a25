"""Robustness curves and the transfer matrix over a test subset, as streaming jobs (engine/jobs.py):
robust accuracy against ε for several models, and the transfer matrix of PGD adversarial examples between models (Ilyas et al.
2019, Sec. 5: adversarial examples transfer because models share non-robust features).

Models are passed in already loaded (a mapping name -> model), so a caller with a model cache
reuses it. Every (model, ε) point and every matrix cell is attacked with its own generators: the PGD batch
from image i on draws from one seeded ``seed + i``, so a result depends neither on the order of the models
or the ε grid nor on where a batch runs (:func:`robust_block` / :func:`transfer_block` are the per-block
verdicts a Ray worker computes, engine/cluster_jobs.py).

The Experiments tab runs them as :func:`cached_robustness_curves_job` / :func:`cached_transfer_matrix_job`
``(cache, request)``: the models come from the engine thread's model cache, every other value from a
request captured when the run starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .attack_jobs import AttackConfig, attack, inference_mode_off
from .attacks import choose_targets, model_device
from .checks import check_count, check_finite_outputs, check_images, check_labels, model_classes, model_input_shape
from .cost import CostEstimate, announce, estimate_seconds
from .evaluate import APGD_STEPS, ATTACK_LABELS, ATTACKS, SQUARE_QUERIES, strong_robust_mask
from .jobs import CancelToken, Finished, JobFactory, Partial, Progress, run_to_end


# ---------------------------------------------------------------- helpers

def _check_inputs(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor) -> None:
    if not models:
        raise ValueError("no models to evaluate")
    if images.dim() != 4 or len(images) != len(labels):
        raise ValueError(f"expected (N, C, H, W) images with N labels, got {tuple(images.shape)} and {len(labels)}")
    if len(images) == 0:
        raise ValueError("no images to evaluate")
    check_images(images, None, "the images")
    for name, model in models.items():
        shape, classes = model_input_shape(model), model_classes(model)
        if shape is not None and tuple(images.shape[1:]) != shape:
            raise ValueError(f"{name} takes {'×'.join(map(str, shape))} images, these are "
                             f"{'×'.join(map(str, images.shape[1:]))}")
        if classes is not None:
            check_labels(labels, classes)


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = model_device(model)
    predicted = []
    for i in range(0, len(images), batch_size):
        logits = model(images[i:i + batch_size].to(device))
        check_finite_outputs(logits)  # NaN logits would all read as class 0
        predicted.append(logits.argmax(1).cpu())
    return torch.cat(predicted)


def _config(norm: str, eps: float, steps: int, relative_step: float, restarts: int, random_start: str,
            loss: str, keep: str, target: str, target_class: int | None, seed: int,
            stop_at_success: bool = False) -> AttackConfig:
    return AttackConfig(norm=norm, eps=float(eps), steps=int(steps),
                        step_size=relative_step * float(eps) / max(1, int(steps)), restarts=int(restarts),
                        random_start=random_start, loss=loss, keep=keep, target=target,
                        target_class=target_class, seed=seed, stop_at_success=stop_at_success).validate()


def _craft(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
           config: AttackConfig, batch_size: int, cancel, done: int, total: int, message: str, offset: int = 0):
    """Adversarial examples for all images, batch by batch; the batch from image i on draws its random
    starts from a generator seeded ``seed + offset + i``, so a block of batches crafted elsewhere (a Ray
    worker, ``offset`` its first image) is the single run's. Yields a Progress event per batch;
    ``adversarial = yield from _craft(...)`` gets the images."""
    if config.eps == 0:  # the ball is a point: nothing to attack
        yield Progress(done + len(images), total, message)
        return images.clone()
    device = model_device(model)
    out = []
    for i in range(0, len(images), batch_size):
        cancel.check()
        part = None if targets is None else targets[i:i + batch_size]
        generator = torch.Generator(device=device).manual_seed(int(config.seed) + offset + i)
        result = attack(model, images[i:i + batch_size], labels[i:i + batch_size], config, targets=part,
                        generator=generator)
        out.append(result.adversarial)
        yield Progress(done + i + len(result.adversarial), total, message)
    return torch.cat(out)


def _drained(steps):
    """The value a generator of events returns, its events dropped (a block run on a cluster worker)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def curve_config(norm: str, eps: float, *, steps: int = 20, relative_step: float = 2.5, restarts: int = 1,
                 random_start: str = "none", loss: str = "ce", keep: str = "best", seed: int = 0) -> AttackConfig:
    """The untargeted PGD of one point of the robustness curves (an image once fooled stays non-robust
    with keep="best", so it is no longer attacked: the same verdicts, sooner)."""
    return _config(norm, eps, steps, relative_step, restarts, random_start, loss, keep, "untargeted", None, seed,
                   stop_at_success=keep == "best")


def robust_block(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig,
                 batch_size: int, offset: int = 0) -> torch.Tensor:
    """Which of a block of images (the first is image ``offset`` of the run, the block whole batches of
    it) the model classifies correctly both clean and under ``config``'s attack: the per-image verdicts
    of :func:`robustness_curves_job`'s point, computed on a cluster worker."""
    clean = _predict(model, images, batch_size).eq(labels)
    adversarial = _drained(_craft(model, images, labels, None, config, batch_size, CancelToken(), 0, len(images),
                                  "", offset))
    return clean & _predict(model, adversarial, batch_size).eq(labels)


def transfer_block(models: Mapping[str, nn.Module], source: str, images: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor | None, config: AttackConfig, batch_size: int, offset: int = 0
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{target model: (hit, eligible)} per image of a block crafted on ``source``: the masks whose sums are
    :func:`transfer_matrix_job`'s cell counts, computed on a cluster worker."""
    adversarial = _drained(_craft(models[source], images, labels, targets, config, batch_size, CancelToken(), 0,
                                  len(images), "", offset))
    masks = {}
    for name, model in models.items():
        eligible = _predict(model, images, batch_size).eq(labels) & (targets.ne(labels) if targets is not None
                                                                     else True)
        predicted = _predict(model, adversarial, batch_size)
        masks[name] = (predicted.eq(targets) if targets is not None else predicted.ne(labels), eligible)
    return masks


def transfer_targets(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                     config: AttackConfig) -> torch.Tensor | None:
    """The target class of every image for a targeted transfer matrix (seeded, the same for every source)."""
    if not config.targeted:
        return None
    first = next(iter(models.values()))
    with torch.no_grad():
        num_classes = first(images[:1].to(model_device(first))).shape[1]
    return choose_targets(labels, num_classes, config.target, torch.Generator().manual_seed(config.seed),
                          target_class=config.target_class)


def transfer_config(norm: str, eps: float, *, steps: int = 20, relative_step: float = 2.5, restarts: int = 1,
                    random_start: str = "none", loss: str = "ce", keep: str = "best", target: str = "untargeted",
                    target_class: int | None = None, seed: int = 0) -> AttackConfig:
    return _config(norm, eps, steps, relative_step, restarts, random_start, loss, keep, target, target_class, seed)


# ---------------------------------------------------------------- robust accuracy against ε

@dataclass(frozen=True)
class CurvePoint:
    """Robust accuracy of one model at one ε: ``correct`` of ``total`` images are classified
    correctly both clean and after the attack."""
    model: str
    eps: float
    accuracy: float
    correct: int
    total: int


@dataclass
class RobustnessCurves:
    """Robust accuracy against ε: ``accuracy[model][j]`` at ``eps[j]`` (fractions in [0, 1])."""
    norm: str
    eps: list[float]
    models: list[str]
    accuracy: dict[str, list[float]]
    images: int
    settings: dict = field(default_factory=dict)

    def to_tsv(self) -> str:
        lines = ["model\t" + "\t".join(f"eps={e:g}" for e in self.eps)]
        lines += [name + "\t" + "\t".join(f"{a:.4f}" for a in self.accuracy[name]) for name in self.models]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({"experiment": "robust-accuracy-vs-eps", **asdict(self)}, indent=2)


def robustness_curves_job(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
                          norm: str, eps_values: Sequence[float], steps: int = 20, relative_step: float = 2.5,
                          restarts: int = 1, random_start: str = "none", loss: str = "ce", keep: str = "best",
                          batch_size: int = 250, seed: int = 0, attack: str = "pgd") -> JobFactory:
    """Robust accuracy against ε for every model (Madry et al. 2018, Fig. 4 style curves).

    An image counts as robust at ε when the model classifies it correctly clean *and* on its
    untargeted PGD adversarial example (``steps`` steps of size ``relative_step``·ε/steps, the best
    iterate kept by default), so the curve starts at the clean accuracy at ε = 0 and never exceeds it.
    No random start by default: with a budget of 20 steps, starting at x is the stronger attack on
    these models (an L2 start uniform in a 784-dimensional ball lies almost on its sphere and costs
    steps to undo; bench/bench_pgd.py measures it), and the result then needs no seed.

    ``attack`` "apgd" (APGD-CE then APGD-T, 100 steps each) or "autoattack" (the standard AutoAttack)
    replaces PGD by the stronger attacks of ``engine/evaluate.py`` (Croce & Hein 2020, torchattacks);
    ``steps`` and the PGD options then do not apply.

    Events: ``Progress`` per attacked batch; ``Partial("curve_point", CurvePoint)`` per (model, ε),
    ε in the outer loop so all curves grow together; ``Finished(RobustnessCurves)``.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: choose one of {', '.join(ATTACKS)}")
    eps_values = [float(e) for e in eps_values]
    if not eps_values:
        raise ValueError("no ε values given")
    for eps in eps_values:
        _config(norm, eps, steps, relative_step, restarts, random_start, loss, keep, "untargeted", None, seed)
    _check_inputs(models, images, labels)
    check_count(batch_size, "batch size")
    names = list(models)
    settings = dict(steps=steps, relative_step=relative_step, restarts=restarts, random_start=random_start,
                    loss=loss, keep=keep, seed=seed, attack="PGD, untargeted")
    if attack != "pgd":
        settings = dict(attack=ATTACK_LABELS[attack], steps=APGD_STEPS, seed=seed)

    def run(cancel):
        n = len(images)
        clean = {name: _predict(model, images, batch_size).eq(labels) for name, model in models.items()}
        accuracy = {name: [] for name in names}
        total = len(eps_values) * len(names) * n
        done = 0
        for eps in eps_values:
            # an image once fooled stays non-robust (keep="best"): stop attacking it, same verdicts
            config = curve_config(norm, eps, steps=steps, relative_step=relative_step, restarts=restarts,
                                  random_start=random_start, loss=loss, keep=keep, seed=seed)
            for name in names:
                model = models[name]
                message = f"{name}: {'L∞' if norm == 'linf' else 'L2'} ε={eps:g}"
                if attack == "pgd":
                    adversarial = yield from _craft(model, images, labels, None, config, batch_size, cancel,
                                                    done, total, message)
                    robust = clean[name] & _predict(model, adversarial, batch_size).eq(labels)
                else:
                    survived = yield from _strong(model, images, labels, attack, norm, eps, batch_size, seed, cancel,
                                                  done, total, message)
                    robust = clean[name] & survived
                done += n
                point = CurvePoint(name, eps, robust.float().mean().item(), int(robust.sum()), n)
                accuracy[name].append(point.accuracy)
                yield Partial("curve_point", point)
        yield Finished(RobustnessCurves(norm, eps_values, names, accuracy, n, settings))

    return run


def _strong(model, images, labels, attack: str, norm: str, eps: float, batch_size: int, seed: int, cancel,
            done: int, total: int, message: str):
    """Per image, whether it is classified correctly after the strong attack (``evaluate.strong_robust_mask``),
    batch by batch with a cancellation check and a Progress event between batches."""
    classes = model_classes(model) or 10
    masks = []
    for i in range(0, len(images), batch_size):
        cancel.check()
        with torch.inference_mode(False):
            masks.append(strong_robust_mask(model, images[i:i + batch_size], labels[i:i + batch_size], attack=attack,
                                            norm=norm, eps=eps, num_classes=classes, batch_size=batch_size, seed=seed))
        yield Progress(done + i + len(masks[-1]), total, message)
    return torch.cat(masks)


def robustness_curves(models, images, labels, **kwargs) -> RobustnessCurves:
    """:func:`robustness_curves_job` run to its end (no events)."""
    return run_to_end(robustness_curves_job(models, images, labels, **kwargs))


# ---------------------------------------------------------------- transfer matrix

@dataclass(frozen=True)
class TransferCell:
    """Adversarial examples crafted on ``source`` judged by ``target``: ``fooled`` of the
    ``eligible`` images (those the target classifies correctly when clean) are misclassified by the
    target (untargeted), or classified as the attack's target class (targeted)."""
    source: str
    target: str
    success_rate: float
    fooled: int
    eligible: int


@dataclass
class TransferMatrix:
    """``success_rate[i][j]``: adversarial examples of source ``models[i]`` against target
    ``models[j]`` (see :func:`transfer_matrix_job` for the precise definition); NaN where no image was
    eligible."""
    norm: str
    eps: float
    models: list[str]
    success_rate: list[list[float]]
    fooled: list[list[int]]
    eligible: list[list[int]]
    images: int
    settings: dict = field(default_factory=dict)

    def to_tsv(self) -> str:
        lines = ["source\\target\t" + "\t".join(self.models)]
        lines += [src + "\t" + "\t".join(f"{r:.4f}" for r in row) for src, row in zip(self.models, self.success_rate)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        data = asdict(self)
        data["success_rate"] = [[None if r != r else r for r in row] for row in self.success_rate]  # NaN -> null
        return json.dumps({"experiment": "transfer-matrix", **data}, indent=2)


def transfer_matrix_job(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
                        norm: str, eps: float, steps: int = 20, relative_step: float = 2.5, restarts: int = 1,
                        random_start: str = "none", loss: str = "ce", keep: str = "best",
                        target: str = "untargeted", target_class: int | None = None,
                        batch_size: int = 250, seed: int = 0) -> JobFactory:
    """Transfer matrix of PGD adversarial examples (rows: source model, columns: target model).

    For source s, x_i^s is the PGD adversarial example of image x_i crafted on s alone (white box on
    s, ‖x_i^s − x_i‖ ≤ ε). The cell (s, t) is the attack success rate on t

        S[s, t] = |{i ∈ E_t : t(x_i^s) ≠ y_i}| / |E_t|,   E_t = {i : t(x_i) = y_i}

    i.e. among the images the target classifies correctly when clean, the fraction whose
    source-adversarial example the target misclassifies. Targeted (``target`` = "random" (D_rand),
    "next" (D_det) or "class"): t(x_i^s) = t_i counts instead, and E_t also excludes images whose
    target class is their label. The diagonal is the white-box success rate, 1 − robust/clean
    accuracy. The same targets (seeded) are used for every source.

    Events: ``Progress`` per attacked batch; ``Partial("transfer_cell", TransferCell)`` per cell,
    row by row; ``Finished(TransferMatrix)``.
    """
    config = transfer_config(norm, eps, steps=steps, relative_step=relative_step, restarts=restarts,
                             random_start=random_start, loss=loss, keep=keep, target=target, target_class=target_class,
                             seed=seed)
    _check_inputs(models, images, labels)
    check_count(batch_size, "batch size")
    names = list(models)
    settings = dict(steps=steps, relative_step=relative_step, restarts=restarts, random_start=random_start,
                    loss=loss, keep=keep, target=target, target_class=target_class, seed=seed)

    def run(cancel):
        n = len(images)
        targets = transfer_targets(models, images, labels, config)
        clean = {name: _predict(model, images, batch_size) for name, model in models.items()}
        eligible = {name: clean[name].eq(labels) & (targets.ne(labels) if targets is not None else True)
                    for name in names}
        rate = [[float("nan")] * len(names) for _ in names]
        fooled = [[0] * len(names) for _ in names]
        count = [[0] * len(names) for _ in names]
        for i, source in enumerate(names):
            adversarial = yield from _craft(models[source], images, labels, targets, config, batch_size, cancel,
                                            i * n, len(names) * n, f"crafting on {source}")
            for j, target_name in enumerate(names):
                cancel.check()
                predicted = _predict(models[target_name], adversarial, batch_size)
                hit = predicted.eq(targets) if targets is not None else predicted.ne(labels)
                mask = eligible[target_name]
                fooled[i][j], count[i][j] = int((hit & mask).sum()), int(mask.sum())
                rate[i][j] = fooled[i][j] / count[i][j] if count[i][j] else float("nan")
                yield Partial("transfer_cell", TransferCell(source, target_name, rate[i][j], fooled[i][j], count[i][j]))
        yield Finished(TransferMatrix(norm, float(eps), names, rate, fooled, count, n, settings))

    return run


def transfer_matrix(models, images, labels, **kwargs) -> TransferMatrix:
    """:func:`transfer_matrix_job` run to its end (no events)."""
    return run_to_end(transfer_matrix_job(models, images, labels, **kwargs))


# ---------------------------------------------------------------- as the Experiments tab runs them

def batch_for(steps: int) -> int:
    """Images per attacked batch: the job checks for cancellation between batches, so a batch is kept
    to about 2,500 image-steps (a second or less on a laptop CPU); at 10 steps this is the CLI's 250,
    so the default settings give the CLI's numbers."""
    return max(25, min(250, 2500 // max(1, int(steps))))


@dataclass(frozen=True)
class RobustnessRequest:
    """Robust accuracy against ε of the models ``keys`` on ``images`` / ``labels`` ((N, C, H, W) and
    (N,) tensors), untargeted PGD-``steps`` in ``norm`` at every ε of ``eps_values``, or the stronger
    ``attack`` "apgd" / "autoattack" (``steps`` then does not apply)."""
    keys: tuple[str, ...]
    images: Any
    labels: Any
    norm: str
    eps_values: tuple[float, ...]
    steps: int
    attack: str = "pgd"
    cluster: Any = None  # a cluster.ClusterOptions: PGD on Ray (engine/cluster_experiments.py)


@dataclass(frozen=True)
class TransferRequest:
    """The transfer matrix of the models ``keys`` on ``images`` / ``labels``: PGD-``steps`` in ``norm``
    at radius ``eps`` with target mode ``target``."""
    keys: tuple[str, ...]
    images: Any
    labels: Any
    norm: str
    eps: float
    steps: int
    target: str


def attack_passes(attack: str, steps: int, classes: int) -> tuple[int, int]:
    """(forward, forward-and-backward) passes per image an attack spends at most: PGD its ``steps``;
    APGD-CE ``APGD_STEPS`` and APGD-T as many per target class (torchattacks attacks one target class
    after another); AutoAttack also FAB-T's steps per target class and Square's queries."""
    targets = max(1, min(9, classes - 1))
    if attack == "pgd":
        return 0, steps
    gradient = APGD_STEPS * (1 + targets)
    if attack == "autoattack":
        return SQUARE_QUERIES, gradient + APGD_STEPS * targets
    return 0, gradient


def curves_estimate(models: Mapping[str, nn.Module], images: int, input_shape, eps_values, steps: int,
                    batch_size: int, attack: str = "pgd") -> CostEstimate:
    """What the curves cost at most: per model, a clean forward pass of every image and the attack's
    passes (:func:`attack_passes`) at every ε > 0 (an image once fooled is attacked no further, so a
    weak model's curve costs less)."""
    attacked = sum(1 for eps in eps_values if eps > 0)
    per_image = 0.0
    for model in models.values():
        forward, gradient = attack_passes(attack, steps, model_classes(model) or 10)
        per_image += estimate_seconds(model, input_shape, 1 + forward * attacked, gradient_passes=gradient * attacked,
                                      batch_size=min(batch_size, images))
    method = f"PGD-{steps}" if attack == "pgd" else ATTACK_LABELS[attack]
    size = f"{images:,} images × {attacked} ε × {len(models)} model{'s' if len(models) != 1 else ''}, {method}"
    return CostEstimate(per_image, images, "image", size)


def cached_robustness_curves_job(cache, request: RobustnessRequest) -> JobFactory:
    """:func:`robustness_curves_job` with the cache's models, in batches of :func:`batch_for` images;
    first Partial("estimate", CostEstimate). With ``request.cluster`` (PGD only), the same points from Ray
    workers."""
    if request.cluster is not None:
        if request.attack != "pgd":
            raise ValueError(f"{ATTACK_LABELS[request.attack]} runs on this machine only; choose PGD to use Ray")
        from .cluster_experiments import ray_robustness_curves_job

        return ray_robustness_curves_job(cache, request)
    models = cache.models(request.keys)
    # a strong attack spends up to a thousand passes per image: smaller batches keep Cancel prompt
    batch = batch_for(request.steps if request.attack == "pgd" else sum(attack_passes(request.attack, 0, 10)))
    job = robustness_curves_job(models, request.images, request.labels, norm=request.norm,
                                eps_values=request.eps_values, steps=request.steps, batch_size=batch,
                                attack=request.attack)

    def run(cancel):
        yield announce(curves_estimate(models, len(request.images), tuple(request.images.shape[1:]),
                                       request.eps_values, request.steps, batch, request.attack))
        yield from inference_mode_off(job(cancel))

    return run


def cached_transfer_matrix_job(cache, request: TransferRequest) -> JobFactory:
    """:func:`transfer_matrix_job` with the cache's models, in batches of :func:`batch_for` images."""
    job = transfer_matrix_job(cache.models(request.keys), request.images, request.labels, norm=request.norm,
                              eps=request.eps, steps=request.steps, target=request.target,
                              batch_size=batch_for(request.steps))
    return lambda cancel: inference_mode_off(job(cancel))


def save_result(result: RobustnessCurves | TransferMatrix, stem: Path | str) -> list[Path]:
    """Write ``stem.tsv`` and ``stem.json``; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".tsv"), stem.with_name(stem.name + ".json")]
    paths[0].write_text(result.to_tsv())
    paths[1].write_text(result.to_json() + "\n")
    return paths
