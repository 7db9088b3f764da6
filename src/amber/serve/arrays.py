"""Arrays from untrusted JSON values, and checked casts between dtypes.

Every failure is a RequestError that names the input (``where``) and says what was expected.
"""

from __future__ import annotations

from typing import Any

from amber.serve.problems import RequestError

MAX_ELEMENTS = 1 << 28  # more elements than this in one input is refused before allocating


def _kind_name(kind: str) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}.get(
        kind, "mixed values"
    )


def json_array(data: Any, where: str) -> Any:
    """A numpy array from nested JSON lists of one kind (booleans, numbers or strings)."""
    import numpy as np

    if not isinstance(data, list):
        data = [data]
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(
            f"{where}: data must be a list (or nested lists of equal lengths, not ragged) of "
            "numbers, booleans or strings"
        ) from None
    if arr.dtype.kind == "O":
        # Ragged lists, nulls, objects or a mix of strings and numbers.
        raise RequestError(
            f"{where}: data must be nested lists of equal lengths holding one kind of value "
            "(numbers, booleans or strings); got mixed or ragged values"
        )
    if arr.dtype.kind not in "biufU":
        raise RequestError(f"{where}: unsupported values in data")
    if arr.size > MAX_ELEMENTS:
        raise RequestError(f"{where}: more than {MAX_ELEMENTS} elements", 413)
    return arr


def cast(arr: Any, dtype: Any, where: str) -> Any:
    """``arr`` as ``dtype`` when no value changes meaning: strings never become numbers,
    floats never become integers unless they are whole, integers must fit the target."""
    import numpy as np

    dtype = np.dtype(dtype)
    src = arr.dtype
    if src == dtype:
        return arr
    want = dtype.kind
    if want == "O":  # BYTES: text or raw bytes only
        if src.kind in "US" or src.kind == "O":
            return arr.astype(object)
        raise RequestError(f"{where}: expected strings (BYTES), got {_kind_name(src.kind)}")
    if src.kind in "USO":
        raise RequestError(
            f"{where}: expected {_kind_name(want)} ({dtype.name}), got strings; send numbers "
            "without quotes"
        )
    if want == "b":
        if src.kind != "b":
            raise RequestError(f"{where}: expected booleans, got {_kind_name(src.kind)}")
        return arr
    if want in "iu":
        if src.kind == "f" and (not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr))):
            raise RequestError(
                f"{where}: expected integers ({dtype.name}), got numbers with fractions "
                "or non-finite values"
            )
        if arr.size:
            info = np.iinfo(dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise RequestError(
                    f"{where}: values out of range for {dtype.name} ({info.min}..{info.max})"
                )
        return arr.astype(dtype)
    if want in "fc":
        return arr.astype(dtype)
    raise RequestError(f"{where}: cannot use {src.name} values as {dtype.name}")


def check_finite(arr: Any, where: str) -> None:
    """Refuse NaN and infinities (for models that cannot take them)."""
    import numpy as np

    if arr.dtype.kind in "fc" and arr.size and not np.all(np.isfinite(arr)):
        raise RequestError(
            f"{where}: contains NaN or infinite values, which this model cannot take; "
            "impute them before sending"
        )


def exact_integers(data: Any, dtype: Any, where: str) -> Any:
    """JSON integers too large for float64 precision (numpy read them as floats), converted
    exactly: every value must be a JSON integer within ``dtype``'s range."""
    import numpy as np

    flat = np.asarray(data, dtype=object).reshape(-1)
    if not all(type(v) is int for v in flat):
        raise RequestError(f"{where}: expected integers ({np.dtype(dtype).name})")
    try:
        return np.array(flat.tolist(), dtype=dtype)
    except OverflowError:
        info = np.iinfo(dtype)
        raise RequestError(
            f"{where}: values out of range for {np.dtype(dtype).name} ({info.min}..{info.max})"
        ) from None
