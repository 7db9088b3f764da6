"""``amber.stackroom``: first imports run with room on CPython's frame stack, so an
import that calls up and down around a frame-chunk boundary does not map and unmap a chunk
at every crossing."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

from amber.stackroom import SLOTS, import_module, with_room


def test_with_room_is_a_call() -> None:
    assert with_room(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        with_room(divmod, 1, 0)


def test_import_module_imports_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "amber_stackroom_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "amber_stackroom_probe", raising=False)
    first = import_module("amber_stackroom_probe")
    assert first.VALUE == 42 and import_module("amber_stackroom_probe") is first


def _recurse(n: int) -> int:
    return _recurse(n - 1) + 1 if n else 0


def _churn() -> int:
    """Calls up and down 12 frames, 2,000 times: an import's motion, without the I/O."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(2000):
        _recurse(12)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _at_depth(depth: int, call: object) -> int:
    return _at_depth(depth - 1, call) if depth else call()  # type: ignore[operator]


def test_calls_near_a_chunk_boundary_map_no_chunks_with_room() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("Python 3.10 keeps frames on the heap: no frame chunks to map")
    # Page faults count the chunks: each new mapping is fresh memory, faulted in on use.
    # Started at depths spanning two chunks (in steps smaller than the motion), plain calls
    # fault at every crossing where the motion straddles a boundary; with room, never.
    depths = range(0, 400, 4)
    plain = max(_at_depth(d, _churn) for d in depths)
    roomy = max(_at_depth(d, lambda: with_room(_churn)) for d in depths)
    assert plain >= 1500, plain  # the thrash this module exists for is still there
    assert roomy < 200, roomy
    assert 8 * SLOTS > 16 << 10
