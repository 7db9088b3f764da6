"""The model store: named versions, aliases, metadata and metrics, lineage, dedup, gc."""

from amber.store.backend import Backend, Stat
from amber.store.local import LocalBackend
from amber.store.memory import MemoryBackend
from amber.store.store import ModelSummary, ModelVersion, Store

__all__ = [
    "Backend",
    "LocalBackend",
    "MemoryBackend",
    "ModelSummary",
    "ModelVersion",
    "Stat",
    "Store",
]
