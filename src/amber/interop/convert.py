"""Convert model files between formats: the input format is detected from the content, the
output format is chosen by the suffix of the output path.

Each supported (input, output) pair has one converter function in ``_CONVERTERS``; adding a
format (pickle files, for instance) is a detector in ``detect_format`` plus converters.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber.container import dtypes
from amber.container.format import HEADER_MAGIC
from amber.container.reader import open_regular
from amber.errors import InvalidArgumentError, ReadError, SerializationError, WriteError
from amber.interop import keras_file, onnx_file
from amber.interop import safetensors as st
from amber.legacy.convert import LEGACY_FORMATS, legacy_format, legacy_to_amber

PathLike = str | os.PathLike[str]

FRAMEWORKS = ("numpy", "torch")
# Output suffix -> format name.
OUTPUT_SUFFIXES = {
    ".amber": "amber",
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".keras": "keras",
}


@dataclass(frozen=True)
class ConvertResult:
    """What ``convert`` did."""

    src: Path
    dst: Path
    src_format: str
    dst_format: str
    tensor_count: int
    tensor_bytes: int


def _head(path: Path, size: int) -> tuple[bytes, int]:
    """The first ``size`` bytes of ``path`` and its size; ReadError when it cannot be read."""
    fd, total = open_regular(path, "a model file")
    try:
        return os.pread(fd, size, 0), total
    except OSError as exc:
        raise ReadError(exc.errno, f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= min(st.MAX_HEADER_BYTES, size - 8) and head[8:9] == b"{"


def detect_format(path: PathLike) -> str:
    """The format of the file at ``path``, from its content: "amber", "safetensors", or
    one that ``amber.legacy`` reads (pickle, joblib, torch, torch-legacy, npy, npz).

    A file named ``*.safetensors`` whose content is not plausible is still "safetensors",
    so that reading it reports what exactly is wrong. Raises FormatError otherwise.
    """
    from amber.errors import FormatError

    path = Path(path)
    head, size = _head(path, 16)
    if head.startswith(HEADER_MAGIC):
        return "amber"
    if _looks_like_safetensors(head, size) or path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix == ".onnx" and onnx_file.looks_like_onnx(head):
        return "onnx"
    if keras_file.looks_like_keras(head, path):
        return "keras"
    foreign = legacy_format(path)
    if foreign is not None:
        return foreign
    raise FormatError(
        f"cannot tell the format of {path}: it is neither an amber nor a safetensors file"
    )


def _flat_tensors(obj: Any, src: Path) -> dict[str, Any]:
    """``obj`` as a flat str -> tensor dict, or SerializationError naming what is not."""
    import numpy as np

    if not isinstance(obj, dict):
        raise SerializationError(
            f"cannot convert {src} to safetensors: it holds a {type(obj).__qualname__}, not a "
            "flat mapping of names to tensors (a state dict)"
        )
    torch = st._torch_module()
    for key, value in obj.items():
        where = f"cannot convert {src} to safetensors: the value at [{key!r}]"
        if not isinstance(key, str):
            raise SerializationError(
                f"cannot convert {src} to safetensors: key {key!r} is of type "
                f"{type(key).__qualname__}; tensor names must be strings"
            )
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise SerializationError(f"{where} is an object array; it holds no tensor data")
            if dtypes.from_numpy(value.dtype) not in st.AMBER_TO_ST:
                raise SerializationError(
                    f"{where} has dtype {value.dtype}, which safetensors cannot store"
                )
            continue
        if torch is not None and isinstance(value, torch.Tensor):
            continue
        cls = type(value)
        name = (
            cls.__qualname__
            if cls.__module__ == "builtins"
            else f"{cls.__module__}.{cls.__qualname__}"
        )
        kind = "a nested mapping" if isinstance(value, dict) else f"of type {name}"
        raise SerializationError(
            f"{where} is {kind}; safetensors holds only a flat mapping of names to tensors"
        )
    return obj


def _st_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """amber metadata as safetensors' str -> str: strings as they are, the rest as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        for key, value in metadata.items()
    }


def _amber_to_safetensors(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    with amber.open(src, verify="full") as f:  # what amber.load does, keeping the metadata
        obj = f.load()
        metadata = f.metadata
    tensors = _flat_tensors(obj, src)
    st.write_safetensors(dst, tensors, _st_metadata(metadata))
    return len(tensors), sum(_nbytes(v) for v in tensors.values())


def _nbytes(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    return int(nbytes) if nbytes is not None else value.element_size() * value.numel()


def _to_torch(arrays: dict[str, Any]) -> dict[str, Any]:
    """Zero-copy torch tensors viewing the same (writable, private) mapping."""
    try:
        import torch
    except ImportError:
        from amber.errors import MissingDependencyError

        raise MissingDependencyError(
            "framework 'torch' needs PyTorch; install it or use framework 'numpy'"
        ) from None
    result = {}
    for name, array in arrays.items():
        dtype = getattr(torch, array.dtype.name)  # every name in ST_TO_AMBER exists in torch
        if array.size == 0:
            result[name] = torch.empty(array.shape, dtype=dtype)
        else:
            # Through uint8: torch.from_numpy does not know ml_dtypes' types.
            raw = torch.from_numpy(array.reshape(-1).view("uint8"))
            result[name] = raw.view(dtype).reshape(array.shape)
    return result


def _safetensors_to_amber(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    arrays, metadata = st.read_safetensors(src, writable=framework == "torch")
    tensors = _to_torch(arrays) if framework == "torch" else arrays
    amber.save(tensors, dst, metadata=metadata)
    return len(arrays), sum(a.nbytes for a in arrays.values())


def _onnx_to_amber(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    info = amber.save(onnx_file.read_onnx(src), dst)
    return len(info.tensors), info.tensor_bytes


def _amber_to_onnx(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    model = onnx_file.model_of(amber.load(src), src)
    return len(model.graph.initializer), onnx_file.write_onnx(model, dst)


def _keras_to_amber(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    info = amber.save(keras_file.read_keras(src), dst)
    return len(info.tensors), info.tensor_bytes


def _amber_to_keras(src: Path, dst: Path, framework: str) -> tuple[int, int]:
    import amber

    model = amber.load(src)
    return len(getattr(model, "variables", ())), keras_file.write_keras(model, dst)


_CONVERTERS: dict[tuple[str, str], Callable[[Path, Path, str], tuple[int, int]]] = {
    ("amber", "safetensors"): _amber_to_safetensors,
    ("safetensors", "amber"): _safetensors_to_amber,
    **{(fmt, "amber"): legacy_to_amber for fmt in LEGACY_FORMATS},
    ("onnx", "amber"): _onnx_to_amber,
    ("amber", "onnx"): _amber_to_onnx,
    ("keras", "amber"): _keras_to_amber,
    ("amber", "keras"): _amber_to_keras,
}


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    framework: str = "numpy",
    force: bool = False,
    trusted: Any = None,
) -> ConvertResult:
    """Convert the model file ``src`` into ``dst``.

    The format of ``src`` is detected from its content; the suffix of ``dst`` (``.amber``,
    ``.safetensors``, ``.onnx`` or ``.keras``) chooses the output (docs/onnx.md,
    docs/keras.md for those two). amber -> safetensors needs a file holding a
    flat dict of names to arrays or tensors (a state dict). safetensors -> amber saves
    numpy arrays, or torch tensors with ``framework="torch"``. Metadata carries over both
    ways (non-string amber values become JSON strings in safetensors).

    pickle, joblib, torch.save and numpy files -> amber are read without running them
    (``amber.legacy``): every name is audited, ``trusted`` adds classes you reviewed.

    An existing ``dst`` is a WriteError unless ``force``; the write is atomic,
    so on any error nothing appears at ``dst`` and an existing file there is unchanged.
    """
    src, dst = Path(src), Path(dst)
    if framework not in FRAMEWORKS:
        raise InvalidArgumentError(
            f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}"
        )
    if not isinstance(force, bool):
        raise InvalidArgumentError("force must be True or False")
    dst_format = OUTPUT_SUFFIXES.get(dst.suffix)
    if dst_format is None:
        raise InvalidArgumentError(
            f"cannot tell the output format from {dst.name!r}: name it "
            + " or ".join(f"*{s}" for s in OUTPUT_SUFFIXES)
        )
    src_format = detect_format(src)
    converter = _CONVERTERS.get((src_format, dst_format))
    if converter is None:
        raise InvalidArgumentError(
            f"cannot convert {src_format} to {dst_format}; supported: "
            + ", ".join(f"{a} -> {b}" for a, b in _CONVERTERS)
        )
    if dst.exists() or dst.is_symlink():
        if not force:  # a refused write (exit 1), not a usage error
            raise WriteError(errno.EEXIST, f"{dst} exists; pass force=True (--force) to replace it")
        if dst.resolve() == src.resolve():
            raise InvalidArgumentError(f"{dst} is the input file; choose another output path")
    if trusted is not None and src_format not in LEGACY_FORMATS:
        raise InvalidArgumentError("trusted= applies to pickle, joblib, torch and numpy inputs")
    if src_format in LEGACY_FORMATS:
        count, nbytes = legacy_to_amber(src, dst, framework, trusted=trusted)
    else:
        count, nbytes = converter(src, dst, framework)
    return ConvertResult(src, dst, src_format, dst_format, count, nbytes)
