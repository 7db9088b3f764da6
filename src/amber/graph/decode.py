"""Inert JSON nodes -> Python objects. Every node is checked; nothing is imported or called
beyond the constructors of the closed node kinds."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from amber.container import dtypes
from amber.errors import FormatError
from amber.graph import nodes as k

_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    k.LIST: frozenset({"k", "v", "id"}),
    k.TUPLE: frozenset({"k", "v", "id"}),
    k.SET: frozenset({"k", "v", "id"}),
    k.FROZENSET: frozenset({"k", "v", "id"}),
    k.DICT: frozenset({"k", "v", "items", "id"}),
    k.FLOAT: frozenset({"k", "v"}),
    k.INT: frozenset({"k", "v"}),
    k.COMPLEX: frozenset({"k", "v"}),
    k.BYTES: frozenset({"k", "b64", "tensor", "id"}),
    k.BYTEARRAY: frozenset({"k", "b64", "tensor", "id"}),
    k.NDARRAY: frozenset({"k", "tensor", "id"}),
    k.NPSCALAR: frozenset({"k", "dtype", "b64"}),
    k.REF: frozenset({"k", "id"}),
}
_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


class Decoder:
    """Builds the object of a node tree; ``tensor`` maps a tensor name to its array."""

    def __init__(self, tensor: Callable[[str], Any], tensor_names: Any) -> None:
        self._tensor = tensor
        self._tensor_names = tensor_names
        self._by_id: dict[int, Any] = {}

    def decode(self, node: Any) -> Any:
        return self._decode(node, "root")

    def _bad(self, where: str, message: str) -> FormatError:
        return FormatError(f"object graph node at {where}: {message}")

    def _decode(self, node: Any, where: str) -> Any:
        if node is None or node is True or node is False or type(node) is str:
            return node
        if type(node) is int:
            if not k.INT64_MIN <= node <= k.INT64_MAX:
                raise self._bad(where, "bare integer outside the int64 range")
            return node
        if type(node) is float:
            return node
        if type(node) is not dict:
            raise self._bad(
                where, f"a node must be a scalar or an object, not {type(node).__name__}"
            )
        kind = node.get("k")
        if type(kind) is not str or kind not in _ALLOWED_KEYS:
            raise self._bad(where, f"unknown node kind {kind!r}; known kinds: {sorted(k.KINDS)}")
        extra = node.keys() - _ALLOWED_KEYS[kind]
        if extra:
            raise self._bad(where, f"{kind} node has unknown keys {sorted(extra)}")
        return getattr(self, "_" + kind)(node, where)

    def _register(self, node: dict[str, Any], obj: Any, where: str) -> None:
        if "id" not in node:
            return
        node_id = node["id"]
        if type(node_id) is not int or node_id < 0:
            raise self._bad(where, f"'id' must be a non-negative integer, got {node_id!r}")
        if node_id in self._by_id:
            raise self._bad(where, f"id {node_id} is declared twice")
        self._by_id[node_id] = obj

    def _items(self, node: dict[str, Any], where: str, key: str = "v") -> list[Any]:
        items = node.get(key)
        if type(items) is not list:
            raise self._bad(where, f"{node['k']} node needs a list under {key!r}")
        return items

    # -- containers: mutable ones are registered before their children, for cycles ----------

    def _list(self, node: dict[str, Any], where: str) -> list:
        out: list[Any] = []
        self._register(node, out, where)
        out.extend(self._decode(v, f"{where}[{i}]") for i, v in enumerate(self._items(node, where)))
        return out

    def _tuple(self, node: dict[str, Any], where: str) -> tuple:
        items = self._items(node, where)
        out = tuple(self._decode(v, f"{where}[{i}]") for i, v in enumerate(items))
        self._register(node, out, where)
        return out

    def _hashables(self, node: dict[str, Any], where: str) -> list[Any]:
        values = [
            self._decode(v, f"{where}{{{i}}}") for i, v in enumerate(self._items(node, where))
        ]
        for value in values:
            try:
                hash(value)
            except TypeError:
                raise self._bad(
                    where, f"set element of type {type(value).__name__} is unhashable"
                ) from None
        return values

    def _set(self, node: dict[str, Any], where: str) -> set:
        out: set[Any] = set()
        self._register(node, out, where)
        out.update(self._hashables(node, where))
        return out

    def _frozenset(self, node: dict[str, Any], where: str) -> frozenset:
        out = frozenset(self._hashables(node, where))
        self._register(node, out, where)
        return out

    def _dict(self, node: dict[str, Any], where: str) -> dict:
        out: dict[Any, Any] = {}
        self._register(node, out, where)
        has_v, has_items = "v" in node, "items" in node
        if has_v == has_items:
            raise self._bad(where, "dict node needs exactly one of 'v' or 'items'")
        if has_v:
            values = node["v"]
            if type(values) is not dict:
                raise self._bad(where, "dict node 'v' must be a JSON object")
            for key, value in values.items():
                out[key] = self._decode(value, f"{where}[{key!r}]")
            return out
        for i, pair in enumerate(self._items(node, where, "items")):
            if type(pair) is not list or len(pair) != 2:
                raise self._bad(where, f"dict item #{i} must be a [key, value] pair")
            key = self._decode(pair[0], f"{where}<key {i}>")
            try:
                hash(key)
            except TypeError:
                raise self._bad(
                    where, f"dict key of type {type(key).__name__} is unhashable"
                ) from None
            out[key] = self._decode(pair[1], f"{where}[{key!r}]")
        return out

    # -- scalars ---------------------------------------------------------------------------

    def _float(self, node: dict[str, Any], where: str) -> float:
        value = node.get("v")
        if type(value) is not str or value not in _NONFINITE:
            raise self._bad(where, "float node must hold 'nan', 'inf' or '-inf'")
        return _NONFINITE[value]

    def _int(self, node: dict[str, Any], where: str) -> int:
        text = node.get("v")
        if type(text) is not str or not text.lstrip("-").isdigit() or not text.isascii():
            raise self._bad(where, "int node must hold a decimal string")
        if len(text.lstrip("-")) > k.MAX_INT_DIGITS:
            raise self._bad(where, f"int node has {len(text)} digits, too many to convert")
        try:
            return int(text)
        except ValueError:  # more digits than Python converts safely
            raise self._bad(
                where, f"int node has {len(text)} digits, too many to convert"
            ) from None

    def _complex(self, node: dict[str, Any], where: str) -> complex:
        parts = self._items(node, where)
        if len(parts) != 2:
            raise self._bad(where, "complex node needs [real, imag]")
        real, imag = (self._decode(p, where) for p in parts)
        if type(real) is not float or type(imag) is not float:
            raise self._bad(where, "complex parts must be floats")
        return complex(real, imag)

    def _b64(self, node: dict[str, Any], where: str) -> bytes:
        text = node.get("b64")
        if type(text) is not str:
            raise self._bad(where, "'b64' must be a base64 string")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self._bad(where, "'b64' is not valid base64") from None

    def _tensor_array(self, node: dict[str, Any], where: str) -> Any:
        name = node.get("tensor")
        if type(name) is not str or name not in self._tensor_names:
            raise self._bad(where, f"refers to tensor {name!r}, which is not in the file")
        return self._tensor(name)

    def _blob(self, node: dict[str, Any], where: str) -> bytes:
        if ("b64" in node) == ("tensor" in node):
            raise self._bad(where, f"{node['k']} node needs exactly one of 'b64' or 'tensor'")
        if "b64" in node:
            return self._b64(node, where)
        array = self._tensor_array(node, where)
        if array.dtype.name != "uint8" or array.ndim != 1:
            raise self._bad(where, "bytes tensor must be one-dimensional uint8")
        return array.tobytes()

    def _bytes(self, node: dict[str, Any], where: str) -> bytes:
        out = self._blob(node, where)
        self._register(node, out, where)
        return out

    def _bytearray(self, node: dict[str, Any], where: str) -> bytearray:
        out = bytearray(self._blob(node, where))
        self._register(node, out, where)
        return out

    def _ndarray(self, node: dict[str, Any], where: str) -> Any:
        out = self._tensor_array(node, where)
        self._register(node, out, where)
        return out

    def _npscalar(self, node: dict[str, Any], where: str) -> Any:
        import numpy as np

        name = node.get("dtype")
        try:
            size = dtypes.itemsize(name)
        except FormatError as exc:
            raise self._bad(where, str(exc)) from None
        raw = self._b64(node, where)
        if len(raw) != size:
            raise self._bad(where, f"{name} scalar needs {size} bytes, got {len(raw)}")
        dtype = dtypes.to_numpy(name)
        return np.frombuffer(raw, dtype=dtype)[0].astype(dtype.newbyteorder("="))

    def _ref(self, node: dict[str, Any], where: str) -> Any:
        node_id = node.get("id")
        if type(node_id) is not int or node_id not in self._by_id:
            raise self._bad(where, f"reference to id {node_id!r}, which no earlier node declares")
        return self._by_id[node_id]
