"""The closed set of node kinds of the object graph (graph protocol 1).

A node is JSON. ``null``, ``true``/``false``, strings, integers in the int64 range and
finite floats stand for themselves. Everything else is an object ``{"k": KIND, ...}``
whose kind is one of ``KINDS``. Only ``type``, ``func`` and ``object`` nodes name code, as
``module:qualname``, and loading audits every such name before importing anything.
Containers and objects may carry ``"id"`` so that later ``{"k": "ref", "id": N}`` nodes
share them (docs/format.md, "Object graph").
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
OBJARRAY = "objarray"
NPSCALAR = "npscalar"
SCALARS = "scalars"  # a list/tuple of numpy scalars of one dtype, stored as a tensor
DTYPE = "dtype"
REF = "ref"
TORCH = "torch"  # a torch.Tensor (or Parameter) over a container tensor: graph/torch_nodes.py
# Nodes that name code; every name is audited against the trust allowlist before import.
TYPE = "type"
FUNC = "func"
OBJECT = "object"

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
        OBJARRAY,
        NPSCALAR,
        SCALARS,
        DTYPE,
        REF,
        TORCH,
        TYPE,
        FUNC,
        OBJECT,
    }
)

# How an "object" node is rebuilt (the class is always the audited "type"):
MODE_NEW = "new"  # cls.__new__(cls, *args), then state
MODE_CALL = "call"  # cls(*args), then state
MODE_CYTHON = "cython"  # the Cython class's own generated unpickler, (checksum, state)
MODE_ADAPTER = "adapter"  # a constructor that an amber adapter registered for cls
MODES = frozenset({MODE_NEW, MODE_CALL, MODE_CYTHON, MODE_ADAPTER})

# bytes longer than this are stored as a uint8 tensor instead of base64 in the manifest.
INLINE_BYTES_MAX = 4096
# Lists of at least this many numpy scalars of one dtype are stored as one tensor.
SCALARS_MIN = 16
# Digits of an "int" node; Python's own default limit for int(str).
MAX_INT_DIGITS = 4300
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
