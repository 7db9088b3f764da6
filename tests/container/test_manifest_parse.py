"""The manifest's JSON parser: the fast path (no per-number hooks, taken when no digit run
could hold an out-of-range number) is exactly as strict as the hooks on every number."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.container import manifest
from amber.errors import FormatError

ALWAYS = re.compile("")  # matches every text: the hooks run on every number

digits = st.text("0123456789", min_size=1, max_size=26)
number = st.builds(
    lambda sign, whole, frac, exp_mark, exp_sign, exp: (
        sign
        + (whole.lstrip("0") or "0")
        + (f".{frac}" if frac else "")
        + (f"{exp_mark}{exp_sign}{exp}" if exp else "")
    ),
    st.sampled_from(["", "-"]),
    digits,
    st.one_of(st.just(""), digits),
    st.sampled_from(["e", "E"]),
    st.sampled_from(["", "+", "-"]),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=5)),
)
# Strings that look like numbers, digests and delimiters: the fast path's regex must not be
# fooled by what a string holds, and a string may only ever make it slower.
tricky = st.text(st.sampled_from(list("0123456789eE+-.,:[]{} abcdef")), max_size=30)
string = st.one_of(
    tricky,
    st.builds(lambda h: f"blake3:{h}", st.text("0123456789abcdef", min_size=64, max_size=64)),
)
space = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


def _json(value: Any, ws: st.DataObject) -> str:
    if isinstance(value, list):
        items = [_json(v, ws) for v in value]
        return "[" + ",".join(ws.draw(space) + i + ws.draw(space) for i in items) + "]"
    if isinstance(value, dict):
        items = [
            f'"{k}"' + ws.draw(space) + ":" + ws.draw(space) + _json(v, ws)
            for k, v in value.items()
        ]
        return "{" + ",".join(items) + "}"
    return value  # a number token or an already quoted string


leaf = st.one_of(number, string.map(lambda s: '"' + s + '"'))
tree = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), inner, max_size=4),
    ),
    max_leaves=12,
)


def _outcome(text: str, pattern: re.Pattern[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(manifest, "_LONG_NUMBER", pattern)
    try:
        return ("ok", manifest.parse(text.encode()))
    except FormatError as exc:
        return ("refused", str(exc))


@settings(max_examples=400, deadline=None)
@given(
    body=st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), tree, max_size=5), ws=st.data()
)
def test_fast_path_is_exactly_as_strict_as_the_hooks(
    body: dict[str, Any], ws: st.DataObject
) -> None:
    text = _json(body, ws)
    with pytest.MonkeyPatch.context() as mp:
        strict = _outcome(text, ALWAYS, mp)
    with pytest.MonkeyPatch.context() as mp:
        fast = _outcome(text, manifest._LONG_NUMBER, mp)
    assert fast[0] == strict[0], (text, fast, strict)
    if fast[0] == "ok":
        assert fast == strict


@pytest.mark.parametrize(
    "token",
    ["1e400", "-1.5E+0400", "1e00309", "123456789012345678901", "-" + "9" * 5000],
)
@pytest.mark.parametrize("where", ['{{"a":{}}}', '{{"a": [1,\n {} ]}}', '{{"a":[{}]}}'])
def test_out_of_range_numbers_are_refused(where: str, token: str) -> None:
    with pytest.raises(FormatError, match=r"out of the float64 range|more than 20 digits"):
        manifest.parse(where.format(token).encode())
