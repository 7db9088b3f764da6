"""The closed set of node kinds of the object graph (graph protocol 1).

A node is JSON. ``null``, ``true``/``false``, strings, integers in the int64 range and
finite floats stand for themselves. Everything else is an object ``{"k": KIND, ...}``
whose kind is one of ``KINDS``; nothing in a node names a Python callable. Containers may
carry ``"id"`` so that later ``{"k": "ref", "id": N}`` nodes share them (docs/format.md,
"Object graph").
"""

from __future__ import annotations

GRAPH_PROTOCOL = 1

LIST = "list"
TUPLE = "tuple"
DICT = "dict"
SET = "set"
FROZENSET = "frozenset"
FLOAT = "float"  # non-finite floats: {"k": "float", "v": "nan" | "inf" | "-inf"}
INT = "int"  # integers outside int64: {"k": "int", "v": "<decimal>"}
COMPLEX = "complex"
BYTES = "bytes"
BYTEARRAY = "bytearray"
NDARRAY = "ndarray"
NPSCALAR = "npscalar"
REF = "ref"

KINDS = frozenset(
    {
        LIST,
        TUPLE,
        DICT,
        SET,
        FROZENSET,
        FLOAT,
        INT,
        COMPLEX,
        BYTES,
        BYTEARRAY,
        NDARRAY,
        NPSCALAR,
        REF,
    }
)

# bytes longer than this are stored as a uint8 tensor instead of base64 in the manifest.
INLINE_BYTES_MAX = 4096
# Digits of an "int" node; Python's own default limit for int(str).
MAX_INT_DIGITS = 4300
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
