"""Import torchvision, working around CPU torch paired with a CUDA build of torchvision.

Such a torchvision registers fake kernels for its C++ operators at import time and fails with
"operator torchvision::nms does not exist" when torch has no such schema. Defining the two missing
schemas first lets the pure-Python parts (models, datasets, transforms) import; the C++ ops stay
unusable, which is why image files are read with Pillow throughout. Applied only when needed.
"""

from __future__ import annotations

import importlib

import torch

_fragment = None  # keep the library object alive, or the schemas are unregistered again


def _define_missing_schemas() -> None:
    global _fragment
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    _fragment.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _fragment.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def torchvision():
    """Return the imported `torchvision` module."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_missing_schemas()
    return importlib.import_module("torchvision")
