""".keras files read without Keras's loader, and written with ``model.save``.

Keras's ``load_model`` has been bypassed through its archive (traversal, bombs), its
configuration (any module, ``get_file``, turning safe mode off) and its HDF5 weights
(external storage reading host files, CVE-2026-1669). Here:

- the zip is read with amber's own checks: only the members a Keras model archive has
  (``metadata.json``, ``config.json``, ``model.weights.h5`` or ``model.weights.npz``,
  plain files under ``assets/``), no links, no encryption, no duplicates, sizes, counts
  and compression ratios capped, each member read to its declared size;
- ``config.json`` is parsed as plain JSON and audited against the allowlist
  (``adapters/keras_audit.py``) before Keras builds the model;
- ``model.weights.h5`` is opened by h5py from memory and accepted only as groups of plain
  numeric datasets: no soft or external links, no external storage, no virtual datasets,
  no filters, no declared size beyond the file. Its arrays are copied into a fresh HDF5
  file amber writes, which Keras then reads (``model.load_weights``): Keras never opens a
  byte of the archive it was given;
- ``model.weights.npz`` is read by amber's own npz and pickle readers (which never
  execute anything): each member is a plain numeric array named by its HDF5 dataset path
  (``layers/dense/vars/0.npy``), or Keras's layout, one member per layer holding a
  pickled dict of numeric arrays (``layers/dense.npy``: ``{"0": kernel, "1": bias}``).
  Anything else in it (Keras 3.15's own npz writer pickles backend ``Variable`` objects,
  which its own loader cannot read back either) is refused;
- ``assets/`` members are checked like the others and must be plain files within the
  caps; no layer amber builds reads assets (the lookup and text-vectorization layers,
  whose vocabularies live there, are not on the allowlist), so they are not used.
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
MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5", "model.weights.npz"})
WEIGHTS = ("model.weights.h5", "model.weights.npz")
ASSETS = "assets/"
MAX_ASSET_BYTES = 64 << 20
MAX_ASSETS = 10_000
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
        if name not in MEMBERS and not name.startswith(ASSETS):
            raise _bad(path, f"unexpected member {name[:120]!r}")
        if name in found:
            raise _bad(path, f"member {name!r} appears twice")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded none
        if kind not in (0, stat.S_IFREG):
            raise _bad(path, f"member {name!r} is a link or special file")
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(path, f"member {name!r} uses an unsupported compression")
        if name.startswith(ASSETS):
            cap = MAX_ASSET_BYTES
            if name.endswith("/") and info.file_size:
                raise _bad(path, f"member {name[:120]!r} is a folder holding data")
        else:
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
    assets = [n for n in found if n.startswith(ASSETS)]
    if len(assets) > MAX_ASSETS:
        raise _bad(path, f"it holds more than {MAX_ASSETS} assets")
    if sum(found[n].file_size for n in assets) > MAX_ASSET_BYTES:
        raise _bad(path, f"its assets take more than {MAX_ASSET_BYTES} bytes")
    if "config.json" not in found:
        raise _bad(path, "it lacks config.json")
    weights = [n for n in WEIGHTS if n in found]
    if len(weights) != 1:
        raise _bad(path, "it must hold one weights file, model.weights.h5 or model.weights.npz")
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


def read_archive(path: PathLike) -> tuple[dict[str, Any], bytes, str]:
    """The audited configuration, the weights file's bytes and its name (``model.weights.h5``
    or ``model.weights.npz``) of a .keras archive; assets are read to their declared size
    (a damaged or lying member is refused) and set aside."""
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
        kind = next(n for n in WEIGHTS if n in members)
        weights = _read(path, archive, members[kind])
        for name, info in members.items():
            if name.startswith(ASSETS) and not name.endswith("/"):
                _read(path, archive, info)
    try:
        config = parse_config(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad(path, "config.json is not UTF-8") from None
    return config, weights, kind


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


_NPZ_HINT = (
    "Keras 3.15's npz writer pickles backend Variable objects, which amber does not rebuild: "
    "save the model with model.save() (HDF5 weights)"
)


def plain_npz(data: bytes, where: str) -> dict[str, Any]:
    """``{"layers/dense/vars/0": array}`` of a ``model.weights.npz``, read without executing
    anything (see the module's docstring for the two layouts accepted)."""
    import numpy as np

    from amber.errors import AmberError
    from amber.legacy.numpy_file import read_npz
    from amber.legacy.pickle_vm import DEFAULT_LIMITS
    from amber.legacy.reader import Parsed, build
    from amber.legacy.translate import Translator

    def bad(message: str) -> FormatError:
        return FormatError(f"{where}: {message}; refusing the weights (nothing was read)")

    if not data.startswith(b"PK"):
        raise bad("it is not an npz (zip) file")
    try:
        value = read_npz(data, DEFAULT_LIMITS, MAX_MEMBER_BYTES)
        translator = Translator()
        root = translator.node(value)
        members = build(Parsed(Path(where), "npz", root, translator.tensors))
    except AmberError as exc:
        raise bad(f"it is not plain arrays ({str(exc)[:200]}; {_NPZ_HINT})") from None

    def numeric(name: str, array: Any) -> Any:
        if type(array) is not np.ndarray or array.dtype.kind not in "biuf":
            raise bad(
                f"{name[:120]!r} is a {type(array).__name__}, not a numeric array ({_NPZ_HINT})"
            )
        if len(arrays) >= MAX_DATASETS:
            raise bad("it holds too many arrays")
        return array

    arrays: dict[str, Any] = {}
    for key, item in members.items():
        if type(key) is not str or not key or ".." in key.split("/") or key.startswith("/"):
            raise bad(f"member {str(key)[:120]!r} has an unusable name")
        if type(item) is np.ndarray and item.dtype.hasobject and item.shape == ():
            item = item.item()  # np.savez of a dict: the (already built) dict in a 0-d array
        if isinstance(item, dict):  # Keras's layout: {"0": array, ...} of one saveable
            prefix = "" if key == "__root__" else f"{key}/"
            for index, array in item.items():
                if type(index) is not str or not index.isdigit():
                    raise bad(f"{key[:120]!r} holds a variable named {str(index)[:40]!r}")
                arrays[f"{prefix}vars/{index}"] = numeric(f"{key}/{index}", array)
        else:
            arrays[key] = numeric(key, item)
    return arrays


def _write_h5(arrays: dict[str, Any], target: Path) -> None:
    import h5py

    with h5py.File(target, "w") as out:
        for name, array in arrays.items():
            group, _, key = name.rpartition("/")
            parent = out.require_group(group) if group else out
            parent.create_dataset(key, data=array)
        # Keras reads a group for every saveable object, even those without variables.


def _prefixes(names: Any) -> list[str]:
    """Every group a set of dataset paths lies in."""
    out: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out)


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
    config, weights, kind = read_archive(path)
    if kind == "model.weights.npz":
        arrays = plain_npz(weights, f"{path}: {kind}")
        groups = _prefixes(arrays)
    else:
        arrays = plain_h5(weights, f"{path}: {kind}")
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
