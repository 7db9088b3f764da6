"""JSON for request and response bodies: orjson when it is installed (``amber[serve]``
installs it), the standard library otherwise, with the standard library's meaning either
way.

A 64 x 2955 float tensor is ~3.9 MB of JSON: the standard library took 61 ms to parse it
and 100 ms to write the answer, four times the model's own forward pass; orjson does
either in a fraction of that. Where the two differ, the standard library decides: a body
orjson refuses (``NaN`` literals, integers past 64 bits, lone surrogates, deep nesting)
is parsed again by ``json.loads``, which accepts it or gives the error it always gave,
and so is a text with an integer literal of 19 digits or more (orjson reads one past
64 bits as a float);
an answer with a non-finite float is written by ``json.dumps`` (orjson would write
``null``).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # the standard library alone
    _orjson = None  # type: ignore[assignment]


# orjson reads an integer literal past 64 bits as a float, silently; the standard library
# keeps it exact. A literal of 19 digits or more (after a non-digit that is not a decimal
# point: a fraction's digits do not count) sends the text to the standard parser. Found
# with one translate and one substring search (~5 ms on 3.9 MB; a regular expression took
# 25-55 ms, as long as parsing the text).
_SHAPES = bytes(
    ord("0") if chr(b).isdigit() and b < 128 else b if b == ord(".") else ord(" ")
    for b in range(256)
)
_DIGITS = b"0" * 19
_LONG_INTEGER = b" " + _DIGITS


def _has_long_integer(raw: bytes) -> bool:
    shapes = raw.translate(_SHAPES)  # the one copy of the body this check makes
    return shapes.startswith(_DIGITS) or _LONG_INTEGER in shapes


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``, through orjson when it accepts the text."""
    if _orjson is not None and not _has_long_integer(raw):
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass  # the standard parser decides, with its own message
    return json.loads(raw)


def dumps(doc: Any, finite: bool) -> bytes:
    """Compact JSON of ``doc``; ``finite``: the caller knows it holds no NaN or infinity
    (only then may orjson write it)."""
    if finite and _orjson is not None:
        try:
            return _orjson.dumps(doc)
        except (TypeError, _orjson.JSONEncodeError):
            pass  # an integer past 64 bits, a key that is not a string: the standard way
    return json.dumps(doc, separators=(",", ":")).encode()


def all_finite(arrays: Any) -> bool:
    """Whether numeric ``arrays`` hold only finite numbers (object arrays: not known)."""
    import numpy as np

    for arr in arrays:
        if arr.dtype.kind == "O":
            return False
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            return False
    return True
