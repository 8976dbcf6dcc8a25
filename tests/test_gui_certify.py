"""The Certify panel on Qt's offscreen platform: a click certifies (checked against the engine's CERTIFY
with the same seed), a newer click cancels the older run, the certified-accuracy job draws its rows, and
a missing noise model is said and offered. n is kept small: these tests check values, not speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, Qt

from robustlens.engine import certify_jobs
from robustlens.engine.model_cache import load_by_key
from robustlens.app.window import MainWindow
from robustlens.engine.models import build_model, save_checkpoint, zoo_file, zoo_names
from robustlens.engine.smoothing import ABSTAIN, Smooth
from robustlens.engine.smoothing_bounds import certified_accuracy

ZOO_NOISE = "fashion-mnist/noise-0.25"
SMALL = {"n0": 20, "n": 300, "alpha": 0.001, "batch": 100, "seed": 3}


@pytest.fixture
def noise_key(tmp_path):
    """The built-in σ = 0.25 model when its file exists, else a freshly initialised one (σ = 0.25)."""
    if zoo_file(ZOO_NOISE).exists():
        return ZOO_NOISE
    torch.manual_seed(0)
    path = tmp_path / "noise.pt"
    save_checkpoint(build_model("fmnist-cnn", name="test/noise-0.25", kind="noise", sigma=0.25), path)
    return str(path)


@pytest.fixture
def reference(zoo_model):
    """The same model, loaded apart from the window, for the independent computation."""

    def get(key):
        if key in zoo_names():
            return zoo_model(key)
        return load_by_key(key, torch.device("cpu"))

    return get


def open_window(qtbot, tmp_path, models, **certify_settings):
    path = str(tmp_path / "settings.ini")
    settings = QSettings(path, QSettings.Format.IniFormat)
    for name, value in {**SMALL, **certify_settings}.items():
        settings.setValue(f"panels/Certify/{name}", value)
    settings.sync()
    window = MainWindow(settings=QSettings(path, QSettings.Format.IniFormat), models=models, select=0)
    qtbot.addWidget(window)
    window.resize(1440, 920)
    window.show()
    qtbot.waitUntil(lambda: window._models_ready and window.ctx.dataset is not None, timeout=60_000)
    assert window.tabs.tabText(0) == "Certify"
    window.tabs.setCurrentIndex(0)
    return window


def click_image(qtbot, window, row):
    gallery = window.gallery
    rect = gallery.view.visualRect(gallery.model.index(row))
    qtbot.mouseClick(gallery.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.ctx.selection.index == row


def engine_certificate(model, window, row, params):
    """CERTIFY by the engine itself, on the CPU, with the panel's seed convention (seed + idx)."""
    dataset = window.ctx.dataset
    seed = params["seed"] + dataset.source_index(row)
    return Smooth.from_model(model).certify_detailed(dataset.images[row], params["n0"], params["n"],
                                                     params["alpha"], params["batch"], generator=seed)


def wait_certificate_for(qtbot, panel, row, timeout=120_000):
    qtbot.waitUntil(lambda: panel.certificate is not None and panel.certified_selection is not None
                    and panel.certified_selection.index == row, timeout=timeout)


def test_click_certifies_and_matches_the_engine(qtbot, tmp_path, noise_key, reference):
    window = open_window(qtbot, tmp_path, [noise_key])
    panel = window.panels["Certify"]
    assert window.tabs.tabText(0) == "Certify"
    assert panel.current_params().n == SMALL["n"]  # restored from the settings

    click_image(qtbot, window, 3)
    wait_certificate_for(qtbot, panel, 3)
    cert = panel.certificate
    expected = engine_certificate(reference(noise_key), window, 3, SMALL)

    counts = panel.histogram.counts()
    assert counts.sum() == SMALL["n"]
    np.testing.assert_array_equal(counts, expected.counts)
    assert (cert.prediction, cert.radius) == (expected.prediction, expected.radius)
    text = panel.verdict.text()
    if expected.prediction == ABSTAIN:
        assert "ABSTAIN" in text and f"{expected.pA_lower:.4f} &lt; 0.5" in text
    else:
        assert window.ctx.classes[expected.prediction] in text and f"R = {expected.radius:.3f}" in text
    # both radii are shown: the paper's (pB = 1 − pA) and the general bound with Bonferroni pB
    paper = "nothing certified" if expected.abstained else f"R = {expected.radius:.3f}"
    general = f"R = {expected.radius_general:.3f}" if expected.radius_general > 0 else "nothing certified"
    assert f"paper: {paper} with pB = 1 − pA" in text
    assert f"general: {general}, Bonferroni pB ≤ {expected.pB_upper:.4f}" in text
    # the radius curve marks this image's bound, and the ceiling σ Φ⁻¹(α^(1/n))
    xs, ys = panel.radius_plot.marker.getData()
    assert xs[0] == pytest.approx(max(expected.pA_lower, panel.radius_plot.X_RANGE[0] + 0.002))
    assert ys[0] == pytest.approx(expected.radius)
    assert panel.radius_plot.ceiling.value() == pytest.approx(expected.max_radius)
    # the noise draws are shown with their norms, ≈ σ√d
    assert panel.noise is not None and len(panel.noise.noise_norms) == certify_jobs.NOISE_SHOWN
    assert np.all(np.abs(panel.noise.noise_norms / (0.25 * np.sqrt(784)) - 1) < 0.15)

    # F5 certifies the same image again: the same seed gives the same certificate
    first_id = panel.job_handle("certify").id
    window.request_run()
    qtbot.waitUntil(lambda: panel.job_handle("certify").id != first_id and panel.certificate is not None,
                    timeout=120_000)
    assert (panel.certificate.prediction, panel.certificate.radius) == (expected.prediction, expected.radius)
    second_id = panel.job_handle("certify").id
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)  # and so does the Certify button
    qtbot.waitUntil(lambda: panel.job_handle("certify").id != second_id and panel.certificate is not None,
                    timeout=120_000)
    np.testing.assert_array_equal(panel.certificate.counts, expected.counts)

    # a click on a strip image certifies that image (here image 9 standing in for an adversarial example),
    # with the selection's seed
    stand_in = window.ctx.dataset.images[9:10]
    window.ctx.set_strip_image("adversarial", stand_in, "stand-in", live=True)
    qtbot.mouseClick(window.strip.cards["adversarial"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.certificate is not None
                    and panel.certified_selection.source.startswith("adversarial of"), timeout=120_000)
    seed = SMALL["seed"] + window.ctx.dataset.source_index(3)
    on_strip = Smooth.from_model(reference(noise_key)).certify_detailed(
        stand_in, SMALL["n0"], SMALL["n"], SMALL["alpha"], SMALL["batch"], generator=seed)
    np.testing.assert_array_equal(panel.certificate.counts, on_strip.counts)
    assert panel.certificate.prediction == on_strip.prediction

    # lecture mode scales the plots' fonts
    before = panel.histogram.getAxis("left").style["tickFont"]
    window.set_lecture_mode(True, full_screen=False)
    after = panel.histogram.getAxis("left").style["tickFont"]
    assert after is not None and (before is None or after.pointSizeF() > before.pointSizeF())
    window.close()


def test_a_new_click_cancels_the_running_certify(qtbot, tmp_path, noise_key, reference, monkeypatch):
    runs = []  # one record per certify job started on the engine thread: its n, events, whether it ended
    real_certify_job = certify_jobs.certify_job

    def spying_certify_job(smooth, x, **options):
        factory = real_certify_job(smooth, x, **options)
        record = {"n": options["n"], "events": 0, "ended": False}
        runs.append(record)

        def job(cancel):
            try:
                for event in factory(cancel):
                    record["events"] += 1
                    yield event
            finally:
                record["ended"] = True

        return job

    monkeypatch.setattr(certify_jobs, "certify_job", spying_certify_job)
    window = open_window(qtbot, tmp_path, [noise_key])
    panel = window.panels["Certify"]
    engine = window.engine
    panel.set_params(n=200_000, batch=100)  # long enough to still be running at the second click
    click_image(qtbot, window, 5)
    qtbot.waitUntil(lambda: panel.job_running("certify")
                    and panel.certified_selection.index == 5 and panel.histogram.counts().sum() > 0,
                    timeout=60_000)
    first = panel.job_handle("certify")
    assert first.running

    panel.set_params(n=SMALL["n"])
    click_image(qtbot, window, 8)
    assert first.superseded and first.state == "aborted" and first.token.cancelled
    assert engine.active_jobs("certify") == [panel.job_handle("certify")]  # exactly one certify job alive
    wait_certificate_for(qtbot, panel, 8)

    expected = engine_certificate(reference(noise_key), window, 8, SMALL)
    assert panel.histogram.counts().sum() == SMALL["n"]
    np.testing.assert_array_equal(panel.certificate.counts, expected.counts)
    assert (panel.certificate.prediction, panel.certificate.radius) == (expected.prediction, expected.radius)
    # the first job stopped on the engine thread, long before its n samples, and stays stopped
    long_run = next(r for r in runs if r["n"] == 200_000)
    assert long_run["ended"]
    events = long_run["events"]
    qtbot.wait(400)
    assert long_run["events"] == events < 2 * 200_000 // 100
    assert engine.active_jobs("certify") == []
    window.close()


def test_certified_accuracy_job_draws_its_rows(qtbot, tmp_path, noise_key, reference):
    window = open_window(qtbot, tmp_path, [noise_key])
    panel = window.panels["Certify"]
    panel.accuracy.images_box.setValue(4)
    panel.accuracy.n_box.setValue(100)
    drawn = []
    original = panel.accuracy.plot.set_curve
    panel.accuracy.plot.set_curve = lambda name, radii, accuracy: (drawn.append(np.array(accuracy)),
                                                                   original(name, radii, accuracy))
    qtbot.mouseClick(panel.accuracy.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.job_handle("certify-accuracy") is not None
                    and not panel.job_running("certify-accuracy"), timeout=120_000)
    assert panel.job_handle("certify-accuracy").state == "finished"
    rows = panel.accuracy.rows[noise_key]
    assert [row.images_done for row in rows] == [1, 2, 3, 4]
    assert len(drawn) == 4  # one redraw per certified image, as the rows arrive

    # independent: certify the same four images with the engine (seed + idx, n = 100)
    model = reference(noise_key)
    dataset = window.ctx.dataset
    stride = len(dataset) // 4
    params = dict(SMALL, n=100)
    radii, correct = [], []
    for position, row in zip(range(0, 4 * stride, stride), rows):
        assert row.idx == dataset.source_index(position)
        cert = engine_certificate(model, window, position, params)
        assert (row.prediction, row.radius) == (cert.prediction, cert.radius)
        radii.append(cert.radius)
        correct.append(cert.prediction == int(dataset.labels[position]))
    curve = panel.accuracy.plot.curves[noise_key]
    xs, ys = curve.getData()
    np.testing.assert_allclose(ys, certified_accuracy(radii, correct, xs))
    assert ys[0] == pytest.approx(np.mean(correct))
    window.close()


def test_missing_noise_model_is_said_and_offered(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, [])
    panel = window.panels["Certify"]
    click_image(qtbot, window, 2)
    qtbot.wait(50)
    assert window.engine.active_jobs("certify") == []
    assert panel.certificate is None
    assert "No noise model with σ = 0.25 is loaded" in panel.verdict.text()
    assert panel.load_button.isVisibleTo(panel)
    panel.set_sigma(0.5)
    assert "σ = 0.5" in panel.model_note.text()
    panel.run_accuracy()
    assert panel.job_handle("certify-accuracy") is None and "No noise model" in panel.accuracy.status.text()
    if not zoo_file("fashion-mnist/noise-0.50").exists():
        assert panel.load_button.text() == "Open model…"
        window.close()
        return
    # the offer loads the built-in model, and the pending click is certified with it
    assert panel.load_button.text() == "Load noise-0.50"
    qtbot.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model_for_sigma(0.5) is not None, timeout=60_000)
    wait_certificate_for(qtbot, panel, 2)
    assert panel.certificate.sigma == 0.5
    assert panel.histogram.counts().sum() == SMALL["n"]
    window.close()


def test_settings_round_trip_and_bad_values(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, [], n=1234, alpha=0.01, sigma=0.5)
    panel = window.panels["Certify"]
    params = panel.current_params()
    assert (params.n, params.alpha, params.sigma, params.seed) == (1234, 0.01, 0.5, SMALL["seed"])
    settings = QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)
    panel.set_params(n0=77)
    panel.save_settings(settings)
    assert int(settings.value("n0")) == 77 and float(settings.value("sigma")) == 0.5
    settings.setValue("n", "many")
    problems = panel.restore_settings(settings)  # a value that does not parse falls back to its default
    assert len(problems) == 1 and "n = 'many'" in problems[0]
    assert panel.current_params().n0 == 77  # the values that parse are restored
    window.close()


def test_anytime_mode_stop_keeps_a_valid_certificate(qtbot, tmp_path, noise_key, reference):
    """Anytime mode: Stop ends the run with the certificate of the evidence so far — the engine's own
    confidence-sequence certificate at that sample count, same seed — published like any other; both
    bounds are drawn on the same samples, with both ceilings; fixed-n mode brings the radius curve back."""
    from robustlens.engine.anytime import AnytimeCertificate, anytime_max_radius

    max_n = 400_000
    window = open_window(qtbot, tmp_path, [noise_key], mode="anytime", n=max_n, batch=200)
    panel = window.panels["Certify"]
    assert panel.anytime() and panel.stop_button.isVisible() and panel.bounds_plot.isVisible()
    assert not panel.radius_plot.isVisible()
    click_image(qtbot, window, 3)
    qtbot.waitUntil(lambda: panel.stop_button.isEnabled() and panel.bounds_plot.fixed.xData is not None
                    and len(panel.bounds_plot.fixed.xData) >= 5, timeout=120_000)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    wait_certificate_for(qtbot, panel, 3)
    cert = panel.certificate
    assert isinstance(cert, AnytimeCertificate) and cert.stop_reason.startswith("stopped by you")
    assert 0 < cert.n < max_n and not panel.stop_button.isEnabled()
    seed = SMALL["seed"] + window.ctx.dataset.source_index(3)
    smooth = Smooth.from_model(reference(noise_key))
    same = next(u for u in smooth.certify_anytime(window.ctx.dataset.images[3], SMALL["n0"], max_n, SMALL["alpha"],
                                                  200, generator=seed) if u.phase == "estimation" and u.drawn == cert.n)
    np.testing.assert_array_equal(cert.counts, same.counts)
    assert (cert.prediction, cert.radius, cert.pA_lower) == (same.so_far.prediction, same.radius, same.pA_lower)
    assert window.ctx.certificate_for(panel.certified_selection, panel.model_info.key) is cert
    text = panel.verdict.text()
    assert "valid whenever you stop" in text and f"fixed n = {cert.n:,} on the same samples" in text
    assert f"anytime {anytime_max_radius(0.25, max_n, SMALL['alpha']):.3f}" in text
    # the two bounds on the same samples: one x per chunk for both, the anytime one never above
    fixed_x, fixed_y = panel.bounds_plot.fixed.xData, panel.bounds_plot.fixed.yData  # data, not log10 display
    any_x, any_y = panel.bounds_plot.anytime.xData, panel.bounds_plot.anytime.yData
    assert fixed_x[-1] == any_x[-1] == cert.n and set(any_x) == set(fixed_x)
    assert any_y.max() <= fixed_y.max() + 1e-12 and any_y[-1] == pytest.approx(cert.radius)
    ceiling_y = panel.bounds_plot.anytime_ceiling.yData
    assert ceiling_y[-1] == pytest.approx(cert.max_radius)
    # back to fixed n: the radius curve, no Stop, and Cohen's certificate
    panel.mode_box.setCurrentIndex(panel.mode_box.findData("fixed"))
    panel.mode_box.activated.emit(panel.mode_box.currentIndex())
    assert panel.radius_plot.isVisible() and not panel.bounds_plot.isVisible() and not panel.stop_button.isVisible()
    window.close()
