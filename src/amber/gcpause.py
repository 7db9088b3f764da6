"""The cyclic garbage collector paused while a load builds its objects.

A load allocates many small containers (the manifest's JSON, the object graph) that are
not garbage. In a process that has already imported pandas, scikit-learn and pyarrow,
those allocations tip CPython's collector into a full collection of the whole heap: 70 ms
measured on this project's 2-core machine inside a 110 ms scikit-learn load, where
``pickle.load`` of the same model allocates too little to trigger one. Pausing the
collector for the load's duration defers that work to when the program's own garbage
calls for it; reference counting still frees everything as usual.

Imports are the exception (``gc_resumed``). The first load in a fresh process imports the
framework the file names (scikit-learn: ~1.3 s and hundreds of thousands of long-lived
objects). Paused, all of them wait in the youngest generation, and the collections that
follow the load walk them several times over: measured +100 ms of collector time after
the load, which ``pickle.load``'s own import of the same modules never pays. So the
collector runs as usual while a module is imported for the first time.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

_state = threading.local()  # .paused: this thread's gc_paused disabled the collector


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block, when it was enabled on entry (so
    nested or concurrent loads, and a program that disabled it itself, keep their state)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    outer, _state.paused = getattr(_state, "paused", False), True
    try:
        yield
    finally:
        _state.paused = outer  # a pause entered inside a resumed import ends here
        gc.enable()


@contextlib.contextmanager
def gc_resumed(module: str | None = None) -> Iterator[None]:
    """Inside this thread's ``gc_paused``, run the collector as usual for the block (an
    import); ``module``: only when that module is not imported yet (importing it again
    allocates nothing worth collecting, and waking the collector would collect what the
    load allocated so far). A collector disabled by anything else stays disabled."""
    resume = getattr(_state, "paused", False) and not gc.isenabled()
    if resume and module is not None and module in sys.modules:
        resume = False
    if not resume:
        yield
        return
    gc.enable()
    try:
        yield
    finally:
        gc.disable()
