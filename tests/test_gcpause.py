"""The collector is paused inside a load and restored after it, whatever happens."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.errors import AmberError
from amber.gcpause import gc_paused


def test_paused_inside_and_restored() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer block re-enables
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_after_an_error_and_left_off_when_it_was_off() -> None:
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # the program's own choice is kept
    finally:
        gc.enable()


def test_load_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "m.amber"
    amber.save({"w": np.arange(4)}, path)
    seen = []

    assert gc.isenabled()
    amber.load(path)
    seen.append(gc.isenabled())
    path.write_bytes(path.read_bytes()[:40])  # truncated: the load fails
    with pytest.raises(AmberError):
        amber.load(path)
    seen.append(gc.isenabled())
    assert seen == [True, True]


def test_paused_while_the_load_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amber.api import AmberFile

    path = tmp_path / "m.amber"
    amber.save({"w": np.arange(4)}, path)
    states: list[bool] = []
    original = AmberFile.load

    def watched(self, **kwargs):  # type: ignore[no-untyped-def]
        states.append(gc.isenabled())
        return original(self, **kwargs)

    monkeypatch.setattr(AmberFile, "load", watched)
    amber.load(path)
    assert states == [False] and gc.isenabled()
