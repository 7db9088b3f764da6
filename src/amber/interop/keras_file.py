""".keras files read without Keras's loader, and written with ``model.save``.

Keras's ``load_model`` has been bypassed through its archive (traversal, bombs), its
configuration (any module, ``get_file``, turning safe mode off) and its HDF5 weights
(external storage reading host files, CVE-2026-1669). Here:

- the zip is read with amber's own checks: only the members a Keras model archive has
  (``metadata.json``, ``config.json``, ``model.weights.h5``), no links, no encryption, no
  duplicates, sizes and compression ratios capped, each member read to its declared size;
- ``config.json`` is parsed as plain JSON and audited against the allowlist
  (``adapters/keras_audit.py``) before Keras builds the model;
- ``model.weights.h5`` is opened by h5py from memory and accepted only as groups of plain
  numeric datasets: no soft or external links, no external storage, no virtual datasets,
  no filters, no declared size beyond the file. Its arrays are copied into a fresh HDF5
  file amber writes, which Keras then reads (``model.load_weights``): Keras never opens a
  byte of the archive it was given.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from amber.adapters import keras as keras_adapter
from amber.adapters.keras_audit import parse_config
from amber.container.atomic import fsync_directory, write_error
from amber.errors import FormatError, ReadError, SerializationError

PathLike = str | os.PathLike[str]
MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5"})
MAX_MEMBER_BYTES = 16 << 30
MAX_TEXT_BYTES = 64 << 20
MAX_RATIO = 100  # Keras stores members uncompressed; deflate rarely passes 10:1 on weights
MAX_DATASETS = 1_000_000
MAX_H5_DEPTH = 64


def _bad(path: Path, message: str) -> FormatError:
    return FormatError(f"{path}: {message}; refusing the file (nothing was built)")


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    found: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or "\x00" in name
            or ".." in name.split("/")
            or (len(name) > 1 and name[1] == ":")
        ):
            raise _bad(path, f"member {name[:120]!r} has an absolute or escaping path")
        if name not in MEMBERS:
            raise _bad(path, f"unexpected member {name[:120]!r} (assets are not supported)")
        if name in found:
            raise _bad(path, f"member {name!r} appears twice")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded none
        if kind not in (0, stat.S_IFREG):
            raise _bad(path, f"member {name!r} is a link or special file")
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(path, f"member {name!r} uses an unsupported compression")
        cap = MAX_TEXT_BYTES if name.endswith(".json") else MAX_MEMBER_BYTES
        if info.file_size > cap:
            raise _bad(path, f"member {name!r} declares {info.file_size} bytes, over the cap")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 1 << 20:
            raise _bad(
                path,
                f"member {name!r} expands {info.file_size} bytes from "
                f"{info.compress_size}: a zip bomb",
            )
        found[name] = info
    missing = {"config.json", "model.weights.h5"} - set(found)
    if missing:
        raise _bad(path, f"it lacks {', '.join(sorted(missing))}")
    return found


def _read(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, never more than it declares (a lying header is refused)."""
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _bad(path, f"member {info.filename!r} is damaged ({exc})") from None
    if len(data) != info.file_size:
        raise _bad(path, f"member {info.filename!r} is not the size its header declares")
    return data


def read_archive(path: PathLike) -> tuple[dict[str, Any], bytes]:
    """The audited configuration and the weights file's bytes of a .keras archive."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ReadError(2, f"no such file: {path}; check the path") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise _bad(path, f"it is not a readable zip archive ({exc})") from None
    with archive:
        members = _members(path, archive)
        text = _read(path, archive, members["config.json"])
        weights = _read(path, archive, members["model.weights.h5"])
    try:
        config = parse_config(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad(path, "config.json is not UTF-8") from None
    return config, weights


# -- HDF5, restricted to plain datasets -------------------------------------------------------


def plain_h5(data: bytes, where: str) -> dict[str, Any]:
    """``{"group/path/dataset": array}`` of an HDF5 file given as bytes, or FormatError
    naming the first thing that is not a plain, inline, numeric dataset."""
    import h5py
    import numpy as np

    def bad(message: str) -> FormatError:
        return FormatError(f"{where}: {message}; refusing the weights (nothing was read)")

    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise bad("it is not an HDF5 file")
    arrays: dict[str, Any] = {}
    try:
        handle = h5py.File(io.BytesIO(data), "r")
    except Exception as exc:  # h5py raises OSError and others for damaged files
        raise bad(f"HDF5 cannot open it ({type(exc).__name__})") from None

    def walk(group: Any, prefix: str, depth: int) -> None:
        if depth > MAX_H5_DEPTH:
            raise bad("groups are nested too deeply")
        for key in group:
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise bad(f"{name[:120]!r} is a {type(link).__name__} (links are refused)")
            item = group[key]
            if isinstance(item, h5py.Group):
                walk(item, name + "/", depth + 1)
                continue
            if not isinstance(item, h5py.Dataset):
                raise bad(f"{name[:120]!r} is neither a group nor a dataset")
            if item.is_virtual:
                raise bad(f"{name[:120]!r} is a virtual dataset (it reads other files)")
            if item.external:
                raise bad(f"{name[:120]!r} keeps its data in external files")
            if item.compression is not None or item.chunks is not None:
                raise bad(f"{name[:120]!r} is chunked or filtered (Keras writes neither)")
            if item.dtype.kind not in "biuf" or item.dtype.hasobject:
                raise bad(f"{name[:120]!r} has dtype {item.dtype}, not a number type")
            if item.size * item.dtype.itemsize > len(data):
                raise bad(f"{name[:120]!r} declares more bytes than the file holds")
            if len(arrays) >= MAX_DATASETS:
                raise bad("it holds too many datasets")
            arrays[name] = np.array(item[()])

    try:
        with handle:
            walk(handle, "", 0)
    except FormatError:
        raise
    except Exception as exc:  # a damaged object table deep in the file
        raise bad(f"HDF5 could not read it ({type(exc).__name__})") from None
    return arrays


def _write_h5(arrays: dict[str, Any], target: Path) -> None:
    import h5py

    with h5py.File(target, "w") as out:
        for name, array in arrays.items():
            group, _, key = name.rpartition("/")
            parent = out.require_group(group) if group else out
            parent.create_dataset(key, data=array)
        # Keras reads a group for every saveable object, even those without variables.


def _groups(data: bytes) -> list[str]:
    import h5py

    names: list[str] = []
    with h5py.File(io.BytesIO(data), "r") as handle:
        handle.visit(
            lambda name: names.append(name) if isinstance(handle[name], h5py.Group) else None
        )
    return names


def read_keras(path: PathLike) -> Any:
    """The Keras model of the .keras archive at ``path``, checked as described above."""
    path = Path(path)
    config, weights = read_archive(path)
    arrays = plain_h5(weights, f"{path}: model.weights.h5")
    groups = _groups(weights)  # safe now: only hard links to groups and plain datasets
    model = keras_adapter.build_model(config)
    optimizer = getattr(model, "optimizer", None)
    if (
        optimizer is not None
        and not optimizer.built
        and any(n.startswith("optimizer/") for n in arrays)
    ):
        optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory(prefix="amber-keras-") as folder:
        clean = Path(folder) / "model.weights.h5"
        _write_h5(arrays, clean)
        import h5py

        with h5py.File(clean, "a") as out:
            for group in groups:
                out.require_group(group)
        try:
            model.load_weights(clean)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _bad(path, f"its weights do not fit the model ({exc})") from None
    return model


def write_keras(model: Any, path: PathLike) -> int:
    """Save ``model`` with Keras's ``model.save`` to ``path`` atomically; returns its size."""
    if not keras_adapter.is_keras_model(model):
        raise SerializationError(
            f"cannot write a .keras file: the file holds a {type(model).__qualname__}, not a "
            "Keras Sequential or Functional model"
        )
    target = Path(path)
    tmp = target.parent / f".{target.name}.{os.urandom(6).hex()}.keras"
    try:
        model.save(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise write_error(target, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(target.parent)
    return target.stat().st_size


def looks_like_keras(head: bytes, path: Path) -> bool:
    return head.startswith(b"PK\x03\x04") and path.suffix == ".keras"
