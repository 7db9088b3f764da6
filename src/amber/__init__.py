"""amber: save ML models and load them back safely, fast, verifiably and with versions.

``import amber`` is light: numpy and everything heavier load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amber import errors
from amber._version import __version__

if TYPE_CHECKING:
    from amber.api import AmberFile, FileInfo, TensorInfo, inspect, load, open, save, verify
    from amber.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from amber.graph.trust import trust

__all__ = [
    "AmberFile",
    "Checkpoint",
    "FileInfo",
    "TensorInfo",
    "__version__",
    "errors",
    "inspect",
    "load",
    "load_checkpoint",
    "open",
    "save",
    "save_checkpoint",
    "trust",
    "verify",
]

_LAZY = {"AmberFile", "FileInfo", "TensorInfo", "inspect", "load", "open", "save", "verify"}
_CHECKPOINT = {"Checkpoint", "load_checkpoint", "save_checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from amber import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    if name in _CHECKPOINT:
        from amber import checkpoint

        value = getattr(checkpoint, name)
        globals()[name] = value
        return value
    if name == "trust":
        from amber import api
        from amber.graph.trust import trust

        globals()[name] = trust
        return trust
    raise AttributeError(f"module 'amber' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY | _CHECKPOINT | {"trust"})
