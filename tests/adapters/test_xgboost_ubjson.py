"""amber's UBJSON reader (the XGBoost adapter's): values round-trip, and damaged input is a
FormatError, never another exception, whatever the damage."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.adapters.xgboost import parse_ubjson
from amber.errors import FormatError

# Integer markers, smallest first, with their ranges (how the writer below picks one).
_INTS = [
    ("i", ">b", -(2**7), 2**7 - 1),
    ("U", ">B", 0, 255),
    ("I", ">h", -(2**15), 2**15 - 1),
    ("l", ">i", -(2**31), 2**31 - 1),
    ("L", ">q", -(2**63), 2**63 - 1),
]
_ARRAYS = {"i": ">i1", "U": ">u1", "I": ">i2", "l": ">i4", "L": ">i8", "d": ">f4", "D": ">f8"}


def _int(value: int, marker: str | None = None) -> bytes:
    for m, fmt, low, high in _INTS:
        if (marker is None and low <= value <= high) or m == marker:
            return m.encode() + struct.pack(fmt, value)
    raise ValueError(value)


def _text(value: str) -> bytes:
    data = value.encode()
    return _int(len(data)) + data


def encode(value: Any, count_marker: str | None = None) -> bytes:
    """UBJSON as XGBoost writes it: objects and arrays with an end marker, numeric arrays
    typed and counted (``count_marker`` forces the count's integer type)."""
    if value is None:
        return b"Z"
    if value is True or value is False:
        return b"T" if value else b"F"
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return b"D" + struct.pack(">d", value)
    if isinstance(value, str):
        return b"S" + _text(value)
    if isinstance(value, np.ndarray):
        marker = next(m for m, dt in _ARRAYS.items() if np.dtype(dt) == value.dtype)
        count = _int(len(value), count_marker)
        return b"[$" + marker.encode() + b"#" + count + value.tobytes()
    if isinstance(value, list):
        return b"[" + b"".join(encode(v, count_marker) for v in value) + b"]"
    return b"{" + b"".join(_text(k) + encode(v, count_marker) for k, v in value.items()) + b"}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


arrays = st.sampled_from(sorted(_ARRAYS)).flatmap(
    lambda m: st.lists(st.integers(0, 100), max_size=6).map(
        lambda xs: np.array(xs, dtype=_ARRAYS[m])
    )
)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
values = st.recursive(
    scalars | arrays,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values, st.sampled_from([None, "i", "U", "I", "l", "L"]))
def test_values_round_trip(value: Any, count_marker: str | None) -> None:
    try:
        data = encode(value, count_marker)
    except (ValueError, struct.error):  # the forced count type cannot hold this length
        return
    assert _same(parse_ubjson(data), value)


def _model() -> bytes:
    xgb = pytest.importorskip("xgboost")
    X = np.random.default_rng(0).normal(size=(200, 4))
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, label=X[:, 0] > 0), 3)
    return bytes(booster.save_raw("ubj"))


@pytest.fixture(scope="module")
def model() -> bytes:
    return _model()


def test_every_truncation_is_a_format_error(model: bytes) -> None:
    parse_ubjson(model)
    for end in range(0, len(model), max(1, len(model) // 1500)):
        with pytest.raises(FormatError):
            parse_ubjson(model[:end])


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_damaged_bytes_parse_or_raise_format_error(model: bytes, data: st.DataObject) -> None:
    damaged = bytearray(model)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.sampled_from([0, 255, *b"[{]}$#SZiUIlLdD", damaged[at] ^ 1]))
    try:
        parse_ubjson(bytes(damaged))
    except FormatError:
        pass
