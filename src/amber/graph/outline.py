"""A readable outline of a node tree (for `amber inspect`), built without importing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amber.errors import FormatError
from amber.graph import nodes as k
from amber.graph.names import QualName
from amber.graph.trust import REGISTRY

MAX_CHILDREN = 12
MAX_VALUES = 24  # scalar values shown per node (hyperparameters, counters, a step)
_VALUE_WIDTH = 40


@dataclass
class Outline:
    label: str
    untrusted: bool = False
    children: list[Outline] = field(default_factory=list)
    hidden: int = 0  # children left out past MAX_CHILDREN
    # Scalar entries (an estimator's hyperparameters, a checkpoint's step): key -> value.
    values: dict[str, Any] = field(default_factory=dict)
    hidden_values: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The outline as JSON-ready data (``amber inspect --json``)."""
        out: dict[str, Any] = {"label": self.label, "untrusted": self.untrusted}
        if self.values:
            out["values"] = self.values
        if self.hidden_values:
            out["hidden_values"] = self.hidden_values
        if self.children:
            out["children"] = [child.to_dict() for child in self.children]
        if self.hidden:
            out["hidden"] = self.hidden
        return out

    def values_text(self) -> str:
        """The scalar values on one line: ``C=1.0, max_iter=500``."""
        shown = [f"{key}={_short(value)}" for key, value in self.values.items()]
        if self.hidden_values:
            shown.append(f"... {self.hidden_values} more")
        return ", ".join(shown)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def _scalar(node: Any) -> Any:
    """A node's value when it is a plain scalar (typed floats included), else a marker."""
    if not isinstance(node, dict):
        return node
    if node.get("k") in (k.FLOAT, k.INT) and isinstance(node.get("v"), str):
        return _Literal(node["v"])
    return _NOT_SCALAR


def _value_key(key: str) -> str:
    """``.C`` -> ``C``, ``'step'`` -> ``step``; other keys as the tree shows them."""
    if key.startswith("."):
        return key[1:]
    if len(key) > 2 and key[0] == key[-1] == "'" and key[1:-1].isidentifier():
        return key[1:-1]
    return key


class _Literal(str):
    """A number stored as text (nan, inf, a huge integer): shown without quotes, kept as a
    string in JSON (which has no NaN)."""

    def __repr__(self) -> str:
        return str(self)


_NOT_SCALAR = object()


def _name(text: Any, kind: str) -> tuple[str, bool]:
    try:
        name = QualName.parse(text)
    except FormatError:
        return f"<invalid name {text!r}>", True
    return name.dotted, not REGISTRY.allows(name, kind)  # type: ignore[arg-type]


def _entries(node: dict[str, Any]) -> list[tuple[str, Any]]:
    kind = node.get("k")
    if kind == k.DICT and isinstance(node.get("v"), dict):
        return [(repr(key), value) for key, value in node["v"].items()]
    if kind == k.DICT and isinstance(node.get("items"), list):
        return [
            (f"<key {i}>", pair[1])
            for i, pair in enumerate(node["items"])
            if isinstance(pair, list) and len(pair) == 2
        ]
    if kind in (k.LIST, k.TUPLE, k.SET, k.FROZENSET) and isinstance(node.get("v"), list):
        return [(f"[{i}]", value) for i, value in enumerate(node["v"])]
    if kind == k.OBJECT:
        state = node.get("state")
        if (
            isinstance(state, dict)
            and state.get("k") == k.DICT
            and isinstance(state.get("v"), dict)
        ):
            return [(f".{key}", value) for key, value in state["v"].items()]
        out = [(f"(arg {i})", a) for i, a in enumerate(node.get("args") or [])]
        return out + ([("<state>", state)] if state is not None else [])
    return []


def _label(node: Any, tensors: dict[str, Any]) -> tuple[str, bool]:
    if not isinstance(node, dict):
        text = repr(node)
        return (text if len(text) <= 60 else text[:57] + "..."), False
    kind = node.get("k")
    if kind == k.OBJECT:
        return _name(node.get("type"), "type")
    if kind == k.TYPE:
        name, bad = _name(node.get("name"), "type")
        return f"class {name}", bad
    if kind == k.FUNC:
        name, bad = _name(node.get("name"), "function")
        return f"function {name}", bad
    if kind == k.NDARRAY:
        entry = tensors.get(node.get("tensor"))
        if entry is not None and "dtype" not in node:
            return f"ndarray {entry.dtype} {tuple(entry.shape)}", False
        return f"ndarray {node.get('dtype')} {tuple(node.get('shape') or ())}", False
    if kind in (k.LIST, k.TUPLE, k.SET, k.FROZENSET, k.DICT):
        return str(kind), False
    if kind == k.REF:
        return f"(shared reference #{node.get('id')})", False
    return str(kind), False


def outline(root: Any, tensors: dict[str, Any], max_depth: int = 6) -> Outline:
    """The tree of ``root`` down to ``max_depth``, untrusted names marked."""
    label, bad = _label(root, tensors)
    top = Outline(label, bad)
    stack = [(top, root, 0)]
    while stack:
        parent, node, depth = stack.pop()
        if not isinstance(node, dict) or depth >= max_depth:
            continue
        entries = _entries(node)
        # Scalars (hyperparameters, counters, a checkpoint's step) are listed as values.
        scalars = [(key, _scalar(child)) for key, child in entries]
        scalars = [(key, value) for key, value in scalars if value is not _NOT_SCALAR]
        parent.values = {_value_key(key): value for key, value in scalars[:MAX_VALUES]}
        parent.hidden_values = max(0, len(scalars) - MAX_VALUES)
        entries = [(key, child) for key, child in entries if _scalar(child) is _NOT_SCALAR]
        parent.hidden = max(0, len(entries) - MAX_CHILDREN)
        for key, child in entries[:MAX_CHILDREN]:
            label, bad = _label(child, tensors)
            item = Outline(f"{key}: {label}", bad)
            parent.children.append(item)
            stack.append((item, child, depth + 1))
    return top
