"""The built wheel works on its own: installed into a throwaway environment with no checkout and no
editable install on the path, it lists the zoo and opens the window (offscreen screenshot)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args, cwd, env, timeout=300):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the wheel; its dependencies (torch, Qt, ...) come from this interpreter's
    site-packages through a path file, which adds the folder to sys.path but runs none of the path
    files in it, so the checkout's editable install stays invisible."""
    scratch = tmp_path_factory.mktemp("wheel")
    wheels = scratch / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
          str(ROOT)], cwd=scratch, env=env)
    wheel = next(wheels.glob("robustlens-*.whl"))
    home = scratch / "venv"
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          str(wheel)], cwd=scratch, env=env)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["HOME"] = str(scratch / "home")  # no settings of this machine's user
    return home, scratch, env


def test_wheel_imports_from_its_own_install(installed):
    home, scratch, env = installed
    done = _run([str(home / "bin" / "python"), "-c",
                 "import robustlens, robustlens.app.window, robustlens.app.panels.attack, robustlens.resources;"
                 "print(robustlens.__file__)"], cwd=scratch, env=env)
    location = Path(done.stdout.strip())
    assert home in location.parents, f"robustlens came from {location}, not the wheel"


def test_wheel_lists_the_zoo(installed):
    home, scratch, env = installed
    done = _run([str(home / "bin" / "robustlens"), "zoo"], cwd=scratch, env=env)
    assert "fashion-mnist/standard" in done.stdout and "fashion-mnist/noise-0.25" in done.stdout


def test_wheel_opens_the_window_with_a_model_file(installed):
    """`robustlens --model FILE --screenshot out.png`: a window flag, not a CLI subcommand."""
    home, scratch, env = installed
    model = ROOT / "src" / "robustlens" / "resources" / "models" / "fashion-mnist__standard.pt"
    picture = scratch / "window.png"
    _run([str(home / "bin" / "robustlens"), "--model", str(model), "--screenshot", str(picture),
          "--timeout", "240"], cwd=scratch, env=env)
    assert picture.stat().st_size > 10_000
