"""ONNX: ``onnx.ModelProto``.

A model is stored as two parts: its protobuf with the data of the top-level initializers
taken out (one opaque byte string, a container tensor covered by its digest), and each of
those initializers as an amber tensor (zero-copy views, per-tensor digests, dedup in the
store). Initializers of other element types (strings, 4- and 8-bit floats) stay inside the
protobuf.

ONNX cannot run code, but a tensor can point at "external data": a path that onnx and
onnxruntime open relative to the model (or the working directory), which has read and
overwritten files outside the model folder (CVE-2024-27318, CVE-2025-51480,
CVE-2026-27489). amber never follows such a reference from a file: every tensor of the
protobuf, in every graph, subgraph, attribute and function, is checked to hold its data
inline before onnx or onnxruntime sees the model. Nothing here imports onnx until a model
is met.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from amber.errors import FormatError, MissingDependencyError, SerializationError
from amber.graph.constructors import Constructor, register
from amber.graph.schema import DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

MODEL = "onnx.onnx_ml_pb2:ModelProto"
# The largest protobuf amber parses (onnx's own limit for one message is 2 GiB).
MAX_MODEL_BYTES = 2**31 - 1
_STATE_KEYS = frozenset({"model", "initializers"})
# ONNX element types stored as amber tensors -> numpy dtype names (little-endian payloads).
_NUMPY = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}
# TensorProto fields holding data inline, cleared when the data moves to an amber tensor.
_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def onnx_module() -> Any:
    """The ``onnx`` package, or MissingDependencyError saying what to install."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "this file holds an ONNX model; install onnx (pip install 'amber[onnx]')"
        ) from None
    return onnx


def tensors(message: Any) -> Iterator[Any]:
    """Every ``TensorProto`` inside ``message`` (graphs, subgraphs, attributes, sparse
    tensors, functions, training info), found by walking the protobuf's fields."""
    onnx = onnx_module()
    stack = [message]
    while stack:
        current = stack.pop()
        if isinstance(current, onnx.TensorProto):
            yield current
            continue
        for field, value in current.ListFields():
            if field.message_type is None:
                continue
            if field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)


def external_tensors(message: Any) -> list[Any]:
    """The tensors of ``message`` whose data lives outside it (external data)."""
    onnx = onnx_module()
    return [
        t
        for t in tensors(message)
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data)
    ]


def _parse(data: bytes) -> Any:
    onnx = onnx_module()
    if len(data) > MAX_MODEL_BYTES:
        raise FormatError("the ONNX model in the file is larger than 2 GiB, which onnx refuses")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, or recursion limits
        raise FormatError(
            "the ONNX model in the file is not a valid protobuf; the file is damaged or not "
            "written by amber"
        ) from None
    return model


# -- saving -----------------------------------------------------------------------------------


def model_state(model: Any) -> dict[str, Any]:
    """``{"model": protobuf bytes without the moved initializer data, "initializers":
    {name: ndarray}}``. Refuses a model whose tensors refer to external data."""
    import numpy as np

    onnx = onnx_module()
    from onnx import numpy_helper

    outside = external_tensors(model)
    if outside:
        raise SerializationError(
            f"cannot save this ONNX model: {len(outside)} tensor(s) refer to external data "
            f"(first: {outside[0].name!r}); amber never follows such paths when loading. Load "
            "the model with its data (onnx.load(path)), or convert the file with "
            "amber.convert('model.onnx', 'model.amber'), which reads external data from the "
            "model's own folder only"
        )
    initializers: dict[str, Any] = {}
    # The initializers' data is taken out of the model for the time of one serialization
    # (and always put back): copying the whole model first would copy every weight.
    moved: list[tuple[Any, Any]] = []
    try:
        for tensor in model.graph.initializer:
            dtype = _NUMPY.get(tensor.data_type)
            if dtype is None or tensor.name in initializers or tensor.HasField("segment"):
                continue  # kept inline (strings, small floats, duplicates are onnx's to judge)
            kept: Any
            if tensor.HasField("raw_data"):
                kept = tensor.raw_data
                array = np.frombuffer(kept, dtype=np.dtype(dtype).newbyteorder("<"))
                if array.size != math.prod(tensor.dims):
                    raise SerializationError(
                        f"cannot save this ONNX model: initializer {tensor.name!r} holds "
                        f"{array.size} values for its shape {list(tensor.dims)}"
                    )
                array = array.reshape(tuple(tensor.dims))
            else:
                kept = onnx.TensorProto()
                kept.CopyFrom(tensor)
                array = np.ascontiguousarray(numpy_helper.to_array(tensor), dtype=dtype)
            moved.append((tensor, kept))
            initializers[tensor.name] = array
            for name in _DATA_FIELDS:
                tensor.ClearField(name)
        stripped = model.SerializeToString()
    finally:
        for tensor, kept in moved:
            if isinstance(kept, bytes):
                tensor.raw_data = kept
            else:
                tensor.CopyFrom(kept)
    return {"model": stripped, "initializers": initializers}


# -- loading ----------------------------------------------------------------------------------


def checked_state(state: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Parse and check a stored state: (the stripped ModelProto, its moved initializers'
    TensorProtos by name, their arrays by name). Raises FormatError on anything a loader
    must not pass to onnx or onnxruntime."""
    import numpy as np

    if (
        type(state) is not dict
        or set(state) != _STATE_KEYS
        or type(state["model"]) is not bytes
        or type(state["initializers"]) is not dict
    ):
        raise FormatError("an ONNX model is stored as {'model': bytes, 'initializers': dict}")
    model = _parse(state["model"])
    outside = external_tensors(model)
    if outside:
        raise FormatError(
            f"the ONNX model in the file refers to external data ({len(outside)} tensor(s), "
            f"first {outside[0].name[:80]!r}); amber never follows such references. Refusing "
            "the file"
        )
    arrays = state["initializers"]
    slots: dict[str, Any] = {}
    for tensor in model.graph.initializer:
        if tensor.name in arrays and tensor.name not in slots:
            slots[tensor.name] = tensor
    for name, array in arrays.items():
        tensor = slots.get(name) if type(name) is str else None
        if tensor is None:
            raise FormatError(f"ONNX initializer {str(name)[:80]!r} is not in the model's graph")
        if type(array) is not np.ndarray:
            raise FormatError(f"ONNX initializer {name[:80]!r} must be an array")
        expected = _NUMPY.get(tensor.data_type)
        if expected is None or array.dtype != np.dtype(expected):
            raise FormatError(f"ONNX initializer {name[:80]!r} does not have its declared type")
        if tuple(tensor.dims) != array.shape:
            raise FormatError(f"ONNX initializer {name[:80]!r} does not have its declared shape")
        if any(
            tensor.HasField(f) if f == "raw_data" else len(getattr(tensor, f)) for f in _DATA_FIELDS
        ):
            raise FormatError(f"ONNX initializer {name[:80]!r} is stored twice")
    return model, slots, arrays


def model_from_state(state: Any) -> Any:
    """The ``ModelProto``, its initializers filled from the arrays (one copy each)."""
    import numpy as np

    model, slots, arrays = checked_state(state)
    for name, tensor in slots.items():
        array = arrays[name]
        tensor.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return model


def session_from_state(state: Any, providers: Any = None, sess_options: Any = None) -> Any:
    """An onnxruntime ``InferenceSession`` whose initializers are handed over from memory
    (the arrays, views of the amber file), without building the full protobuf."""
    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError(
            "an inference session needs onnxruntime (pip install 'amber[onnx]')"
        ) from None
    onnx = onnx_module()
    model, slots, arrays = checked_state(state)
    names, values = [], []
    for name, tensor in slots.items():
        # A marker only onnxruntime sees, replaced by the in-memory value below; the file
        # never chooses a path (checked_state refused any external reference).
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "amber-in-memory"
        names.append(name)
        array = arrays[name]
        values.append(ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array)))
    options = sess_options if sess_options is not None else ort.SessionOptions()
    if names:
        options.add_external_initializers(names, values)
    session = ort.InferenceSession(
        model.SerializeToString(),
        options,
        providers=providers if providers is not None else ["CPUExecutionProvider"],
    )
    session._amber_initializers = values  # keeps the memory alive as long as the session
    return session


def _decode(cls: type, state: Any) -> Any:
    return model_from_state(state)


REGISTRY.add_types([MODEL])
register(MODEL, Constructor(model_state, _decode))
# Typed state (graph/schema.py): bytes and arrays only.
SCHEMAS.register(MODEL, Schema(whole=DATA))
