"""numpy ``.npy`` and ``.npz`` files: the header is parsed by numpy (a literal, never
evaluated as code), plain arrays are read as bytes, and object arrays (a pickle after the
header) go through amber's pickle reader, never ``allow_pickle=True``."""

from __future__ import annotations

import io
import math
import zipfile
from typing import Any

from amber.errors import FormatError
from amber.legacy.pickle_vm import Limits, read_pickle
from amber.legacy.values import Opaque, PDict

MAX_MEMBERS = 100_000


def read_npy(data: bytes, limits: Limits, where: str = ".npy") -> Any:
    """The inert value of one .npy file: an array, or the pickle of an object array."""
    import numpy as np
    from numpy.lib import format as npformat

    stream = io.BytesIO(data)
    try:
        version = npformat.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(stream, max_header_size=65536)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(stream, max_header_size=65536)
        else:
            raise ValueError(f"unknown version {version}")
    except (ValueError, SyntaxError, TypeError, OverflowError) as exc:
        raise FormatError(
            f"{where}: malformed numpy header ({exc}); the file was refused"
        ) from None
    pos = stream.tell()
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
