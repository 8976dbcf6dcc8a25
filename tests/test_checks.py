"""Bad input is an error that says what is wrong, never a silent wrong answer (issue 11, item 3):
NaN / out-of-range images, σ = inf, NaN weights and models whose outputs are not finite are refused
at every public engine entry point, and the CLI says so in one line."""

import math
from dataclasses import replace

import numpy as np
import pytest
from helpers import one_line_error
import torch
from torch import nn

from robustlens.engine.attack_jobs import AttackConfig, attack, attack_job, judge
from robustlens.engine.attacks import fgsm, pgd, pgd_steps
from robustlens.engine.certify_jobs import CertifyParams, CertifyRequest, certified_accuracy_job, certify_image_job
from robustlens.engine.checks import (NonFiniteOutputError, check_count, check_finite_outputs, check_images,
                                      check_labels, check_probability, check_sigma, count_nonfinite)
from robustlens.engine.cli import main
from robustlens.engine.geometry import GeometryRequest, geometry_job
from robustlens.engine.geometry_overlays import certified_disk_job
from robustlens.engine.geometry_plane import plane_through
from robustlens.engine.inversion import invert, reconstruct_job
from robustlens.engine.jobs import run_to_end
from robustlens.engine.models import ModelError, load_checkpoint, save_checkpoint
from robustlens.engine.robustness import robustness_curves_job, transfer_matrix_job
from robustlens.engine.smoothing import Smooth, certify_job

NOISE = "fashion-mnist/noise-0.25"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def noise_model(zoo_model):
    return zoo_model(NOISE)


@pytest.fixture(scope="module")
def image(fmnist_test):
    return fmnist_test.images[0].clone()  # a (1, 28, 28) [0, 1] test image (an ankle boot)


def bad_images(x):
    """The item's three silent wrong answers, and a 0–255 image, with what the error must say."""
    return [(torch.full_like(x, float("nan")), "784 NaN pixels"),
            (x * 1000, r"pixel values must be in \[0, 1\]"),
            (x - 5, r"pixel values must be in \[0, 1\]: the image has -5 … -4"),
            (x * 255, "did you pass 0–255"),
            (torch.where(torch.arange(784).view(1, 28, 28) < 3, math.inf, x), "3 infinite pixels")]


class NaNWhenBright(nn.Module):
    """The noise model, except that its logits are NaN (or inf) when the top-left pixel of the input
    is above ``threshold``: under σ = 0.25 noise on a black corner that is some of the draws, not all."""

    def __init__(self, model, threshold=0.3, value=float("nan")):
        super().__init__()
        self.model, self.meta, self.threshold, self.value = model, model.meta, threshold, value

    def forward(self, x):
        logits = self.model(x)
        bright = x[:, 0, 0, 0] > self.threshold
        return torch.where(bright[:, None], torch.full_like(logits, self.value), logits)


# ---------------------------------------------------------------- the checks themselves

def test_check_images_names_what_is_wrong(image):
    check_images(image, (1, 28, 28))  # a real image passes
    check_images(torch.zeros(2, 1, 28, 28)), check_images(torch.ones(1, 28, 28))  # the box's faces are in it
    check_images(np.asarray(image))  # arrays too
    for bad, says in bad_images(image):
        with pytest.raises(ValueError, match=says) as info:
            check_images(bad, (1, 28, 28))
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="3×32×32, but the model takes 1×28×28 images"):
        check_images(torch.rand(3, 32, 32), (1, 28, 28))
    with pytest.raises(ValueError, match="one image"):
        check_images(torch.rand(28, 28))
    with pytest.raises(ValueError, match="12 NaN pixels and 1 infinite pixel"):
        bad = image.clone().view(-1)
        bad[:12], bad[20] = float("nan"), -math.inf
        check_images(bad.view(1, 28, 28))
    # off the box is allowed where asked (a plane through an image), non-finite never
    check_images(image - 5, unit_range=False)
    with pytest.raises(ValueError, match="NaN"):
        check_images(torch.full_like(image, float("nan")), unit_range=False)


def test_number_checks():
    assert check_sigma(0.25) == 0.25
    for bad in (math.inf, math.nan, 0.0, -1.0, "0.5", None, True):
        with pytest.raises(ValueError, match="σ must be"):
            check_sigma(bad)
    assert check_count(1000.0, "n") == 1000 and check_count(np.int64(3), "n") == 3
    for bad in (0, -2, 1.5, math.inf, math.nan, "10", True):
        with pytest.raises(ValueError, match="n must be"):
            check_count(bad, "n")
    with pytest.raises(ValueError, match="at most 5"):
        check_count(6, "k", maximum=5)
    for bad in (0.0, 1.0, math.nan, -0.1, math.inf):
        with pytest.raises(ValueError, match="between 0 and 1"):
            check_probability(bad)
    check_labels(torch.tensor([0, 9]), 10)
    with pytest.raises(ValueError, match="label 42 is not a class: the model has classes 0..9"):
        check_labels(torch.tensor([3, 42]), 10)
    with pytest.raises(ValueError, match="-1"):
        check_labels(torch.tensor([-1]), 10)


def test_check_finite_outputs_says_nan_or_inf():
    check_finite_outputs(torch.randn(5, 10))
    logits = torch.randn(5, 10)
    logits[2, 3] = math.inf
    with pytest.raises(NonFiniteOutputError, match="^the model outputs inf for this input$"):
        check_finite_outputs(logits)
    logits[4, 0] = math.nan
    with pytest.raises(NonFiniteOutputError, match="^the model outputs NaN for this input$"):
        check_finite_outputs(logits)
    assert issubclass(NonFiniteOutputError, ValueError)  # the CLI's one-line errors catch it


# ---------------------------------------------------------------- randomized smoothing

def test_nan_and_out_of_range_images_are_never_certified(noise_model, image):
    smooth = Smooth.from_model(noise_model)
    assert smooth.certify(image, 50, 200, 0.001, generator=0)[0] == 9  # the real image still certifies
    for bad, says in bad_images(image):
        for call in (lambda: smooth.certify(bad, 50, 200, 0.001, generator=0),
                     lambda: smooth.certify_detailed(bad, 50, 200, 0.001, generator=0),
                     lambda: smooth.predict(bad, 200, 0.001, generator=0),
                     lambda: smooth.noise_samples(bad, 4, generator=0),
                     lambda: certify_job(smooth, bad, n0=50, n=200)):
            with pytest.raises(ValueError, match=says):
                call()
    # the sampler takes points off the box (the Geometry tab's plane) but never non-finite ones
    assert sum(smooth.sample_counts(image - 0.5, 100, 100, generator=0)) == 100
    with pytest.raises(ValueError, match="784 NaN pixels"):
        next(smooth.sample_chunks(image * math.nan, 100, 100))


def test_smooth_refuses_a_sigma_that_is_not_a_finite_positive_number(noise_model):
    for sigma in (math.inf, math.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="σ must be a finite number above 0"):
            Smooth(noise_model, 10, sigma)
        with pytest.raises(ValueError, match="σ must be a finite number above 0"):
            Smooth.from_model(noise_model, sigma=sigma)


def test_smooth_refuses_counts_and_alpha_out_of_range(noise_model, image):
    smooth = Smooth.from_model(noise_model)
    for kwargs, says in [(dict(n0=0), "n0"), (dict(n=-5), "n must"), (dict(alpha=1.0), "alpha"),
                         (dict(alpha=math.nan), "alpha"), (dict(batch_size=0), "batch size"), (dict(n=1.5), "n must")]:
        arguments = dict(n0=10, n=100, alpha=0.001, batch_size=100) | kwargs
        with pytest.raises(ValueError, match=says):
            smooth.certify(image, **arguments)
    with pytest.raises(ValueError, match="1×32×32, but the model takes 1×28×28"):
        smooth.certify(torch.rand(1, 32, 32), 10, 100, 0.001)


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("value,kind", [(float("nan"), "NaN"), (math.inf, "inf")])
def test_a_model_that_outputs_nan_for_some_inputs_gets_no_certificate(noise_model, image, optimize, value, kind):
    assert image[0, 0, 0] == 0  # a black corner: only noisy draws above the threshold give NaN
    smooth = Smooth.from_model(NaNWhenBright(noise_model, value=value), optimize=optimize)
    message = f"^the model outputs {kind} for this input$"
    with pytest.raises(NonFiniteOutputError, match=message):
        smooth.certify(image, 100, 1000, 0.001, batch_size=100, generator=0)
    with pytest.raises(NonFiniteOutputError, match=message):
        smooth.predict(image, 1000, 0.001, batch_size=100, generator=1)
    with pytest.raises(NonFiniteOutputError, match=message):
        smooth.noise_samples(image, 64, generator=2)
    # the same model where it is finite everywhere (threshold above any draw) certifies as before
    finite = Smooth.from_model(NaNWhenBright(noise_model, threshold=1e9), optimize=optimize)
    assert finite.certify(image, 100, 1000, 0.001, batch_size=100, generator=0) == \
        Smooth.from_model(noise_model, optimize=optimize).certify(image, 100, 1000, 0.001, batch_size=100, generator=0)


def test_certify_jobs_refuse_bad_images_and_settings_before_they_start(noise_model, image, fmnist_test):
    params = CertifyParams(sigma=0.25, n0=10, n=100, alpha=0.001, batch=100, seed=0)
    with pytest.raises(ValueError, match="784 NaN pixels"):
        certify_image_job(None, CertifyRequest(NOISE, torch.full_like(image, math.nan)[None], 0, params))
    for bad in (dict(sigma=math.inf), dict(sigma=-1.0), dict(n=0), dict(alpha=2.0), dict(batch=0)):
        with pytest.raises(ValueError):
            certify_image_job(None, CertifyRequest(NOISE, image[None], 0, replace(params, **bad)))
    smooth = Smooth.from_model(NaNWhenBright(noise_model))
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        run_to_end(certified_accuracy_job({"nan": smooth}, fmnist_test.subset([0, 1]), n0=10, n=200),
                   keep_errors=True)
    with pytest.raises(ValueError, match="n must"):
        certified_accuracy_job({"ok": smooth}, fmnist_test.subset([0]), n=0)


# ---------------------------------------------------------------- NaN weights

@pytest.mark.parametrize("value,says", [(float("nan"), "has 12 NaN weights"), (math.inf, "has 12 infinite weights")])
def test_a_checkpoint_with_nan_weights_is_refused_at_load(tmp_path, noise_model, value, says):
    clean = load_checkpoint_copy(tmp_path, noise_model)
    assert count_nonfinite(clean) == (0, 0)
    with torch.no_grad():
        next(clean.parameters()).view(-1)[:12] = value
    path = tmp_path / "diverged.pt"
    save_checkpoint(clean, path)  # a valid file with a matching weights hash: only the values are bad
    with pytest.raises(ModelError, match=f"^diverged.pt {says}"):
        load_checkpoint(path, device="cpu")
    # a plain state_dict too, and a NaN in a buffer (batch-norm statistics) counts as well
    state = {k: v.clone() for k, v in noise_model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = math.nan
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="plain.pt has 1 NaN weight:"):
        load_checkpoint(tmp_path / "plain.pt", arch="fmnist-cnn", device="cpu")


def test_the_window_s_model_loader_reports_a_nan_weights_file_and_loads_the_rest(tmp_path, noise_model):
    from robustlens.engine.model_cache import ModelCache, load_models_job

    model = load_checkpoint_copy(tmp_path, noise_model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[:3] = math.nan
    save_checkpoint(model, tmp_path / "bad.pt")
    cache = ModelCache("cpu")
    loaded, errors = run_to_end(load_models_job(cache, (str(tmp_path / "bad.pt"), NOISE)))
    assert [key for key, _ in loaded] == [NOISE]
    assert "bad.pt has 3 NaN weights" in errors[str(tmp_path / "bad.pt")]


def load_checkpoint_copy(tmp_path, model):
    save_checkpoint(model, tmp_path / "copy.pt")
    return load_checkpoint(tmp_path / "copy.pt", device="cpu")


# ---------------------------------------------------------------- PGD, attacks, inversion

@pytest.fixture(scope="module")
def standard(zoo_model):
    return zoo_model("fashion-mnist/standard")


def test_attack_pgd_fgsm_and_judge_refuse_nan_and_out_of_range_images(standard, fmnist_test):
    x, y = fmnist_test.images[:2].clone(), fmnist_test.labels[:2].clone()
    for bad, says in bad_images(x):
        says = r"NaN pixels|infinite pixels|\[0, 1\]"
        for call in (lambda: pgd(standard, bad, y, eps=0.1, step_size=0.02, steps=2),
                     lambda: next(pgd_steps(standard, bad, y, eps=0.1, step_size=0.02, steps=2)),
                     lambda: fgsm(standard, bad, y, eps=0.1),
                     lambda: attack(standard, bad, y, AttackConfig(steps=2)),
                     lambda: attack_job(standard, bad, y, AttackConfig(steps=2))(None).__next__(),
                     lambda: judge({"standard": standard}, bad)):
            with pytest.raises(ValueError, match=says):
                call()


def test_pgd_refuses_bad_step_sizes_counts_and_classes(standard, fmnist_test):
    x, y = fmnist_test.images[:2].clone(), fmnist_test.labels[:2].clone()
    base = dict(eps=0.1, step_size=0.02, steps=3)
    for bad, says in [(dict(step_size=-0.02), "step size must be a finite number above 0"),
                      (dict(step_size=0.0), "step size must be a finite number above 0"),
                      (dict(step_size=math.nan), "step size"), (dict(step_size=math.inf), "step size"),
                      (dict(steps=0), "steps must be at least 1"), (dict(restarts=-2), "restarts must be at least 1"),
                      (dict(restarts=0), "restarts"), (dict(eps=math.nan), "ε")]:
        with pytest.raises(ValueError, match=says):
            pgd(standard, x, y, **(base | bad))
    with pytest.raises(ValueError, match="class 42 is not a class"):
        pgd(standard, x, torch.tensor([0, 42]), **base)
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        pgd(standard, x, torch.tensor([0, 1, 2]), **base)
    pgd(standard, x, y, eps=0.0, step_size=0.0, steps=2)  # ε = 0 (a robustness curve's first point) still runs
    for bad, says in [(dict(steps=0), "steps must be at least 1"), (dict(step_size=-0.1), "step size"),
                      (dict(step_size=0.0), "step size must be above 0")]:
        with pytest.raises(ValueError, match=says):
            attack(standard, x, y, AttackConfig(eps=0.1, steps=3), **bad)
    with pytest.raises(ValueError, match="target class 42 is not a class"):
        attack(standard, x, y, AttackConfig(target="class", target_class=1), targets=torch.tensor([1, 42]))
    with pytest.raises(ValueError, match="label 10 is not a class"):
        attack(standard, x, torch.tensor([0, 10]), AttackConfig(steps=2))


def test_pgd_and_attack_stop_when_the_model_outputs_nan(standard, fmnist_test):
    x, y = fmnist_test.images[:4].clone(), fmnist_test.labels[:4].clone()
    nan_model = NaNWhenBright(standard, threshold=0.0)  # any image with a non-black corner reached by PGD
    x[:, 0, 0, 0] = 0.5
    with pytest.raises(NonFiniteOutputError, match="^the model outputs NaN for this input$"):
        pgd(nan_model, x, y, eps=0.1, step_size=0.02, steps=3)
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        attack(nan_model, x, y, AttackConfig(steps=3))
    # a model finite at x but not everywhere in the ball: the iterate that reaches it stops the attack
    x[:, 0, 0, 0] = 0.0
    with pytest.raises(NonFiniteOutputError, match="inf"):
        pgd(NaNWhenBright(standard, threshold=0.05, value=math.inf), x, y, eps=0.3, step_size=0.1, steps=5,
            random_start="sphere", generator=torch.Generator().manual_seed(0))


def test_invert_and_reconstruct_refuse_nan_images(zoo_model, fmnist_test):
    model = zoo_model("fashion-mnist/l2-robust")
    x = fmnist_test.images[:2].clone()
    nan = x.clone()
    nan[0, 0, 5, 5] = math.nan
    with pytest.raises(ValueError, match="targets have 1 NaN pixel"):
        invert(model, nan, "noise", steps=2)
    with pytest.raises(ValueError, match="seeds have 1 NaN pixel"):
        invert(model, x, nan, steps=2)
    with pytest.raises(ValueError, match=r"pixel values must be in \[0, 1\]"):
        invert(model, x * 255, "noise", steps=2)
    with pytest.raises(ValueError, match="NaN"):
        reconstruct_job({"robust": model}, nan, "noise", steps=2)
    with pytest.raises(ValueError, match="steps must be"):
        invert(model, x, "noise", steps=1.5)
    with pytest.raises(ValueError, match="batch size"):
        invert(model, x, "noise", steps=2, batch_size=0)


# ---------------------------------------------------------------- geometry and robustness

def test_geometry_and_robustness_refuse_nan_images(noise_model, standard, fmnist_test, image):
    nan = torch.full_like(image, math.nan)
    with pytest.raises(ValueError, match="784 NaN pixels"):
        geometry_job(None, GeometryRequest(NOISE, nan, sigma=0.25))
    with pytest.raises(ValueError, match="σ"):
        geometry_job(None, GeometryRequest(NOISE, image, sigma=math.inf))
    with pytest.raises(ValueError, match="the base map size"):
        geometry_job(None, GeometryRequest(NOISE, image, sigma=0.25, base_size=1))
    with pytest.raises(ValueError, match="784 NaN pixels"):
        plane_through(noise_model, nan)
    with pytest.raises(ValueError, match=r"pixel values must be in \[0, 1\]"):
        certified_disk_job(noise_model, image - 5, sigma=0.25)
    images, labels = fmnist_test.images[:3].clone(), fmnist_test.labels[:3].clone()
    images[1, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="the images have 1 NaN pixel"):
        robustness_curves_job({"standard": standard}, images, labels, norm="l2", eps_values=[0.5])
    with pytest.raises(ValueError, match="NaN"):
        transfer_matrix_job({"standard": standard}, images, labels, norm="l2", eps=0.5)
    with pytest.raises(ValueError, match="label 11 is not a class"):
        transfer_matrix_job({"standard": standard}, fmnist_test.images[:2], torch.tensor([0, 11]), norm="l2", eps=0.5)


# ---------------------------------------------------------------- the command line



@pytest.mark.parametrize("command", ["certify", "predict"])
@pytest.mark.parametrize("sigma", ["inf", "nan", "0", "-1", "-inf"])
def test_cli_refuses_a_sigma_that_is_not_a_finite_positive_number(capsys, tmp_path, command, sigma):
    out = tmp_path / "out.tsv"
    err = one_line_error(capsys, [command, "--model", NOISE, f"--sigma={sigma}", "--out", out, "--max", 1, "--n", 10])
    assert "--sigma" in err
    assert not out.exists()  # refused before anything is written


def test_cli_refuses_a_nan_weights_checkpoint(capsys, tmp_path, noise_model):
    model = load_checkpoint_copy(tmp_path, noise_model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[:5] = math.nan
    save_checkpoint(model, tmp_path / "nan-weights.pt")
    err = one_line_error(capsys, ["certify", "--model", tmp_path / "nan-weights.pt", "--out", tmp_path / "o.tsv",
                                  "--max", 1, "--n", 10])
    assert "nan-weights.pt has 5 NaN weights" in err


def test_analyze_refuses_an_inf_radius_naming_the_file_and_row(capsys, tmp_path):
    path = tmp_path / "sigma-inf.tsv"
    path.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
                    "0\t9\t9\t0.52\t1\t0:00:01.000000\n"
                    "1\t2\t0\tinf\t0\t0:00:01.000000\n"
                    "2\t1\t1\t0.3\t1\t0:00:01.000000\n")
    err = one_line_error(capsys, ["analyze", path, "--no-plot"])
    assert f"{path}: data row 2 (idx 1) has radius inf" in err
    path.write_text(path.read_text().replace("inf", "nan"))
    assert str(path) in one_line_error(capsys, ["analyze", path, "--no-plot"])
    path.write_text(path.read_text().replace("nan", "0.4"))  # finite radii analyse as before
    assert main(["analyze", str(path), "--no-plot"]) == 0
