"""Open Inference Protocol datatypes and their numpy equivalents."""

from __future__ import annotations

from typing import Any

from amber.serve.problems import RequestError

# OIP datatype -> numpy dtype string (little-endian on the wire).
TO_NUMPY: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
FROM_NUMPY: dict[str, str] = {v: k for k, v in TO_NUMPY.items()}


def numpy_dtype(datatype: Any, where: str) -> Any:
    """The numpy dtype of an OIP ``datatype``; RequestError naming ``where`` if unknown."""
    import numpy as np

    if not isinstance(datatype, str) or datatype not in TO_NUMPY:
        raise RequestError(
            f"{where}: unknown datatype {str(datatype)[:40]!r}; expected one of "
            f"{', '.join(TO_NUMPY)}"
        )
    return np.dtype(TO_NUMPY[datatype])


def datatype_of(dtype: Any) -> str:
    """The OIP datatype of a numpy (or torch, by name) dtype; strings and objects are BYTES."""
    import numpy as np

    name = str(dtype).removeprefix("torch.")
    alias = {"float": "float32", "double": "float64", "half": "float16", "long": "int64"}
    name = alias.get(name, name)
    if name in FROM_NUMPY:
        return FROM_NUMPY[name]
    try:
        kind = np.dtype(name).kind
    except TypeError:
        return "BYTES"
    if kind in "USOa":
        return "BYTES"
    return FROM_NUMPY.get(name, "BYTES")
