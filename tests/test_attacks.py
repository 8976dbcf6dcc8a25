"""PGD, FGSM, targets, losses, restarts, the smoothed-classifier attack and the streaming job.

Property sweeps run on a tiny random CNN (fast, and its gradients are as good as any for the
geometry); attack-success checks run on the built-in standard model."""

import copy
import math

import numpy as np
import pytest
import torch
from helpers import write_small_checkpoints
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import robustlens.engine.attacks as attacks_module
from robustlens.engine.attack_gradients import (CACHE_BYTES, MAX_SUB_BATCH, MIN_SUB_BATCH, activation_bytes_per_image,
                                                gradient_sub_batch)
from robustlens.engine.attack_jobs import AttackConfig, AttackStep, attack, attack_job
from robustlens.engine.attack_judge import (SMOOTH_ALPHA, SMOOTH_N, SMOOTH_N0, SMOOTH_SEED, AttackParams, AttackRequest,
                                            attack_and_judge_job)
from robustlens.engine.attacks import (SmoothedSoftClassifier, attack_loss, choose_targets, fgsm, initial_delta,
                                       margin_loss, perturbation_norm, pgd, pgd_steps)
from robustlens.engine.jobs import Aborted, CancelToken, Finished, Partial, Progress, Snapshot, run_job, run_to_end
from robustlens.engine.model_cache import ModelCache
from robustlens.engine.models import build_model, save_checkpoint

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 10))
    return model.eval()


TINY = tiny_model()


def random_images(n: int, seed: int) -> torch.Tensor:
    """Random [0,1] images with many pixels exactly at 0 and 1, where the box constraint bites."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 1.4 - 0.2
    return x.clamp(0, 1)


@pytest.fixture(scope="module")
def standard(zoo_model):
    return zoo_model("fashion-mnist/standard")


@pytest.fixture(scope="module")
def test_batch(fmnist_test):
    return fmnist_test.images[:32], fmnist_test.labels[:32]


# ---------------------------------------------------------------- the guarantees at every step

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(norm=st.sampled_from(["linf", "l2"]), eps_fraction=st.floats(0.0, 1.0),
       start=st.sampled_from(["none", "uniform", "sphere"]), restarts=st.integers(1, 3),
       steps=st.integers(1, 4), relative_step=st.floats(0.1, 4.0), loss=st.sampled_from(["ce", "cw"]),
       targeted=st.booleans(), seed=st.integers(0, 10_000))
def test_every_iterate_stays_in_the_ball_and_the_box(norm, eps_fraction, start, restarts, steps, relative_step,
                                                     loss, targeted, seed):
    eps = eps_fraction * (0.5 if norm == "linf" else 8.0)
    x = random_images(6, seed)
    y = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(seed))
    seen = 0
    for state in pgd_steps(TINY, x, y, norm=norm, eps=eps, step_size=relative_step * eps / steps, steps=steps,
                           random_start=start, restarts=restarts, targeted=targeted, loss=loss,
                           generator=torch.Generator().manual_seed(seed)):
        adv = state.adversarial
        assert adv.min() >= 0 and adv.max() <= 1
        assert perturbation_norm(adv - x, norm).max() <= eps + TOL
        seen += 1
    assert seen == restarts * steps
    for keep in ("best", "last"):
        out = pgd(TINY, x, y, norm=norm, eps=eps, step_size=relative_step * eps / steps, steps=steps,
                  random_start=start, restarts=restarts, targeted=targeted, loss=loss, keep=keep,
                  generator=torch.Generator().manual_seed(seed))
        assert out.min() >= 0 and out.max() <= 1
        assert perturbation_norm(out - x, norm).max() <= eps + TOL


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 2.0)])
def test_streamed_snapshots_and_numbers_stay_in_the_ball(norm, eps):
    x, y = random_images(3, 1), torch.tensor([0, 4, 9])
    config = AttackConfig(norm=norm, eps=eps, steps=6, random_start="sphere", restarts=2, step_size=eps)
    events = list(run_job(attack_job(TINY, x, y, config, snapshot_every=1), CancelToken()))
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    steps = [e.value for e in events if isinstance(e, Partial)]
    assert len(snapshots) == len(steps) == 2 * (6 + 1)  # the start and every step, per restart
    for snap in snapshots:
        assert snap.image.min() >= 0 and snap.image.max() <= 1
        delta = torch.from_numpy(snap.info["perturbation"])
        assert np.allclose(snap.image - x.numpy(), snap.info["perturbation"], atol=1e-7)
        assert perturbation_norm(delta, norm).max() <= eps + TOL
    assert all(s.perturbation_norm.max() <= eps + TOL for s in steps)


def test_initial_delta_uniform_and_sphere():
    x = torch.full((200, 1, 28, 28), 0.5)  # ε below 0.5: the box never clips
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(perturbation_norm(initial_delta(x, "l2", 0.3, "sphere", g), "l2"), torch.tensor(0.3))
    inside = perturbation_norm(initial_delta(x, "l2", 0.3, "uniform", g), "l2")
    assert inside.max() <= 0.3 + TOL
    # uniform in a 784-ball: radius ε·U^(1/784), P(r < 0.99ε) = 0.99^784 ≈ 4e-4 per sample
    assert (inside > 0.99 * 0.3).float().mean() > 0.9
    vertex = initial_delta(x, "linf", 0.2, "sphere", g)
    assert torch.allclose(vertex.abs(), torch.tensor(0.2))
    cube = initial_delta(x, "linf", 0.2, "uniform", g)
    assert cube.abs().max() <= 0.2 and cube.mean().abs() < 0.005 and cube.std() > 0.1
    assert torch.equal(initial_delta(x, "l2", 0.3, "none", g), torch.zeros_like(x))


# ---------------------------------------------------------------- sub-batched gradients (same iterates)

def reference_pgd(model, x, y, *, norm, eps, step_size, steps, start_delta):
    """PGD written out on the whole batch at once, the computation before sub-batching: one forward
    and one input-gradient pass over all images per step, L∞ sign steps or L2 normalised steps."""
    adversarial = (x + start_delta).clamp(0, 1)
    for _ in range(steps):
        xg = adversarial.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
        with torch.no_grad():
            if norm == "linf":
                delta = (adversarial + step_size * grad.sign() - x).clamp(-eps, eps)
            else:
                delta = adversarial - x + step_size * grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
                delta = delta * (eps / (delta.flatten(1).norm(dim=1) + 1e-12)).clamp(max=1).view(-1, 1, 1, 1)
            adversarial = (x + delta).clamp(0, 1)
    return adversarial


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_sub_batched_pgd_gives_the_unsplit_iterates(standard, fmnist_test, monkeypatch, norm, eps):
    x, y = fmnist_test.images[:300], fmnist_test.labels[:300]
    sub = gradient_sub_batch(standard, x)
    assert sub is not None and sub < len(x)  # the built-in CNN on the CPU is split
    steps, step_size = 10, 2.5 * eps / 10

    def run():
        return pgd(standard, x, y, norm=norm, eps=eps, step_size=step_size, steps=steps, random_start="uniform",
                   generator=torch.Generator().manual_seed(7))

    split = run()
    monkeypatch.setattr(attacks_module, "gradient_sub_batch", lambda model, images: None)
    whole = run()  # the same code on the whole batch at once
    assert (split - whole).abs().max() <= 1e-5
    if norm == "linf":  # and the textbook loop written out (sign steps: insensitive to rounding order)
        start = initial_delta(x, norm, eps, "uniform", torch.Generator().manual_seed(7))
        expected = reference_pgd(standard, x, y, norm=norm, eps=eps, step_size=step_size, steps=steps,
                                 start_delta=start)
        assert (split - expected).abs().max() <= 1e-5
    with torch.no_grad():
        assert torch.equal(standard(split).argmax(1), standard(whole).argmax(1))
    # the streamed form (best iterate, per-step numbers) takes the same sub-batched path: the numbers it
    # reports are the model's on the iterate it reports
    final = list(pgd_steps(standard, x[:40], y[:40], norm=norm, eps=eps, step_size=step_size, steps=3,
                           random_start=False))[-1]
    with torch.no_grad():
        assert torch.allclose(final.logits, standard(final.adversarial), atol=1e-5)


def test_robust_accuracy_is_the_same_split_or_not(zoo_model, fmnist_test, monkeypatch):
    model = zoo_model("fashion-mnist/linf-robust")
    x, y = fmnist_test.images[:200], fmnist_test.labels[:200]
    config = AttackConfig(norm="linf", eps=0.1, steps=10, random_start="uniform", seed=3)
    split = attack(model, x, y, config)
    monkeypatch.setattr(attacks_module, "gradient_sub_batch", lambda model, images: None)
    whole = attack(model, x, y, config)
    assert (split.adversarial - whole.adversarial).abs().max() <= 1e-5
    assert torch.equal(split.logits.argmax(1), whole.logits.argmax(1))
    assert 0.3 < (whole.logits.argmax(1) == y).float().mean() < 0.95  # a subset where the verdicts vary


def test_the_sub_batch_holds_the_activations_in_cache(standard):
    x = torch.rand(1000, 1, 28, 28)
    # fmnist-cnn's leaf outputs per image: normalize 784, conv/relu 2·32·28², pool 32·14², conv/relu
    # 2·64·14², pool and flatten 2·64·7², linear/relu 2·256, head 10 (float32)
    per_image = 4 * (784 + 2 * 32 * 28 * 28 + 32 * 14 * 14 + 2 * 64 * 14 * 14 + 2 * 64 * 7 * 7 + 2 * 256 + 10)
    assert activation_bytes_per_image(standard, x) == per_image
    sub = gradient_sub_batch(standard, x)
    assert sub & (sub - 1) == 0 and MIN_SUB_BATCH <= sub <= MAX_SUB_BATCH
    assert sub * per_image <= CACHE_BYTES or sub == MIN_SUB_BATCH
    assert 2 * sub * per_image > CACHE_BYTES or sub == MAX_SUB_BATCH


@pytest.mark.parametrize("arch", ["fmnist-resnet", "cifar_resnet20"])
def test_residual_networks_split_with_the_unsplit_gradient(arch):
    """Our residual architectures (eval mode) treat every image on its own: PGD splits them into
    cache-sized sub-batches, with the gradient of the whole batch at once, bit for bit."""
    from robustlens.engine.attack_gradients import loss_and_gradient
    from robustlens.engine.models import build_model

    torch.manual_seed(0)
    model = build_model(arch).eval()
    for module in model.modules():  # running statistics away from 0 / 1, as a trained model's
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    shape = tuple(model.meta.input_shape)
    x, y = torch.rand((80,) + shape), torch.arange(80) % 10
    sub = gradient_sub_batch(model, x)
    assert sub is not None and sub < len(x)

    def objective(logits, classes):
        return nn.functional.cross_entropy(logits, classes, reduction="none")

    split = loss_and_gradient(model, x, y, objective, sub)
    whole = loss_and_gradient(model, x, y, objective, None)
    for ours, theirs in zip(split, whole):
        assert torch.equal(ours, theirs)
    assert gradient_sub_batch(model.train(), x) is None  # batch statistics: the whole batch


class _BatchMean(nn.Module):
    """A layer whose output depends on the whole batch (an unknown module type)."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def test_models_that_mix_images_run_on_the_whole_batch():
    torch.manual_seed(0)
    batch_norm = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                               nn.Linear(4 * 28 * 28, 10))
    x, y = random_images(1000, 5), torch.arange(1000) % 10  # more images than one sub-batch
    assert gradient_sub_batch(batch_norm.eval(), x) is not None  # eval mode: running statistics, per image
    assert gradient_sub_batch(batch_norm.train(), x) is None  # train mode: batch statistics
    assert gradient_sub_batch(nn.Sequential(TINY[0], _BatchMean(), *list(TINY)[1:]), x) is None
    assert gradient_sub_batch(SmoothedSoftClassifier(TINY, 0.25, 4), x) is None  # noise drawn per batch shape
    # a batch-norm model in train mode behaves as before: batch statistics over all 1,000 images
    reference_model, attacked_model = copy.deepcopy(batch_norm), copy.deepcopy(batch_norm)
    expected = reference_pgd(reference_model, x, y, norm="linf", eps=0.1, step_size=0.03, steps=4,
                             start_delta=torch.zeros_like(x))
    got = pgd(attacked_model, x, y, norm="linf", eps=0.1, step_size=0.03, steps=4, random_start=False)
    assert (got - expected).abs().max() <= 1e-5
    assert attacked_model.training
    assert torch.allclose(attacked_model[1].running_mean, reference_model[1].running_mean)


# ---------------------------------------------------------------- FGSM

@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_is_one_step_from_zero(norm, targeted):
    x, y = random_images(8, 3), torch.arange(8) % 10
    eps = 0.05 if norm == "linf" else 1.0
    # independent computation: x ± ε·s(∇ₓ CE), clamped to [0,1]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(TINY(xg), y, reduction="sum"), xg)
    direction = grad.sign() if norm == "linf" else grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = (x + (-1 if targeted else 1) * eps * direction).clamp(0, 1)
    got = fgsm(TINY, x, y, norm=norm, eps=eps, targeted=targeted)
    assert torch.allclose(got, expected, atol=1e-6)
    one_step = pgd(TINY, x, y, norm=norm, eps=eps, step_size=eps, steps=1, random_start=False, targeted=targeted)
    assert torch.equal(got, one_step)


# ---------------------------------------------------------------- targets

def test_choose_targets_modes():
    labels = torch.randint(0, 10, (5000,), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    rand = choose_targets(labels, 10, "random", g)
    assert not rand.eq(labels).any()
    # uniform over the 9 other classes: each offset (t − y) mod 10 in 1..9 about 1/9 of the time
    offsets = torch.bincount((rand - labels) % 10, minlength=10).float() / len(labels)
    assert offsets[0] == 0 and (offsets[1:] - 1 / 9).abs().max() < 0.02
    assert torch.equal(choose_targets(labels, 10, "next"), (labels + 1) % 10)
    assert torch.equal(choose_targets(labels, 10, "class", target_class=3), torch.full_like(labels, 3))
    again = choose_targets(labels, 10, "random", torch.Generator().manual_seed(2))
    assert torch.equal(rand, again)  # a seed makes D_rand reproducible
    for bad in [dict(mode="class", target_class=10), dict(mode="untargeted"), dict(mode="sideways")]:
        with pytest.raises(ValueError):
            choose_targets(labels, 10, **bad)


def test_targeted_attack_reaches_its_target(standard, test_batch):
    x, y = test_batch
    for mode in ("random", "next"):
        result = attack(standard, x, y, AttackConfig(norm="l2", eps=3.0, steps=20, target=mode))
        assert not result.targets.eq(y).any()
        assert result.success.float().mean() >= 0.9, f"{mode}: {result.success.float().mean():.2f}"
        assert result.predicted.eq(result.targets).equal(result.success)
        assert result.perturbation_norm.max() <= 3.0 + TOL


def test_untargeted_attack_breaks_the_standard_model(standard, test_batch):
    x, y = test_batch
    clean = standard(x).argmax(1).eq(y).float().mean()
    for norm, eps in [("linf", 0.1), ("l2", 1.5)]:
        result = attack(standard, x, y, AttackConfig(norm=norm, eps=eps, steps=20))
        robust = standard(result.adversarial).argmax(1).eq(y).float().mean()
        assert clean > 0.8 and robust < 0.15, (norm, float(robust))
        assert torch.equal(result.predicted, standard(result.adversarial).argmax(1))


# ---------------------------------------------------------------- restarts and the best iterate

def _outcome(model, adversarial, classes, loss="ce"):
    with torch.no_grad():
        logits = model(adversarial)
    return logits.argmax(1).ne(classes), attack_loss(logits, classes, loss)


@pytest.mark.parametrize("norm,eps", [("linf", 0.03), ("l2", 0.6)])
def test_restarts_and_best_iterate_are_never_worse(standard, test_batch, norm, eps):
    x, y = test_batch
    kw = dict(norm=norm, eps=eps, step_size=2.5 * eps / 5, steps=5, random_start="uniform")
    one = pgd(standard, x, y, **kw, generator=torch.Generator().manual_seed(7))
    many = pgd(standard, x, y, **kw, restarts=3, generator=torch.Generator().manual_seed(7))
    best = pgd(standard, x, y, **kw, restarts=3, keep="best", generator=torch.Generator().manual_seed(7))
    s1, l1 = _outcome(standard, one, y)
    for better in (many, best):
        s, loss = _outcome(standard, better, y)
        assert (s | ~s1).all(), "a sample fooled by one run must stay fooled with restarts"
        both_failed = ~s & ~s1
        assert (loss[both_failed] >= l1[both_failed] - 1e-5).all()


def test_best_iterate_beats_the_last_on_an_overshooting_attack(standard, test_batch):
    """A step of 2ε overshoots every time: the last iterate can lose what an earlier one had."""
    x, y = test_batch
    config = AttackConfig(norm="linf", eps=0.03, steps=6, step_size=0.06, random_start="uniform")
    last = attack(standard, x, y, config, keep="last")
    best = attack(standard, x, y, config, keep="best")
    assert (best.success | ~last.success).all()
    assert best.success.sum() >= last.success.sum()


# ---------------------------------------------------------------- losses

def test_margin_loss_matches_definition():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
    classes = torch.tensor([1, 2])
    assert torch.allclose(margin_loss(logits, classes), torch.tensor([2.0 - 3.0, 5.0 - 0.0]))
    z = torch.randn(500, 10)
    c = torch.randint(0, 10, (500,))
    m = margin_loss(z, c)
    assert torch.equal(m < 0, z.argmax(1).eq(c))  # negative margin ⇔ classified as c
    assert torch.allclose(attack_loss(z, c, "ce"), F.cross_entropy(z, c, reduction="none"))


def test_cw_loss_attack_fools_the_standard_model(standard, test_batch):
    x, y = test_batch
    result = attack(standard, x, y, AttackConfig(norm="l2", eps=1.5, steps=20, loss="cw"))
    assert result.success.float().mean() > 0.85
    margin = margin_loss(standard(result.adversarial), y)
    assert torch.equal(margin > 0, result.success)  # success ⇔ positive margin (ties aside)


# ---------------------------------------------------------------- the smoothed classifier

def test_smoothed_soft_classifier_is_the_log_mean_softmax():
    x = random_images(2, 5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    smoothed = SmoothedSoftClassifier(TINY, 0.25, samples=8, generator=g1)
    noise = torch.randn((8, 2, 1, 28, 28), generator=g2) * 0.25
    expected = torch.stack([TINY(x + noise[i]).softmax(1) for i in range(8)]).mean(0)
    out = smoothed(x)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)
    fixed = SmoothedSoftClassifier(TINY, 0.25, samples=8, resample=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fixed(x), fixed(x))  # the same noise draws at every call
    with pytest.raises(ValueError):
        SmoothedSoftClassifier(TINY, 0.0)


@pytest.mark.parametrize("resample", [True, False])
def test_smoothed_attack_stays_in_the_ball(resample):
    x, y = random_images(4, 9), torch.tensor([1, 2, 3, 4])
    config = AttackConfig(norm="l2", eps=0.5, steps=4, random_start="uniform", smoothing_sigma=0.25,
                          smoothing_samples=8, smoothing_resample=resample)
    result = attack(TINY, x, y, config)
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert result.perturbation_norm.max() <= 0.5 + TOL
    assert torch.allclose(result.probabilities.sum(1), torch.ones(4), atol=1e-5)
    # it raises the smoothed loss it is told to raise (fixed noise: the objective is deterministic)
    if not resample:
        assert (result.loss >= attack_loss(result.clean_logits, y) - 0.5).all()


# ---------------------------------------------------------------- the job

def test_attack_job_streams_and_matches_attack():
    x, y = random_images(2, 11), torch.tensor([3, 5])
    config = AttackConfig(norm="linf", eps=0.1, steps=10, random_start="uniform", restarts=2, seed=4)
    events = list(run_job(attack_job(TINY, x, y, config, judges={"same": TINY}, snapshot_every=5), CancelToken()))
    progress = [e for e in events if isinstance(e, Progress)]
    steps = [e.value for e in events if isinstance(e, Partial) and e.kind == "attack_step"]
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    assert isinstance(events[-1], Finished)
    assert [(s.restart, s.step) for s in steps] == [(r, k) for r in range(2) for k in range(11)]
    assert progress[-1].fraction == 1.0
    assert [(s.info["restart"], s.info["step"]) for s in snapshots] == [(r, k) for r in range(2) for k in (0, 5, 10)]
    assert all(isinstance(s, AttackStep) and s.loss.shape == (2,) for s in steps)
    probs = steps[-1].true_probability
    assert ((probs >= 0) & (probs <= 1)).all()
    result = events[-1].result
    direct = attack(TINY, x, y, config)
    assert torch.equal(result.adversarial, direct.adversarial)
    assert torch.equal(result.judgments["same"].predicted, result.predicted)


def test_attack_job_throttles_snapshots_by_time():
    x, y = random_images(1, 2), torch.tensor([0])
    config = AttackConfig(norm="l2", eps=1.0, steps=30)
    events = list(run_job(attack_job(TINY, x, y, config, snapshot_interval=3600.0), CancelToken()))
    assert [e.info["step"] for e in events if isinstance(e, Snapshot)] == [0, 30]  # only first and last


def test_attack_job_cancels_mid_run():
    x, y = random_images(1, 2), torch.tensor([0])
    cancel = CancelToken()
    seen = []
    for event in run_job(attack_job(TINY, x, y, AttackConfig(steps=1000)), cancel):
        seen.append(event)
        if isinstance(event, Partial) and event.value.step == 3:
            cancel.cancel()
    assert isinstance(seen[-1], Aborted)
    assert max(e.value.step for e in seen if isinstance(e, Partial)) == 3


def test_bad_settings_are_one_line_errors():
    x, y = random_images(1, 2), torch.tensor([0])
    for bad in [dict(norm="l3"), dict(eps=-1.0), dict(eps=math.inf), dict(steps=-2), dict(restarts=0),
                dict(random_start="edge"), dict(loss="hinge"), dict(keep="median"), dict(target="class"),
                dict(smoothing_sigma=-0.1)]:
        with pytest.raises(ValueError) as info:
            attack(TINY, x, y, AttackConfig(), **bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(TINY, x * 3, y, AttackConfig())
    with pytest.raises(RuntimeError):  # inside a job the error becomes Failed -> run_to_end raises
        run_to_end(attack_job(TINY, x, y, AttackConfig(norm="l3")))


def test_model_parameters_get_no_gradients():
    model = tiny_model(1)
    attack(model, random_images(2, 0), torch.tensor([0, 1]), AttackConfig(steps=3))
    pgd(model, random_images(2, 0), torch.tensor([0, 1]), eps=0.1, step_size=0.01, steps=3)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("norm,eps,start", [("linf", 0.03, "none"), ("l2", 0.6, "uniform")])
def test_stopping_at_success_keeps_the_verdicts(standard, test_batch, norm, eps, start):
    x, y = test_batch
    config = AttackConfig(norm=norm, eps=eps, steps=8, random_start=start, restarts=2)
    full = attack(standard, x, y, config)
    fast = attack(standard, x, y, config, stop_at_success=True)
    assert torch.equal(full.success, fast.success)
    assert torch.equal(fast.predicted, standard(fast.adversarial).argmax(1))
    assert fast.perturbation_norm.max() <= eps + TOL
    assert fast.adversarial.min() >= 0 and fast.adversarial.max() <= 1
    # a frozen image stays put: after its first success every streamed iterate repeats it
    events = list(run_job(attack_job(standard, x, y, AttackConfig(norm=norm, eps=eps, steps=8, random_start=start,
                                                                  stop_at_success=True), snapshot_every=1),
                          CancelToken()))
    snaps = [e.image for e in events if isinstance(e, Snapshot)]
    steps = [e.value for e in events if isinstance(e, Partial)]
    assert len(snaps) == len(steps) == 9
    for k in range(1, 9):
        fooled = steps[k - 1].success
        assert fooled.any() or k < 3
        assert np.array_equal(snaps[k][fooled], snaps[k - 1][fooled])
        assert (steps[k].success >= fooled).all()


@pytest.mark.parametrize("start", ["none", "uniform"])
def test_clean_predictions_are_the_models(start):
    x, y = random_images(5, 4), torch.arange(5)
    result = attack(TINY, x, y, AttackConfig(norm="l2", eps=1.0, steps=3, random_start=start))
    with torch.no_grad():
        assert torch.allclose(result.clean_logits, TINY(x), atol=1e-6)


def test_attack_and_judge_job_judges_with_every_model_and_certifies(tmp_path):
    """The Attack tab's engine job: the streamed PGD steps, every judge's clean and adversarial
    probabilities, and CERTIFY of each noise model's smoothed classifier on both images."""
    keys = write_small_checkpoints(tmp_path)
    cache = ModelCache("cpu")
    image = torch.rand(1, 1, 28, 28)
    params = AttackParams(source=keys[0], smoothed=False, samples=1, norm="linf", eps=0.1, step_size=None, steps=3,
                          random_start="none", restarts=1, target="untargeted", target_class=None, loss="ce")
    steps = []
    outcome = run_to_end(attack_and_judge_job(cache, AttackRequest(params, image, 3, tuple(keys), (keys[1],))),
                         on_event=lambda e: steps.append(e.value) if isinstance(e, Partial) else None)
    assert [s.step for s in steps] == [0, 1, 2, 3]
    assert np.abs(outcome.perturbation).max() <= 0.1 + 1e-6
    assert outcome.label == 3 and outcome.label_known
    for key in keys:
        with torch.no_grad():
            expected = cache.model(key)(torch.as_tensor(outcome.adversarial)).softmax(1)[0].numpy()
            clean = cache.model(key)(image).softmax(1)[0].numpy()
        np.testing.assert_allclose(outcome.adversarial_probs[key], expected, atol=1e-5)
        np.testing.assert_allclose(outcome.clean_probs[key], clean, atol=1e-5)
    verdict = outcome.smoothed[keys[1]]
    smooth = cache.smooth(keys[1])
    before = smooth.certify_detailed(image, SMOOTH_N0, SMOOTH_N, SMOOTH_ALPHA, generator=SMOOTH_SEED)
    assert verdict.sigma == 0.25
    assert (verdict.clean_prediction, verdict.clean_radius) == (before.prediction, pytest.approx(before.radius))


def test_pgd_splits_the_batch_behind_its_finite_output_check(zoo_model):
    """pgd checks every forward's logits for NaN (engine/checks.py) by wrapping the model: the wrapper
    must not turn the sub-batching off, since the check is per sample too."""
    from robustlens.engine.attack_gradients import gradient_sub_batch
    from robustlens.engine.checks import finite_outputs

    model = zoo_model("fashion-mnist/standard")
    images = torch.rand(300, 1, 28, 28)
    assert gradient_sub_batch(finite_outputs(model), images) == gradient_sub_batch(model, images) is not None
