""".onnx files: reading them with external data confined to the model's folder, writing them
atomically, and onnxruntime sessions straight from an .amber file.

onnx's own loader follows external-data paths wherever they point (CVE-2024-27318,
CVE-2025-51480, CVE-2026-27489). Here a reference must be a plain relative path inside
the folder of the model file, to a regular file, with an offset and length inside it and
a length that matches the tensor; it is then read inline, so the saved .amber file never
refers to anything outside itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

from amber.adapters import onnx as onnx_adapter
from amber.container import ContainerReader
from amber.container.atomic import atomic_file
from amber.container.reader import Verify, check_verify_mode, open_regular, pread_exact
from amber.errors import FormatError, InvalidArgumentError, SerializationError
from amber.graph.decode import decode

PathLike = str | os.PathLike[str]
_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})
_ITEM_SIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def _bad(path: Path, message: str) -> FormatError:
    return FormatError(f"{path}: {message}; refusing the model")


def _location(path: Path, tensor: Any, entries: dict[str, str]) -> Path:
    """The file an external-data reference names, if it lies inside the model's folder."""
    text = entries.get("location", "")
    pure = PurePosixPath(text)
    if (
        not text
        or "\x00" in text
        or "\\" in text
        or ":" in text
        or pure.is_absolute()
        or any(part in ("..", "") for part in text.split("/"))
    ):
        raise _bad(
            path,
            f"tensor {tensor.name[:80]!r} names external data at {text[:120]!r}, which is not "
            "a plain relative path inside the model's folder",
        )
    folder = path.resolve().parent
    target = (folder / pure).resolve()
    if folder not in target.parents:
        raise _bad(
            path,
            f"tensor {tensor.name[:80]!r} names external data outside the model's folder "
            f"({text[:120]!r} leads elsewhere, through a link)",
        )
    return target


def _number(path: Path, tensor: Any, entries: dict[str, str], key: str) -> int | None:
    text = entries.get(key)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _bad(path, f"tensor {tensor.name[:80]!r} has an invalid external-data {key}")
    return int(text)


def _inline(path: Path, tensor: Any) -> None:
    """Read the external data of ``tensor`` into it, within the limits above."""
    onnx = onnx_adapter.onnx_module()
    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        if entry.key not in _EXTERNAL_KEYS or entry.key in entries:
            raise _bad(path, f"tensor {tensor.name[:80]!r} has external-data key {entry.key!r}")
        entries[entry.key] = entry.value
    target = _location(path, tensor, entries)
    offset = _number(path, tensor, entries, "offset") or 0
    length = _number(path, tensor, entries, "length")
    item = _ITEM_SIZE.get(tensor.data_type)
    expected = None if item is None else math.prod(tensor.dims) * item
    fd, size = open_regular(target, "an external data file", follow_symlinks=False)
    try:
        if length is None:
            length = expected if expected is not None else size - offset
        if offset > size or length > size - offset:
            raise _bad(
                path,
                f"tensor {tensor.name[:80]!r}: its external data lies past the end "
                f"of {target.name}",
            )
        if expected is not None and length != expected:
            raise _bad(
                path,
                f"tensor {tensor.name[:80]!r}: external data of {length} bytes for "
                f"a tensor of {expected}",
            )
        data = pread_exact(fd, length, offset, target)
    finally:
        os.close(fd)
    tensor.ClearField("external_data")
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = data


def read_onnx(path: PathLike) -> Any:
    """The ``ModelProto`` in the .onnx file at ``path``, external data read inline from the
    model's own folder (FormatError for any reference that leaves it)."""
    path = Path(path)
    fd, size = open_regular(path, "an ONNX model file")
    try:
        if size > onnx_adapter.MAX_MODEL_BYTES:
            raise _bad(path, "the file is larger than 2 GiB, more than one protobuf can hold")
        data = pread_exact(fd, size, 0, path)
    finally:
        os.close(fd)
    model = onnx_adapter.onnx_module().ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError
        raise _bad(path, "it is not a valid ONNX protobuf") from None
    if not model.HasField("graph"):
        raise _bad(path, "it holds no ONNX graph")
    for tensor in onnx_adapter.external_tensors(model):
        _inline(path, tensor)
    return model


def write_onnx(model: Any, path: PathLike) -> int:
    """Write ``model`` to ``path`` atomically (all data inline); returns its size."""
    data = model.SerializeToString()
    with atomic_file(path) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    return len(data)


def looks_like_onnx(head: bytes) -> bool:
    """A plausible start of an ONNX protobuf: field 1 (ir_version, varint) or another
    ModelProto field's tag."""
    return bool(head) and head[0] in (0x08, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42)


def onnx_session(
    path: PathLike,
    *,
    verify: Verify = "full",
    providers: list[Any] | None = None,
    sess_options: Any = None,
) -> Any:
    """An onnxruntime ``InferenceSession`` for the ONNX model saved at ``path``.

    Initializers are handed to onnxruntime from memory (views of the mapped file, checked
    against their digests with ``verify="full"``), without building the whole protobuf.
    ``providers`` defaults to ``["CPUExecutionProvider"]``.
    """
    check_verify_mode(verify)
    with ContainerReader(path, verify=verify, use_mmap=True) as reader:
        state = session_state(reader, str(path))
    return onnx_adapter.session_from_state(state, providers, sess_options)


def session_state(reader: Any, where: str) -> Any:
    """The stored state of the ONNX model ``reader`` holds (a container or a store
    version): plain bytes and arrays, decoded without trusting or importing anything;
    InvalidArgumentError when it holds another kind of object."""
    root = reader.manifest.get("root")
    if (
        not isinstance(root, dict)
        or root.get("k") != "object"
        or root.get("type") != onnx_adapter.MODEL
        or "state" not in root
        or not isinstance(reader.manifest.get("amber"), dict)
    ):
        raise InvalidArgumentError(f"{where} does not hold an ONNX model; load it with amber.load")
    return decode(root["state"], reader.array, reader.entries)


def model_of(obj: Any, src: Path) -> Any:
    """``obj`` if it is an ONNX model, else SerializationError."""
    onnx = onnx_adapter.onnx_module()
    if not isinstance(obj, onnx.ModelProto):
        raise SerializationError(
            f"cannot convert {src} to ONNX: it holds a {type(obj).__qualname__}, not an ONNX model"
        )
    return obj
