"""robustlens app: the Qt window, its engine thread and panels (draws; the engine computes)."""

import sys


def _shield_singletons() -> None:
    """Make True, False and None impossible to deallocate, as CPython 3.12+ does by design.

    PySide6 6.12.0 on CPython 3.11 drops a reference to them on some calls: ``Signal.emit()`` returns
    True without taking a reference, ``disconnect`` and slots' return values do the same with False
    and None. Each drop is harmless until the count reaches zero, and then CPython aborts
    ("Fatal Python error: bool_dealloc") — after a few thousand emits. A reference count no session
    can exhaust turns the bug back into a harmless one (tests/test_gui_engine.py keeps the proof).
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    import ctypes

    for singleton in (True, False, None):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40  # ob_refcnt is PyObject's first field


_shield_singletons()
