"""First imports run with room on CPython's frame stack.

CPython (3.11 and later) keeps the frames of Python calls in chunks of 16 KiB. A call that
does not fit in the current chunk gets a new one, mapped with ``mmap``, and the chunk is
unmapped as soon as that call returns. Importing a large framework calls up and down by
dozens of frames thousands of times; when that motion straddles a chunk boundary, every
crossing maps and unmaps a chunk. ``amber.load`` imports scikit-learn 12 frames deeper
than ``pickle.load`` does, and there it crossed 17,000 times against pickle's 3,600:
~130 ms more system time in a fresh process (measured with strace and ``time``). Which
depths thrash depends only on where the boundary falls, so no reordering of amber's own
calls would fix it for every caller.

``with_room(call, *args)`` runs ``call`` from a frame too large for a 16 KiB chunk (3,100
local slots, ~24 KiB): the interpreter gives that frame a 64 KiB chunk of its own and the
import runs in the ~40 KiB left after it, which holds the import's ups and downs. One
mapping for the whole import: fewer crossings than even a top-level ``import`` makes.
The extra locals are never bound; on an interpreter without frame chunks this is an
ordinary call.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")
SLOTS = 3100  # local slots: 8 bytes each, more than a 16 KiB chunk holds


def _roomy(call: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return call(*args)


# The same function with SLOTS more locals (named "0", "1"...: never bound, never seen by
# any code), which is all that sizes its frame. Made once, when amber is imported (~0.3 ms).
# An interpreter whose code objects cannot be rebuilt this way keeps the ordinary call.
_code = _roomy.__code__
with contextlib.suppress(AttributeError, TypeError, ValueError):
    _roomy.__code__ = _code.replace(
        co_varnames=_code.co_varnames + tuple(map(str, range(SLOTS))),
        co_nlocals=_code.co_nlocals + SLOTS,
    )
del _code


def with_room(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` with ~40 KiB of fresh frame stack below it (a first import)."""
    return _roomy(call, args)


def import_module(name: str) -> ModuleType:
    """``importlib.import_module``; a first import runs ``with_room``."""
    if name in sys.modules:
        return importlib.import_module(name)
    return with_room(importlib.import_module, name)
