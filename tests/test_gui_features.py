"""The Features tab on Qt's offscreen platform: a reconstruction fills the strip's robust and non-robust
slots (checked against the engine's representation distance, computed apart from the window), the
distance falls, a cancelled run ends and the app carries on, a missing model is said, settings come
back, and the Ilyas et al. experiment section fills its table. Few steps: these tests check behaviour,
not pictures."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from robustlens.app import style
from robustlens.app.export import export_widget
from robustlens.app.panels import features_experiments
from robustlens.app.panels.features import JOB_SLOT, FeaturesPanel
from robustlens.app.panels.features_experiments import DatasetExperiments
from robustlens.app.window import MainWindow
from robustlens.engine.cli import build_parser, main
from robustlens.engine.cli_features import experiment_request
from robustlens.engine.ilyas_experiment import REGIME_BUILD, REGIME_TRAINING, ExperimentSettings
from robustlens.engine.inversion import representation_distance
from robustlens.engine.models import zoo_file

ROBUST, STANDARD, NOISE = "fashion-mnist/l2-robust", "fashion-mnist/standard", "fashion-mnist/noise-0.50"

pytestmark = pytest.mark.skipif(not (zoo_file(ROBUST).exists() and zoo_file(STANDARD).exists()),
                                reason="needs the built-in l2-robust and standard models")


@pytest.fixture(autouse=True)
def one_thread():
    # one image at a time is tiny work: on a busy CPU a second intra-op thread only adds waiting
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     models=[ROBUST, STANDARD], select=0, use_settings=False)
    qtbot.addWidget(win)
    win.resize(1440, 920)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=60_000)
    win.tabs.setCurrentIndex(list(win.panels).index("Features"))
    win.cancel_jobs()  # the first tab's automatic run for the first image is not what these tests look at
    panel = win.panels["Features"]
    panel.set_params(auto=False, steps=25, step_size=0.1, seed_mode="other-class", draw=0, schedule="constant")
    panel.set_model("robust", ROBUST)
    panel.set_model("non_robust", STANDARD)
    panel.set_model("extra", "")
    yield win
    win.close()


def handle(panel):
    return panel.job_handle(JOB_SLOT)


def wait_for_run(qtbot, panel, timeout=60_000):
    qtbot.waitUntil(lambda: handle(panel) is not None and not handle(panel).running, timeout=timeout)


def test_reconstruction_fills_both_strip_slots_and_the_distance_falls(window, qtbot, zoo_model, tmp_path):
    panel, strip = window.panels["Features"], window.strip
    window.select_index(7)
    assert "robust" not in window.ctx.strip_images and "non_robust" not in window.ctx.strip_images
    panel.run()
    wait_for_run(qtbot, panel)
    assert handle(panel).state == "finished"
    qtbot.waitUntil(lambda: strip.has_all_predictions("robust") and strip.has_all_predictions("non_robust"),
                    timeout=30_000)
    original = window.ctx.dataset.images[7:8]
    for slot, key in (("robust", ROBUST), ("non_robust", STANDARD)):
        image = torch.from_numpy(np.asarray(window.ctx.strip_images[slot], dtype=np.float32))
        assert image.shape == original.shape and image.min() >= 0 and image.max() <= 1
        model = zoo_model(key)
        with torch.no_grad():
            target = model.representation(original)
            distance = representation_distance(model, image, target).item()
            seed = torch.from_numpy(np.asarray(panel.seed_image, dtype=np.float32))
            from_seed = representation_distance(model, seed, target).item()
        reported = float(panel.final[slot].distances[0])
        assert distance == pytest.approx(reported, rel=1e-3, abs=1e-4)  # the strip shows what was measured
        assert distance < 0.95 * from_seed  # the inversion moved towards g(x) (slowly, for a robust model)
        curve, lowest = panel.plot.curve_data(key), panel.plot.curve_data(key, lowest=True)
        assert len(curve) == len(lowest) == 26 and curve[-1] < curve[0]
        assert curve[0] == pytest.approx(from_seed, rel=1e-3)
        # the bold curve is the running minimum, and it ends at the distance of the image shown
        np.testing.assert_allclose(lowest, np.minimum.accumulate(curve), rtol=1e-6)
        assert lowest[-1] == pytest.approx(reported, rel=1e-3)
        # every loaded model judged the final reconstruction, and its probabilities sum to one
        for probs in strip.predictions[slot].values():
            assert abs(float(np.sum(probs)) - 1) < 1e-4
    # the seed is an image of another class (the default seed) and not the target itself
    seed_index = panel.seed_index
    assert seed_index != 7 and int(window.ctx.dataset.labels[seed_index]) != int(window.ctx.dataset.labels[7])
    # the panel's own columns show the inverted models' predictions on each image
    qtbot.waitUntil(lambda: {"seed", "original", "robust", "non_robust"} <= set(panel.prediction_rows),
                    timeout=30_000)
    assert [row.probs.shape for row in panel.prediction_rows["robust"]] == [(10,), (10,)]
    # the figures are listed for File → Export and write as PNG and SVG
    exportables = dict(window.ctx.exportables())
    for name, suffix in (("Features: distance curves", ".svg"), ("Features: distance curves", ".png"),
                         ("Features: seed, original and reconstructions", ".png")):
        path = export_widget(exportables[name], tmp_path / f"figure{suffix}")
        assert path.stat().st_size > 1000


def test_cancel_ends_the_job_and_a_new_run_works(window, qtbot):
    panel, strip = window.panels["Features"], window.strip
    panel.set_params(steps=100_000)
    panel.run()
    qtbot.waitUntil(lambda: len(panel.curves.get(ROBUST, [])) >= 3, timeout=30_000)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: handle(panel).state == "aborted", timeout=10_000)
    assert not panel.cancel_button.isEnabled() and "Cancelled" in panel.status.text()
    # the partial iterates stay in the strip, now judged by every model
    qtbot.waitUntil(lambda: strip.has_all_predictions("robust") and strip.has_all_predictions("non_robust"),
                    timeout=30_000)
    # the app is responsive: another image gets its predictions, and a new run finishes
    window.select_index(3)
    qtbot.waitUntil(lambda: strip.has_all_predictions("original")
                    and strip.predicted_for.get("original") == strip._generation["original"], timeout=30_000)
    assert "robust" not in window.ctx.strip_images  # a new selection clears the reconstructions
    panel.set_params(steps=10)
    panel.run()
    wait_for_run(qtbot, panel)
    assert handle(panel).state == "finished"
    assert {"robust", "non_robust"} <= set(window.ctx.strip_images)
    assert len(panel.plot.curve_data(ROBUST)) == 11


def test_esc_cancels_and_a_newer_run_replaces_an_older_one(window, qtbot):
    panel = window.panels["Features"]
    panel.set_params(steps=100_000)
    panel.run()
    first = handle(panel)
    qtbot.waitUntil(lambda: len(panel.curves.get(ROBUST, [])) >= 2, timeout=30_000)
    panel.set_params(steps=8, seed_mode="noise")
    panel.run()  # latest wins: the first run is cancelled
    qtbot.waitUntil(lambda: not first.running, timeout=10_000)
    assert first.state == "aborted"
    wait_for_run(qtbot, panel)
    assert handle(panel).state == "finished" and len(panel.plot.curve_data(STANDARD)) == 9
    assert panel.columns["seed"].caption.text().startswith("gray 0.5")
    panel.set_params(steps=100_000)
    panel.run()
    qtbot.waitUntil(lambda: len(panel.curves.get(ROBUST, [])) >= 2, timeout=30_000)
    window.cancel_action.trigger()  # Esc
    qtbot.waitUntil(lambda: handle(panel).state == "aborted", timeout=10_000)
    # with "on click", selecting another image (this tab shown) reconstructs it at once
    panel.set_params(auto=True, steps=5)
    before = handle(panel)
    window.select_index(11)
    assert handle(panel) is not before and panel.run_selection.index == 11
    wait_for_run(qtbot, panel)
    assert handle(panel).state == "finished"


def test_noise_trained_third_column(window, qtbot):
    if not zoo_file(NOISE).exists():
        pytest.skip("needs the built-in noise-0.50 model")
    panel = window.panels["Features"]
    panel.set_model("extra", NOISE)
    assert panel.columns["extra"].isVisibleTo(panel)
    panel.set_params(steps=12)
    panel.run()
    wait_for_run(qtbot, panel)
    assert handle(panel).state == "finished"
    assert set(panel.final) == {"robust", "non_robust", "extra"}
    assert panel.columns["extra"].has_image()
    assert "extra" not in window.ctx.strip_images  # the strip has no third reconstruction slot
    curve = panel.plot.curve_data(NOISE)
    assert len(curve) == 13 and curve[-1] < curve[0]


def test_missing_model_is_named_and_nothing_runs(window, qtbot):
    panel = window.panels["Features"]
    missing = "fashion-mnist/l2-robust-that-was-never-trained"
    panel.set_model("robust", missing)
    assert panel.missing_models() == {"robust": missing}
    assert missing in panel.model_note.text() and "Open model" in panel.model_note.text()
    handle_before = handle(panel)
    panel.run()
    assert handle(panel) is handle_before and missing in panel.status.text()
    panel.set_model("robust", ROBUST)
    assert not panel.missing_models() and panel.model_note.isHidden()


def test_settings_are_saved_and_restored(window, tmp_path):
    panel = window.panels["Features"]
    panel.set_params(steps=321, step_size=0.25, seed_mode="noise", draw=4, schedule="cosine", auto=False)
    settings = QSettings(str(tmp_path / "panel.ini"), QSettings.Format.IniFormat)
    settings.beginGroup("panels/Features")
    panel.save_settings(settings)
    settings.endGroup()
    settings.sync()
    fresh = FeaturesPanel(window.ctx)
    settings = QSettings(str(tmp_path / "panel.ini"), QSettings.Format.IniFormat)
    settings.beginGroup("panels/Features")
    fresh.restore_settings(settings)
    params = fresh.current_params()
    assert (params.steps, params.step_size, params.seed_mode, params.draw, params.schedule) == \
        (321, 0.25, "noise", 4, "cosine")
    assert (params.robust, params.non_robust, params.extra) == (ROBUST, STANDARD, "")
    assert not fresh.auto_box.isChecked()
    window.set_lecture_mode(True, full_screen=False)  # larger fonts reach the plot; nothing breaks
    lecture = style.base_point_size() * style.LECTURE_FONT_SCALE
    assert fresh.plot.getAxis("bottom").style["tickFont"].pointSizeF() == pytest.approx(lecture)
    window.set_lecture_mode(False)
    assert fresh.plot.getAxis("bottom").style["tickFont"].pointSizeF() == pytest.approx(style.base_point_size())
    settings.setValue("steps", "many")  # a value that does not parse is reported and ignored
    problems = fresh.restore_settings(settings)
    assert len(problems) == 1 and "steps" in problems[0] and fresh.current_params().steps == 321
    fresh.deleteLater()


def test_experiment_section_fills_the_table_row_by_row(window, qtbot, tmp_path):
    section = DatasetExperiments(window.ctx)
    qtbot.addWidget(section)
    section.data_root = tmp_path / "features"
    section.set_models(ROBUST, STANDARD)
    section.count_box.setValue(20)
    section.steps_box.setValue(3)
    section.test_box.setValue(200)
    # a tiny run: one batch of training per model, a short attack on a few test images
    section.training = ExperimentSettings(epochs=1, max_batches=1, eval_images=20, eval_steps=2, eval_batch=20)
    section.construction = replace(section.construction, chunk_size=10, pgd_steps=2)
    section.arch_box.setCurrentIndex(section.arch_box.findData("fmnist-cnn"))  # not the default
    rows_seen = []
    section.run()
    job = section.job_handle(features_experiments.JOB_SLOT)
    qtbot.waitUntil(lambda: not job.running, timeout=120_000)
    assert job.state == "finished", section.status.text()
    names = [section.table.item(r, 0).text() for r in range(section.table.rowCount())]
    assert names == ["D", "D_R", "D_NR", "D_rand", "D_det"]
    for r, name in enumerate(names):
        row = section.row_values(name)
        rows_seen.append(row)
        assert row["train_images"] == 20 and 0 <= row["clean_accuracy"] <= 1
        assert set(row["robust_accuracy"]) == {"0.5", "1.5"}
        assert section.table.item(r, 4).text() == f"{100 * row['clean_accuracy']:.1f} %"
    # the paper's columns are theirs, not ours: D_R 84 % / 48 %, D_det 44 %
    assert section.table.item(names.index("D_R"), section.paper_columns[0]).text() == "84.0 %"
    assert section.table.item(names.index("D_R"), section.paper_columns[1]).text() == "48.0 %"
    assert section.table.item(names.index("D_det"), section.paper_columns[0]).text() == "44.0 %"
    assert "Ilyas" in section.table.horizontalHeaderItem(section.paper_columns[0]).text()
    saved = json.loads(section.results_path.read_text())
    assert [r["dataset"] for r in saved["rows"]] == names and saved["test"]["images"] == 200
    assert saved["settings"]["arch"] == "fmnist-cnn"  # the models were trained as chosen
    # a saved file loads into a fresh section; a file that is not one is refused, the table stays
    other = DatasetExperiments(window.ctx)
    qtbot.addWidget(other)
    assert other.arch_box.currentData() == "fmnist-resnet"  # before: the default, the regime's
    assert other.load_results(section.results_path)
    assert other.row_values("D_NR")["clean_accuracy"] == section.row_values("D_NR")["clean_accuracy"]
    # and its recipe becomes the next run's: 3 inversion steps, 2 PGD steps, the small CNN
    assert other.steps_box.value() == 3 and other.construction.pgd_steps == 2
    assert other.arch_box.currentData() == "fmnist-cnn" and other.request().training.arch == "fmnist-cnn"
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    assert not other.load_results(bad)
    assert other.results_path == section.results_path


def test_the_gui_and_the_cli_run_one_pipeline(window, qtbot, tmp_path):
    """The Experiments tab's section and `robustlens experiment --build-in` build the same request from
    the same settings, and it gives the same rows (tiny counts: behaviour, not accuracy)."""
    section = DatasetExperiments(window.ctx)
    qtbot.addWidget(section)
    assert section.results is None and "Load results" in section.shown.text()  # first start: what to do
    # the defaults are the ablation's real-data regime (README), as the CLI's
    assert section.request().construction == REGIME_BUILD and section.request().training == REGIME_TRAINING
    section.data_root = tmp_path / "gui"
    section.set_models(ROBUST, STANDARD)
    section.count_box.setValue(20)
    section.steps_box.setValue(2)
    section.test_box.setValue(100)
    section.construction = replace(section.construction, pgd_steps=2)
    section.training = replace(section.training, epochs=1, eval_images=20, eval_steps=1)
    args = ["experiment", "--build-in", str(tmp_path / "cli"), "--robust-model", ROBUST, "--standard-model", STANDARD,
            "--count", "20", "--steps", "2", "--pgd-steps", "2", "--test-images", "100", "--epochs", "1",
            "--eval-images", "20", "--eval-steps", "1"]
    cli_request = experiment_request(build_parser().parse_args(args))
    gui_request = section.request()
    # the same settings object, only the folder differs (and the GUI names its dataset)
    assert gui_request.dataset == "fashion-mnist"
    assert replace(gui_request, workdir=cli_request.workdir, dataset=None) == cli_request
    section.run()
    job = section.job_handle(features_experiments.JOB_SLOT)
    qtbot.waitUntil(lambda: not job.running, timeout=120_000)
    assert job.state == "finished", section.status.text()
    assert main(args) == 0
    cli_rows = json.loads((tmp_path / "cli" / "results.json").read_text())["rows"]
    gui_rows = json.loads(section.results_path.read_text())["rows"]

    def without_timings(rows):
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]

    assert [r["dataset"] for r in gui_rows] == ["D", "D_R", "D_NR", "D_rand", "D_det"]
    assert without_timings(gui_rows) == without_timings(cli_rows)


def test_experiment_section_settings_round_trip_and_garbage_falls_back(window, qtbot, tmp_path):
    section = DatasetExperiments(window.ctx)
    qtbot.addWidget(section)
    store = QSettings(str(tmp_path / "section.ini"), QSettings.Format.IniFormat)
    garbage = ("nowhere/model", "", "abc", "-7", "nan", "x", "99999999", str(tmp_path / "none.json"))
    for setting, value in zip(section.SETTINGS, garbage):
        store.setValue(setting.key, value)
    problems = section.restore_settings(store)
    assert len(problems) == 6 and any("nowhere/model" in p for p in problems)
    for setting in section.SETTINGS[2:7]:
        assert section.setting_value(setting.key) == setting.default
    assert section.models() == (ROBUST, STANDARD) and section.results is None
    section.count_box.setValue(300)
    section.schedule_box.setCurrentIndex(section.schedule_box.findData("cosine"))
    saved = QSettings(str(tmp_path / "saved.ini"), QSettings.Format.IniFormat)
    section.save_settings(saved)
    fresh = DatasetExperiments(window.ctx)
    qtbot.addWidget(fresh)
    assert fresh.restore_settings(saved) == []
    assert {s.key: fresh.setting_value(s.key) for s in fresh.SETTINGS} == \
        {s.key: section.setting_value(s.key) for s in section.SETTINGS}


def test_the_caption_names_each_construction_and_what_run_would_build(window, qtbot):
    """A loaded results file: D_R and D_NR (built alike) share one description naming both models, and
    when the file's run used another image count than the box, the caption says which one Run uses."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "features" / "results.json"
    rows = {row["dataset"]: row for row in json.loads(path.read_text())["rows"]}
    section = DatasetExperiments(window.ctx)
    qtbot.addWidget(section)
    for count, says_which in ((rows["D_R"]["train_images"] // 5, True), (rows["D_R"]["train_images"], False)):
        section.count_box.setValue(count)
        assert section.load_results(path)
        caption = section.shown.text()
        models = [rows[name]["source"]["model"]["name"] for name in ("D_R", "D_NR")]
        assert f"D_R, D_NR: {rows['D_R']['train_images']:,} images inverted through {models[0]} and {models[1]}" \
            in caption
        assert f"D_rand, D_det: targeted L2 PGD ε = {rows['D_det']['source']['eps']}" in caption
        assert ("“images per dataset”" in caption) == says_which, caption
