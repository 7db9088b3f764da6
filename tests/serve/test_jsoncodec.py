"""Request and response JSON: orjson's speed with the standard library's meaning, checked
against ``json`` on hostile and random documents, with and without orjson."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.serve import jsoncodec

pytest.importorskip("orjson", reason="amber[serve] installs orjson")

# Texts where orjson and the standard library disagree: the standard library decides.
EDGE = [
    b'{"x": NaN, "y": -Infinity}',
    b'{"big": 123456789012345678901234567890}',
    b"[-9223372036854775809, 18446744073709551616]",
    b'{"s": "\\ud800"}',
    b'{"a": 1, "a": 2}',
    b"[1.0e400]",
    b'  {"spaces": [1, 2]}  ',
]
BROKEN = [b"", b"{", b'{"a": }', b"\xff\xfe", b"[1,]", b'{"a" 1}']


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    if request.param == "stdlib":
        monkeypatch.setattr(jsoncodec, "_orjson", None)
    return jsoncodec


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("text", EDGE)
def test_edge_texts_mean_what_json_says(codec, text: bytes) -> None:
    assert _same(codec.loads(text), json.loads(text))


@pytest.mark.parametrize("text", BROKEN)
def test_broken_texts_fail_as_json_fails(codec, text: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)):
        json.loads(text)
    with pytest.raises((ValueError, UnicodeDecodeError)):
        codec.loads(text)


def test_deep_nesting_still_reaches_the_recursion_guard(codec) -> None:
    with pytest.raises(RecursionError):
        codec.loads(b"[" * 100_000 + b"]" * 100_000)


def test_non_finite_answers_are_written_as_json_writes_them(codec) -> None:
    doc = {"predictions": [1.5, math.nan, math.inf]}
    assert codec.dumps(doc, jsoncodec.all_finite([np.array([1.5, np.nan])])) == (
        b'{"predictions":[1.5,NaN,Infinity]}'
    )
    assert codec.dumps({"n": 2**70}, True) == b'{"n":1180591620717411303424}'


def test_all_finite() -> None:
    assert jsoncodec.all_finite([np.arange(3), np.ones(2, np.float32), np.array(["a"])])
    assert not jsoncodec.all_finite([np.array([1.0, np.inf])])
    assert not jsoncodec.all_finite([np.array([1 + 1j * np.nan])])
    assert not jsoncodec.all_finite([np.array([1.0], dtype=object)])


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=values)
def test_round_trips_mean_the_same(value) -> None:
    text = json.dumps(value).encode()
    assert _same(jsoncodec.loads(text), json.loads(text))
    assert _same(json.loads(jsoncodec.dumps(value, True)), value)


def test_float32_outputs_keep_their_value_as_double() -> None:
    arr = np.array([0.1, 1 / 3, 1e-5], dtype=np.float32)
    back = json.loads(jsoncodec.dumps({"d": arr.tolist()}, True))["d"]
    assert back == arr.astype(np.float64).tolist()


def test_a_long_integer_at_the_very_start_goes_to_json() -> None:
    text = b"12345678901234567890123"
    assert jsoncodec._has_long_integer(text)
    assert jsoncodec.loads(text) == 12345678901234567890123
