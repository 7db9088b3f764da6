"""Quantization of a model's weights when it is saved (docs/compression.md, "Quantization").

Which tensors: by default the weight matrices of torch ``Linear``, ``Conv*`` and
``Embedding`` modules and scikit-learn MLP ``coefs_``; for other objects (a state dict), the
floating-point tensors of two or more dimensions whose name ends in ``weight``. Never
biases, norms, integer tensors or tensors of fewer than two dimensions; ``include`` and
``exclude`` (shell-style patterns over tensor names) adjust the choice. The arithmetic and
the file's ``quantization`` blocks live in ``amber.container.quantized``.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container import quantized
from amber.errors import InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np

# User-facing names of the schemes.
SCHEME_NAMES = {
    "int8": quantized.INT8,
    "int4": quantized.INT4,
    "fp16": quantized.FLOAT16,
    "float16": quantized.FLOAT16,
    "bf16": quantized.BFLOAT16,
    "bfloat16": quantized.BFLOAT16,
}
_FLOATS = ("float16", "bfloat16", "float32", "float64")
SCALE_SUFFIX = ".__scale__"


@dataclass(frozen=True)
class Quantize:
    """How to quantize: ``scheme`` ("int8", "int4", "fp16", "bf16"); ``group_size``
    (int4: elements sharing a scale; the others have one scale per row); ``scale``:
    "absmax" (default: each row's or group's largest magnitude maps to the largest
    integer), "pow2" (the same rounded up to a power of two: ``stored x scale`` is exact)
    or a positive number (one factor for all: ``stored = w / factor``, exactly reversible
    only for powers of two); ``include``/``exclude``: shell-style patterns of tensor names
    added to / removed from the default choice."""

    scheme: str
    group_size: int = 32
    scale: str | float = "absmax"
    include: tuple[str, ...] = field(default_factory=tuple)
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEME_NAMES:
            raise InvalidArgumentError(
                f"quantize must be one of {', '.join(map(repr, SCHEME_NAMES))}, got {self.scheme!r}"
            )
        if type(self.group_size) is not int or not 1 <= self.group_size <= quantized.MAX_GROUP:
            raise InvalidArgumentError(
                f"group_size must be a positive integer, got {self.group_size!r}"
            )
        scale = self.scale
        if isinstance(scale, bool) or not (
            scale in ("absmax", "pow2")
            or (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0)
        ):
            raise InvalidArgumentError(
                f"scale must be 'absmax', 'pow2' or a positive finite number, got {scale!r}"
            )
        for patterns in (self.include, self.exclude):
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise InvalidArgumentError("include and exclude must be lists of name patterns")
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))


def as_spec(quantize: Any) -> Quantize | None:
    """``quantize=`` of save: None, a scheme name, or a ``Quantize``."""
    if quantize is None or isinstance(quantize, Quantize):
        return quantize
    if isinstance(quantize, str):
        return Quantize(quantize)
    raise InvalidArgumentError(
        f"quantize must be None, a scheme name or amber.Quantize(...), not "
        f"{type(quantize).__name__}"
    )


def default_names(obj: Any) -> set[str] | None:
    """Tensor names quantized by default for ``obj``; None: decide by name and shape."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(obj, torch.nn.Module):
        kinds = (
            torch.nn.Linear,
            torch.nn.Conv1d,
            torch.nn.Conv2d,
            torch.nn.Conv3d,
            torch.nn.ConvTranspose1d,
            torch.nn.ConvTranspose2d,
            torch.nn.ConvTranspose3d,
            torch.nn.Embedding,
        )
        return {
            f"{prefix}.weight" if prefix else "weight"
            for prefix, module in obj.named_modules()
            if isinstance(module, kinds)
        }
    module = type(obj).__module__
    if module.startswith("sklearn.neural_network") and hasattr(obj, "coefs_"):
        return {f"coefs_.{i}" for i in range(len(obj.coefs_))}
    return None


def materialized(item: tuple[Any, ...]) -> tuple[str, Any, str]:
    """(name, array, table dtype) of an encoder's tensor item, the array produced."""
    from amber.container import dtypes

    name, array, declared = item if len(item) == 3 else (*item, None)
    if callable(array):
        array = array()
    return name, array, declared or dtypes.from_numpy(array.dtype)


def selected(
    name: str,
    array: np.ndarray,
    dtype: str,
    default: set[str] | None,
    include: Iterable[str],
    exclude: Iterable[str],
) -> bool:
    """Whether a tensor is chosen: a floating-point tensor of two or more dimensions, in
    the default choice (``default_names``) or matching ``include``, and not ``exclude``."""
    if dtype not in _FLOATS or array.ndim < 2 or array.size == 0:
        return False
    if any(fnmatch.fnmatchcase(name, p) for p in exclude):
        return False
    if any(fnmatch.fnmatchcase(name, p) for p in include):
        return True
    return name.endswith("weight") if default is None else name in default


def plan(
    obj: Any, tensors: Iterable[tuple[Any, ...]], spec: Quantize
) -> tuple[list[tuple[Any, ...]], dict[str, quantized.Quantization]]:
    """The tensors to write, quantized where ``spec`` says, with their scale tensors, and
    the ``quantization`` block of each quantized one."""
    default = default_names(obj)
    scheme = SCHEME_NAMES[spec.scheme]
    out: list[tuple[Any, ...]] = []
    blocks: dict[str, quantized.Quantization] = {}
    for item in tensors:
        name, array, dtype = materialized(item)
        if not selected(name, array, dtype, default, spec.include, spec.exclude):
            out.append((name, array, dtype))
            continue
        values = as_float(array, dtype)
        stored, scale, group = quantized.quantize(
            values, scheme, scale=spec.scale, group=spec.group_size
        )
        scale_name = name + SCALE_SUFFIX
        out.append((name, stored, quantized.STORED_DTYPE[scheme]))
        out.append((scale_name, scale))
        blocks[name] = quantized.Quantization(scheme, dtype, tuple(array.shape), scale_name, group)
    return out, blocks


def as_float(array: np.ndarray, dtype: str) -> np.ndarray:
    """float values of ``array`` (torch bfloat16 tensors come as their uint16 bits)."""
    import numpy as np

    if dtype == "bfloat16":
        bits = np.ascontiguousarray(array).view(np.uint16)
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return np.asarray(array)


def quantize(model: Any, quantize: str | Quantize = "int8") -> Any:
    """A copy of ``model`` whose selected weights went through quantization: what
    ``amber.load`` gives for a file saved with ``quantize=`` (same dtypes, same behaviour,
    with the quantization error)."""
    import amber

    with tempfile.TemporaryDirectory(prefix="amber-quantize-") as folder:
        path = Path(folder) / "model.amber"
        amber.save(model, path, quantize=quantize)
        return amber.load(path, mmap=False)


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantized tensor as stored (``amber.load(path, dequantize=False)``):
    ``values`` (int8; int4 packed two per uint8, low nibble first; float16; bfloat16 bits
    as uint16) and ``scale`` (float32, rows x groups); ``dequantized()`` = values x scale."""

    values: Any
    scale: Any
    scheme: str
    dtype: str
    shape: tuple[int, ...]
    group: int

    def dequantized(self) -> Any:
        block = quantized.Quantization(self.scheme, self.dtype, self.shape, "scale", self.group)
        return quantized.dequantize(self.values, self.scale, block, "tensor")


def stored_tensors(path: str | os.PathLike[str], *, verify: Any = "full") -> dict[str, Any]:
    """Every tensor of a file by name, quantized ones as ``QuantizedTensor`` (their scale
    tensors folded into them) and the others as arrays."""
    from amber.container import ContainerReader

    with ContainerReader(path, verify=verify, use_mmap=False) as reader:
        scales = {e.quantization.scale for e in reader.entries.values() if e.quantization}
        out: dict[str, Any] = {}
        for name, entry in reader.entries.items():
            block = entry.quantization
            if name in scales:
                continue
            if block is None:
                out[name] = reader.array(name)
                continue
            out[name] = QuantizedTensor(
                reader.array(name, bits=True, dequantize=False),
                reader.array(block.scale),
                block.scheme,
                block.dtype,
                block.shape,
                block.group,
            )
        return out
