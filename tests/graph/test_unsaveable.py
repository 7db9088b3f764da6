"""Saving something that is not data says what it is and what to do, names the path inside
the object, and writes nothing (graph/unsaveable.py, api.save's argument check)."""

from __future__ import annotations

import io
import socket
import threading
from typing import Any

import pytest

import amber
from amber.errors import InvalidArgumentError, SerializationError


def _generator() -> Any:
    yield 1


CASES = {
    "generator": (_generator, "save what it produces"),
    "lock": (threading.Lock, "lock or other thread synchronization"),
    "rlock": (threading.RLock, "lock or other thread synchronization"),
    "event": (threading.Event, "lock or other thread synchronization"),
    "thread": (threading.Thread, "a thread belongs to this process"),
    "bytes stream": (lambda: io.BytesIO(b"x"), "getvalue()"),
    "text stream": (io.StringIO, "getvalue()"),
    "module": (lambda: io, "a module is code"),
    "socket": (lambda: socket.socket(), "a network socket"),
}


@pytest.mark.parametrize(("make", "advice"), list(CASES.values()), ids=list(CASES))
def test_live_resources_are_refused_with_advice(make: Any, advice: str, tmp_path: Any) -> None:
    resource = make()
    path = tmp_path / "m.amber"
    try:
        with pytest.raises(SerializationError) as caught:
            amber.save({"model": {"cache": resource}}, path)
    finally:
        if isinstance(resource, socket.socket):
            resource.close()
    message = str(caught.value)
    assert advice in message
    assert "obj['model']['cache']" in message  # where it sits
    assert " at 0x" not in message and "<" not in message  # no interpreter internals
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_open_file_is_refused_with_advice(tmp_path: Any) -> None:
    with open(__file__) as handle, pytest.raises(SerializationError, match=r"f\.read\(\)"):
        amber.save([handle], tmp_path / "m.amber")


def test_swapped_arguments_are_an_amber_error(tmp_path: Any) -> None:
    path = str(tmp_path / "m.amber")
    with pytest.raises(InvalidArgumentError, match="look swapped"):
        amber.save(path, {"a": 1})
    with pytest.raises(InvalidArgumentError, match="file path"):
        amber.save({"a": 1}, 42)
    assert list(tmp_path.iterdir()) == []


def test_unreplayable_reduce_names_no_address(tmp_path: Any) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(SerializationError) as caught:
        amber.save(np.matrix([[1, 2]]), tmp_path / "m.amber")
    assert " at 0x" not in str(caught.value) and "which amber does not run" in str(caught.value)
