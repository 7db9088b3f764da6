"""The cyclic garbage collector paused while a load builds its objects.

A load allocates many small containers (the manifest's JSON, the object graph) that are
not garbage. In a process that has already imported pandas, scikit-learn and pyarrow,
those allocations tip CPython's collector into a full collection of the whole heap: 70 ms
measured on this project's 2-core machine inside a 110 ms scikit-learn load, where
``pickle.load`` of the same model allocates too little to trigger one. Pausing the
collector for the load's duration defers that work to when the program's own garbage
calls for it; reference counting still frees everything as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block, when it was enabled on entry (so
    nested or concurrent loads, and a program that disabled it itself, keep their state)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
