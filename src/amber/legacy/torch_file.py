"""torch.save archives: a zip whose ``<dir>/data.pkl`` names storages by persistent id,
each storage a stored member ``<dir>/data/<key>``. The zip is checked strictly first: one
top directory, plain member names, no encryption, no compression, no duplicates, names in
the local headers equal to the central directory's, only the members torch.save writes."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from typing import Any

from amber.errors import FormatError
from amber.legacy.pickle_vm import Limits, PickleReader, read_pickle
from amber.legacy.translate import Refused, StorageRef
from amber.legacy.values import Global, PTuple

# torch storage class -> torch dtype name (the closed set a file may name).
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_ITEMSIZE = {
    "float32": 4,
    "float64": 8,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
    "complex128": 16,
}
_MEMBER = re.compile(
    r"^(data\.pkl|version|\.format_version|\.storage_alignment|byteorder|data/[0-9]+|"
    r"\.data/serialization_id|\.data/version)$"
)
_TOP = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_LOCATION = re.compile(r"^(cpu|cuda|mps|meta|xpu|hpu)(:[0-9]{1,4})?$")


def _fail(message: str) -> FormatError:
    return FormatError(f"torch archive: {message}; the file was refused")


class _Storages:
    """Resolves persistent ids to container tensors (uint8 arrays of each storage's bytes)."""

    def __init__(self, archive: zipfile.ZipFile, top: str, tensors: dict[str, Any]) -> None:
        self._archive = archive
        self._top = top
        self._tensors = tensors
        self._seen: dict[str, StorageRef] = {}

    def __call__(self, pid: Any, offset: int) -> StorageRef:
        items = pid.items if isinstance(pid, PTuple) else ()
        if len(items) != 5 or items[0] != "storage":
            raise Refused(f"pickle: at byte {offset}: a persistent id that is not a storage")
        cls, key, location, numel = items[1:]
        if not isinstance(cls, Global) or cls.module != "torch":
            raise Refused(f"pickle: at byte {offset}: storage type is not a torch storage")
        dtype = STORAGE_DTYPES.get(cls.name)
        if dtype is None:
            raise Refused(f"pickle: at byte {offset}: unknown storage type torch.{cls.name}")
        if type(key) is not str or not (key.isascii() and key.isdigit()) or len(key) > 12:
            raise Refused(f"pickle: at byte {offset}: storage key {key!r} is not a number")
        if type(location) is not str or not _LOCATION.match(location):
            raise Refused(f"pickle: at byte {offset}: storage location {location!r}")
        if type(numel) is not int or numel < 0:
            raise Refused(f"pickle: at byte {offset}: storage size {numel!r}")
        seen = self._seen.get(key)
        if seen is not None:
            if seen.dtype != dtype:
                raise Refused(f"pickle: at byte {offset}: storage {key} read as two dtypes")
            return seen
        name = f"{self._top}/data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise _fail(
                f"storage {key} is named by data.pkl but missing from the archive"
            ) from None
        if info.file_size != numel * _ITEMSIZE[dtype]:
            raise _fail(f"storage {key} holds {info.file_size} bytes, not {numel} {dtype} elements")
        import numpy as np

        data = self._archive.read(info)
        ref = StorageRef(f"storage/{key}", dtype, numel)
        self._tensors[ref.tensor] = np.frombuffer(bytearray(data), dtype=np.uint8)
        self._seen[key] = ref
        return ref


def check_archive(archive: zipfile.ZipFile, size: int) -> str:
    """Validate the zip's members; returns the top directory."""
    infos = archive.infolist()
    if not infos:
        raise _fail("the zip is empty")
    if len(infos) > 1_000_000:
        raise _fail("too many members")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _fail("a member name appears twice")
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        raise _fail(f"members under several top directories ({', '.join(sorted(tops)[:5])})")
    top = tops.pop()
    if not _TOP.match(top) or top in (".", ".."):
        raise _fail(f"top directory {top!r} is not a plain name")
    total = 0
    for info in infos:
        rest = info.filename[len(top) + 1 :]
        if not info.filename.startswith(top + "/") or not _MEMBER.match(rest):
            raise _fail(
                f"member {info.filename!r} is not one torch.save writes (torch.save archives "
                "hold data.pkl, data/<n> and a few version files)"
            )
        if info.flag_bits & 0x1:
            raise _fail(f"member {info.filename!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _fail(f"member {info.filename!r} is compressed; torch.save stores members")
        total += info.file_size
    if total > size:
        raise _fail("members claim more bytes than the file has")
    for info in infos:  # local headers must agree with the central directory
        try:
            with archive.open(info) as f:
                f.read(0)
        except (zipfile.BadZipFile, ValueError, NotImplementedError) as exc:
            raise _fail(f"member {info.filename!r}: {exc}") from None
    if f"{top}/data.pkl" not in names:
        raise _fail("no data.pkl")
    byteorder = f"{top}/byteorder"
    if byteorder in names and archive.read(byteorder) != b"little":
        raise _fail("big-endian archives are not read")
    return top


def read_archive(data: bytes, tensors: dict[str, Any], limits: Limits) -> Any:
    """The inert value of a torch.save zip; storages are added to ``tensors``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _fail(f"not a valid zip ({exc})") from None
    with archive:
        top = check_archive(archive, len(data))
        try:
            pickled = archive.read(f"{top}/data.pkl")
        except (zipfile.BadZipFile, OSError) as exc:
            raise _fail(f"data.pkl cannot be read ({exc})") from None
        return read_pickle(pickled, limits=limits, persistent=_Storages(archive, top, tensors))


# -- the legacy (non-zip) format --------------------------------------------------------------

_MAGIC = 0x1950A86A20F9469CFC6C


class _LegacyStorages:
    """Persistent ids of the legacy format: ('storage', type, key, location, numel, view)."""

    def __init__(self) -> None:
        self.wanted: dict[str, tuple[str, int]] = {}

    def __call__(self, pid: Any, offset: int) -> StorageRef:
        items = pid.items if isinstance(pid, PTuple) else ()
        if len(items) != 6 or items[0] != "storage" or items[5] is not None:
            raise Refused(f"pickle: at byte {offset}: unsupported legacy storage id")
        cls, key, location, numel = items[1:5]
        if not isinstance(cls, Global) or cls.module != "torch":
            raise Refused(f"pickle: at byte {offset}: storage type is not a torch storage")
        dtype = STORAGE_DTYPES.get(cls.name)
        if dtype is None or type(key) is not str or len(key) > 64 or type(numel) is not int:
            raise Refused(f"pickle: at byte {offset}: malformed legacy storage id")
        if type(location) is not str or not _LOCATION.match(location) or numel < 0:
            raise Refused(f"pickle: at byte {offset}: malformed legacy storage id")
        previous = self.wanted.setdefault(key, (dtype, numel))
        if previous != (dtype, numel):
            raise Refused(f"pickle: at byte {offset}: storage {key!r} declared twice")
        return StorageRef(f"storage/{key}", dtype, numel)


def read_legacy(data: bytes, tensors: dict[str, Any], limits: Limits) -> Any:
    """torch.save(..., _use_new_zipfile_serialization=False): magic, protocol version and
    system info pickles, the object's pickle, the list of storage keys, then each storage
    as an 8-byte element count and its bytes."""
    import numpy as np

    pos = 0
    header = []
    for _ in range(3):
        reader = PickleReader(data, pos, limits=limits)
        header.append(reader.read())
        pos = reader.pos
    if header[0] != _MAGIC or header[1] != 1001:
        raise _fail("not a legacy torch.save file (magic number or protocol version)")
    storages = _LegacyStorages()
    reader = PickleReader(data, pos, limits=limits, persistent=storages)
    value = reader.read()
    keys_reader = PickleReader(data, reader.pos, limits=limits)
    keys = keys_reader.read()
    pos = keys_reader.pos
    key_list = getattr(keys, "items", None)
    if not isinstance(key_list, list) or any(type(key) is not str for key in key_list):
        raise _fail("the storage key list is malformed")
    if sorted(key_list) != sorted(storages.wanted) or len(set(key_list)) != len(key_list):
        raise _fail("the storage key list does not match the storages the object uses")
    for key in key_list:
        dtype, numel = storages.wanted[key]
        if pos + 8 > len(data):
            raise _fail(f"storage {key} is truncated")
        (count,) = struct.unpack("<q", data[pos : pos + 8])
        nbytes = numel * _ITEMSIZE[dtype]
        if count != numel or pos + 8 + nbytes > len(data):
            raise _fail(f"storage {key} does not hold {numel} elements")
        raw = bytearray(data[pos + 8 : pos + 8 + nbytes])
        tensors[f"storage/{key}"] = np.frombuffer(raw, dtype=np.uint8)
        pos += 8 + nbytes
    if pos != len(data):
        raise _fail(f"{len(data) - pos} bytes follow the last storage")
    return value
