"""numpy ``.npy`` and ``.npz`` files: the header is matched by a strict pattern (not parsed as
Python), plain arrays are read as bytes, and object arrays (a pickle after the header) go
through amber's pickle reader, never ``allow_pickle=True``."""

from __future__ import annotations

import io
import math
import re
import struct
import zipfile
from typing import Any

from amber.errors import FormatError
from amber.legacy.pickle_vm import Limits, read_pickle
from amber.legacy.values import Opaque, PDict

MAX_MEMBERS = 100_000
MAX_HEADER = 65536
# The header numpy writes: a dict with exactly these keys, in this order; only a dtype
# string (no record layouts) and a tuple of sizes.
_HEADER = re.compile(
    r"\{'descr': *'(?P<descr>[<>|=]?[A-Za-z][A-Za-z0-9\[\]]{0,20})', *"
    r"'fortran_order': *(?P<fortran>True|False), *"
    r"'shape': *\((?P<shape>( *[0-9]{1,19} *,?)*)\), *\} *\n?",
    re.ASCII,
)


def _header(data: bytes, where: str) -> tuple[tuple[int, ...], bool, Any, int]:
    """(shape, fortran, dtype, data offset) of an .npy file; FormatError when malformed."""
    import numpy as np

    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        raise FormatError(f"{where}: not an .npy file; the file was refused")
    major = data[6]
    if major == 1:
        (size,), start = struct.unpack("<H", data[8:10]), 10
    elif major in (2, 3) and len(data) >= 12:
        (size,), start = struct.unpack("<I", data[8:12]), 12
    else:
        raise FormatError(f"{where}: unknown .npy version {major}; the file was refused")
    if size > MAX_HEADER or start + size > len(data):
        raise FormatError(f"{where}: the .npy header is truncated or too long; refused")
    text = data[start : start + size].decode("latin-1").rstrip(" ")
    match = _HEADER.fullmatch(text)
    if match is None:
        raise FormatError(
            f"{where}: the .npy header is not one numpy writes for a plain array "
            "(record dtypes are not read); the file was refused"
        )
    shape = tuple(int(n) for n in match["shape"].replace(" ", "").split(",") if n)
    try:
        dtype = np.dtype(match["descr"])
    except (TypeError, ValueError):
        raise FormatError(f"{where}: unknown dtype {match['descr']!r}; refused") from None
    return shape, match["fortran"] == "True", dtype, start + size


def read_npy(data: bytes, limits: Limits, where: str = ".npy") -> Any:
    """The inert value of one .npy file: an array, or the pickle of an object array."""
    import numpy as np

    shape, fortran, dtype, pos = _header(data, where)
    if dtype.hasobject:
        return read_pickle(memoryview(data)[pos:], limits=limits)
    nbytes = math.prod(shape) * dtype.itemsize
    if len(data) - pos != nbytes:
        raise FormatError(
            f"{where}: holds {len(data) - pos} data bytes, not the {nbytes} its header "
            f"declares (shape {shape}, dtype {dtype}); the file was refused"
        )
    array = np.frombuffer(bytearray(data[pos:]), dtype=dtype)
    array = array.reshape(shape, order="F" if fortran else "C")
    return Opaque(array)


def read_npz(data: bytes, limits: Limits, max_output: int) -> Any:
    """The arrays of an .npz archive as a dict of name -> array."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FormatError(f".npz: not a valid zip ({exc}); the file was refused") from None
    pairs: list[tuple[Any, Any]] = []
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise FormatError(".npz: too many members; the file was refused")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise FormatError(".npz: a member name appears twice; the file was refused")
        total = 0
        for info in infos:
            if not info.filename.endswith(".npy") or info.flag_bits & 0x1:
                raise FormatError(
                    f".npz: member {info.filename!r} is not a plain .npy file; refused"
                )
            total += info.file_size
            if total > max_output:
                raise FormatError(f".npz: members exceed {max_output} bytes; refused")
            try:
                with archive.open(info) as f:
                    raw = f.read(info.file_size + 1)
            except (zipfile.BadZipFile, ValueError, NotImplementedError, OSError) as exc:
                raise FormatError(f".npz: member {info.filename!r}: {exc}; refused") from None
            if len(raw) != info.file_size:
                raise FormatError(f".npz: member {info.filename!r} has the wrong size; refused")
            value = read_npy(raw, limits, f".npz member {info.filename!r}")
            pairs.append((info.filename[: -len(".npy")], value))
    return PDict(pairs)
