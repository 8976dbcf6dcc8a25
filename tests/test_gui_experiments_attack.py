"""The Experiments tab's attack choice on Qt's offscreen platform: the robustness curves under PGD or
the stronger APGD (torchattacks, through engine/evaluate.py), named in the plot's title, with the
job's cost announced before it runs, in the status bar and the section's progress line."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app.window import MainWindow

EXPERIMENTS_ONLY = [("Experiments", "robustlens.app.panels.experiments:ExperimentsPanel")]
IMAGES = 8  # APGD-T attacks every image still standing once per target class: a few images keep it quick


@pytest.fixture
def window(qtbot, tmp_path):
    torch.set_num_threads(1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=["fashion-mnist/standard"], select=0, use_settings=False,
                     panels=EXPERIMENTS_ONLY)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=60_000)
    yield win
    win.close()


def _run(window, qtbot, curves, attack: str):
    """Run the curves with ``attack``: (robust accuracy by ε, the status bar's line while it ran, the
    estimate the job announced)."""
    curves.attack_box.setCurrentIndex(curves.attack_box.findData(attack))
    window.status.job_label.setText("")
    curves.run()
    # the estimate is announced before the work: the status bar says it while the job runs
    qtbot.waitUntil(lambda: curves.state != "running" or "per image" in window.status.job_label.text(), timeout=60_000)
    status = window.status.job_label.text()
    qtbot.waitUntil(lambda: curves.state != "running", timeout=120_000)
    assert curves.state == "finished", curves.status.text()
    return curves.result.accuracy[window.ctx.models[0].key], status, curves.job_handle(curves.slot).estimate


def test_apgd_curves_are_at_most_pgds_and_say_their_attack_and_cost(window, qtbot):
    curves = window.panels["Experiments"].sections["Robust accuracy vs ε"]
    curves.norm_box.setCurrentIndex(curves.norm_box.findData("l2"))
    curves.eps_edit.setText("0, 0.5")
    curves.steps_box.setValue(10)
    curves.images_box.setValue(IMAGES)
    pgd, _, estimate = _run(window, qtbot, curves, "pgd")
    assert "PGD-10" in curves.plot.getPlotItem().titleLabel.text
    assert f"per image, {IMAGES} images × 1 ε × 1 model, PGD-10" in estimate.text()
    apgd, status, estimate = _run(window, qtbot, curves, "apgd")  # seconds even on a fast machine
    title = curves.plot.getPlotItem().titleLabel.text
    assert "APGD-CE+APGD-T" in title and "PGD-10" not in title
    assert estimate.text() in status and "APGD-CE+APGD-T" in status, status
    assert curves.result.settings["attack"] == "APGD-CE+APGD-T"
    assert apgd[0] == pgd[0]                      # ε = 0: both are the clean accuracy
    assert apgd[1] <= pgd[1] <= pgd[0]            # the stronger attack leaves at most PGD's robust accuracy
    assert not curves.steps_box.isEnabled()       # APGD's steps are its own (100 per attack)


def test_the_attack_choice_is_a_setting_that_round_trips(window, tmp_path):
    panel = window.panels["Experiments"]
    curves = panel.sections["Robust accuracy vs ε"]
    curves.attack_box.setCurrentIndex(curves.attack_box.findData("autoattack"))
    store = QSettings(str(tmp_path / "experiments.ini"), QSettings.Format.IniFormat)
    store.beginGroup("panels/Experiments")
    panel.save_settings(store)
    store.endGroup()
    store.sync()
    curves.attack_box.setCurrentIndex(curves.attack_box.findData("pgd"))
    fresh = QSettings(str(tmp_path / "experiments.ini"), QSettings.Format.IniFormat)
    fresh.beginGroup("panels/Experiments")
    assert fresh.value("robust-accuracy-vs/attack") == "autoattack"
    panel.restore_settings(fresh)
    assert curves.attack_box.currentData() == "autoattack"
