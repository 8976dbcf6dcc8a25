"""Declared settings: every panel lists what it remembers, garbage in the settings file never stops the
window (each bad value falls back to its default and is reported), and good values round-trip."""

from __future__ import annotations

import importlib

import pytest
from PySide6.QtCore import QSettings

from robustlens.app.panels import PANELS
from robustlens.app.panels.base import Panel
from robustlens.app.settings import Setting
from robustlens.app.window import MainWindow

GARBAGE = ("abc", "1.5e999", "nan", "-7", "1.5", "[1, 2]", "")


def _panel_class(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _window(qtbot, path, title, target, use_settings=True):
    win = MainWindow(settings=QSettings(str(path), QSettings.Format.IniFormat), panels=[(title, target)],
                     use_settings=use_settings, models=["fashion-mnist/standard", "fashion-mnist/noise-0.25"])
    qtbot.addWidget(win)
    win.show()
    return win


def test_setting_parse_checks_type_and_range():
    n = Setting("n", 100, minimum=1, maximum=1000)
    assert n.parse("12") == 12 and n.parse(12) == 12
    for bad in ("abc", "1.5", "0", "1001", "", "[1]"):
        with pytest.raises(ValueError):
            n.parse(bad)
    alpha = Setting("alpha", 0.001, choices=(0.05, 0.01, 0.001))
    assert alpha.parse("0.001") == 0.001
    for bad in ("nan", "inf", "0.5", "x"):
        with pytest.raises(ValueError):
            alpha.parse(bad)
    auto = Setting("auto", True)
    assert auto.parse("false") is False and auto.parse(True) is True
    with pytest.raises(ValueError):
        auto.parse("maybe")


@pytest.mark.parametrize("title,target", PANELS, ids=[t for t, _ in PANELS])
def test_every_panel_declares_its_settings(title, target):
    cls = _panel_class(target)
    assert issubclass(cls, Panel), f"{title} is not a Panel"
    keys = [s.key for s in cls.SETTINGS]
    assert len(keys) == len(set(keys)), f"{title} declares a setting twice"
    for setting in cls.SETTINGS:
        setting.check(setting.default)  # the default obeys its own range


@pytest.mark.parametrize("title,target", PANELS, ids=[t for t, _ in PANELS])
def test_garbage_settings_fall_back_to_defaults_and_the_window_starts(qtbot, tmp_path, title, target):
    cls = _panel_class(target)
    path = tmp_path / "settings.ini"
    store = QSettings(str(path), QSettings.Format.IniFormat)
    store.setValue("gallery/index", "abc")
    store.setValue("view/lecture", "maybe")
    for i, setting in enumerate(cls.SETTINGS):
        store.setValue(f"panels/{title}/{setting.key}", GARBAGE[i % len(GARBAGE)])
    store.sync()
    win = _window(qtbot, path, title, target)
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=30_000)
    panel = win.panels[title]
    assert isinstance(panel, cls), f"{title} did not construct"
    for setting in cls.SETTINGS:
        value = panel.setting_value(setting.key)
        if setting.kind in (int, float, bool):
            assert value == pytest.approx(setting.default) if setting.kind is float else value == setting.default, \
                f"{title}: {setting.key} = {value!r} after garbage, not its default {setting.default!r}"
        if value is not None:
            setting.check(value)
    assert not win.banner.isHidden() or not cls.SETTINGS  # the user is told which values were ignored
    win.close()


@pytest.mark.parametrize("title,target", PANELS, ids=[t for t, _ in PANELS])
def test_settings_round_trip_and_reset(qtbot, tmp_path, title, target):
    """Saved values come back; reset_settings() restores every default."""
    path = tmp_path / "settings.ini"
    win = _window(qtbot, path, title, target, use_settings=False)
    qtbot.waitUntil(lambda: win._models_ready and win.ctx.dataset is not None, timeout=30_000)
    panel = win.panels[title]
    saved = {s.key: panel.setting_value(s.key) for s in panel.SETTINGS}
    win.close()
    second = _window(qtbot, path, title, target)
    qtbot.waitUntil(lambda: second._models_ready and second.ctx.dataset is not None, timeout=30_000)
    panel = second.panels[title]
    assert {s.key: panel.setting_value(s.key) for s in panel.SETTINGS} == saved
    panel.reset_settings()
    for setting in panel.SETTINGS:
        value = panel.setting_value(setting.key)
        if setting.kind in (int, float, bool):
            assert value == pytest.approx(setting.default), f"{title}: reset left {setting.key} = {value!r}"
    second.close()
