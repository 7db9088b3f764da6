"""A readable outline of a node tree (for `amber inspect`), built without importing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amber.errors import FormatError
from amber.graph import nodes as k
from amber.graph.names import QualName
from amber.graph.trust import REGISTRY

MAX_CHILDREN = 12


@dataclass
class Outline:
    label: str
    untrusted: bool = False
    children: list[Outline] = field(default_factory=list)
    hidden: int = 0  # children left out past MAX_CHILDREN


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
        # Scalars (hyper-parameters, counters) are counted, not listed: the tree shows shape.
        scalars = sum(1 for _, child in entries if not isinstance(child, dict))
        entries = [(key, child) for key, child in entries if isinstance(child, dict)]
        if scalars:
            parent.label += f"  ({scalars} scalar {'values' if scalars > 1 else 'value'})"
        parent.hidden = max(0, len(entries) - MAX_CHILDREN)
        for key, child in entries[:MAX_CHILDREN]:
            label, bad = _label(child, tensors)
            item = Outline(f"{key}: {label}", bad)
            parent.children.append(item)
            stack.append((item, child, depth + 1))
    return top
