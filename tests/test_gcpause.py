"""The collector is paused inside a load and restored after it, whatever happens."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.errors import AmberError
from amber.gcpause import gc_paused, gc_resumed


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


def test_resumed_only_for_a_first_import_inside_this_threads_pause() -> None:
    with gc_resumed("a_module_never_imported"):  # no pause: nothing changes
        assert gc.isenabled()
    with gc_paused():
        with gc_resumed("a_module_never_imported"):
            assert gc.isenabled()
        assert not gc.isenabled()
        with gc_resumed("json"):  # imported already: the collector stays paused
            assert not gc.isenabled()
        with gc_resumed():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused(), gc_resumed("a_module_never_imported"):
            assert not gc.isenabled()  # the program disabled it: not ours to turn on
    finally:
        gc.enable()


def test_a_load_inside_a_resumed_import_leaves_the_outer_pause_resumable() -> None:
    with gc_paused():
        with gc_resumed():  # an import that itself loads a file
            with gc_paused():
                assert not gc.isenabled()
            assert gc.isenabled()
        assert not gc.isenabled()
        with gc_resumed("a_module_never_imported"):  # still this thread's pause
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_another_threads_pause_is_not_resumed_here() -> None:
    paused, done = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            paused.set()
            done.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert paused.wait(10)
        with gc_resumed("a_module_never_imported"):
            assert not gc.isenabled()
    finally:
        done.set()
        thread.join()
    assert gc.isenabled()


def test_a_first_import_inside_a_load_runs_with_the_collector(tmp_path: Path) -> None:
    """In a fresh interpreter, the module a file names is imported during the load's audit:
    the collector runs as usual there (a paused framework import costs more collection
    time after the load than pickle's own import of it), and is paused again for the
    build."""
    path = tmp_path / "m.amber"
    amber.save({"when": __import__("fractions").Fraction(1, 3)}, path)
    code = f"""
import gc, sys
import importlib.abc

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fractions":
            print("import", gc.isenabled())
        return None

sys.modules.pop("fractions", None)
sys.meta_path.insert(0, Watch())
import amber
from amber.api import AmberFile
original = AmberFile.load
def watched(self, **kwargs):
    print("load", gc.isenabled())
    return original(self, **kwargs)
AmberFile.load = watched
print("result", amber.load({str(path)!r}, trusted=["fractions.Fraction"])["when"])
print("after", gc.isenabled())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert "import True" in out and "load False" in out, out
    assert "result 1/3" in out and "after True" in out, out
