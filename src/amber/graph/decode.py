"""Inert JSON nodes -> Python objects.

Loading is three steps: ``scan`` walks the whole tree, checks every node kind and collects
every class and function name (importing nothing); the trust audit checks those names and
only then resolves them; ``Decoder`` builds the objects, calling only the resolved classes
in the construction modes of ``nodes``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from amber.container import dtypes
from amber.container.format import MAX_JSON_DEPTH
from amber.errors import FormatError
from amber.graph import nodes as k
from amber.graph import schema as typed
from amber.graph import torch_nodes
from amber.graph.constructors import (
    BATCH_VALIDATORS,
    CALL_ARGUMENTS,
    CONSTRUCTORS,
    NEW_MODE_MODULES,
    READ_ONLY_STATE,
    VALIDATORS,
)
from amber.graph.names import QualName
from amber.graph.trust import REGISTRY, Kind, audit

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
    k.NDARRAY: frozenset({"k", "tensor", "dtype", "shape", "id"}),
    k.OBJARRAY: frozenset({"k", "shape", "v", "id"}),
    k.NPSCALAR: frozenset({"k", "dtype", "b64", "array"}),
    k.SCALARS: frozenset({"k", "of", "tensor", "id"}),
    k.DTYPE: frozenset({"k", "v", "id"}),
    k.REF: frozenset({"k", "id"}),
    k.TORCH: frozenset({"k", "tensor", "dtype", "view", "param", "grad", "id"}),
    k.TYPE: frozenset({"k", "name"}),
    k.FUNC: frozenset({"k", "name"}),
    k.OBJECT: frozenset({"k", "type", "mode", "args", "state", "listitems", "dictitems", "id"}),
}
_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
_MAX_UNICODE = 0x10FFFF
_MAX_RECORD_NESTING = 8
# Packages whose classes are never created by calling them with arguments from a file:
# builtins have node kinds of their own (bytes(10**12)); torch layers are rebuilt from
# their state (Linear(70000, 70000) would allocate 19.6 GB from a 300-byte file).
_NO_CALL_PACKAGES = frozenset({"builtins", "torch"})
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined by a class statement
# Builtin types whose instances pickle rebuilds with __new__ (no initializer needed).
_NEW_MODE_BUILTINS = frozenset({object, dict, list, set, int, float, str, bytes, tuple})


def _child_nodes(node: dict[str, Any]) -> Iterator[tuple[Any, int]]:
    """The nodes directly inside ``node`` (its kind already checked), each with how many
    JSON levels below ``node`` it sits."""
    kind = node["k"]
    if kind == k.DICT:
        values = node.get("v")
        if isinstance(values, dict):
            yield from ((v, 2) for v in values.values())
        yield from _pairs(node.get("items"))
    elif kind in (k.LIST, k.TUPLE, k.SET, k.FROZENSET, k.OBJARRAY, k.COMPLEX):
        if isinstance(node.get("v"), list):
            yield from ((v, 2) for v in node["v"])
    elif kind == k.NPSCALAR and "array" in node:
        yield node["array"], 1
    elif kind == k.NDARRAY and type(node.get("dtype")) is dict and "k" in node["dtype"]:
        yield node["dtype"], 1
    elif kind == k.OBJECT:
        for key in ("args", "listitems"):
            if isinstance(node.get(key), list):
                yield from ((v, 2) for v in node[key])
        if "state" in node:
            yield node["state"], 1
        yield from _pairs(node.get("dictitems"))


def _mode_problem(name: QualName, mode: Any) -> str | None:
    """The construction rules that depend on the name alone, so that a file breaking them
    is refused before anything is imported."""
    if type(mode) is not str or mode not in k.MODES:
        return (
            f"object graph: {name.dotted} has construction mode {mode!r}; "
            f"known modes: {sorted(k.MODES)}"
        )
    has_adapter = str(name) in CONSTRUCTORS
    if has_adapter and mode != k.MODE_ADAPTER:
        return f"object graph: {name.dotted} must be rebuilt by its amber adapter"
    if not has_adapter and mode == k.MODE_ADAPTER:
        return f"object graph: amber has no constructor for {name.dotted}"
    if (
        mode == k.MODE_CALL
        and name.top_package in _NO_CALL_PACKAGES
        and str(name) not in CALL_ARGUMENTS
    ):
        return f"object graph: {name.dotted} cannot be created by a call"
    return None


def _pairs(pairs: Any) -> Iterator[tuple[Any, int]]:
    """The keys and values of a ``[[key, value], ...]`` field, three JSON levels down."""
    if type(pairs) is list:
        for pair in pairs:
            if type(pair) is list:
                yield from ((v, 3) for v in pair)


def _check_kind(node: dict[str, Any], where: str = "a node") -> str:
    kind = node.get("k")
    if type(kind) is not str or kind not in _ALLOWED_KEYS:
        raise FormatError(
            f"object graph: {where} has unknown node kind {kind!r}; known kinds: {sorted(k.KINDS)}"
        )
    extra = node.keys() - _ALLOWED_KEYS[kind]
    if extra:
        raise FormatError(f"object graph: a {kind} node has unknown keys {sorted(extra)}")
    return kind


@dataclass
class Scan:
    """What a walk of the tree found: every name it uses (with its role), and the rule
    breaks that can be judged from names alone (reported after the trust audit's first
    step, so that untrusted names are always what a hostile file is refused for)."""

    names: list[tuple[Kind, QualName]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.problems:
            raise FormatError(self.problems[0])


_CONTAINERS = (dict, list)
_SEQUENCE_KINDS = frozenset({k.LIST, k.TUPLE, k.SET, k.FROZENSET, k.OBJARRAY, k.COMPLEX})


def scan(root: Any, root_depth: int = 2) -> Scan:
    """Check every node's kind and the JSON depth (the manifest object is level 1, the root
    node level ``root_depth``), and collect every class and function name; imports nothing.

    The hot loop of every load (a forest has tens of thousands of nodes): the children of
    each kind are pushed inline, as ``_child_nodes`` lists them, and each distinct name
    (with its construction mode) is judged once."""
    found = Scan()
    judged: set[tuple[Kind, str, Any]] = set()  # (role, name text, mode) already judged
    stack = [(root, root_depth)]
    pop, push = stack.pop, stack.append
    allowed = _ALLOWED_KEYS
    while stack:
        node, depth = pop()
        if type(node) is not dict:
            if type(node) is list:
                raise FormatError("object graph: a node must be a scalar or an object, not a list")
            continue
        if depth > MAX_JSON_DEPTH:
            raise FormatError(
                f"object graph is nested deeper than the limit of {MAX_JSON_DEPTH} JSON levels"
            )
        kind = node.get("k")
        keys = allowed.get(kind) if type(kind) is str else None
        if keys is None or not keys.issuperset(node):
            _check_kind(node)  # raises, naming the unknown kind or keys
        if kind in _SEQUENCE_KINDS:
            values = node.get("v")
            if type(values) is list:
                down = depth + 2
                for child in values:
                    if type(child) in _CONTAINERS:
                        push((child, down))
        elif kind == k.DICT:
            values = node.get("v")
            if type(values) is dict:
                down = depth + 2
                for child in values.values():
                    if type(child) in _CONTAINERS:
                        push((child, down))
            _push_pairs(node.get("items"), depth + 3, push)
        elif kind == k.OBJECT:
            text, mode = node.get("type"), node.get("mode")
            if type(text) is not str or type(mode) is not str or ("type", text, mode) not in judged:
                name = QualName.parse(text)
                problem = _mode_problem(name, mode)
                if problem:
                    found.problems.append(problem)
                found.names.append(("type", name))
                if type(mode) is str:
                    judged.add(("type", text, mode))
            down = depth + 2
            for field in ("args", "listitems"):
                values = node.get(field)
                if type(values) is list:
                    for child in values:
                        if type(child) in _CONTAINERS:
                            push((child, down))
            if "state" in node and type(node["state"]) in _CONTAINERS:
                push((node["state"], depth + 1))
            _push_pairs(node.get("dictitems"), depth + 3, push)
        elif kind == k.NDARRAY:
            dtype = node.get("dtype")
            if type(dtype) is dict and "k" in dtype:
                push((dtype, depth + 1))
        elif kind == k.TYPE or kind == k.FUNC:
            role: Kind = "type" if kind == k.TYPE else "function"
            text = node.get("name")
            if type(text) is not str or (role, text, None) not in judged:
                found.names.append((role, QualName.parse(text)))
                judged.add((role, text, None))
        elif kind == k.NPSCALAR:
            if "array" in node and type(node["array"]) in _CONTAINERS:
                push((node["array"], depth + 1))
        elif kind == k.TORCH:
            found.names.append(("type", torch_nodes.check_node(node)))
    return found


def _push_pairs(pairs: Any, depth: int, push: Callable[[Any], None]) -> None:
    """The keys and values of a ``[[key, value], ...]`` field (see ``_pairs``)."""
    if type(pairs) is list:
        for pair in pairs:
            if type(pair) is list:
                for child in pair:
                    if type(child) in _CONTAINERS:
                        push((child, depth))


def decode(
    root: Any,
    tensor: Callable[[str], Any],
    tensor_names: Any,
    trusted: frozenset[str] = frozenset(),
    before_construct: Callable[[], None] | None = None,
    *,
    bits: Callable[[str], Any] | None = None,
    device: Any = None,
    keys: list[str] | None = None,
    prelude: Any = None,
) -> Any:
    """Scan, audit, then build the object of ``root``. ``before_construct`` runs once every
    name is judged and resolved and before the first object is made (the loader compares
    environments there: the audit has imported the frameworks, so their versions are at
    hand). ``bits`` gives payloads for torch tensors (types numpy lacks as unsigned
    integers); ``device`` is where torch tensors are placed. ``keys``: ``root`` must be a
    dict with string keys, and only these entries are built (the whole tree is audited).
    ``prelude``: a tree encoded before ``root`` in the same pass (that ``root`` may refer
    to), audited and built first.
    """
    selected = _selected_entries(root, keys) if keys is not None else None
    found = scan(root)
    if prelude is not None:
        before = scan(prelude)
        found.names += before.names
        found.problems = before.problems + found.problems
    resolved = audit(found.names, trusted, before_import=found.check)
    if before_construct is not None:
        before_construct()
    if selected is None:
        decoder = Decoder(tensor, tensor_names, resolved, bits=bits, device=device, trusted=trusted)
        if prelude is not None:
            decoder.decode_at(prelude, "prelude")
        return decoder.decode(root)
    partial = PartialDecoder(
        root, tensor, tensor_names, resolved, bits=bits, device=device, trusted=trusted
    )
    if prelude is not None:
        partial.decode_at(prelude, "prelude")
    return {key: partial.decode_at(node, f"root[{key!r}]") for key, node in selected.items()}


def entries(root: Any) -> dict[str, Any] | None:
    """The string-keyed entries of a dict node, or of an OrderedDict (what ``state_dict()``
    returns); None for anything else."""
    if type(root) is not dict:
        return None
    if root.get("k") == k.DICT and type(root.get("v")) is dict:
        return root["v"]
    pairs = root.get("dictitems")
    if (
        root.get("k") == k.OBJECT
        and root.get("type") == "collections:OrderedDict"
        and type(pairs) is list
        and all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in pairs)
    ):
        return dict(pairs)
    return None


def _selected_entries(root: Any, keys: list[str]) -> dict[str, Any]:
    found = entries(root)
    if found is None:
        raise FormatError(
            "keys= needs a file whose object is a dict with string keys (a state dict)"
        )
    missing = [key for key in keys if key not in found]
    if missing:
        from amber.errors import TensorNotFoundError

        raise TensorNotFoundError(
            f"keys not in the file: {', '.join(map(repr, missing[:10]))}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            + f"; it has {len(found)} keys"
        )
    return {key: found[key] for key in keys}


class Decoder:
    """Builds the object of a node tree; ``tensor`` maps a tensor name to its array."""

    def __init__(
        self,
        tensor: Callable[[str], Any],
        tensor_names: Any,
        resolved: Mapping[tuple[Kind, QualName], Any] | None = None,
        *,
        bits: Callable[[str], Any] | None = None,
        device: Any = None,
        trusted: frozenset[str] = frozenset(),
    ) -> None:
        self._trusted = trusted
        self._schemas: dict[QualName, typed.Schema] = {}
        self._filling: set[int] = set()
        self._tensors_used: set[str] = set()
        self._late = False
        # Every check made, to run again when a container was reached before it was filled.
        self._checks: list[tuple[QualName, type, Any, str, str]] = []
        self._validated_objects: list[tuple[QualName, Any]] = []
        # Objects whose class has a batch validator, by class, waiting for ``_flush``.
        self._pending: dict[str, tuple[QualName, list[Any]]] = {}
        self._tensor = tensor
        self._tensor_names = tensor_names
        self._resolved = resolved or {}
        self._by_id: dict[int, Any] = {}
        self._dtypes: dict[str, Any] = {}
        self._bits = bits or tensor
        self._device = device
        self._torch_loader: torch_nodes.TorchLoader | None = None
        # The method that builds each node kind (``_list`` for "list"...), looked up once.
        self._kinds: dict[str, Callable[[dict[str, Any], str], Any]] = {
            kind: getattr(self, "_" + kind) for kind in _ALLOWED_KEYS
        }

    def decode(self, node: Any) -> Any:
        return self._checked_root(self._decode(node, "root"), "root")

    def decode_at(self, node: Any, where: str) -> Any:
        return self._checked_root(self._decode(node, where), where)

    def _checked_root(self, value: Any, where: str) -> Any:
        if self._late:  # a container was reached while still being filled (a cycle)
            self._late = False
            for name, cls, value, at, part in self._checks:
                self._recheck(name, cls, value, at, part)
            for name, obj in self._validated_objects:
                self._validated(name, obj, again=True)
        self._flush()
        # What the caller receives: any trusted object or function, but partials, class
        # objects and defaultdict factories still follow the rules.
        typed.check_value(value, typed.ROOT, where)
        return value

    def _schema(self, name: QualName, cls: type, where: str) -> typed.Schema:
        found = self._schemas.get(name)
        if found is None:
            found = typed.SCHEMAS.schema_for(str(name), cls, REGISTRY.by_user(name, self._trusted))
            if found is None:
                raise self._bad(
                    where,
                    f"amber has no state schema for {name.dotted}, so it cannot check what "
                    "its instances hold; it was refused",
                )
            self._schemas[name] = found
        return found

    def _check_state(
        self, name: QualName, cls: type, value: Any, where: str, *, part: str = "state"
    ) -> None:
        """Check what the file gives the class (``schema.check_given``) before the object
        receives it; remembered, to run again if a container was reached while filling."""
        self._checks.append((name, cls, value, where, part))
        self._recheck(name, cls, value, where, part)

    def _recheck(self, name: QualName, cls: type, value: Any, where: str, part: str) -> None:
        schema = self._schema(name, cls, where)
        typed.check_given(str(name), cls, schema, value, where, part=part)

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
        # scan() has checked every node's kind and keys before decoding starts.
        return self._kinds[node["k"]](node, where)

    def _register(
        self, node: dict[str, Any], obj: Any, where: str, *, filling: bool = False
    ) -> None:
        """Make ``obj`` the target of later refs to the node's id. ``filling``: ``obj`` is a
        container whose items come next; a ref that reaches it before ``_filled`` makes
        every check run again at the end (one made meanwhile saw it incomplete)."""
        if "id" not in node:
            return
        node_id = node["id"]
        if type(node_id) is not int or node_id < 0:
            raise self._bad(where, f"'id' must be a non-negative integer, got {node_id!r}")
        if node_id in self._by_id:
            raise self._bad(where, f"id {node_id} is declared twice")
        self._by_id[node_id] = obj
        if filling:
            self._filling.add(node_id)

    def _filled(self, node: dict[str, Any]) -> None:
        node_id = node.get("id")
        if type(node_id) is int:
            self._filling.discard(node_id)

    def _items(self, node: dict[str, Any], where: str, key: str = "v") -> list[Any]:
        items = node.get(key)
        if type(items) is not list:
            raise self._bad(where, f"{node['k']} node needs a list under {key!r}")
        return items

    # -- containers: mutable ones are registered before their children, for cycles ----------

    def _list(self, node: dict[str, Any], where: str) -> list:
        out: list[Any] = []
        self._register(node, out, where, filling=True)
        out.extend(self._decode(v, f"{where}[{i}]") for i, v in enumerate(self._items(node, where)))
        self._filled(node)
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
        if len(set(values)) != len(values):
            raise self._bad(where, "a set node repeats an element")
        return values

    def _set(self, node: dict[str, Any], where: str) -> set:
        out: set[Any] = set()
        self._register(node, out, where, filling=True)
        out.update(self._hashables(node, where))
        self._filled(node)
        return out

    def _frozenset(self, node: dict[str, Any], where: str) -> frozenset:
        out = frozenset(self._hashables(node, where))
        self._register(node, out, where)
        return out

    def _dict(self, node: dict[str, Any], where: str) -> dict:
        out: dict[Any, Any] = {}
        self._register(node, out, where, filling=True)
        self._fill_dict(node, out, where)
        self._filled(node)
        return out

    def _fill_dict(self, node: dict[str, Any], out: dict[Any, Any], where: str) -> None:
        has_v, has_items = "v" in node, "items" in node
        if has_v == has_items:
            raise self._bad(where, "dict node needs exactly one of 'v' or 'items'")
        if has_v:
            values = node["v"]
            if type(values) is not dict:
                raise self._bad(where, "dict node 'v' must be a JSON object")
            for key, value in values.items():
                out[key] = self._decode(value, f"{where}[{key!r}]")
            return
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
            if key in out:  # a value decoded, then replaced, would be seen by no check
                raise self._bad(where, f"dict item #{i} repeats a key")
            out[key] = self._decode(pair[1], f"{where}[{key!r}]")

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
        if name in self._tensors_used:
            # amber writes an array once and shares it by ref: a second node over the same
            # bytes would share memory that no ref shows (and no check sees as shared).
            raise self._bad(where, f"tensor {name!r} is used by two nodes")
        self._tensors_used.add(name)
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
        if "tensor" not in node:
            array = self._empty_array(node, where)
        else:
            array = self._tensor_array(node, where)
            if "dtype" in node or "shape" in node:
                array = self._raw_view(node, array, where)
        self._register(node, array, where)
        return array

    def _empty_array(self, node: dict[str, Any], where: str) -> Any:
        """An array with no elements, described inline: a dtype from the table and a shape
        whose product is zero."""
        import numpy as np

        name = node.get("dtype")
        if type(name) is not str or name not in dtypes.ITEMSIZE:
            raise self._bad(where, "an inline array needs a dtype name from the tensor table")
        shape = self._shape(node.get("shape"), where)
        if 0 not in shape:
            raise self._bad(where, "only arrays without elements are described inline")
        return np.zeros(shape, dtype=dtypes.to_numpy(name).newbyteorder("="))

    def _raw_view(self, node: dict[str, Any], raw: Any, where: str) -> Any:
        """A uint8 tensor viewed as the node's (non-numeric, object-free) dtype and shape."""
        import numpy as np

        field = node.get("dtype")
        if type(field) is dict and "k" in field:  # a dtype node, or a ref to one
            dtype = self._decode(field, where)
            if not isinstance(dtype, np.dtype):
                raise self._bad(where, "an array's 'dtype' node must be a dtype")
        else:
            dtype = self._cached_dtype(field, where)
        shape = self._shape(node.get("shape"), where)
        if dtype.hasobject or dtype.itemsize == 0:
            raise self._bad(where, f"raw arrays cannot have dtype {dtype}")
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise self._bad(where, "raw array tensor must be one-dimensional uint8")
        count = 1
        for dim in shape:
            count *= dim
        if count * dtype.itemsize != raw.nbytes:
            raise self._bad(where, f"{raw.nbytes} bytes cannot hold shape {shape} of {dtype}")
        if not _valid_code_points(raw, dtype):
            raise self._bad(where, "string array holds code points beyond U+10FFFF")
        try:
            return raw.view(dtype).reshape(shape)
        except ValueError as exc:  # e.g. a record itemsize that does not divide the bytes
            raise self._bad(where, f"cannot view the bytes as {dtype}: {exc}") from None

    def _shape(self, shape: Any, where: str) -> tuple[int, ...]:
        if type(shape) is not list or len(shape) > 32:
            raise self._bad(where, "'shape' must be a list of at most 32 integers")
        for dim in shape:
            if type(dim) is not int or not 0 <= dim <= k.INT64_MAX:
                raise self._bad(where, f"shape {shape} has a dimension out of range")
        return tuple(shape)

    def _make_dtype(self, descr: Any, where: str, level: int = 0) -> Any:
        """Build a numpy dtype from a descriptor: a dtype string or a record layout (records
        nest at most ``_MAX_RECORD_NESTING`` deep)."""
        import numpy as np

        if level > _MAX_RECORD_NESTING:
            raise self._bad(where, f"record dtypes nest deeper than {_MAX_RECORD_NESTING}")
        if type(descr) is str:
            if len(descr) > 64:
                raise self._bad(where, "dtype string too long")
            spec: Any = descr
        elif type(descr) is dict and descr.keys() == {"names", "formats", "offsets", "itemsize"}:
            names, formats, offsets = descr["names"], descr["formats"], descr["offsets"]
            if not (
                type(names) is list
                and type(formats) is list
                and type(offsets) is list
                and len(names) == len(formats) == len(offsets) <= 1024
                and all(type(n) is str for n in names)
                and all(type(o) is int and o >= 0 for o in offsets)
                and type(descr["itemsize"]) is int
            ):
                raise self._bad(where, "malformed record dtype")
            spec = {
                "names": names,
                "formats": [self._make_dtype(f, where, level + 1) for f in formats],
                "offsets": offsets,
                "itemsize": descr["itemsize"],
            }
        else:
            raise self._bad(where, f"invalid dtype descriptor {descr!r}")
        try:
            return np.dtype(spec)
        except (TypeError, ValueError) as exc:
            raise self._bad(where, f"invalid dtype {descr!r}: {exc}") from None

    def _cached_dtype(self, descr: Any, where: str) -> Any:
        # Forests hold hundreds of record arrays of one dtype; build it once per load.
        key = descr if type(descr) is str else repr(descr)
        dtype = self._dtypes.get(key)
        if dtype is None:
            dtype = self._dtypes[key] = self._make_dtype(descr, where)
        return dtype

    def _dtype(self, node: dict[str, Any], where: str) -> Any:
        dtype = self._cached_dtype(node.get("v"), where)
        self._register(node, dtype, where)
        return dtype

    def _objarray(self, node: dict[str, Any], where: str) -> Any:
        import numpy as np

        shape = self._shape(node.get("shape"), where)
        items = self._items(node, where)
        count = 1
        for dim in shape:
            count *= dim
        if count != len(items):
            raise self._bad(where, f"object array of shape {shape} needs {count} items")
        out = np.empty(count, dtype=object)
        self._register(node, out, where, filling=True)
        for i, item in enumerate(items):
            out[i] = self._decode(item, f"{where}[{i}]")
        self._filled(node)
        out.shape = shape
        return out

    def _scalars(self, node: dict[str, Any], where: str) -> list | tuple:
        array = self._tensor_array(node, where)
        if array.ndim != 1:
            raise self._bad(where, "scalars tensor must be one-dimensional")
        kind = node.get("of")
        if kind == k.LIST:
            out: list | tuple = list(array)
        elif kind == k.TUPLE:
            out = tuple(array)
        else:
            raise self._bad(where, "scalars node 'of' must be 'list' or 'tuple'")
        self._register(node, out, where)
        return out

    def _npscalar(self, node: dict[str, Any], where: str) -> Any:
        import numpy as np

        if "array" in node:
            if "dtype" in node or "b64" in node:
                raise self._bad(where, "npscalar node needs 'array' or 'dtype'+'b64'")
            array = self._decode(node["array"], where)
            if not isinstance(array, np.ndarray) or array.ndim != 0:
                raise self._bad(where, "npscalar 'array' must be a 0-d array")
            return array[()]
        name = node.get("dtype")
        try:
            size = dtypes.itemsize(name)
        except FormatError as exc:
            raise self._bad(where, str(exc)) from None
        raw = self._b64(node, where)
        if len(raw) != size:
            raise self._bad(where, f"{name} scalar needs {size} bytes, got {len(raw)}")
        dtype = dtypes.to_numpy(name)
        value = np.frombuffer(raw, dtype=dtype)[0]
        return value if dtype.isnative else value.astype(dtype.newbyteorder("="))

    def _torch(self, node: dict[str, Any], where: str) -> Any:
        name = node.get("tensor")
        if type(name) is not str or name not in self._tensor_names:
            raise self._bad(where, f"refers to tensor {name!r}, which is not in the file")
        self._resolved_name("type", str(torch_nodes.check_node(node)), where)
        if self._torch_loader is None:
            self._torch_loader = torch_nodes.TorchLoader(self._bits, self._device)
        out = self._torch_loader.tensor(node, lambda message: self._bad(where, message))
        self._register(node, out, where)
        return out

    # -- code references: only names the audit resolved ---------------------------------------

    def _resolved_name(self, kind: Kind, text: Any, where: str) -> tuple[QualName, Any]:
        name = QualName.parse(text)
        try:
            return name, self._resolved[kind, name]
        except KeyError:
            raise self._bad(where, f"{name.dotted} was not audited") from None

    def _type(self, node: dict[str, Any], where: str) -> type:
        return self._resolved_name("type", node.get("name"), where)[1]

    def _func(self, node: dict[str, Any], where: str) -> Any:
        return self._resolved_name("function", node.get("name"), where)[1]

    def _object(self, node: dict[str, Any], where: str) -> Any:
        name, cls = self._resolved_name("type", node.get("type"), where)
        mode = node.get("mode")
        if type(mode) is not str or mode not in k.MODES:
            raise self._bad(
                where, f"object construction mode {mode!r} is not one of {sorted(k.MODES)}"
            )
        where = f"{where}<{name.qualname}>"
        if mode in (k.MODE_ADAPTER, k.MODE_CYTHON) and ("listitems" in node or "dictitems" in node):
            raise self._bad(where, f"{mode} objects cannot have listitems or dictitems")
        if mode == k.MODE_ADAPTER:
            constructor = CONSTRUCTORS.get(str(name))
            if constructor is None or "args" in node:
                raise self._bad(where, f"amber has no constructor for {name.dotted}")
            state = self._decode(node.get("state"), where)
            self._check_state(name, cls, state, where, part="adapter")
            obj = self._validated(name, self._build(name, lambda: constructor.decode(cls, state)))
            self._register(node, obj, where)
            return obj
        args = [
            self._decode(a, f"{where}(arg {i})")
            for i, a in enumerate(self._items(node, where, "args") if "args" in node else ())
        ]
        self._schema(name, cls, where)  # fail closed: a class without a schema is refused
        if mode == k.MODE_CYTHON:
            unpickle = getattr(
                sys.modules.get(cls.__module__), f"__pyx_unpickle_{cls.__name__}", None
            )
            if unpickle is None or len(args) != 2 or "state" in node:
                raise self._bad(
                    where, f"{name.dotted} is not a Cython class with a generated unpickler"
                )
            self._check_state(name, cls, tuple(args), where, part="items")
            obj = self._validated(name, self._build(name, lambda: unpickle(cls, *args)))
            self._register(node, obj, where)
            return obj
        if (
            mode == k.MODE_CALL
            and str(name) in CALL_ARGUMENTS
            and not CALL_ARGUMENTS[str(name)](tuple(args))
        ):
            raise self._bad(where, f"{name.dotted} cannot be called with these arguments")
        if args:
            self._check_state(name, cls, tuple(args), f"{where}(args)", part="items")
        if mode == k.MODE_NEW:
            if (
                not cls.__flags__ & _HEAP_TYPE
                and cls not in _NEW_MODE_BUILTINS
                and cls.__module__ not in NEW_MODE_MODULES
            ):
                # Compiled (C/Cython) classes may need their initializer to be memory-safe;
                # they are rebuilt by calling them, their own unpickler or an adapter.
                raise self._bad(where, f"{name.dotted} cannot be created without its initializer")
            obj = self._build(name, lambda: cls.__new__(cls, *args))
        else:
            obj = self._build(name, lambda: cls(*args))
        # Registered before its state, which may refer back to it (parent links), unless
        # it is a container or a partial: a ref then would see it before it is complete.
        container = cls is functools.partial or typed.SCHEMAS.category(cls) in ("seq", "map")
        self._register(node, obj, where, filling=container)
        if "listitems" in node:
            items = [self._decode(v, where) for v in self._items(node, where, "listitems")]
            self._check_state(name, cls, items, where, part="items")
            self._build(
                name,
                lambda: (
                    obj.extend(items) if hasattr(obj, "extend") else [obj.append(i) for i in items]
                ),
            )
        if "dictitems" in node:
            for pair in self._items(node, where, "dictitems"):
                if type(pair) is not list or len(pair) != 2:
                    raise self._bad(where, "dictitems must be [key, value] pairs")
                key, value = (self._decode(p, where) for p in pair)
                self._check_state(name, cls, [key, value], where, part="items")
                self._build(name, lambda key=key, value=value: obj.__setitem__(key, value))
        if "state" in node:
            state = self._decode(node["state"], where)
            self._check_state(name, cls, state, where)
            self._build(name, lambda: _apply_state(obj, state))
        self._filled(node)
        self._validated(name, obj)
        if str(name) in READ_ONLY_STATE:
            _freeze(args, state if "state" in node else None)
        return obj

    def _validated(self, name: QualName, obj: Any, *, again: bool = False) -> Any:
        key = str(name)
        check = VALIDATORS.get(key)
        if check is None:
            return obj
        if not again:
            self._validated_objects.append((name, obj))
        if key in BATCH_VALIDATORS:
            self._pending.setdefault(key, (name, []))[1].append(obj)
            return obj
        self._flush()  # members (batched) are checked before their owner
        self._run_check(name, check, obj)
        return obj

    def _flush(self) -> None:
        """Run the batch checks of the objects collected so far, classes in the order
        their first object was built (members before owners)."""
        while self._pending:
            key = next(iter(self._pending))
            name, objects = self._pending.pop(key)
            self._run_check(name, BATCH_VALIDATORS[key], objects)

    def _run_check(self, name: QualName, check: Callable[[Any], None], value: Any) -> None:
        try:
            check(value)
        except Exception as exc:  # a malformed object fails its check in any way
            raise FormatError(
                f"{name.dotted} in the file is inconsistent and was refused: {exc}"
            ) from None

    def _build(self, name: QualName, step: Callable[[], Any]) -> Any:
        """Run one construction step of a trusted class; its failures become FormatError."""
        try:
            return step()
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(
                f"could not rebuild {name.dotted} from the file: {type(exc).__name__}: {exc}"
            ) from None

    def _ref(self, node: dict[str, Any], where: str) -> Any:
        node_id = node.get("id")
        if type(node_id) is not int or node_id not in self._by_id:
            raise self._bad(where, f"reference to id {node_id!r}, which no earlier node declares")
        if node_id in self._filling:
            # A container (or partial) reached before it is complete: whatever was checked
            # meanwhile saw it incomplete, so everything is checked again at the end.
            self._late = True
        return self._by_id[node_id]


class PartialDecoder(Decoder):
    """Builds selected parts of a tree (``keys=``). A ref to an id declared outside them
    builds its declaring node on demand, once; that node met again later is not rebuilt.
    (Kept out of Decoder: whole loads stay free of these checks.)"""

    def __init__(self, root: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._declared: dict[int, Any] = {}  # id -> its declaring node
        self._built_ids: set[int] = set()  # ids built on demand
        stack = [root]
        while stack:
            node = stack.pop()
            if type(node) is not dict:
                continue
            if type(node.get("id")) is int and node.get("k") != k.REF:
                self._declared.setdefault(node["id"], node)
            stack.extend(child for child, _ in _child_nodes(node))

    def _decode(self, node: Any, where: str) -> Any:
        if type(node) is dict and node.get("k") != k.REF and node.get("id") in self._built_ids:
            return self._by_id[node["id"]]
        return super()._decode(node, where)

    def _ref(self, node: dict[str, Any], where: str) -> Any:
        node_id = node.get("id")
        if type(node_id) is int and node_id not in self._by_id and node_id in self._declared:
            self._decode(self._declared.pop(node_id), f"{where}<id {node_id}>")
            self._built_ids.add(node_id)
        return super()._ref(node, where)


def _freeze(*values: Any) -> None:
    """Make the arrays handed to a validated compiled member read-only: compiled code
    indexes memory with them, so nothing else holding them (a ref elsewhere in the file)
    may change them after the check."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if type(value) in (list, tuple):
            stack.extend(value)
        elif type(value) is dict:
            stack.extend(value.values())
        elif hasattr(value, "flags") and hasattr(value, "dtype"):
            value.flags.writeable = False


def _has_strings(dtype: Any) -> bool:
    return dtype.kind == "U" or any(dtype.fields[n][0].kind == "U" for n in (dtype.names or ()))


def _valid_code_points(raw: Any, dtype: Any) -> bool:
    """numpy's str arrays hold UTF-32 code units; a unit past U+10FFFF fails (with a
    SystemError) when read, so refuse it on load. Checks plain and record string fields."""
    if not raw.size or not _has_strings(dtype):
        return True
    if dtype.kind == "U":
        unit = ">u4" if dtype.byteorder == ">" else "<u4"
        return int(raw.view(unit).max()) <= _MAX_UNICODE
    for member, offset in ((dtype.fields or {})[n][:2] for n in dtype.names or ()):
        if member.kind == "U" and member.itemsize:
            unit = ">u4" if member.byteorder == ">" else "<u4"
            rows = raw.reshape(-1, dtype.itemsize)[:, offset : offset + member.itemsize]
            if int(rows.copy().view(unit).max()) > _MAX_UNICODE:
                return False
    return True


def _check_attributes(state: Any) -> None:
    if not isinstance(state, dict):
        raise FormatError("object state must be a dict of attributes")
    odd = typed.special_keys(state)
    if odd:
        raise FormatError(f"object state may not set the special attribute {odd[0]!r}")


def _apply_state(obj: Any, state: Any) -> None:
    """Restore state as pickle does: ``__setstate__`` if the class has one, else attributes."""
    if isinstance(state, dict):
        _check_attributes(state)
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        _check_attributes(state)
        obj.__dict__.update(state)
    if slots:
        _check_attributes(slots)
        for key, value in slots.items():
            setattr(obj, key, value)
