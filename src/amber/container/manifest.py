"""Parse and validate the JSON manifest before anything is allocated from it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from amber.container import codecs, dtypes, quantized
from amber.container.format import (
    DIGEST_HEX_LEN,
    DIGEST_PREFIX,
    MAX_INT64,
    MAX_JSON_DEPTH,
    MAX_NAME_BYTES,
    MAX_RANK,
    MAX_TENSORS,
    align_up,
)
from amber.errors import FormatError, UnsupportedVersionError

_ENTRY_KEYS = {"name", "dtype", "shape", "order", "offset", "nbytes", "digest"}
# Optional since format 1.1 (docs/format.md §10.1): how the stored bytes decode.
COMPRESSION_KEY = "compression"
QUANTIZATION_KEY = "quantization"
COMPRESSION_MINOR = 1
# Keys reserved by the spec for later minor versions (sharding). A reader of this version
# refuses a file that uses them instead of misreading its bytes.
_RESERVED_ENTRY_KEYS = {"shard"}
_RESERVED_TOP_KEYS = {"shards"}
RESERVED_TOP_KEYS = frozenset({"tensors", "data_digest", *_RESERVED_TOP_KEYS})
MAX_INT_DIGITS = 20


@dataclass(frozen=True)
class TensorEntry:
    """One tensor payload as declared by the manifest, already validated."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    order: str  # "C" or "F": the element order of the payload bytes
    offset: int
    nbytes: int  # decoded size: prod(shape) * itemsize
    digest: str  # "blake3:<64 hex>" of the decoded bytes
    # Format 1.1: the payload is stored compressed; None: stored as it is (zero-copy).
    compression: codecs.Compression | None = None
    # Format 1.1: the payload holds quantized values; loading gives stored x scale.
    quantization: quantized.Quantization | None = None

    @classmethod
    def checked(cls, *fields: Any) -> TensorEntry:
        """An entry from fields already validated, in declaration order: the same object
        the constructor makes, without its per-field frozen-attribute calls (a file may
        declare a million entries)."""
        entry = object.__new__(cls)
        entry.__dict__.update(zip(_FIELD_NAMES, fields, strict=True))
        return entry

    @property
    def stored_nbytes(self) -> int:
        """Bytes the payload takes in the file (the layout rules apply to these)."""
        return self.nbytes if self.compression is None else self.compression.nbytes

    @property
    def stored_digest(self) -> str:
        """Digest of the bytes in the file (full and lazy verification check these)."""
        return self.digest if self.compression is None else self.compression.digest

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "order": self.order,
            "offset": self.offset,
            "nbytes": self.nbytes,
            "digest": self.digest,
        }
        if self.compression is not None:
            out[COMPRESSION_KEY] = self.compression.to_json()
        if self.quantization is not None:
            out[QUANTIZATION_KEY] = self.quantization.to_json()
        return out


_FIELD_NAMES = tuple(TensorEntry.__dataclass_fields__)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise FormatError(f"manifest JSON has the key {dup!r} twice in one object")
    return obj


def _reject_constant(name: str) -> None:
    raise FormatError(f"manifest JSON contains {name}, which is not valid JSON")


# 21 digits in a row, or an exponent of 3 digits: the only ways a JSON number can exceed
# 20-digit integers or overflow float64 (a 309-digit mantissa contains 21 digits in a row).
_LONG_NUMBER = re.compile(r"\d{21}|[eE][+-]?\d{3}")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would silently become infinity
        raise FormatError(f"manifest JSON number {text[:40]} is out of the float64 range")
    return value


def _parse_int(text: str) -> int:
    # No field holds more than 64 bits; larger integers are graph nodes holding strings.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise FormatError(f"manifest JSON integer {text[:40]}... has more than 20 digits")
    return int(text)


def json_depth(value: Any, *, skip: frozenset[str] = frozenset()) -> int:
    """Nesting depth of parsed JSON, computed without recursion; top-level keys in ``skip``
    are left out (their owners check them: see ``parse``)."""
    deepest = 0
    top = {k: v for k, v in value.items() if k not in skip} if isinstance(value, dict) else value
    stack = [(top, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        children = item.values() if type(item) is dict else item
        stack.extend((v, depth + 1) for v in children if type(v) is dict or type(v) is list)
    return deepest


def _check_strings(value: Any) -> None:
    """Refuse strings holding lone surrogates (only "\\uD800"-style escapes produce them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is str and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise FormatError(
                    "manifest JSON holds a string with an unpaired surrogate escape, "
                    "which is not valid Unicode"
                ) from None


# Top-level keys whose depth is bounded by their own validation: tensor entries hold only
# scalars and a list of integers; the object graph's reader tracks depth while scanning.
_DEPTH_CHECKED_ELSEWHERE = frozenset({"tensors", "root"})


def parse(raw: bytes) -> dict[str, Any]:
    """Decode strict UTF-8 JSON into a dict: no duplicate keys, no NaN, no lone surrogates,
    no numbers outside float64/int64, bounded depth."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"manifest is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    # The number hooks cost a Python call per number; run them only when the text has a
    # digit run long enough to hold an integer over 20 digits or a float past float64.
    strict_numbers = _LONG_NUMBER.search(text) is not None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_parse_float if strict_numbers else None,
            parse_int=_parse_int if strict_numbers else None,
        )
    except RecursionError:
        raise FormatError(
            f"manifest JSON is nested deeper than the limit of {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:  # JSONDecodeError
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"manifest must be a JSON object, not {type(value).__name__}")
    if "\\u" in text:  # without escapes, strict UTF-8 decoding already excluded surrogates
        _check_strings(value)
    if json_depth(value, skip=_DEPTH_CHECKED_ELSEWHERE) > MAX_JSON_DEPTH:
        raise FormatError(
            f"manifest JSON is nested deeper than the limit of {MAX_JSON_DEPTH} levels"
        )
    return value


def _int_field(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry[key]
    # bool is an int subclass in Python, but true/false are not integers in JSON.
    if type(value) is not int or not 0 <= value <= MAX_INT64:
        raise FormatError(f"{where}: {key!r} must be an integer in [0, 2^63-1], got {value!r}")
    return value


def validate_entry(raw: Any, index: int) -> TensorEntry:
    """One tensor entry of the manifest, checked; FormatError naming it otherwise.

    The hot path of opening a file with thousands of tensors: messages are built only when
    a check fails, and an entry with exactly the base keys skips the key analysis."""
    if not isinstance(raw, dict):
        raise FormatError(f"tensor #{index}: entry must be a JSON object")
    keys = raw.keys()
    if keys != _ENTRY_KEYS:
        _check_entry_keys(keys, index)
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise FormatError(f"tensor #{index}: 'name' must be a non-empty string")
    # At most 4 UTF-8 bytes a character (surrogatepass too): short names need no encoding.
    if len(name) * 4 > MAX_NAME_BYTES and len(name.encode("utf-8", "surrogatepass")) > (
        MAX_NAME_BYTES
    ):
        raise FormatError(f"tensor {name!r}: name is longer than {MAX_NAME_BYTES} bytes")
    dtype = raw["dtype"]
    size = dtypes.itemsize(dtype)
    shape = raw["shape"]
    if type(shape) is not list:
        raise FormatError(f"tensor {name!r}: 'shape' must be a list of integers")
    if len(shape) > MAX_RANK:
        raise FormatError(f"tensor {name!r}: rank {len(shape)} exceeds the limit of {MAX_RANK}")
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= MAX_INT64:
            raise FormatError(
                f"tensor {name!r}: shape {shape} has a dimension that is not in [0, 2^63-1]"
            )
    # Python integers do not overflow; compare against the int64 range explicitly. Zero
    # dimensions are left out: numpy refuses such a shape even when the array is empty.
    count = math.prod(shape)
    if (count if count else math.prod(dim for dim in shape if dim)) * size > MAX_INT64:
        raise FormatError(f"tensor {name!r}: shape {shape} x {size} bytes overflows a 64-bit size")
    nbytes = raw["nbytes"]
    if type(nbytes) is not int or not 0 <= nbytes <= MAX_INT64:
        _int_field(raw, "nbytes", f"tensor {name!r}")
    if nbytes != count * size:
        raise FormatError(
            f"tensor {name!r}: nbytes {nbytes} does not match shape {shape} of {dtype} "
            f"({count * size} bytes)"
        )
    order = raw["order"]
    if order != "C" and order != "F":
        raise FormatError(f'tensor {name!r}: \'order\' must be "C" or "F", got {order!r}')
    offset = raw["offset"]
    if type(offset) is not int or not 0 <= offset <= MAX_INT64:
        _int_field(raw, "offset", f"tensor {name!r}")
    digest = raw["digest"]
    if not is_digest(digest):
        raise FormatError(
            f"tensor {name!r}: 'digest' must be 'blake3:' followed by 64 lowercase hex digits"
        )
    compression = quantization = None
    if COMPRESSION_KEY in raw:
        where = f"tensor {name!r}"
        compression = codecs.parse(
            raw[COMPRESSION_KEY], dtype=dtype, itemsize=size, decoded=nbytes, where=where
        )
    if QUANTIZATION_KEY in raw:
        if order != "C":
            raise FormatError(f"tensor {name!r}: a quantized tensor is stored in C order")
        quantization = quantized.parse(
            raw[QUANTIZATION_KEY], dtype=dtype, shape=tuple(shape), where=f"tensor {name!r}"
        )
    return TensorEntry.checked(
        name, dtype, tuple(shape), order, offset, nbytes, digest, compression, quantization
    )


def _check_entry_keys(keys: Any, index: int) -> None:
    """Entries whose keys are not exactly the base ones: reserved, missing or unknown keys
    are errors; the optional format 1.1 keys pass."""
    where = f"tensor #{index}"
    reserved = _RESERVED_ENTRY_KEYS & keys
    if reserved:
        raise UnsupportedVersionError(
            f"{where} uses {sorted(reserved)}, which this amber does not implement; "
            "upgrade amber to read this file"
        )
    missing = _ENTRY_KEYS - keys
    extra = keys - _ENTRY_KEYS - {COMPRESSION_KEY, QUANTIZATION_KEY}
    if missing or extra:
        raise FormatError(
            f"{where}: entry has missing keys {sorted(missing)} / unknown keys {sorted(extra)}"
        )


def check_scales(entries: dict[str, TensorEntry]) -> None:
    """Each quantized entry names an existing float32 scale tensor of the right shape,
    which is not itself quantized."""
    for entry in entries.values():
        block = entry.quantization
        if block is None:
            continue
        where = f"tensor {entry.name!r}"
        scale = entries.get(block.scale)
        if scale is None:
            raise FormatError(f"{where}: its scale tensor {block.scale!r} is not in the file")
        if scale.quantization is not None:
            raise FormatError(f"{where}: its scale tensor {block.scale!r} is itself quantized")
        quantized.check_scale_entry(block, scale.dtype, scale.shape, where)


_DIGEST = re.compile(rf"{re.escape(DIGEST_PREFIX)}[0-9a-f]{{{DIGEST_HEX_LEN}}}")


def is_digest(value: object) -> bool:
    """A tagged digest string: 'blake3:' and 64 lowercase hex digits."""
    return type(value) is str and _DIGEST.fullmatch(value) is not None


def validate(
    manifest: dict[str, Any],
    *,
    data_start: int,
    data_end: int,
    alignment: int,
    minor: int = COMPRESSION_MINOR,
) -> dict[str, TensorEntry]:
    """Check every tensor entry and the layout; return the entries by name, in file order.

    The layout is canonical: sorted by offset, each payload starts at the first aligned
    offset after the previous one ends, and the manifest starts at the first aligned offset
    after the last payload. So payloads are inside the data region, aligned and
    non-overlapping, and there is no room for bytes that no entry describes.
    """
    reserved = _RESERVED_TOP_KEYS & manifest.keys()
    if reserved:
        raise UnsupportedVersionError(
            f"file uses {sorted(reserved)}, which this amber does not implement; "
            "upgrade amber to read this file"
        )
    raw_entries = manifest.get("tensors")
    if not isinstance(raw_entries, list):
        raise FormatError("manifest has no 'tensors' list")
    if not is_digest(manifest.get("data_digest")):
        raise FormatError(
            "manifest 'data_digest' must be 'blake3:' followed by 64 lowercase hex digits"
        )
    if len(raw_entries) > MAX_TENSORS:
        raise FormatError(
            f"manifest declares {len(raw_entries)} tensors; the limit is {MAX_TENSORS}"
        )
    entries: dict[str, TensorEntry] = {}
    for index, raw in enumerate(raw_entries):
        entry = validate_entry(raw, index)
        if entry.name in entries:
            raise FormatError(f"tensor name {entry.name!r} appears twice in the manifest")
        if (entry.compression or entry.quantization) and minor < COMPRESSION_MINOR:
            raise FormatError(
                f"tensor {entry.name!r} is compressed or quantized, which format 1.{minor} "
                f"does not allow (it needs 1.{COMPRESSION_MINOR}); the file is mislabelled"
            )
        entries[entry.name] = entry

    expected = align_up(data_start, alignment)
    for entry in sorted(entries.values(), key=lambda e: (e.offset, e.stored_nbytes)):
        if entry.offset % alignment:
            raise FormatError(
                f"tensor {entry.name!r}: offset {entry.offset} is not a multiple of the "
                f"alignment {alignment}"
            )
        if entry.offset < expected:
            raise FormatError(
                f"tensor {entry.name!r}: offset {entry.offset} overlaps the header or the "
                "previous tensor"
            )
        end = entry.offset + entry.stored_nbytes
        if end > data_end:
            raise FormatError(
                f"tensor {entry.name!r}: bytes {entry.offset}..{end} run past the data region "
                f"(which ends at {data_end})"
            )
        if entry.offset > expected:
            raise FormatError(
                f"tensor {entry.name!r}: offset {entry.offset} leaves a gap of undeclared bytes "
                f"after offset {expected}"
            )
        expected = align_up(end, alignment)
    if expected != data_end:
        raise FormatError(
            f"the data region ends at {data_end} but the tensors end at {expected}: "
            "the file has undeclared bytes"
        )
    check_scales(entries)
    return entries
