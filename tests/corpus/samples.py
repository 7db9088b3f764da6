"""The objects behind the committed valid files, their JSON sidecars, and exact comparison.

Each ``valid/NAME.amber`` was written from ``SAMPLES[NAME]()`` (with ``SAVE_OPTIONS[NAME]``),
by format ``VERSIONS[NAME]``: 1.0, or 1.1 for the compressed ones;
``valid/NAME.json`` records the expected value in a tagged JSON form that does not depend on
amber, so a later reader is checked against what the file held when it was written.
Regenerate (only when adding a fixture for a new format version) with
``python -m tests.corpus.samples``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

VALID_DIR = Path(__file__).parent / "valid"


def weights() -> dict[str, Any]:
    """A state dict: one tensor per supported kind of array."""
    return {
        "embed.weight": np.arange(24, dtype=np.float32).reshape(4, 6) / 7,
        "fc.weight": np.asfortranarray(np.linspace(-1, 1, 6).reshape(2, 3)),
        "fc.bias": np.array([-3, 0, 5], dtype=np.int8),
        "counts": np.array([0, 1, 65535], dtype=np.uint16),
        "ids": np.array([2**63 - 1, -(2**63)], dtype=np.int64),
        "mask": np.array([[True, False], [False, True]]),
        "phase": np.array([1 + 2j, -0.5j], dtype=np.complex64),
        "half": np.array([1.5, -0.0, np.inf, np.nan], dtype=np.float16),
        "bf16": np.array([1.0, -2.5, 3.25], dtype=ml_dtypes.bfloat16),
        "fp8": np.array([0.5, -1.0], dtype=ml_dtypes.float8_e4m3fn),
        "step": np.array(1234, dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "tail": np.arange(5, dtype=np.uint8),
    }


def nested() -> dict[str, Any]:
    """Plain Python data: every graph node kind, with arrays and bytes inside."""
    shared = [1, 2, 3]
    return {
        "config": {"lr": 0.001, "layers": [64, 32], "name": "mlp", "dropout": None, "bias": True},
        "tuple": (1, "two", 3.0, (4,), ()),
        "bytes": b"\x00\x01amber\xff",
        "bytes_as_tensor": bytes(range(256)) * 20,
        "bytearray": bytearray(b"xyz"),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "floats": [math.nan, math.inf, -math.inf, -0.0, 1e-300],
        "complex": 1.5 - 2j,
        "big_ints": [2**100, -(2**70)],
        "keys": {1: "int", (2, 3): "tuple", None: "none", "s": "str"},
        "unicode": "grüße 🌍",
        "scalars": [np.float32(2.5), np.int16(-7), np.bool_(True)],
        "array": np.arange(5, dtype=np.int32),
        "shared": [shared, shared],
        "empties": [[], {}, (), "", b""],
    }


def no_tensors() -> dict[str, Any]:
    """A file without payloads: the manifest starts right after the header."""
    return {"answer": 42, "none": None}


def torch_state() -> dict[str, Any]:
    """PyTorch tensors: dtypes numpy lacks, parameters, views sharing one storage."""
    import torch

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    return {
        "encoder.weight": torch.nn.Parameter(base),
        "decoder.weight": base.detach(),  # tied: the same storage, the same view
        "rows": base[1:3],  # views of that storage at other offsets and strides
        "transposed": base.t(),
        "bf16": torch.tensor([1.0, -2.5, 3.25], dtype=torch.bfloat16),
        "fp8": torch.tensor([0.5, -1.0]).to(torch.float8_e5m2),
        "frozen": torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64), requires_grad=False),
        "mask": torch.tensor([True, False]),
        "step": torch.tensor(1234),
        "empty": torch.zeros(0, 3),
    }


SAMPLES: dict[str, Callable[[], Any]] = {
    "weights": weights,
    "nested": nested,
    "no_tensors": no_tensors,
    "torch_state": torch_state,
    # Format 1.1: every non-empty tensor compressed (floats byte-grouped, the rest zstd).
    "weights_zstd": weights,
    "torch_state_zstd": torch_state,
    # Format 1.1: the weight matrices quantized to int8 with per-row scales (lossy: the
    # sidecar records the dequantized values the file loads as).
    "weights_int8": weights,
    # Format 1.1: half of each weight matrix pruned, stored sparse (codec "bitmask").
    "weights_pruned": weights,
}
# amber.save options of the fixtures that need some.
SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "weights_zstd": {"compress": "zstd-bytegroup"},
    "torch_state_zstd": {"compress": "zstd-bytegroup"},
    "weights_int8": {"quantize": "int8"},
    "weights_pruned": {"prune": 0.5},
}
# Fixtures that do not load as the sample they were saved from (quantized).
LOSSY = frozenset({"weights_int8", "weights_pruned"})
# The format version each fixture declares.
VERSIONS: dict[str, str] = {name: "1.1" if name in SAVE_OPTIONS else "1.0" for name in SAMPLES}


def _torch_bits(t: Any) -> bytes:
    """The values of a tensor in row-major order, as raw little-endian bytes."""
    import torch

    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def identical(a: Any, b: Any) -> bool:
    """Exact equality: same types, arrays bitwise equal with dtype and shape, NaN == NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if type(a).__module__.startswith("torch"):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.requires_grad == b.requires_grad
            and _torch_bits(a) == _torch_bits(b)
        )
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, complex):
        return identical(a.real, b.real) and identical(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(identical, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            identical(ka, kb) and identical(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(identical(x, y) for y in b) for x in a)
    return a == b


# -- sidecar: expected values as tagged JSON ---------------------------------------------------


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name).newbyteorder("<")
    except TypeError:  # not a numpy name: bfloat16, float8_*
        return np.dtype(getattr(ml_dtypes, name))


def _dtype_name(dtype: np.dtype) -> str:
    return dtype.type.__name__ if dtype.type.__module__ == "ml_dtypes" else dtype.name


def to_sidecar(obj: Any) -> Any:
    """The tagged JSON form of ``obj`` (bytes as hex, floats as float.hex)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return {"type": "float", "hex": obj.hex()}
    if isinstance(obj, complex):
        return {"type": "complex", "real": obj.real.hex(), "imag": obj.imag.hex()}
    if isinstance(obj, (bytes, bytearray)):
        return {"type": type(obj).__name__, "hex": obj.hex()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return {"type": type(obj).__name__, "items": [to_sidecar(v) for v in obj]}
    if isinstance(obj, dict):
        return {"type": "dict", "items": [[to_sidecar(k), to_sidecar(v)] for k, v in obj.items()]}
    if isinstance(obj, np.ndarray):
        fortran = obj.ndim > 1 and obj.flags.f_contiguous and not obj.flags.c_contiguous
        return {
            "type": "ndarray",
            "dtype": _dtype_name(obj.dtype),
            "shape": list(obj.shape),
            "order": "F" if fortran else "C",
            "hex": obj.astype(obj.dtype.newbyteorder("<")).tobytes(order="C").hex(),
        }
    if isinstance(obj, np.generic):
        return {"type": "npscalar", "dtype": _dtype_name(obj.dtype), "hex": obj.tobytes().hex()}
    if type(obj).__module__.startswith("torch"):
        return {
            "type": "torch",
            "class": type(obj).__name__,
            "dtype": str(obj.dtype).removeprefix("torch."),
            "shape": list(obj.shape),
            "requires_grad": obj.requires_grad,
            "hex": _torch_bits(obj).hex(),
        }
    raise TypeError(f"no sidecar form for {type(obj).__name__}")


_CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}


def from_sidecar(node: Any) -> Any:
    """Inverse of ``to_sidecar``."""
    if not isinstance(node, dict):
        return node
    kind = node["type"]
    if kind == "float":
        return float.fromhex(node["hex"])
    if kind == "complex":
        return complex(float.fromhex(node["real"]), float.fromhex(node["imag"]))
    if kind in ("bytes", "bytearray"):
        raw = bytes.fromhex(node["hex"])
        return raw if kind == "bytes" else bytearray(raw)
    if kind in _CONTAINERS:
        return _CONTAINERS[kind]([from_sidecar(v) for v in node["items"]])
    if kind == "dict":
        return {from_sidecar(k): from_sidecar(v) for k, v in node["items"]}
    if kind == "torch":
        return _torch_from_sidecar(node)
    dtype = _dtype(node["dtype"])
    values = np.frombuffer(bytes.fromhex(node["hex"]), dtype=dtype)
    if kind == "npscalar":
        return values[0]
    array = values.reshape(node["shape"])
    return np.asfortranarray(array) if node["order"] == "F" else array


def _torch_from_sidecar(node: dict[str, Any]) -> Any:
    import torch

    dtype = getattr(torch, node["dtype"])
    raw = bytes.fromhex(node["hex"])
    if raw:
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        tensor = flat.view(dtype).reshape(node["shape"])
    else:
        tensor = torch.zeros(node["shape"], dtype=dtype)
    if node["class"] == "Parameter":
        return torch.nn.Parameter(tensor, requires_grad=node["requires_grad"])
    return tensor.requires_grad_(node["requires_grad"])


def expected(name: str) -> Any:
    """The value ``valid/NAME.amber`` must load as, from its sidecar."""
    return from_sidecar(json.loads((VALID_DIR / f"{name}.json").read_text(encoding="utf-8")))


def write_valid_fixtures(directory: Path = VALID_DIR, names: list[str] | None = None) -> None:
    """Write samples (all, or ``names``) and their sidecars with the amber of this
    checkout. Committed fixtures are not rewritten: a fixture records what an earlier
    writer produced."""
    import amber

    directory.mkdir(parents=True, exist_ok=True)
    for name, make in SAMPLES.items():
        if names is not None and name not in names:
            continue
        amber.save(make(), directory / f"{name}.amber", **SAVE_OPTIONS.get(name, {}))
        value = amber.load(directory / f"{name}.amber") if name in LOSSY else make()
        sidecar = json.dumps(to_sidecar(value), indent=1, ensure_ascii=False)
        (directory / f"{name}.json").write_text(sidecar + "\n", encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_valid_fixtures(names=sys.argv[1:] or None)
