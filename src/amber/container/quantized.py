"""Quantized tensors (format 1.1, docs/format.md §10.2): the ``quantization`` block of a
tensor entry, its validation, and the arithmetic of both directions.

A quantized tensor is stored in a smaller type (int8, packed int4, float16, bfloat16) next
to a float32 *scale* tensor of shape ``(rows, groups)``: ``loaded = stored x scale``, in the
original floating-point type. Rows are the first axis; groups cut each row (flattened) into
runs of ``group`` elements (int4), or hold the whole row (the other schemes). The container
knows tensors and scales only; which tensors of a model to quantize is decided above it
(``amber.quantization``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amber.errors import FormatError, InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np

INT8 = "int8"
INT4 = "int4"
FLOAT16 = "float16"
BFLOAT16 = "bfloat16"
SCHEMES = (INT8, INT4, FLOAT16, BFLOAT16)
# The stored dtype of each scheme (int4: two values per byte, low nibble first).
STORED_DTYPE = {INT8: "int8", INT4: "uint8", FLOAT16: "float16", BFLOAT16: "bfloat16"}
ORIGINAL_DTYPES = ("float16", "bfloat16", "float32", "float64")
SCALE_DTYPE = "float32"
QMAX = {INT8: 127, INT4: 7}
MAX_GROUP = 1 << 30

_KEYS = {"scheme", "dtype", "shape", "scale", "group"}


@dataclass(frozen=True)
class Quantization:
    """A validated ``quantization`` block."""

    scheme: str
    dtype: str  # the original (loaded) dtype
    shape: tuple[int, ...]  # the original (loaded) shape
    scale: str  # name of the float32 scale tensor
    group: int  # elements of a row sharing one scale

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def groups(self) -> int:
        return -(-self.cols // self.group) if self.cols else 0

    def stored_shape(self) -> tuple[int, ...]:
        if self.scheme == INT4:
            return (self.rows, (self.cols + 1) // 2)
        return self.shape

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "scale": self.scale,
            "group": self.group,
        }


def parse(raw: object, *, dtype: str, shape: tuple[int, ...], where: str) -> Quantization:
    """Validate a ``quantization`` block against its entry's stored ``dtype`` and
    ``shape``; FormatError naming what is wrong."""
    if not isinstance(raw, dict):
        raise FormatError(f"{where}: 'quantization' must be a JSON object")
    missing, extra = _KEYS - raw.keys(), raw.keys() - _KEYS
    if missing or extra:
        raise FormatError(
            f"{where}: 'quantization' has missing keys {sorted(missing)} / unknown keys "
            f"{sorted(extra)}"
        )
    scheme = raw["scheme"]
    if scheme not in SCHEMES:
        raise FormatError(
            f"{where}: unknown quantization scheme {scheme!r}; known: {', '.join(SCHEMES)}"
        )
    original = raw["dtype"]
    if original not in ORIGINAL_DTYPES:
        raise FormatError(
            f"{where}: quantized tensors load as {', '.join(ORIGINAL_DTYPES)}, not {original!r}"
        )
    if dtype != STORED_DTYPE[scheme]:
        raise FormatError(
            f"{where}: scheme {scheme!r} stores {STORED_DTYPE[scheme]}, but the entry is {dtype}"
        )
    logical = raw["shape"]
    if (
        not isinstance(logical, list)
        or not 2 <= len(logical) <= 32
        or any(type(d) is not int or not 1 <= d < 1 << 62 for d in logical)
    ):
        raise FormatError(f"{where}: quantization 'shape' must list 2 to 32 positive dimensions")
    scale = raw["scale"]
    if not isinstance(scale, str) or not scale:
        raise FormatError(f"{where}: quantization 'scale' must name a tensor")
    group = raw["group"]
    cols = math.prod(logical[1:])
    if type(group) is not int or not 1 <= group <= min(cols, MAX_GROUP):
        raise FormatError(f"{where}: quantization 'group' must be an integer in [1, {cols}]")
    if scheme != INT4 and group != cols:
        raise FormatError(f"{where}: scheme {scheme!r} has one scale per row: 'group' is {cols}")
    block = Quantization(scheme, original, tuple(logical), scale, group)
    if tuple(shape) != block.stored_shape():
        raise FormatError(
            f"{where}: a {scheme} tensor of shape {list(logical)} is stored with shape "
            f"{list(block.stored_shape())}, not {list(shape)}"
        )
    return block


def check_scale_entry(block: Quantization, dtype: str, shape: tuple[int, ...], where: str) -> None:
    """The scale tensor an entry names must be float32 of shape (rows, groups)."""
    if dtype != SCALE_DTYPE or tuple(shape) != (block.rows, block.groups):
        raise FormatError(
            f"{where}: its scale tensor {block.scale!r} must be float32 of shape "
            f"{[block.rows, block.groups]}, not {dtype} {list(shape)}"
        )


def check_scale_values(scale: Any, block: Quantization, where: str) -> Any:
    """The scale array, once every value is checked finite and positive (FormatError)."""
    import numpy as np

    scale = np.asarray(scale, dtype=np.float32)
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        raise FormatError(
            f"{where}: its scale tensor {block.scale!r} holds values that are not finite and "
            "positive"
        )
    return scale


def check_padding(stored: Any, block: Quantization, where: str) -> None:
    """int4 rows of an odd number of values leave the last high nibble 0 (FormatError)."""
    if block.scheme != INT4 or block.cols % 2 == 0:
        return
    if (stored.reshape(block.rows, -1)[:, -1] >> 4).any():
        raise FormatError(
            f"{where}: an int4 row of {block.cols} values leaves the high nibble of its "
            "last byte set; it must be 0 (format.md §10.2)"
        )


# -- arithmetic --------------------------------------------------------------------------------


def _to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even. A NaN becomes
    the quiet NaN of its sign (0x7FC0 / 0xFFC0, as ml_dtypes): rounding its bits would
    carry into the exponent and the sign, turning a NaN into a zero."""
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(bits.view(np.float32))
    if nan.any():
        sign = (bits[nan] >> np.uint32(16)).astype(np.uint16) & np.uint16(0x8000)
        out[nan] = sign | np.uint16(0x7FC0)
    return out


def _from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    import numpy as np

    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def dequantize(stored: np.ndarray, scale: np.ndarray, block: Quantization, where: str) -> Any:
    """``stored x scale`` in the original dtype and shape. ``stored`` is the payload as the
    reader gives it (bfloat16 as uint16 bits); so is a bfloat16 result. FormatError when a
    scale is not finite and positive."""
    import numpy as np

    scale = check_scale_values(scale, block, where)
    work = np.float64 if block.dtype == "float64" else np.float32
    if block.scheme == INT4:
        packed = stored.reshape(block.rows, -1)
        check_padding(packed, block, where)
        low = (packed & 0x0F).astype(np.int8)
        high = (packed >> 4).astype(np.int8)
        values = np.empty((block.rows, packed.shape[1] * 2), np.int8)
        values[:, 0::2] = np.where(low > 7, low - 16, low)
        values[:, 1::2] = np.where(high > 7, high - 16, high)
        values = values[:, : block.cols].astype(work)
    elif block.scheme == BFLOAT16:
        values = _from_bfloat16_bits(stored.reshape(block.rows, -1).view(np.uint16)).astype(work)
    else:
        values = stored.reshape(block.rows, -1).astype(work)
    per_element = np.repeat(scale.astype(work), block.group, axis=1)[:, : block.cols]
    # A product beyond the loaded dtype's range is inf (format.md §10.2), not a warning:
    # with warnings as errors it would otherwise escape as an untyped RuntimeWarning.
    with np.errstate(over="ignore"):
        out = values * per_element
        if block.dtype == "bfloat16":
            return _to_bfloat16_bits(out).reshape(block.shape)
        return out.astype(block.dtype).reshape(block.shape)


def quantize(
    values: np.ndarray, scheme: str, *, scale: str | float = "absmax", group: int = 128
) -> tuple[np.ndarray, np.ndarray, int]:
    """(stored, scale, group) for float ``values`` (2-D or more, rows on the first axis).

    ``scale``: "absmax" (each row or group: its largest magnitude maps to the largest
    integer), "pow2" (the same, rounded up to a power of two, so ``stored x scale`` is exact
    and quantizing the loaded values again gives the same integers) or a positive number (one
    factor for every element: ``stored = values / factor``; exact both ways for powers of two
    when nothing overflows). For float16/bfloat16 "absmax" and "pow2" mean a factor of 1.
    """
    import numpy as np

    if scheme not in SCHEMES:
        raise InvalidArgumentError(f"quantization scheme must be one of {SCHEMES}, got {scheme!r}")
    rows = values.shape[0]
    # Element-wise work in float32 (float64 only for float64 weights): every factor is a
    # float32, so w / factor in float32 is correctly rounded and the integer it rounds to is
    # at most one float32 ulp of |w / factor| <= 128 (2^-16 of a step) off the exact one;
    # the per-row or per-group factors themselves are computed in float64 (few values).
    work = np.float64 if values.dtype == np.float64 else np.float32
    flat = np.asarray(values, dtype=work).reshape(rows, -1)
    cols = flat.shape[1]
    group = min(group, cols) if scheme == INT4 else cols
    groups = -(-cols // group)
    if isinstance(scale, str) and scheme in QMAX:
        magnitude = np.abs(flat)
        if groups * group != cols:
            padded = np.zeros((rows, groups * group), work)
            padded[:, :cols] = magnitude
            magnitude = padded
        peak = magnitude.reshape(rows, groups, group).max(axis=2).astype(np.float64)
        factors = np.where(peak > 0, peak / QMAX[scheme], 1.0)
        if scale == "pow2":
            factors = np.exp2(np.ceil(np.log2(factors)))
        factors = factors.astype(np.float32)
    elif isinstance(scale, str):
        factors = np.ones((rows, groups), np.float32)
    else:
        factors = np.full((rows, groups), scale, np.float32)
    if groups == 1:
        scaled = flat / factors.astype(work)  # broadcast: no per-element copy
    else:
        per_element = np.repeat(factors.astype(work), group, axis=1)[:, :cols]
        scaled = flat / per_element
    if scheme in QMAX:
        np.rint(scaled, out=scaled)  # in place: scaled is a fresh array
        q = np.clip(scaled, -QMAX[scheme] - 1, QMAX[scheme], out=scaled).astype(np.int8)
        if scheme == INT8:
            return q.reshape(values.shape), factors, group
        if cols % 2:
            q = np.concatenate([q, np.zeros((rows, 1), np.int8)], axis=1)
        nibbles = q.view(np.uint8)
        nibbles &= 0x0F
        packed = nibbles[:, 1::2] << 4
        packed |= nibbles[:, 0::2]
        return packed, factors, group
    if scheme == FLOAT16:
        return scaled.astype(np.float16).reshape(values.shape), factors, group
    bits = _to_bfloat16_bits(scaled.astype(np.float32))
    return bits.reshape(values.shape), factors, group
