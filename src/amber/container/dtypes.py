"""The closed table of element types a tensor payload may have.

Payload bytes are always little-endian. Validation needs only the item size, so a file with
``bfloat16`` tensors is checked completely even where ``ml_dtypes`` is not installed; only
materializing such a tensor needs it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from amber.errors import FormatError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

# name -> item size in bytes
NUMPY_DTYPES: dict[str, int] = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
}
# Provided by the ml_dtypes package (the same types JAX and TensorFlow use).
ML_DTYPES: dict[str, int] = {
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1,
    "float8_e5m2": 1,
    "float8_e5m2fnuz": 1,
    "float8_e4m3b11fnuz": 1,
    "float8_e4m3": 1,
    "float8_e3m4": 1,
    "float8_e8m0fnu": 1,
}
ITEMSIZE: dict[str, int] = {**NUMPY_DTYPES, **ML_DTYPES}


def itemsize(name: object) -> int:
    """Item size of a dtype name from the table; FormatError for anything else."""
    if not isinstance(name, str) or name not in ITEMSIZE:
        raise FormatError(f"unknown tensor dtype {name!r}; known dtypes are: {', '.join(ITEMSIZE)}")
    return ITEMSIZE[name]


@functools.cache
def to_numpy(name: str) -> np.dtype:
    """The little-endian numpy dtype for a table name."""
    import numpy as np

    if name in NUMPY_DTYPES:
        return np.dtype(name).newbyteorder("<")
    try:
        import ml_dtypes
    except ImportError:
        raise MissingDependencyError(
            f"this file holds {name} tensors, which need the ml_dtypes package; "
            "install it with `pip install ml_dtypes` (or `pip install amber[ml-dtypes]`)"
        ) from None
    return np.dtype(getattr(ml_dtypes, name))


def from_numpy(dtype: np.dtype) -> str | None:
    """The table name of a numpy dtype, or None when it has no entry."""
    if dtype.fields is not None or dtype.subdtype is not None:
        return None
    # ml_dtypes' types report kind "V" or "f" depending on the type; match them by name.
    if getattr(dtype.type, "__module__", "") == "ml_dtypes":
        name = dtype.type.__name__
        return name if ML_DTYPES.get(name) == dtype.itemsize else None
    if dtype.kind in "biufc":
        name = dtype.newbyteorder("=").name
        return name if name in NUMPY_DTYPES else None
    return None
