"""The guided lecture (issue 12): every built-in deck step applies and starts or replays its job
offscreen, a bad deck file is one line naming step and key, PgDown / PgUp walk the deck, and closing
it gives the lecturer's settings back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

from robustlens.app.deck import load_deck, open_deck, start_deck
from robustlens.app.deck_view import formula_html
from robustlens.app.window import MainWindow
from robustlens.engine.deck_file import (REPLAY_RADII, DeckError, builtin_deck_text, builtin_folder, parse_deck,
                                         read_deck)
from robustlens.engine.zoo import catalogue

ROOT = Path(__file__).resolve().parents[1]
ZOO = [entry.name for entry in catalogue()]


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     models=ZOO, select=0, use_settings=False)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=60_000)
    failures = []
    win.engine.jobFailed.connect(lambda handle, failure: failures.append(f"{handle.label}: {failure.message}"))
    win.failures = failures
    yield win
    win.close()


def _user_jobs(window):
    return [h for h in window.engine.active_jobs() if h.user_cancellable]


def _tsv_accuracy(path: Path, radius: float) -> float:
    """Certified accuracy straight from the TSV's columns: correct and radius ≥ r (an independent count)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return sum(1 for row in rows if row[4] == "1" and float(row[3]) >= radius) / len(rows)


def test_every_builtin_deck_step_runs_offscreen(window, qtbot):
    deck = load_deck(window)
    assert len(deck.steps) >= 10
    assert {step.tab for step in deck.steps} >= {"Attack", "Features", "Experiments", "Certify", "Geometry"}
    controller = open_deck(window, deck)
    assert controller.pane.isVisibleTo(window)
    for index, step in enumerate(deck.steps):
        problems = controller.show_step(index)
        assert problems == [], f"step {index + 1}: {problems}"
        assert window.tabs.tabText(window.tabs.currentIndex()) == step.tab
        if step.image is not None:
            assert window.ctx.selection.index == step.image
        panel = window.panels[step.tab]
        for key, value in step.settings:
            shown = panel.setting_value(key)
            if isinstance(value, float):
                assert shown == pytest.approx(value), f"step {index + 1}: {key}"
            else:
                assert str(shown) == str(value), f"step {index + 1}: {key}"
        pane = controller.pane
        assert pane.heading.text() == step.title
        assert pane.counter.text().startswith(f"Step {index + 1} of {len(deck.steps)}")
        if step.run:
            assert _user_jobs(window), f"step {index + 1} ({step.title}) started no job"
        if step.has_replay:  # a shipped result is on screen at once, and a live rerun beside it
            assert pane.replay_box.isVisibleTo(window) and pane.rerun_button.isEnabled()
        assert window.failures == [], f"step {index + 1}: {window.failures}"
    # the last run step finishes (small settings): its job ends without a failure
    window.cancel_jobs()
    attack = next(i for i, s in enumerate(deck.steps) if s.tab == "Attack" and s.run)
    controller.show_step(attack)
    qtbot.waitUntil(lambda: not _user_jobs(window), timeout=120_000)
    assert window.failures == []
    assert window.strip.cards["adversarial"].title.text()  # the strip shows the attack's image
    controller.close()


def test_replayed_results_match_the_shipped_files(window, qtbot):
    deck = load_deck(window)
    controller = open_deck(window, deck)
    tradeoff = next(i for i, s in enumerate(deck.steps) if s.replay)
    step = deck.steps[tradeoff]
    assert controller.show_step(tradeoff) == []
    for row, path in zip(step.replay_rows, step.replay):
        assert row.images == 500
        for radius, shown in zip(REPLAY_RADII, row.accuracy):
            assert shown == pytest.approx(_tsv_accuracy(path, radius))
    # the σ trade-off: small σ best at r = 0, only large σ certifies r = 1.5
    by_name = {row.name: row.accuracy for row in step.replay_rows}
    assert by_name["noise-0.25"][0] > by_name["noise-1.00"][0]
    assert by_name["noise-0.25"][REPLAY_RADII.index(1.5)] == 0 < by_name["noise-1.00"][REPLAY_RADII.index(1.5)]
    assert "90%" in controller.pane.replay_table.text()  # σ 0.25 at r = 0: 452 of 500
    # rerun live clicks the tab's own button: the certified-accuracy job starts
    window.cancel_jobs()
    assert controller.rerun_live() == []
    assert any("accura" in h.label.lower() or "σ" in h.label for h in _user_jobs(window)), \
        [h.label for h in _user_jobs(window)]
    window.cancel_jobs()
    # the Ilyas experiment's table is the shipped results file, loaded by the tab itself
    ilyas = next(i for i, s in enumerate(deck.steps) if s.tab == "Experiments" and not s.run)
    assert controller.show_step(ilyas) == []
    results = window.panels["Experiments"].setting_value("dataset-experiments-ilyas-et-al/results")
    assert Path(results) == builtin_folder() / "ilyas-results.json"
    # replayed: once the last step's jobs have ended, nothing runs until "Rerun live"
    qtbot.waitUntil(lambda: not _user_jobs(window), timeout=60_000)
    qtbot.wait(500)
    assert not _user_jobs(window)
    controller.close()


ILYAS = "Dataset experiments (Ilyas et al.)"


def _table(section) -> tuple[list[str], list[list[str]]]:
    """The Ilyas table's visible headers (one line each) and cells, as the audience sees them."""
    table = section.table
    visible = [c for c in range(table.columnCount()) if not table.isColumnHidden(c)]
    headers = [" ".join(table.horizontalHeaderItem(c).text().split()) for c in visible]
    cells = [[table.item(r, c).text() for c in visible] for r in range(table.rowCount())]
    return headers, cells


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _deck_step(deck, title: str) -> int:
    return next(i for i, s in enumerate(deck.steps) if s.title == title)


def _show_results_step(window, title: str, after: str, shipped: str):
    """Open the built-in deck at the step ``title`` (which must follow ``after``) and return
    (deck, controller, step index, the Ilyas section, the shipped file read here, not by the app)."""
    deck = load_deck(window)
    controller = open_deck(window, deck)
    index = _deck_step(deck, title)
    assert index == _deck_step(deck, after) + 1
    assert controller.show_step(index) == []
    section = window.panels["Experiments"].sections[ILYAS]
    return deck, controller, index, section, json.loads((builtin_folder() / shipped).read_text())


def test_the_brittle_model_step_shows_its_file_and_its_eps_columns(window, qtbot):
    deck, controller, index, section, results = _show_results_step(
        window, "With a brittle model, D_R is robust", "D_R, D_NR and D_rand generalise", "ilyas-resnet-regime.json")
    headers, cells = _table(section)
    eps = [float(e) for e in results["settings"]["eval_eps"]]
    assert eps == [1.0, 1.25]
    columns = [next(i for i, h in enumerate(headers) if h.startswith("robust") and h.endswith(f"ε = {e:g}"))
               for e in eps]
    assert [row[0] for row in cells] == [row["dataset"] for row in results["rows"]]  # its rows, no empty ones
    for shown, row in zip(cells, results["rows"]):
        assert shown[headers.index("clean acc.")] == _percent(row["clean_accuracy"])
        for column, e in zip(columns, eps):
            assert shown[column] == _percent(row["robust_accuracy"][str(e)]) != "–"
    # the deck's text quotes the file: D 0.0 %, D_R 22.7 % at ε = 1.0
    by_name = {row["dataset"]: row for row in results["rows"]}
    for name in ("D", "D_R"):
        assert _percent(by_name[name]["robust_accuracy"]["1.0"]) in deck.steps[index].text
    controller.close()


def test_the_planted_step_shows_the_demo_rows_with_the_files_values(window, qtbot):
    deck, controller, index, section, results = _show_results_step(
        window, "Planted features: the mechanism", "With a brittle model, D_R is robust", "planted-results.json")
    assert results["format"] == "robustlens-planted-demo"
    headers, cells = _table(section)
    measures = {"own pattern p_y added: accuracy": "own_pattern_accuracy",
                "another class's p_c: answers c": "follows_pattern",
                "p_c: switched to c": "switched_to_pattern", "p_c: answers y": "true_class"}
    assert set(measures) <= set(headers) and not section.paper_columns  # no paper numbers for a planted demo
    eps = results["settings"]["training"]["eval_eps"]
    assert len(cells) == len(results["rows"])
    for shown, row in zip(cells, results["rows"]):
        assert shown[0] == row["dataset"] or row["reference"] and row["dataset"].startswith("fashion-mnist/")
        assert shown[headers.index("clean acc.")] == _percent(row["clean_accuracy"])
        for e in eps:
            assert shown[headers.index(f"robust L2 ε = {e:g}")] == _percent(row["robust_accuracy"][str(float(e))])
        for header, key in measures.items():
            assert shown[headers.index(header)] == _percent(row[key])
    assert [row[0] for row in cells][:4] == ["D_planted", "D_det", "D_R", "D"]
    # the deck's text quotes the file
    by_name = {row["dataset"]: row for row in results["rows"]}
    text = deck.steps[index].text
    for quoted in (by_name["D_planted"]["own_pattern_accuracy"], by_name["D_planted"]["switched_to_pattern"],
                   by_name["D_R"]["switched_to_pattern"], by_name["D"]["switched_to_pattern"]):
        assert _percent(quoted) in text
    assert f"{results['patterns']['carried_norm_mean']:.2f}" in text
    assert "planted-results.json" in section.shown.text()
    controller.close()


def test_a_foreign_results_file_is_one_clear_line(light_window, qtbot, tmp_path):
    section = light_window.panels["Experiments"].sections[ILYAS]
    messages = []
    light_window.ctx.message.connect(lambda kind, text: messages.append((kind, text)))
    foreign = tmp_path / "foreign.json"
    for text in ('{"format": "someone-elses", "rows": [{"x": 1}]}', '[1, 2]', '{"format": "robustlens-planted-demo"}',
                 '{"format": "robustlens-planted-demo", "rows": [{"dataset": "D", "clean_accuracy": 0.5}]}',
                 'not json'):
        foreign.write_text(text)
        messages.clear()
        assert not section.load_results(foreign)
        assert len(messages) == 1 and messages[0][0] == "error", messages
        assert "\n" not in messages[0][1] and messages[0][1].startswith("Cannot show foreign.json: "), messages
    assert "not a robustlens results file" in messages[0][1] or "JSON" in messages[0][1]
    # in a deck: the step names the key and says why, in one line; the deck goes on
    foreign.write_text('{"format": "someone-elses", "rows": []}')
    deck_path = tmp_path / "mine.toml"
    deck_path.write_text('[[step]]\ntitle = "a"\ntab = "Experiments"\n'
                         f'settings = {{ section = "{ILYAS}", "dataset-experiments-ilyas-et-al/results" = "./foreign.json" }}\n')
    controller = open_deck(light_window, load_deck(light_window, deck_path))
    qtbot.waitUntil(lambda: controller.index == 0, timeout=60_000)
    problems = controller.problems
    assert len(problems) == 1 and "results" in problems[0] and "someone-elses" in problems[0], problems
    assert "\n" not in problems[0]
    controller.close()


def test_pgdown_pgup_walk_the_deck_and_closing_restores_settings(window, qtbot):
    certify = window.panels["Certify"]
    certify.apply_setting("n", 4321)
    deck = load_deck(window)
    controller = open_deck(window, deck)
    assert controller.index == 0
    assert not window.gallery_action.isChecked()  # the deck picks the images: the tabs get the width
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert controller.index == 1 and window.ctx.selection.index == deck.steps[1].image
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    assert controller.index == 1
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    qtbot.keyClick(window, Qt.Key.Key_PageUp)  # the first step stays the first
    assert controller.index == 0
    radius_step = next(i for i, s in enumerate(deck.steps) if s.tab == "Certify" and dict(s.settings).get("n") == 1000)
    controller.show_step(radius_step)
    assert certify.setting_value("n") == 1000
    controller.close()
    assert certify.setting_value("n") == 4321            # the lecturer's own setting is back
    assert "PgDown" in [k.toString() for k in window.next_action.shortcuts()]
    assert window.gallery_action.isChecked()
    selected = window.ctx.selection.index
    qtbot.keyClick(window, Qt.Key.Key_PageDown)          # PgDown is the next image again
    assert window.ctx.selection.index == selected + 1


BAD_DECKS = [
    ('title = "x"\n[[step]]\ntitle = "a"\ntab = "Nowhere"\n', "step 1", "no tab 'Nowhere'"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nsettings = { sigma = 0.25, colour = "red" }\n',
     "step 1", "no setting 'colour'"),
    ('[[step]]\ntitle = "a"\ntab = "Attack"\n[[step]]\ntitle = "b"\ntab = "Certify"\nsettings = { n = 0 }\n',
     "step 2 ('b')", "below its minimum"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nsettings = { alpha = 0.5 }\n', "step 1", "alpha"),
    ('[[step]]\ntitle = "a"\ntab = "Features"\nsettings = { steps = "many" }\n', "step 1", "not a whole number"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nimage = -3\n', "step 1", "image = -3"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nrun = "yes"\n', "step 1", "run"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nsetings = {}\n', "step 1", "unknown key 'setings'"),
    ('[[step]]\ntab = "Certify"\n', "step 1", "'title' is required"),
    ('[[step]]\ntitle = "a"\ntab = "Certify"\nreplay = ["builtin:nothing-here.tsv"]\n', "step 1", "nothing-here"),
    ('title = "x"\n', "deck", "no steps"),
    ('[[step]\ntitle = "a"\n', "deck", "not valid TOML"),
]


@pytest.fixture
def light_window(qtbot, tmp_path):
    """Every tab (their declared settings check a deck), one model: enough for a deck file's errors."""
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                     models=["fashion-mnist/standard"], select=0, use_settings=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_a_bad_deck_file_is_one_line_naming_step_and_key(light_window, tmp_path):
    window = light_window
    for number, (text, where, what) in enumerate(BAD_DECKS):
        path = tmp_path / f"bad{number}.toml"
        path.write_text(text)
        with pytest.raises(DeckError) as caught:
            load_deck(window, path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message, message
        assert where in message and what in message, message
        # the GUI: one line in the banner, no deck, the window works on
        assert start_deck(window, path) is None
        assert getattr(window, "deck", None) is None


def test_bad_json_and_missing_file(light_window, tmp_path):
    window = light_window
    path = tmp_path / "deck.json"
    path.write_text('{"step": [{"title": "a", "tab": "Certify",}]}')
    with pytest.raises(DeckError, match="not valid JSON"):
        load_deck(window, path)
    path.write_text('{"step": [{"title": "a", "tab": "Certify", "settings": {"sigma": 0.5}}]}')
    assert load_deck(window, path).steps[0].settings == (("sigma", 0.5),)
    with pytest.raises(DeckError, match="no such file"):
        load_deck(window, tmp_path / "absent.toml")
    with pytest.raises(DeckError, match="not a regular file"):
        load_deck(window, tmp_path)


def test_deck_files_resolve_their_own_folder(tmp_path):
    (tmp_path / "mine.tsv").write_text((builtin_folder() / "certify-noise-0.50.tsv").read_text())
    deck = parse_deck('[[step]]\ntitle = "a"\ntab = "Certify"\nreplay = ["./mine.tsv"]\n', folder=tmp_path)
    assert deck.steps[0].replay == (tmp_path / "mine.tsv",)
    assert deck.steps[0].replay_rows[0].name == "mine" and deck.steps[0].replay_rows[0].images == 500


def test_formula_subscripts_and_superscripts():
    assert formula_html("x_{adv} − x") == "x<sub>adv</sub> − x"
    assert formula_html("Φ^{−1}(α^{1/n})") == "Φ<sup>−1</sup>(α<sup>1/n</sup>)"
    assert formula_html("p_A < 1\nσ^2") == "p<sub>A</sub> &lt; 1<br>σ<sup>2</sup>"


def _cli(*args, timeout=600):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "robustlens", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_template_is_the_builtin_deck_and_a_bad_file_exits_1(tmp_path):
    done = _cli("--deck-template")
    assert done.returncode == 0 and done.stdout == builtin_deck_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(done.stdout)
    assert len(read_deck(mine).steps) == len(read_deck().steps)  # a copy works wherever it is saved
    mine.write_text(done.stdout.replace('tab = "Geometry"', 'tab = "Geometri"'))
    done = _cli("--deck", str(mine), "--screenshot", str(tmp_path / "x.png"))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if "propagateSizeHints" not in line]
    assert len(lines) == 1 and lines[0].startswith("robustlens: error: deck ") and "'Geometri'" in lines[0], lines
    assert "Traceback" not in done.stderr and not (tmp_path / "x.png").exists()


def test_cli_renders_a_deck_step_headless(tmp_path):
    out = tmp_path / "step1.png"
    done = _cli("--deck", "--deck-step", "1", "--screenshot", str(out), "--size", "1280x720", "--lecture")
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    width, height = Image.open(out).size
    assert width >= 1280 and height >= 720  # at least the size asked (the tabs may ask for more in lecture mode)
    done = _cli("--deck", "--deck-step", "99", "--screenshot", str(out))
    assert done.returncode == 1 and "no step 99" in done.stderr


def test_moving_on_stops_the_last_steps_jobs_without_calling_them_cancelled(window, qtbot):
    """A deck step's job that the next step stops is not reported as "cancelled" in the status bar (the
    lecturer moved on); Esc on a running job still is."""
    deck = load_deck(window)
    controller = open_deck(window, deck)
    runs = [i for i, s in enumerate(deck.steps) if s.run and s.tab == "Certify"]
    still = next(i for i, s in enumerate(deck.steps) if not s.run)  # a step that starts nothing of its own
    assert runs
    status = window.status
    for cancel_by_hand in (False, True):
        controller.show_step(runs[0])
        started = _user_jobs(window)
        assert started
        if cancel_by_hand:
            window.cancel_jobs()
        else:
            controller.show_step(still)
        qtbot.waitUntil(lambda: all(h.state != "running" for h in started), timeout=60_000)
        qtbot.wait(2 * 50)  # two of the status bar's polls
        assert any(h.state == "aborted" for h in started)
        reported = "cancelled" in status.job_label.toolTip()
        assert reported == cancel_by_hand, status.job_label.toolTip()
        window.cancel_jobs()
        qtbot.waitUntil(lambda: not _user_jobs(window), timeout=60_000)
    controller.close()


def test_the_tradeoff_step_draws_the_shipped_curves_in_the_certify_tab(window, qtbot):
    """The σ trade-off step draws each shipped certify run's certified-accuracy curve in the tab's own
    plot (not only a table in the pane), the values those of the TSVs' own columns; Run all σ replaces
    them with a run here."""
    deck = load_deck(window)
    controller = open_deck(window, deck)
    tradeoff = next(i for i, s in enumerate(deck.steps) if s.replay and s.tab == "Certify")
    assert controller.show_step(tradeoff) == []
    section = window.panels["Certify"].accuracy
    curves = section.plot.curves
    assert len(curves) == len(deck.steps[tradeoff].replay)
    for path in deck.steps[tradeoff].replay:
        radii, accuracy = curves[path.stem.removeprefix("certify-")].getData()
        assert radii[0] == 0 and accuracy[-1] == 0  # from r = 0 to past the largest certified radius
        for at in range(0, len(radii), 17):
            assert accuracy[at] == pytest.approx(_tsv_accuracy(path, float(radii[at])))
    assert "shipped" in section.status.text()
    window.cancel_jobs()
    section.images_box.setValue(2)
    section.n_box.setValue(100)
    section.run_button.click()
    assert set(section.plot.curves) != set(curves) or "shipped" not in section.status.text()
    window.cancel_jobs()
    qtbot.waitUntil(lambda: not _user_jobs(window), timeout=60_000)
    controller.close()
