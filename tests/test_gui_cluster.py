"""Run → Cluster… on Qt's offscreen platform: with a local Ray (2 CPUs) set, the Experiments tab's robust
accuracy vs ε and the Certify tab's certified accuracy run on Ray workers and plot the rows a run in this
program plots; the dialog keeps only addresses Ray takes, and the choice is saved with the window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app.cluster_dialog import ClusterDialog, check_address
from robustlens.app.window import MainWindow
from robustlens.engine import cluster
from robustlens.engine.models import zoo_file

MODELS = ("fashion-mnist/standard", "fashion-mnist/linf-robust", "fashion-mnist/noise-0.25")


@pytest.fixture
def window(qtbot, tmp_path, local_ray):
    if not all(zoo_file(name).exists() for name in MODELS):
        pytest.skip("the built-in models are not installed")
    torch.set_num_threads(1)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=list(MODELS), select=0, use_settings=False)
    qtbot.addWidget(win)
    win.tabs.setCurrentIndex(next(i for i in range(win.tabs.count()) if win.tabs.tabText(i) == "Experiments"))
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=60_000)
    yield win
    win.close()


def _curves(window, qtbot) -> dict:
    section = window.panels["Experiments"].sections["Robust accuracy vs ε"]
    section.norm_box.setCurrentIndex(section.norm_box.findData("linf"))
    section.eps_edit.setText("0, 0.1")
    section.steps_box.setValue(3)
    section.images_box.setValue(12)
    section.run()
    qtbot.waitUntil(lambda: section.state != "running", timeout=120_000)
    assert section.state == "finished", section.status.text()
    return {info.key: tuple(map(tuple, section.plot.curve_data(info.key))) for info in window.ctx.models}


def _certified(window, qtbot) -> dict:
    panel = window.panels["Certify"]
    panel.accuracy.images_box.setValue(4)
    panel.accuracy.n_box.setValue(200)
    panel.run_accuracy()
    qtbot.waitUntil(lambda: not panel.job_running("certify-accuracy"), timeout=120_000)
    rows = panel.accuracy.rows
    assert rows and all(len(r) == 4 for r in rows.values()), panel.accuracy.status.text()
    return {key: [(r.idx, r.label, r.prediction, r.radius, r.correct, r.images_done, tuple(np.round(r.accuracy, 12)))
                  for r in model_rows] for key, model_rows in rows.items()}


def test_the_long_experiments_on_a_local_ray_plot_the_rows_of_a_run_here(window, qtbot):
    here_curves, here_certified = _curves(window, qtbot), _certified(window, qtbot)
    window.ctx.cluster_address, window.ctx.cluster_workers = "local", 2
    assert window.ctx.cluster_options().address == "local"
    on_ray_curves, on_ray_certified = _curves(window, qtbot), _certified(window, qtbot)
    assert on_ray_curves == here_curves
    assert len(here_curves) == 3 and all(len(eps) == 2 for eps, _ in here_curves.values())
    assert on_ray_certified == here_certified
    assert any(cluster._IDLE.values())  # the Ray runs' workers, kept idle for the next run: the work went there


def test_the_cluster_dialog_takes_ray_addresses_and_the_window_remembers_them(qtbot, tmp_path):
    for good in ("auto", "10.0.0.5:6379", "ray://head.example:10001"):
        assert check_address(good) == good
    for bad in ("", "head", "http://x:1", "10.0.0.5"):
        with pytest.raises(ValueError):
            check_address(bad)
    dialog = ClusterDialog("10.0.0.5:6379", 4)
    qtbot.addWidget(dialog)
    assert dialog.values() == ("10.0.0.5:6379", 4)
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("local"))
    assert dialog.values() == ("local", 4) and not dialog.address_edit.isEnabled()
    dialog.mode_box.setCurrentIndex(dialog.mode_box.findData("address"))
    dialog.address_edit.setText("nowhere")
    dialog._accept()
    assert dialog.result() != ClusterDialog.DialogCode.Accepted and "nowhere" in dialog.error.text()

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, models=[], use_settings=True)
    qtbot.addWidget(win)
    win.ctx.cluster_address, win.ctx.cluster_workers = "10.0.0.5:6379", 3
    win.save_settings()
    win.close()
    again = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), models=[],
                       use_settings=True)
    qtbot.addWidget(again)
    assert (again.ctx.cluster_address, again.ctx.cluster_workers) == ("10.0.0.5:6379", 3)
    assert again.ctx.cluster_options().workers == 3
    again.close()
