"""Open Inference Protocol v2 (REST) inference requests and responses, JSON and binary.

The binary tensor extension: the body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by raw tensors, in input order, for each input whose ``parameters`` give a
``binary_data_size``. Fixed-size datatypes are little-endian element arrays; BYTES elements
are each a 4-byte little-endian length and that many bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from amber.serve import jsoncodec
from amber.serve.arrays import MAX_ELEMENTS, cast, exact_integers, json_array
from amber.serve.datatypes import datatype_of, numpy_dtype
from amber.serve.problems import RequestError

HEADER_LENGTH = "inference-header-content-length"
MAX_INPUTS = 1024


@dataclass
class InferRequest:
    """A parsed request: named input arrays and what the client asked of the outputs."""

    id: str | None
    inputs: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    # Requested outputs (None: all), and which of them go back as binary.
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False


def _json(raw: bytes, where: str) -> Any:
    try:
        return jsoncodec.loads(raw)
    except RecursionError:
        raise RequestError(f"{where} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"{where} is not valid JSON ({str(exc)[:80]})") from None


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(f"{where}: 'parameters' must be an object")
    return params


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        type(n) is int and 0 <= n <= MAX_ELEMENTS for n in value
    ):
        raise RequestError(f"{where}: 'shape' must be a list of non-negative integers")
    if len(value) > 32:
        raise RequestError(f"{where}: 'shape' has more than 32 dimensions")
    if math.prod(value) > MAX_ELEMENTS:
        raise RequestError(f"{where}: more than {MAX_ELEMENTS} elements", 413)
    return tuple(value)


def _bytes_elements(buf: memoryview, count: int, where: str) -> Any:
    """BYTES elements from the binary extension: each a uint32 length and its bytes."""
    import numpy as np

    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise RequestError(
                f"{where}: binary BYTES data ends after {i} of {count} elements; check "
                "binary_data_size and the shape"
            )
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise RequestError(f"{where}: binary BYTES element {i} runs past binary_data_size")
        item = bytes(buf[pos : pos + n])
        pos += n
        try:
            out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            out[i] = item
    if pos != len(buf):
        raise RequestError(
            f"{where}: binary_data_size is {len(buf)} but the {count} BYTES elements take {pos}"
        )
    return out


def _input(obj: Any, i: int, binary: memoryview, offset: int) -> tuple[str, Any, int]:
    import numpy as np

    where = f"inputs[{i}]"
    if not isinstance(obj, dict):
        raise RequestError(f"{where} must be an object with name, shape, datatype and data")
    name = obj.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise RequestError(f"{where}: 'name' must be a non-empty string")
    where = f"input {name!r}"
    shape = _shape(obj.get("shape"), where)
    dtype = numpy_dtype(obj.get("datatype"), where)
    params = _parameters(obj, where)
    count = math.prod(shape)
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise RequestError(f"{where}: binary_data_size must be a non-negative integer")
        if "data" in obj:
            raise RequestError(f"{where}: give either 'data' or binary_data_size, not both")
        if offset + size > len(binary):
            raise RequestError(
                f"{where}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} binary bytes left); check "
                "Inference-Header-Content-Length"
            )
        chunk = binary[offset : offset + size]
        if dtype.kind == "O":
            arr = _bytes_elements(chunk, count, where)
        else:
            if size != count * dtype.itemsize:
                raise RequestError(
                    f"{where}: binary_data_size is {size} bytes but shape {list(shape)} of "
                    f"{obj['datatype']} needs {count * dtype.itemsize}"
                )
            # A copy: the body buffer is freed after the request; little-endian on the wire.
            arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype)
            if dtype.kind == "b" and arr.size and np.frombuffer(chunk, np.uint8).max() > 1:
                raise RequestError(f"{where}: BOOL bytes must be 0 or 1")
        return name, arr.reshape(shape), offset + size
    if "data" not in obj:
        raise RequestError(f"{where}: 'data' is missing (or give parameters.binary_data_size)")
    data = obj["data"]
    arr = json_array(data, where)
    if dtype.kind == "O":
        if arr.dtype.kind != "U" and arr.size:
            raise RequestError(f"{where}: BYTES data must be strings")
        arr = arr.astype(object)
    elif dtype.kind in "iu" and arr.dtype.kind == "f" and arr.size and np.abs(arr).max() >= 2**53:
        arr = exact_integers(data, dtype, where)
    else:
        arr = cast(arr, dtype, where)
    if arr.size != count:
        raise RequestError(
            f"{where}: shape {list(shape)} holds {count} elements but data has {arr.size}"
        )
    return name, arr.reshape(shape), offset


def parse(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an inference request body (``header_length``: the binary extension's header)."""
    view = memoryview(body)
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if n < 0 or n > len(body):
            raise RequestError(
                f"Inference-Header-Content-Length is {header_length[:20]!r} but the body has "
                f"{len(body)} bytes; it must be the length of the JSON header"
            )
        head, binary = view[:n], view[n:]
    else:
        head, binary = view, view[:0]
    doc = _json(bytes(head), "the request body")
    if not isinstance(doc, dict):
        raise RequestError("the request body must be a JSON object with 'inputs'")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    if len(raw_inputs) > MAX_INPUTS:
        raise RequestError(f"more than {MAX_INPUTS} inputs")
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise RequestError("'id' must be a string")
    params = _parameters(doc, "the request")
    inputs: dict[str, Any] = {}
    offset = 0
    for i, obj in enumerate(raw_inputs):
        name, arr, offset = _input(obj, i, binary, offset)
        if name in inputs:
            raise RequestError(f"input {name!r} is given twice")
        inputs[name] = arr
    if offset != len(binary):
        raise RequestError(
            f"the body has {len(binary) - offset} binary bytes that no input's "
            "binary_data_size accounts for"
        )
    out = InferRequest(
        req_id, inputs, params, binary_default=params.get("binary_data_output") is True
    )
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise RequestError("'outputs' must be a list of {name, parameters}")
        out.outputs = []
        for j, o in enumerate(raw_outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise RequestError(f"outputs[{j}] must be an object with a 'name'")
            out.outputs.append(o["name"])
            if _parameters(o, f"outputs[{j}]").get("binary_data") is True:
                out.binary_outputs.add(o["name"])
    return out


def _json_data(arr: Any) -> list[Any]:
    flat = arr.reshape(-1)
    if flat.dtype.kind == "O" or flat.dtype.kind in "US":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()
        ]
    return flat.tolist()


def _binary_data(arr: Any, datatype: str) -> bytes:
    import numpy as np

    if datatype == "BYTES":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def respond(
    request: InferRequest, model_name: str, model_version: str, outputs: list[tuple[str, Any]]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary outputs as the request asked)."""
    if request.outputs is not None:
        known = {name for name, _ in outputs}
        unknown = [n for n in request.outputs if n not in known]
        if unknown:
            raise RequestError(
                f"unknown output {unknown[0]!r}; this model's outputs are: "
                f"{', '.join(sorted(known))}"
            )
        outputs = [(n, a) for n, a in outputs if n in request.outputs]
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        doc["id"] = request.id
    tensors = []
    binary: list[bytes] = []
    in_json = []  # the arrays written as JSON numbers
    for name, arr in outputs:
        datatype = datatype_of(arr.dtype)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if request.binary_default or name in request.binary_outputs:
            data = _binary_data(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(data)}
            binary.append(data)
        else:
            entry["data"] = _json_data(arr)
            in_json.append(arr)
        tensors.append(entry)
    doc["outputs"] = tensors
    head = jsoncodec.dumps(doc, jsoncodec.all_finite(in_json))
    if not binary:
        return head, {"content-type": "application/json"}
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
    return head + b"".join(binary), headers
