"""The public ways to read a file, and which of the corpus checks each one performs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import amber
from amber.errors import AmberError
from tests.corpus.build import Check


def _open_and_read_all(path: Path) -> None:
    with amber.open(path) as f:  # verify="lazy": each tensor is checked when read
        for name in f:
            f[name]


ALL = frozenset(Check)
STRUCTURE_ONLY = frozenset({Check.STRUCTURE})

# name -> (call, the checks that call performs)
ENTRY_POINTS: dict[str, tuple[Callable[[Path], Any], frozenset[Check]]] = {
    "inspect": (amber.inspect, STRUCTURE_ONLY),
    "verify_quick": (lambda p: amber.verify(p, quick=True), STRUCTURE_ONLY),
    "verify": (amber.verify, ALL - {Check.GRAPH}),
    "open_read_all": (
        _open_and_read_all,
        frozenset({Check.STRUCTURE, Check.PAYLOAD, Check.DECODE}),
    ),
    "load": (amber.load, ALL),
    "load_lazy": (lambda p: amber.load(p, verify="lazy"), ALL - {Check.PADDING}),
    "load_no_mmap": (lambda p: amber.load(p, mmap=False), ALL),
    "load_unverified": (
        lambda p: amber.load(p, verify="off"),
        frozenset({Check.STRUCTURE, Check.GRAPH, Check.DECODE}),
    ),
}


def read_every_way(path: Path) -> dict[str, AmberError | None]:
    """Read ``path`` through every entry point: the AmberError each raised, or None.

    Any other exception propagates: none may escape amber.
    """
    outcomes: dict[str, AmberError | None] = {}
    for name, (call, _) in ENTRY_POINTS.items():
        try:
            call(path)
        except AmberError as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None
    return outcomes
