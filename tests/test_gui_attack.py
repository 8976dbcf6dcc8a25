"""The Attack and Experiments tabs on Qt's offscreen platform: a PGD run from the panel fills the strip,
the curves and the transfer table; cancelling works mid-run; the experiments draw curves and a matrix.
Expected numbers are computed here, independently of the panel, from the models themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app.panels.robustness_sections import parse_eps_list
from robustlens.app.window import MainWindow
from robustlens.engine.model_cache import load_by_key
from robustlens.engine.models import build_model, save_checkpoint, zoo_file

ZOO = ("fashion-mnist/standard", "fashion-mnist/linf-robust", "fashion-mnist/noise-0.25")


def _model_keys(folder) -> list[str]:
    """Built-in models when their files exist; otherwise small checkpoints of the same kinds."""
    if all(zoo_file(name).exists() for name in ZOO):
        return list(ZOO)
    torch.manual_seed(0)
    keys = []
    for name, meta in (("standard", {}), ("robust", {"kind": "adversarial", "norm": "linf", "eps": 0.1}),
                       ("noise", {"kind": "noise", "sigma": 0.25})):
        path = str(folder / f"{name}.pt")
        save_checkpoint(build_model("fmnist-cnn", name=f"test/{name}", **meta), path)
        keys.append(path)
    return keys


@pytest.fixture
def window(qtbot, tmp_path):
    torch.set_num_threads(1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    keys = _model_keys(tmp_path)
    win = MainWindow(settings=settings, models=keys, select=0, use_settings=False)
    qtbot.addWidget(win)
    _show_tab(win, "Attack")  # before the models load: Certify stays idle
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None and win.ctx.selection is not None,
                    timeout=60_000)
    win.keys = keys
    yield win
    win.close()


def _show_tab(win, title: str) -> None:
    win.tabs.setCurrentIndex(next(i for i in range(win.tabs.count()) if win.tabs.tabText(i) == title))


def _model(key: str):
    return load_by_key(key, torch.device("cpu"))


def _softmax(key: str, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(_model(key)(torch.as_tensor(image)), 1)[0].numpy()


def test_attack_fills_strip_curves_and_transfer_table(window, qtbot):
    panel = window.panels["Attack"]
    ctx = window.ctx
    steps, eps = 12, 0.1
    standard = window.keys[0]
    panel.set_params(source=standard, norm="linf", eps=eps, steps=steps, random_start="none", restarts=1,
                     target="untargeted", loss="ce")
    live_captions = []
    ctx.stripChanged.connect(lambda slot: live_captions.append(window.strip.captions.get(slot, ""))
                             if slot == "adversarial" else None)
    window.request_run()  # F5 on the current tab
    assert panel.state == "running", panel.status.text()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=60_000)
    assert panel.state == "finished", panel.status.text()

    # every step arrived (step 0 = the start), and both curves hold them
    assert [s.step for s in panel._steps_seen] == list(range(steps + 1))
    x, loss = panel.loss_plot.curves["loss"].getData()
    _, p_true = panel.probability_plot.curves["true"].getData()
    assert len(x) == steps + 1 and np.all(np.isfinite(loss)) and np.all((p_true >= 0) & (p_true <= 1))
    assert any(c.endswith("live") for c in live_captions), "the strip never showed a live iterate"

    # the final adversarial image: in [0,1], within ε of the original; the perturbation slot holds δ
    original = ctx.selection.image.numpy()
    adversarial = ctx.strip_images["adversarial"]
    delta = adversarial - original
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert np.abs(delta).max() <= eps + 1e-6
    np.testing.assert_allclose(ctx.strip_images["perturbation"], delta, atol=1e-6)
    assert panel.outcome.norm_value == pytest.approx(np.abs(delta).max(), abs=1e-6)
    # the loss of the last step is the model's cross-entropy at that iterate (no random start, keep best:
    # the shown image is the best iterate, whose loss is the largest of the curve)
    label = ctx.selection.label
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(_model(standard)(torch.as_tensor(adversarial)),
                                               torch.tensor([label])).item()
    assert ce == pytest.approx(float(np.nanmax(loss)), rel=1e-4, abs=1e-5)

    # predictions: the strip shows every model's softmax on the adversarial image
    qtbot.waitUntil(lambda: window.strip.has_all_predictions("adversarial"), timeout=30_000)
    rows = panel.table.row_texts()
    names = [r[0] for r in rows]
    classes = ctx.classes
    for info in ctx.models:
        expected = _softmax(info.key, adversarial)
        np.testing.assert_allclose(window.strip.predictions["adversarial"][info.key], expected, atol=1e-5)
        row = next(r for r in rows if r[0].split()[0] == info.meta.name.split("/")[-1])
        assert row[2].startswith(classes[int(expected.argmax())])
        clean_right = int(_softmax(info.key, original).argmax()) == label
        fooled = "yes" if clean_right and int(expected.argmax()) != label else ("no" if clean_right else "—")
        assert row[3].startswith(fooled), row
    assert len(rows) == len(ctx.models) + len(ctx.models_of_kind("noise"))  # + each smoothed classifier
    assert any(n.startswith("smoothed g, σ = 0.25") for n in names)
    attacked = [n for n in names if "(attacked)" in n]
    assert attacked == [f"{standard.split('/')[-1].removesuffix('.pt')}  (attacked)"] or \
        attacked == [f"{_model(standard).meta.name.split('/')[-1]}  (attacked)"]


def test_cancel_mid_run_then_attack_again(window, qtbot):
    panel = window.panels["Attack"]
    panel.set_params(source=window.keys[0], norm="l2", eps=1.5, steps=2000, random_start="uniform")
    panel.run()
    qtbot.waitUntil(lambda: len(panel._steps_seen) >= 5, timeout=60_000)
    window.cancel_action.trigger()  # Esc
    qtbot.waitUntil(lambda: panel.state != "running", timeout=10_000)
    assert panel.state == "cancelled"
    assert panel.job_handle("attack").state == "aborted"
    assert len(panel._steps_seen) < 2001
    assert "Cancelled" in panel.status.text()
    assert panel.table.rowCount() == 0
    assert not window.engine.active_jobs("attack")

    # the window still answers: another image, a targeted L2 attack with a chosen class, to the end
    window.select_index(3)
    target = (window.ctx.selection.label + 3) % len(window.ctx.classes)
    panel.set_params(norm="l2", eps=2.0, steps=15, random_start="none", target="class", target_class=target)
    panel.run()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=60_000)
    assert panel.state == "finished", panel.status.text()
    delta = window.ctx.strip_images["adversarial"] - window.ctx.selection.image.numpy()
    assert np.sqrt((delta.astype(np.float64) ** 2).sum()) <= 2.0 + 1e-5
    assert panel.outcome.target == target
    assert panel.probability_plot.curves["target"].isVisible()
    assert window.ctx.classes[target] in panel.probability_plot.legend_text("target")
    assert panel.table.rowCount() == len(window.ctx.models) + len(window.ctx.models_of_kind("noise"))


def test_smoothed_source_runs_eot_attack(window, qtbot):
    panel = window.panels["Attack"]
    noise = window.ctx.models_of_kind("noise")[0].key
    panel.set_params(source=noise, smoothed=True, samples=4, norm="l2", eps=0.25, steps=4, target="untargeted")
    assert panel.samples_box.isVisibleTo(panel)
    panel.run()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=60_000)
    assert panel.state == "finished", panel.status.text()
    assert panel.outcome.l2_value <= 0.25 + 1e-5
    attacked = [r for r in panel.table.row_texts() if r[0].startswith("smoothed") and "(attacked)" in r[0]]
    assert len(attacked) == 1


def test_attack_settings_round_trip(window, tmp_path):
    panel = window.panels["Attack"]
    panel.set_params(norm="l2", eps=2.25, steps=33, random_start="sphere", restarts=3, target="next", loss="cw",
                     step_size=0.2)
    settings = QSettings(str(tmp_path / "round.ini"), QSettings.Format.IniFormat)
    settings.beginGroup("panels/Attack")
    panel.save_settings(settings)
    before = panel.current_params()
    panel.set_params(norm="linf", eps=0.05, steps=7, random_start="none", restarts=1, target="untargeted", loss="ce")
    panel.step_auto.setChecked(True)
    panel.restore_settings(settings)
    assert panel.current_params() == before
    assert panel.eps.slider.value() == round(2.25 / 0.05)


def test_experiments_draw_curves_and_matrix(window, qtbot):
    _show_tab(window, "Experiments")
    panel = window.panels["Experiments"]
    ctx = window.ctx
    curves = panel.sections["Robust accuracy vs ε"]
    curves.norm_box.setCurrentIndex(curves.norm_box.findData("linf"))
    curves.eps_edit.setText("0.1, 0")
    curves.steps_box.setValue(3)
    curves.images_box.setValue(12)
    window.request_run()
    qtbot.waitUntil(lambda: curves.state != "running", timeout=120_000)
    assert curves.state == "finished", curves.status.text()
    subset = ctx.dataset.subset(list(range(0, len(ctx.dataset) // 12 * 12, len(ctx.dataset) // 12)))
    for info in ctx.models:
        eps, accuracy = curves.plot.curve_data(info.key)
        assert list(eps) == [0.0, 0.1]
        with torch.no_grad():
            clean = (_model(info.key)(subset.images).argmax(1) == subset.labels).float().mean().item()
        assert accuracy[0] == pytest.approx(clean)   # at ε = 0 robust accuracy is the clean accuracy
        assert accuracy[1] <= accuracy[0] + 1e-9
    assert "L∞" in curves.plot.getPlotItem().getAxis("bottom").labelText

    panel.show_section("Transfer matrix")
    matrix = panel.sections["Transfer matrix"]
    matrix.steps_box.setValue(3)
    matrix.images_box.setValue(12)
    panel.run()
    qtbot.waitUntil(lambda: matrix.state != "running", timeout=120_000)
    assert matrix.state == "finished", matrix.status.text()
    result = matrix.result
    keys = [m.key for m in ctx.models]
    assert result.models == keys
    for i, source in enumerate(keys):
        for j, target in enumerate(keys):
            rate = result.success_rate[i][j]
            assert matrix.matrix.cell_text(source, target) == ("—" if rate != rate else f"{rate:.0%}")
    # the diagonal is white box: 1 − robust / clean accuracy, the curve's point at the same ε and settings
    for i, key in enumerate(keys):
        _, accuracy = curves.plot.curve_data(key)
        if result.eligible[i][i]:
            assert result.success_rate[i][i] == pytest.approx(1 - accuracy[1] * 12 / result.eligible[i][i])
    written = matrix.save_results(window.settings.fileName() + "-transfer")
    assert written[0].read_text().startswith("source\\target")


def test_experiment_cancel_and_bad_input(window, qtbot):
    _show_tab(window, "Experiments")
    curves = window.panels["Experiments"].sections["Robust accuracy vs ε"]
    curves.eps_edit.setText("0, zero")
    curves.run()
    assert curves.state == "idle" and "not a number" in curves.status.text()
    curves.eps_edit.setText("0.05, 0.1, 0.2")
    curves.images_box.setValue(2000)
    curves.steps_box.setValue(100)   # batches of 25 images: the job checks for cancellation between them
    curves.run()
    qtbot.waitUntil(lambda: window.engine.current(curves.slot).progress is not None, timeout=60_000)
    window.cancel_action.trigger()
    qtbot.waitUntil(lambda: curves.state != "running", timeout=20_000)
    assert curves.state == "cancelled"
    assert "Cancelled" in curves.status.text()


def test_parse_eps_list():
    assert parse_eps_list("0.1, 0,0.05 0.1") == [0.0, 0.05, 0.1]
    for bad in ("", "-0.1", "nan", "a"):
        with pytest.raises(ValueError):
            parse_eps_list(bad)


def test_experiments_settings_round_trip(window, tmp_path):
    panel = window.panels["Experiments"]
    curves, matrix = panel.sections["Robust accuracy vs ε"], panel.sections["Transfer matrix"]
    curves.norm_box.setCurrentIndex(curves.norm_box.findData("l2"))
    curves.eps_edit.setText("0, 0.75, 2")
    curves.eps_edit.editingFinished.emit()
    curves.steps_box.setValue(7)
    matrix.norm_box.setCurrentIndex(matrix.norm_box.findData("l2"))
    matrix.eps_box.setValue(2.5)
    matrix.target_box.setCurrentIndex(matrix.target_box.findData("next"))
    panel.show_section("Transfer matrix")
    settings = QSettings(str(tmp_path / "experiments.ini"), QSettings.Format.IniFormat)
    settings.beginGroup("panels/Experiments")
    panel.save_settings(settings)
    settings.endGroup()
    settings.sync()

    fresh = QSettings(str(tmp_path / "experiments.ini"), QSettings.Format.IniFormat)
    curves.eps_edit.setText("0.3")
    curves.norm_box.setCurrentIndex(curves.norm_box.findData("linf"))
    matrix.norm_box.setCurrentIndex(matrix.norm_box.findData("linf"))
    matrix.target_box.setCurrentIndex(0)
    panel.show_section("Robust accuracy vs ε")
    fresh.beginGroup("panels/Experiments")
    panel.restore_settings(fresh)
    assert curves.norm_box.currentData() == "l2"
    assert parse_eps_list(curves.eps_edit.text()) == [0.0, 0.75, 2.0]
    assert curves.steps_box.value() == 7
    assert matrix.norm_box.currentData() == "l2" and matrix.eps_box.value() == pytest.approx(2.5)
    assert matrix.target_box.currentData() == "next"
    assert panel.current_section() is matrix


@pytest.mark.parametrize("width", [330, 420, 700])
def test_the_judge_table_wraps_a_long_verdict_instead_of_cutting_it(qtbot, width):
    from PySide6.QtCore import Qt as QtFlags
    from PySide6.QtGui import QColor, QFontMetrics

    from robustlens.app.panels.attack_table import TransferTable

    table = TransferTable()
    qtbot.addWidget(table)
    table.resize(width, 400)
    table.show()
    table.set_rows([{"name": "standard  (attacked)", "color": QColor("blue"), "clean": "Shirt 74%",
                     "adversarial": "T-shirt/top 100%", "fooled": "yes", "verdict": "yes", "bold": True},
                    {"name": "smoothed g, σ = 0.25", "color": QColor("green"), "clean": "Shirt, R=0.22",
                     "adversarial": "T-shirt/top, R=0.31", "fooled": "yes", "verdict": "yes"}])
    qtbot.wait(10)
    for r in range(table.rowCount()):
        for c in range(1, table.columnCount()):  # the verdicts (the model column sizes to its names)
            item = table.item(r, c)
            metrics = QFontMetrics(item.font())
            room = table.columnWidth(c) - 8
            wrapped = metrics.boundingRect(0, 0, room, 10_000, int(QtFlags.TextFlag.TextWordWrap), item.text())
            assert wrapped.height() <= table.rowHeight(r), (width, item.text())  # every line of it shows
