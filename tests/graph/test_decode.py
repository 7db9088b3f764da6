"""The graph decoder accepts only the closed node kinds and checks every field."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from amber.errors import FormatError
from amber.graph.decode import decode as decode_graph


def decode(node: object, tensors: dict[str, np.ndarray] | None = None) -> object:
    tensors = tensors or {}
    return decode_graph(node, tensors.__getitem__, tensors)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"k": "eval", "v": "os.system('x')"}, "unknown node kind"),
        ({"k": "object", "type": "os.system"}, "not a qualified name"),
        ({"v": [1]}, "unknown node kind"),
        ([1, 2], "must be a scalar or an object"),
        ({"k": "list", "v": [1], "type": "builtins.eval"}, "unknown keys"),
        ({"k": "list", "v": "abc"}, "needs a list"),
        ({"k": "ref", "id": 0}, "no earlier node declares"),
        ({"k": "list", "v": [{"k": "ref", "id": 7}], "id": 1}, "no earlier node declares"),
        ({"k": "list", "id": -1, "v": []}, "non-negative"),
        ({"k": "list", "id": True, "v": []}, "non-negative"),
        (
            {"k": "list", "v": [{"k": "list", "id": 1, "v": []}, {"k": "list", "id": 1, "v": []}]},
            "declared twice",
        ),
        # A tuple registers after its children, so a cycle through it cannot be built.
        ({"k": "tuple", "id": 0, "v": [{"k": "ref", "id": 0}]}, "no earlier node declares"),
        ({"k": "dict", "v": {}, "items": []}, "exactly one of"),
        ({"k": "dict", "items": [[{"k": "list", "v": []}, 1]]}, "unhashable"),
        ({"k": "dict", "items": [[1]]}, "pair"),
        ({"k": "set", "v": [{"k": "dict", "v": {}}]}, "unhashable"),
        ({"k": "float", "v": "1e400"}, "nan"),
        ({"k": "int", "v": "12x"}, "decimal"),
        ({"k": "int", "v": "9" * 5000}, "too many to convert"),
        ({"k": "complex", "v": [1.0]}, "real, imag"),
        ({"k": "complex", "v": ["a", 1.0]}, "floats"),
        ({"k": "bytes", "b64": "%%%"}, "base64"),
        ({"k": "bytes"}, "exactly one of"),
        ({"k": "bytes", "tensor": "w"}, "bytes tensor must be one-dimensional uint8"),
        ({"k": "ndarray", "tensor": "missing"}, "not in the file"),
        ({"k": "ndarray", "tensor": ["w"]}, "not in the file"),
        ({"k": "npscalar", "dtype": "object", "b64": "AA=="}, "unknown tensor dtype"),
        ({"k": "npscalar", "dtype": "float32", "b64": "AA=="}, "needs 4 bytes"),
        (2**64, "int64"),
    ],
)
def test_hostile_nodes_are_refused(node: object, message: str) -> None:
    before = set(sys.modules)
    with pytest.raises(FormatError, match=message):
        decode(node, {"w": np.zeros((2, 2))})
    assert set(sys.modules) == before


def test_cycles_through_mutable_containers_are_rebuilt() -> None:
    node = {"k": "dict", "id": 0, "v": {"me": {"k": "ref", "id": 0}, "l": {"k": "list", "v": []}}}
    out = decode(node)
    assert out["me"] is out


def test_tensor_nodes_use_the_given_source() -> None:
    w = np.arange(3)
    out = decode(
        {"k": "list", "v": [{"k": "ndarray", "tensor": "w", "id": 0}, {"k": "ref", "id": 0}]},
        {"w": w},
    )
    assert out[0] is w and out[1] is w
