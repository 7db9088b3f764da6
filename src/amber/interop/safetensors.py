"""Read and write safetensors files without the ``safetensors`` package.

A safetensors file is: an 8-byte little-endian header length ``N``, ``N`` bytes of UTF-8
JSON (``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
padded with spaces), then the byte buffer that the offsets index. The reader treats the file
as untrusted: it validates the whole header before it maps anything, and every defect is an
``amber.errors`` exception naming the file and what is wrong.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container import dtypes
from amber.container.atomic import atomic_file
from amber.container.reader import open_regular, pread_exact
from amber.container.writer import write_all
from amber.errors import CorruptFileError, FormatError, ReadError, SerializationError

if TYPE_CHECKING:
    import numpy as np

PathLike = str | os.PathLike[str]

# safetensors dtype name -> amber dtype name (docs/format.md §4).
ST_TO_AMBER: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}
AMBER_TO_ST: dict[str, str] = {v: k for k, v in ST_TO_AMBER.items()}
# Types safetensors defines that amber's table has no entry for (sub-byte floats).
_UNSUPPORTED_ST = {"F4": "4-bit", "F6_E2M3": "6-bit", "F6_E3M2": "6-bit"}

HEADER_LENGTH_BYTES = 8
# The reference implementation refuses headers above 100 MB; so do we, before reading one.
MAX_HEADER_BYTES = 100_000_000
MAX_RANK = 32  # amber's limit, checked here so that the conversion cannot fail half-way
MAX_INT64 = (1 << 63) - 1
METADATA_KEY = "__metadata__"
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
# Peak extra memory of a write: one chunk, for arrays that must be copied to be written.
CHUNK_BYTES = 16 * 1024 * 1024


# -- reading ---------------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"duplicate key {key!r} in the JSON header")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise FormatError(f"the JSON header contains {name}, which is not JSON")


def _parse_header(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(b"{"):
        raise FormatError("the JSON header must start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"the header is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise FormatError("the JSON header is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"the header is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"the JSON header must be an object, not {type(value).__name__}")
    if "\\u" in text:  # only an escape can produce a lone surrogate; strict UTF-8 cannot
        try:
            _check_text(value)
        except RecursionError:
            raise FormatError("the JSON header is nested too deeply") from None
    return value


def _check_text(value: Any) -> None:
    """No key or string holds a lone UTF-16 surrogate (it could not be written back)."""
    items = [*value, *value.values()] if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise FormatError(
                    f"the JSON header holds a lone surrogate escape in {item!r}"
                ) from None
        elif isinstance(item, (dict, list)):
            _check_text(item)


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass, but true/false are not integers


class _Entry:
    __slots__ = ("begin", "dtype", "end", "name", "shape")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def _entry(name: str, raw: Any) -> _Entry:
    where = f"tensor {name!r}"
    if not isinstance(raw, dict):
        raise FormatError(f"{where}: entry must be an object, not {type(raw).__name__}")
    if set(raw) != _ENTRY_KEYS:
        missing = sorted(_ENTRY_KEYS - set(raw))
        unknown = sorted(set(raw) - _ENTRY_KEYS)
        raise FormatError(
            f"{where}: entry must have exactly the keys dtype, shape, data_offsets"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(map(repr, unknown))}" if unknown else "")
        )
    st_dtype = raw["dtype"]
    if not isinstance(st_dtype, str) or st_dtype not in ST_TO_AMBER:
        if isinstance(st_dtype, str) and st_dtype in _UNSUPPORTED_ST:
            raise FormatError(
                f"{where}: dtype {st_dtype} ({_UNSUPPORTED_ST[st_dtype]} floats) is not "
                "supported by amber"
            )
        raise FormatError(
            f"{where}: unknown dtype {st_dtype!r}; supported: {', '.join(ST_TO_AMBER)}"
        )
    dtype = ST_TO_AMBER[st_dtype]
    shape = raw["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= MAX_INT64 for d in shape):
        raise FormatError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_RANK:
        raise FormatError(f"{where}: rank {len(shape)} exceeds amber's limit of {MAX_RANK}")
    itemsize = dtypes.ITEMSIZE[dtype]
    bound = itemsize
    count = 1
    for d in shape:
        count *= d
        bound *= max(d, 1)
    if bound > MAX_INT64:
        raise FormatError(f"{where}: shape {shape} is too large")
    offsets = raw["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and 0 <= o <= MAX_INT64 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise FormatError(
            f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets!r}"
        )
    begin, end = offsets
    if end - begin != count * itemsize:
        raise FormatError(
            f"{where}: data_offsets {offsets} span {end - begin} bytes, but shape {shape} of "
            f"{st_dtype} needs {count * itemsize}"
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise FormatError(f"{METADATA_KEY} must be an object, not {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise FormatError(
                f"{METADATA_KEY}[{key!r}] must be a string, not {type(value).__name__}"
            )
    return dict(raw)


def _check_layout(entries: list[_Entry], buffer_size: int) -> None:
    """The spec's rule: sorted by offsets, the tensors tile the buffer exactly."""
    expected = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin < expected:
            raise FormatError(
                f"tensor {e.name!r} at bytes [{e.begin}, {e.end}) overlaps the tensor before it, "
                f"which ends at {expected}"
            )
        if e.begin > expected:
            raise FormatError(
                f"bytes [{expected}, {e.begin}) of the data buffer belong to no tensor; the "
                "tensors must cover the buffer without gaps"
            )
        expected = e.end
    if expected > buffer_size:
        raise CorruptFileError(
            f"the tensors need {expected} bytes of data but the file holds {buffer_size}; "
            "it was truncated or its header is wrong"
        )
    if expected < buffer_size:
        raise FormatError(
            f"the data buffer has {buffer_size - expected} bytes after the last tensor that "
            "belong to no tensor"
        )


def read_header(fd: int, size: int, path: Path) -> tuple[list[_Entry], dict[str, str], int]:
    """Validate the header of an open file: (entries in file order, metadata, data start)."""
    if size < HEADER_LENGTH_BYTES:
        raise FormatError(
            f"{path}: not a safetensors file ({size} bytes, shorter than the 8-byte header length)"
        )
    length = int.from_bytes(pread_exact(fd, HEADER_LENGTH_BYTES, 0, path), "little")
    if length > MAX_HEADER_BYTES:
        raise FormatError(
            f"{path}: header length {length} exceeds the limit of {MAX_HEADER_BYTES} bytes; "
            "this is not a safetensors file or it is damaged"
        )
    if length > size - HEADER_LENGTH_BYTES:
        raise CorruptFileError(
            f"{path}: header length {length} runs past the end of the file "
            f"({size} bytes); the file is truncated or not a safetensors file"
        )
    if length < 2:
        raise FormatError(f"{path}: header length {length} is too small to hold a JSON object")
    try:
        header = _parse_header(pread_exact(fd, length, HEADER_LENGTH_BYTES, path))
        metadata: dict[str, str] = {}
        entries = []
        for name, raw in header.items():
            if name == METADATA_KEY:
                metadata = _metadata(raw)
            else:
                entries.append(_entry(name, raw))
        data_start = HEADER_LENGTH_BYTES + length
        _check_layout(entries, size - data_start)
    except (FormatError, CorruptFileError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    # Offset order: a later pass over the tensors then reads the file front to back.
    entries.sort(key=lambda e: (e.begin, e.end))
    return entries, metadata, data_start


def _check_bool(array: np.ndarray, name: str, path: Path) -> None:
    """bool payloads must be 0 or 1 (amber writers may store no other byte); chunked so
    that the check allocates one chunk, not a copy of the tensor."""
    flat = array.reshape(-1).view("uint8")
    for start in range(0, flat.size, CHUNK_BYTES):
        if (flat[start : start + CHUNK_BYTES] > 1).any():
            raise FormatError(f"{path}: BOOL tensor {name!r} holds bytes other than 0 and 1")


def read_safetensors(
    path: PathLike, *, writable: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file as (name -> numpy array, ``__metadata__``).

    The arrays are zero-copy views of a memory mapping: read-only, or private copy-on-write
    with ``writable`` (writes never reach the file). The header is validated completely
    before anything is mapped: FormatError for a malformed file, CorruptFileError for a
    truncated one, ReadError when it cannot be opened. bfloat16 and float8 need ml_dtypes.
    """
    import numpy as np

    path = Path(path)
    fd, size = open_regular(path, "a safetensors file")
    try:
        entries, metadata, data_start = read_header(fd, size, path)
        np_dtypes = {e.dtype: dtypes.to_numpy(e.dtype) for e in entries}
        access = mmap.ACCESS_COPY if writable else mmap.ACCESS_READ
        try:
            mapping = mmap.mmap(fd, 0, access=access)
        except (OSError, ValueError) as exc:
            raise ReadError(f"{path}: cannot memory-map the file ({exc})") from None
    finally:
        os.close(fd)
    if len(mapping) != size:  # changed between the checks and the mapping
        raise CorruptFileError(f"{path}: the file changed while it was being read")
    tensors: dict[str, np.ndarray] = {}
    for e in entries:
        dtype = np_dtypes[e.dtype]
        if e.end == e.begin:
            # A view of zero bytes at the end of a mapping is not allowed; nothing to share.
            try:
                array = np.zeros(e.shape, dtype)
            except ValueError:  # numpy's own size limit; the header checks mirror it
                raise FormatError(
                    f"{path}: tensor {e.name!r}: shape {e.shape} is too large"
                ) from None
            array.flags.writeable = writable
        else:
            array = np.ndarray(e.shape, dtype, buffer=mapping, offset=data_start + e.begin)
            if e.dtype == "bool":
                _check_bool(array, e.name, path)
        tensors[e.name] = array
    return tensors, metadata


# -- writing ---------------------------------------------------------------------------------


def _torch_module() -> Any:
    # A torch tensor can only exist once torch is imported, so never import it here.
    return sys.modules.get("torch")


def _tensor_dtype(name: str, value: Any) -> str:
    """The amber dtype name of an ndarray or torch tensor; SerializationError otherwise."""
    import numpy as np

    if isinstance(value, np.ndarray):
        dtype = dtypes.from_numpy(value.dtype)
        shown = str(value.dtype)
    else:
        torch = _torch_module()
        if torch is None or not isinstance(value, torch.Tensor):
            raise SerializationError(
                f"tensor {name!r}: expected a numpy array or a torch tensor, got "
                f"{type(value).__module__}.{type(value).__qualname__}"
            )
        if value.layout != torch.strided:
            raise SerializationError(
                f"tensor {name!r}: {value.layout} tensors cannot be written; convert it with "
                ".to_dense()"
            )
        if value.device.type == "meta":
            raise SerializationError(f"tensor {name!r}: a meta tensor has no data to write")
        shown = str(value.dtype)
        dtype = shown.removeprefix("torch.")
    if dtype not in AMBER_TO_ST:
        raise SerializationError(
            f"tensor {name!r}: dtype {shown} has no safetensors equivalent; supported: "
            + ", ".join(AMBER_TO_ST)
        )
    return dtype


def _chunks(value: Any, limit: int) -> Iterator[memoryview]:
    """Row-major little-endian bytes of a numpy array or torch tensor, in pieces of at most
    ``limit`` (the container writer's chunking: a non-contiguous array is copied a slab of
    rows at a time). A tensor on another device is first copied to the host, one tensor at
    a time, as ``amber.save`` does."""
    import numpy as np

    from amber.container.writer import iter_chunks

    if not isinstance(value, np.ndarray):
        from amber.graph.torch_nodes import numpy_bits

        value = numpy_bits(value.detach().cpu())
    yield from iter_chunks(value, "C", limit)


def write_safetensors(
    path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (numpy arrays or torch tensors) and ``metadata`` (str -> str) to a
    safetensors file at ``path``.

    Atomic: nothing appears at ``path`` until the file is complete, and an existing file
    there is untouched on failure. Tensors are streamed in order, in bounded pieces, so the
    file is never built in memory. Tensors that share memory are each written in full.
    Raises SerializationError (nothing written) for a value that cannot be stored, and
    WriteError when the file cannot be written.
    """
    if not isinstance(tensors, Mapping):
        raise SerializationError(
            f"tensors must be a mapping of names to tensors, not {type(tensors).__name__}"
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise SerializationError(
            f"safetensors metadata must map strings to strings, got {type(metadata).__name__}"
        )
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SerializationError(
                f"safetensors metadata maps strings to strings; {key!r}: {value!r} is not"
            )
    header: dict[str, Any] = {METADATA_KEY: meta} if meta else {}
    offset = 0
    plan: list[Any] = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise SerializationError(f"tensor names must be strings, got {name!r}")
        if name == METADATA_KEY:
            raise SerializationError(f"{METADATA_KEY!r} is reserved and cannot name a tensor")
        dtype = _tensor_dtype(name, value)
        shape = [int(d) for d in value.shape]
        nbytes = dtypes.ITEMSIZE[dtype]
        for d in shape:
            nbytes *= d
        header[name] = {
            "dtype": AMBER_TO_ST[dtype],
            "shape": shape,
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
        plan.append((value, nbytes))
    try:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(
            f"a tensor name or metadata string is not valid text: {exc}"
        ) from None
    raw += b" " * (-len(raw) % 8)  # the spec pads the header so that the buffer is aligned
    if len(raw) > MAX_HEADER_BYTES:
        raise SerializationError(
            f"the safetensors header would be {len(raw)} bytes; readers refuse more than "
            f"{MAX_HEADER_BYTES}"
        )

    with atomic_file(path) as fd:
        write_all(fd, memoryview(len(raw).to_bytes(8, "little") + raw))
        for value, nbytes in plan:
            written = 0
            for chunk in _chunks(value, CHUNK_BYTES):
                write_all(fd, chunk)
                written += chunk.nbytes
            if written != nbytes:  # a tensor resized by another thread while being written
                raise SerializationError(f"wrote {written} bytes for a tensor of {nbytes}")
