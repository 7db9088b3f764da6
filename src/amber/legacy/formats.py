"""Which foreign format a file is, from its first bytes (and its name where bytes are not
enough), and what to do with it. Imports nothing but the standard library."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PICKLE = "pickle"
JOBLIB = "joblib"  # a compressed joblib file (an uncompressed one is a pickle)
TORCH = "torch"  # a torch.save zip archive
TORCH_LEGACY = "torch-legacy"  # torch.save(..., _use_new_zipfile_serialization=False)
NPY = "npy"
NPZ = "npz"
SAFETENSORS = "safetensors"
ONNX = "onnx"
KERAS = "keras"
HDF5 = "hdf5"

# Formats amber converts (and ``amber scan`` judges).
CONVERTIBLE = frozenset({PICKLE, JOBLIB, TORCH, TORCH_LEGACY, NPY, NPZ})

_COMPRESSED = (
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\xfd7zXZ", "xz"),
    (b"\x5d\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
# First opcodes of a protocol 0/1 pickle (no PROTO header).
_PROTO_0 = frozenset(b"(cI]}NSVFLGJKMUXT)ld"[i : i + 1] for i in range(20))
_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # LONG1 of torch's magic


def compression(head: bytes) -> str | None:
    """The joblib compressor whose magic starts ``head``, if any."""
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            return name
    return None


def _zip_kind(path: Path) -> str | None:
    import zipfile  # only for files that are not amber's (keeps `amber inspect` light)

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()[:10000]
    except (zipfile.BadZipFile, OSError, ValueError):
        return TORCH  # judged (and refused) by the torch reader, which names the problem
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return TORCH
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return KERAS
    if names and all(n.endswith(".npy") for n in names):
        return NPZ
    return TORCH


def detect(path: Path, head: bytes) -> str | None:
    """The foreign format of ``path`` (whose first bytes are ``head``), or None."""
    suffix = path.suffix.lower()
    if head.startswith(b"\x80\x02" + _TORCH_LEGACY_MAGIC[:2]) and _TORCH_LEGACY_MAGIC in head:
        return TORCH_LEGACY
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return PICKLE
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    if head.startswith(b"\x93NUMPY"):
        return NPY
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return HDF5
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 1 << 27:
        return SAFETENSORS
    if suffix == ".onnx" and head[:1] == b"\x08":
        return ONNX
    joblib_suffixes = (".joblib", ".pkl", ".pickle", ".z", ".gz", ".bz2", ".xz", ".lzma", ".lz4")
    if suffix in joblib_suffixes and compression(head):
        return JOBLIB
    if suffix in (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin") and head[:1] in _PROTO_0:
        return PICKLE  # protocol 0/1 pickles have no header
    return None


_NAMES = {
    PICKLE: "a Python pickle",
    JOBLIB: "a compressed joblib file",
    TORCH: "a torch.save archive (a zip of pickles)",
    TORCH_LEGACY: "a legacy torch.save file (pickles)",
    NPY: "a numpy .npy file",
    NPZ: "a numpy .npz archive",
    SAFETENSORS: "a safetensors file",
    ONNX: "an ONNX model",
    KERAS: "a Keras .keras archive",
    HDF5: "an HDF5 file (Keras .h5 weights?)",
}


def next_step(path: os.PathLike[str] | str, fmt: str) -> str:
    """What the user can do with a file of format ``fmt``."""
    p = Path(path)
    target = p.with_suffix(".amber")
    if fmt in CONVERTIBLE:
        return (
            f"check it with `amber scan {p}` (nothing in it is run), then convert it with "
            f"`amber convert {p} {target}`"
        )
    if fmt == SAFETENSORS:
        return f"convert it with `amber convert {p} {target}`, or read it with safetensors"
    return (
        f"amber does not convert {fmt} files yet; load the model with its own library and "
        "save it with amber.save(model, path)"
    )


def describe(path: os.PathLike[str] | str, head: bytes) -> str | None:
    """``"PATH is a pickle ...; check it with ..."``, or None for an unknown format."""
    fmt = detect(Path(path), head)
    if fmt is None:
        return None
    return f"{path} is {_NAMES[fmt]}, not an amber file; {next_step(path, fmt)}"


def read_head(path: os.PathLike[str] | str, size: int = 64) -> bytes:
    """The first ``size`` bytes of a regular file, or b"" when it cannot be read."""
    try:
        if not os.path.isfile(path):
            return b""
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def foreign_message(path: os.PathLike[str] | str) -> str | None:
    """The message for a file that is not amber but a format amber recognizes."""
    head = read_head(path)
    if head.startswith(b"\x89AMBER\r\n"):
        return None
    return describe(path, head)


def not_foreign(path: os.PathLike[str] | str, open_reader: Callable[[], T]) -> T:
    """``open_reader()``; when it fails because ``path`` is not an amber file but a format
    amber recognizes, the error says what the file is and what to do instead."""
    from amber.errors import CorruptFileError, FormatError

    try:
        return open_reader()
    except FormatError as exc:
        if isinstance(exc, CorruptFileError):
            raise
        message = foreign_message(path)
        if message is None:
            raise
        raise FormatError(message) from None
