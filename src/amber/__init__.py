"""amber: save ML models and load them back safely, fast, verifiably and with versions.

``import amber`` is light: numpy and everything heavier load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amber import errors
from amber._version import __version__

if TYPE_CHECKING:
    from amber.api import AmberFile, FileInfo, TensorInfo, inspect, load, open, save, verify
    from amber.batch import predict
    from amber.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from amber.graph.trust import trust
    from amber.interop import convert
    from amber.interop.onnx_file import onnx_session

__all__ = [
    "AmberFile",
    "Checkpoint",
    "FileInfo",
    "Prune",
    "Quantize",
    "QuantizedTensor",
    "TensorInfo",
    "__version__",
    "compression_report",
    "convert",
    "errors",
    "inspect",
    "load",
    "load_checkpoint",
    "onnx_session",
    "open",
    "predict",
    "prune",
    "quantize",
    "save",
    "save_checkpoint",
    "trust",
    "verify",
]

# Public name -> the module that defines it, imported on first use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["AmberFile", "FileInfo", "TensorInfo", "inspect", "load", "open", "save", "verify"],
        "amber.api",
    ),
    **dict.fromkeys(["Checkpoint", "load_checkpoint", "save_checkpoint"], "amber.checkpoint"),
    "convert": "amber.interop",
    "compression_report": "amber.compression_table",
    "predict": "amber.batch",
    "onnx_session": "amber.interop.onnx_file",
    **dict.fromkeys(["Quantize", "QuantizedTensor", "quantize"], "amber.quantization"),
    **dict.fromkeys(["Prune", "prune"], "amber.pruning"),
    # The allowlist is meaningful once the adapters have registered (amber.api imports them).
    "trust": "amber.graph.trust",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        importlib.import_module("amber.api")
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'amber' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
