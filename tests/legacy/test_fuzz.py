"""Fuzzing the pickle reader: random and mutated pickles are REFUSED (an amber error) or
converted exactly as ``pickle.loads`` reads them; never a crash, a hang or an escape.

Short and derandomized in the suite; ``AMBER_FUZZ_EXAMPLES=20000 pytest
tests/legacy/test_fuzz.py`` (or ``make fuzz``, which sets it) runs long.
"""

from __future__ import annotations

import collections
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber.errors import AmberError
from amber.legacy.pickle_vm import Limits
from amber.legacy.reader import build, parse_bytes
from tests.adapters.compare import assert_same

EXAMPLES = int(os.environ.get("AMBER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize="AMBER_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
SMALL = Limits(max_opcodes=200_000, max_stack=50_000, max_memo=50_000, max_string=1 << 20)

SEEDS_VALUES: list[Any] = [
    {"a": [1, 2.5, None, True], "b": (1, "x"), "c": {1, 2}, "d": b"\x00\xff"},
    np.arange(12.0).reshape(3, 4),
    np.array(["a", "bc"]),
    np.array([1, "x", None], dtype=object),
    [np.float32(1.5), np.int64(3), np.dtype("int16")],
    collections.OrderedDict(x=np.ones(2), y=[1, 2]),
    np.array([(1, 2.0)], dtype=[("x", "<i4"), ("y", "<f8")]),
]
SEEDS = [pickle.dumps(v, protocol=p) for v in SEEDS_VALUES for p in range(6)]


def _convert(data: bytes) -> tuple[bool, Any]:
    """(True, object) when amber converts ``data``, (False, error) when it refuses."""
    try:
        parsed = parse_bytes(Path("fuzz.pkl"), data, limits=SMALL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return True, build(parsed)
    except AmberError as exc:
        return False, exc


def _exact(data: bytes, value: Any) -> None:
    """A conversion must equal what pickle reads (every name it used is amber-trusted)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = pickle.loads(data)
    except Exception as exc:  # pickle refuses it: amber must not have made something up
        raise AssertionError(f"amber converted bytes pickle refuses ({exc!r})") from None
    assert_same(expected, value, "fuzz")


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_exact(data: bytes) -> None:
    for candidate in (data, b"\x80\x04" + data, b"\x80\x02" + data + b"."):
        ok, value = _convert(candidate)
        if ok:
            _exact(candidate, value)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "duplicate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            end = min(len(data), at + draw(st.integers(1, 16)))
            data[at:at] = data[at:end]
        if not data:
            data = bytearray(b"\x80")
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_pickles_are_refused_or_exact(data: bytes) -> None:
    ok, value = _convert(data)
    if ok:
        _exact(data, value)


def test_seeds_convert_exactly() -> None:
    for data in SEEDS:
        ok, value = _convert(data)
        assert ok, value
        _exact(data, value)
