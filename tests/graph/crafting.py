"""Crafting hostile files as an attacker would: save a benign object with amber, edit its
object graph in the manifest, re-seal (tests/corpus/build.py recomputes the digests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import amber
from tests.corpus.build import edit_manifest


def saved(obj: Any, tmp_path: Path) -> bytes:
    """The bytes of ``obj`` saved by amber."""
    path = tmp_path / "benign.amber"
    amber.save(obj, path)
    return path.read_bytes()


def planted(data: bytes, edit: Any, tmp_path: Path) -> Path:
    """The file with ``edit(root)`` applied to its object graph, re-sealed."""
    path = tmp_path / "hostile.amber"
    path.write_bytes(edit_manifest(data, lambda m: edit(m["root"])))
    return path


def state(node: dict[str, Any]) -> dict[str, Any]:
    """The attribute nodes of an object node's state."""
    return node["state"]["v"]


def find(node: Any, type_name: str) -> dict[str, Any]:
    """The first object node of ``type_name`` in the graph."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("k") == "object" and item.get("type") == type_name:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise LookupError(type_name)
