"""Robust accuracy against ε and the transfer matrix, checked against direct computations."""

import json
import math

import pytest
import torch

from robustlens.engine.attack_jobs import AttackConfig, attack
from robustlens.engine.attacks import choose_targets
from robustlens.engine.jobs import Aborted, CancelToken, Finished, Partial, Progress, run_job, run_to_end
from robustlens.engine.robustness import (CurvePoint, RobustnessRequest, TransferCell, TransferRequest, batch_for,
                                          cached_robustness_curves_job, cached_transfer_matrix_job, robustness_curves,
                                          robustness_curves_job, save_result, transfer_matrix, transfer_matrix_job)

N = 24
SETTINGS = dict(steps=5, relative_step=2.5, random_start="uniform", batch_size=10, seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(zoo_model):
    return {"standard": zoo_model("fashion-mnist/standard"), "l2-robust": zoo_model("fashion-mnist/l2-robust")}


@pytest.fixture(scope="module")
def batch(fmnist_test):
    return fmnist_test.images[:N], fmnist_test.labels[:N]


def _direct_adversarial(model, x, y, eps, norm, targets=None, target="untargeted"):
    """The same attack by hand: batches of 10, the batch from image i drawing from a generator seeded
    seed + i (so a batch attacked on another machine draws the same)."""
    config = AttackConfig(norm=norm, eps=eps, steps=5, step_size=2.5 * eps / 5, random_start="uniform",
                          target=target)
    parts = []
    for i in range(0, len(x), 10):
        t = None if targets is None else targets[i:i + 10]
        generator = torch.Generator().manual_seed(SETTINGS["seed"] + i)
        parts.append(attack(model, x[i:i + 10], y[i:i + 10], config, targets=t, generator=generator).adversarial)
    return torch.cat(parts)


def test_curve_matches_direct_computation(models, batch):
    x, y = batch
    eps_values = [0.0, 0.5, 2.0]
    events = list(run_job(robustness_curves_job(models, x, y, norm="l2", eps_values=eps_values, **SETTINGS),
                          CancelToken()))
    points = [e.value for e in events if isinstance(e, Partial)]
    assert all(isinstance(p, CurvePoint) for p in points)
    assert [(p.eps, p.model) for p in points] == [(e, m) for e in eps_values for m in models]
    assert any(isinstance(e, Progress) for e in events) and isinstance(events[-1], Finished)
    curves = events[-1].result
    for name, model in models.items():
        with torch.no_grad():
            clean = model(x).argmax(1).eq(y)
        for j, eps in enumerate(eps_values):
            adversarial = _direct_adversarial(model, x, y, eps, "l2")
            with torch.no_grad():
                robust = clean & model(adversarial).argmax(1).eq(y)
            assert curves.accuracy[name][j] == pytest.approx(robust.float().mean().item())
        assert curves.accuracy[name][0] == pytest.approx(clean.float().mean().item())
        assert curves.accuracy[name] == sorted(curves.accuracy[name], reverse=True)  # never above clean
    # the robust model keeps more at ε = 2 than the standard one, as it was trained to
    assert curves.accuracy["l2-robust"][2] > curves.accuracy["standard"][2]


def test_transfer_matrix_matches_definition(models, batch):
    x, y = batch
    events = list(run_job(transfer_matrix_job(models, x, y, norm="l2", eps=1.5, **SETTINGS), CancelToken()))
    cells = [e.value for e in events if isinstance(e, Partial)]
    assert all(isinstance(c, TransferCell) for c in cells)
    names = list(models)
    assert [(c.source, c.target) for c in cells] == [(s, t) for s in names for t in names]
    matrix = events[-1].result
    for i, source in enumerate(names):
        adversarial = _direct_adversarial(models[source], x, y, 1.5, "l2")
        for j, target in enumerate(names):
            with torch.no_grad():
                eligible = models[target](x).argmax(1).eq(y)
                fooled = eligible & models[target](adversarial).argmax(1).ne(y)
            assert matrix.eligible[i][j] == int(eligible.sum())
            assert matrix.fooled[i][j] == int(fooled.sum())
            assert matrix.success_rate[i][j] == pytest.approx(fooled.sum().item() / eligible.sum().item())
    # white box on the standard model nearly always succeeds; the robust model resists more
    assert matrix.success_rate[0][0] > 0.8
    assert matrix.success_rate[1][1] < matrix.success_rate[0][0]


def test_targeted_transfer_counts_hits_on_the_target(models, batch):
    x, y = batch
    matrix = transfer_matrix(models, x, y, norm="l2", eps=3.0, target="next", **SETTINGS)
    targets = choose_targets(y, 10, "next")
    source = models["standard"]
    adversarial = _direct_adversarial(source, x, y, 3.0, "l2", targets=targets, target="next")
    with torch.no_grad():
        eligible = source(x).argmax(1).eq(y)
        hits = eligible & source(adversarial).argmax(1).eq(targets)
    assert matrix.fooled[0][0] == int(hits.sum()) and matrix.eligible[0][0] == int(eligible.sum())


def test_results_save_as_tsv_and_json(models, batch, tmp_path):
    x, y = batch
    curves = robustness_curves({"standard": models["standard"]}, x[:10], y[:10], norm="linf",
                               eps_values=[0.0, 0.05], steps=2)
    tsv, js = save_result(curves, tmp_path / "curve")
    rows = tsv.read_text().splitlines()
    assert rows[0] == "model\teps=0\teps=0.05" and rows[1].startswith("standard\t")
    assert float(rows[1].split("\t")[1]) == pytest.approx(curves.accuracy["standard"][0], abs=1e-4)
    data = json.loads(js.read_text())
    assert data["experiment"] == "robust-accuracy-vs-eps" and data["accuracy"] == curves.accuracy
    matrix = transfer_matrix({"standard": models["standard"]}, x[:10], y[:10], norm="linf", eps=0.05, steps=2)
    tsv, js = save_result(matrix, tmp_path / "transfer")
    assert json.loads(js.read_text())["success_rate"][0][0] == pytest.approx(matrix.success_rate[0][0])


def test_no_eligible_images_gives_nan(models, batch):
    x, _ = batch
    with torch.no_grad():
        wrong = (models["standard"](x[:8]).argmax(1) + 1) % 10  # labels the model never predicts
    matrix = transfer_matrix({"standard": models["standard"]}, x[:8], wrong, norm="l2", eps=0.1, steps=1)
    assert matrix.eligible[0][0] == 0 and math.isnan(matrix.success_rate[0][0])
    assert json.loads(matrix.to_json())["success_rate"][0][0] is None


def test_experiment_jobs_cancel_and_reject_bad_input(models, batch):
    x, y = batch
    cancel = CancelToken()
    events = []
    for event in run_job(robustness_curves_job(models, x, y, norm="l2", eps_values=[0.5, 1.0, 2.0], steps=3,
                                               batch_size=8), cancel):
        events.append(event)
        if isinstance(event, Partial):
            cancel.cancel()
    assert isinstance(events[-1], Aborted)
    assert sum(isinstance(e, Partial) for e in events) == 1
    with pytest.raises(ValueError):
        robustness_curves_job({}, x, y, norm="l2", eps_values=[1.0])
    with pytest.raises(ValueError):
        robustness_curves_job(models, x, y, norm="l2", eps_values=[])
    with pytest.raises(ValueError):
        transfer_matrix_job(models, x, y, norm="l7", eps=1.0)
    with pytest.raises(ValueError):
        transfer_matrix_job(models, x, y[:3], norm="l2", eps=1.0)


def test_cli_attack_images_curve_and_transfer(tmp_path, capsys):
    from PIL import Image

    from robustlens.engine.cli import main

    out = tmp_path / "out"
    assert main(["attack", "--model", "fashion-mnist/standard", "--index", "0", "5", "--norm", "linf",
                 "--eps", "0.1", "--steps", "5", "--out", str(out)]) == 0
    for idx in (0, 5):
        for part in ("original", "adversarial", "perturbation"):
            image = Image.open(out / f"{idx:05d}-{part}.png")
            assert image.size == (28 * 8, 28 * 8)
    record = json.loads((out / "attack.json").read_text())["images"][0]
    assert record["index"] == 0 and record["perturbation_norm"] <= 0.1 + 1e-6
    assert main(["attack", "--curve", "--model", "fashion-mnist/standard", "--norm", "l2", "--eps", "0", "1",
                 "--max", "6", "--steps", "2", "--out", str(out)]) == 0
    assert (out / "curve-l2.tsv").read_text().startswith("model\teps=0\teps=1")
    assert main(["attack", "--transfer", "--model", "fashion-mnist/standard", "fashion-mnist/l2-robust",
                 "--eps", "1", "--max", "6", "--steps", "2", "--out", str(out)]) == 0
    assert len(json.loads((out / "transfer-l2-eps1.json").read_text())["success_rate"]) == 2
    capsys.readouterr()
    for bad in (["--model", "no/such-model"], ["--transfer", "--eps", "1", "2"], ["--index", "99999"],
                ["--curve", "--step-size", "0.1"], ["--eps", "-1"]):
        assert main(["attack", "--out", str(out), *bad]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("robustlens attack: error:") and "\n" not in err


class _Cache:
    """What the request jobs use of the engine thread's model cache."""

    def __init__(self, models):
        self._models = models

    def models(self, keys):
        return {key: self._models[key] for key in keys}


def test_request_jobs_give_the_direct_jobs_results(models, batch):
    """The Experiments tab's request jobs are the CLI's jobs on the cache's models."""
    x, y = batch
    keys = ("l2-robust", "standard")
    curves = run_to_end(cached_robustness_curves_job(_Cache(models), RobustnessRequest(keys, x, y, "l2", (0.0, 1.0), 4)))
    direct = robustness_curves({k: models[k] for k in keys}, x, y, norm="l2", eps_values=[0.0, 1.0], steps=4,
                               batch_size=batch_for(4))
    assert curves.models == list(keys) and curves.accuracy == direct.accuracy
    matrix = run_to_end(cached_transfer_matrix_job(_Cache(models), TransferRequest(keys, x, y, "l2", 1.0, 4, "next")))
    direct = transfer_matrix({k: models[k] for k in keys}, x, y, norm="l2", eps=1.0, steps=4, target="next",
                             batch_size=batch_for(4))
    assert matrix.fooled == direct.fooled and matrix.eligible == direct.eligible
    assert batch_for(10) == 250 and batch_for(100) == 25
