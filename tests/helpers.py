"""Helpers several test files share (tests/ is on the path when pytest runs them)."""

from __future__ import annotations

import torch

from robustlens.engine.cli import main
from robustlens.engine.models import build_model, save_checkpoint


def write_small_checkpoints(folder) -> list[str]:
    """Two small untrained checkpoints in ``folder``: a standard model and a noise model (σ = 0.25)."""
    torch.manual_seed(0)
    paths = []
    for name, meta in (("standard", {}), ("noise", {"kind": "noise", "sigma": 0.25})):
        path = str(folder / f"{name}.pt")
        save_checkpoint(build_model("fmnist-cnn", name=f"test/{name}", **meta), path)
        paths.append(path)
    return paths


def one_line_error(capsys, argv, command=None) -> str:
    """Run ``robustlens ARGV`` in this process and check it fails as every CLI mistake must: exit 1 and
    one line ``robustlens COMMAND: error: …`` on stderr, no traceback. Returns that line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"robustlens {command or argv[0]}: error: "), err
    return err
