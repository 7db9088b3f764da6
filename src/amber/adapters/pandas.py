"""pandas: DataFrame, Series, every Index kind and the extension arrays they hold.

Each object is stored as plain typed data, never through pandas' own pickling (which names
internal functions and block managers): a column is a small dict naming its kind (numpy,
masked, string, categorical, datetime with a time zone, period, interval, sparse, object)
and holding numpy arrays, which become tensors (mapped without a copy at load where the
dtype allows). Decoding checks every field and rebuilds through pandas' public constructors,
which check codes, bounds and lengths again. pandas is imported only when such an object is
saved or met in a file.
"""

from __future__ import annotations

import datetime
from typing import Any

from amber.adapters.builtin import zone, zone_key
from amber.errors import FormatError, SerializationError
from amber.graph.constructors import Constructor, register
from amber.graph.schema import DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

# pandas >= 3 names its public classes ``pandas:X``; pandas 2 keeps the defining module.
FRAMES = {
    "DataFrame": ("pandas:DataFrame", "pandas.core.frame:DataFrame"),
    "Series": ("pandas:Series", "pandas.core.series:Series"),
}
INDEXES = {
    "Index": ("pandas:Index", "pandas.core.indexes.base:Index"),
    "RangeIndex": ("pandas:RangeIndex", "pandas.core.indexes.range:RangeIndex"),
    "MultiIndex": ("pandas:MultiIndex", "pandas.core.indexes.multi:MultiIndex"),
    "CategoricalIndex": (
        "pandas:CategoricalIndex",
        "pandas.core.indexes.category:CategoricalIndex",
    ),
    "DatetimeIndex": ("pandas:DatetimeIndex", "pandas.core.indexes.datetimes:DatetimeIndex"),
    "TimedeltaIndex": ("pandas:TimedeltaIndex", "pandas.core.indexes.timedeltas:TimedeltaIndex"),
    "PeriodIndex": ("pandas:PeriodIndex", "pandas.core.indexes.period:PeriodIndex"),
    "IntervalIndex": ("pandas:IntervalIndex", "pandas.core.indexes.interval:IntervalIndex"),
}
ARRAYS = {
    "Categorical": ("pandas:Categorical", "pandas.core.arrays.categorical:Categorical"),
    "IntegerArray": ("pandas.arrays:IntegerArray", "pandas.core.arrays.integer:IntegerArray"),
    "FloatingArray": ("pandas.arrays:FloatingArray", "pandas.core.arrays.floating:FloatingArray"),
    "BooleanArray": ("pandas.arrays:BooleanArray", "pandas.core.arrays.boolean:BooleanArray"),
    "StringArray": ("pandas.arrays:StringArray", "pandas.core.arrays.string_:StringArray"),
    "ArrowStringArray": (
        "pandas.arrays:ArrowStringArray",
        "pandas.core.arrays.string_arrow:ArrowStringArray",
    ),
    "DatetimeArray": ("pandas.arrays:DatetimeArray", "pandas.core.arrays.datetimes:DatetimeArray"),
    "TimedeltaArray": (
        "pandas.arrays:TimedeltaArray",
        "pandas.core.arrays.timedeltas:TimedeltaArray",
    ),
    "PeriodArray": ("pandas.arrays:PeriodArray", "pandas.core.arrays.period:PeriodArray"),
    "IntervalArray": ("pandas.arrays:IntervalArray", "pandas.core.arrays.interval:IntervalArray"),
    "SparseArray": ("pandas.arrays:SparseArray", "pandas.core.arrays.sparse.array:SparseArray"),
}
# Dtypes: as class objects (``dtype=pd.StringDtype``) and as instances in fitted state.
_DTYPE_CLASSES = [
    "CategoricalDtype",
    "DatetimeTZDtype",
    "PeriodDtype",
    "IntervalDtype",
    "SparseDtype",
    "StringDtype",
    "BooleanDtype",
    *(f"Int{b}Dtype" for b in (8, 16, 32, 64)),
    *(f"UInt{b}Dtype" for b in (8, 16, 32, 64)),
    "Float32Dtype",
    "Float64Dtype",
]
DTYPES = [f"pandas:{name}" for name in _DTYPE_CLASSES]
TYPES = [name for table in (FRAMES, INDEXES, ARRAYS) for names in table.values() for name in names]
REGISTRY.add_types([*TYPES, *DTYPES])

CLOSED = ("left", "right", "both", "neither")
# Masked (nullable) dtypes by name: the numpy dtype of their data.
MASKED = {
    **{f"Int{b}": f"int{b}" for b in (8, 16, 32, 64)},
    **{f"UInt{b}": f"uint{b}" for b in (8, 16, 32, 64)},
    "Float32": "float32",
    "Float64": "float64",
    "boolean": "bool",
}


def _pd() -> Any:
    import pandas as pd

    return pd


def _np() -> Any:
    import numpy as np

    return np


# -- checks on decoded state --------------------------------------------------------------------


def _fields(state: Any, what: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if type(state) is not dict or not all(type(k) is str for k in state):
        raise FormatError(f"a pandas {what} is stored as a dict of fields")
    keys = set(state)
    if not required <= keys <= required | optional:
        raise FormatError(
            f"a pandas {what} has the fields {sorted(required | optional)}, not {sorted(keys)}"
        )
    return state


def _array(value: Any, what: str, kinds: str, ndim: int = 1) -> Any:
    np = _np()
    if type(value) is not np.ndarray or value.ndim != ndim or value.dtype.kind not in kinds:
        raise FormatError(f"pandas {what} must be a {ndim}-d numpy array of kind {kinds!r}")
    return value


def _choice(value: Any, options: tuple[str, ...], what: str) -> str:
    if type(value) is not str or value not in options:
        raise FormatError(f"pandas {what} must be one of {', '.join(options)}")
    return value


def _string(value: Any, what: str, limit: int = 200) -> str:
    if type(value) is not str or not value or len(value) > limit:
        raise FormatError(f"pandas {what} must be a short non-empty string")
    return value


def _length(values: Any, n: int, what: str) -> None:
    if len(values) != n:
        raise FormatError(f"pandas {what} has {len(values)} values where {n} are needed")


# -- time zones ---------------------------------------------------------------------------------


def _encode_tz(tz: Any, where: str = "time zone") -> dict[str, Any]:
    if isinstance(tz, datetime.timezone):
        offset = tz.utcoffset(None)
        return {"kind": "fixed", "seconds": int(offset.total_seconds()), "utc": tz is tz.utc}
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo, pytz
    module = type(tz).__module__.partition(".")[0]
    if module in ("zoneinfo", "pytz") and isinstance(key, str):
        return {"kind": module, "key": key}
    raise SerializationError(
        f"cannot save the {where} {tz!s}: amber stores zoneinfo, pytz and fixed-offset zones; "
        "convert it first, e.g. with .tz_convert(zoneinfo.ZoneInfo('Europe/Paris'))"
    )


def _decode_tz(state: Any) -> Any:
    fields = _fields(state, "time zone", {"kind"}, {"key", "seconds", "utc"})
    kind = _choice(fields["kind"], ("fixed", "zoneinfo", "pytz"), "time zone kind")
    if kind == "fixed":
        seconds = fields.get("seconds")
        if type(seconds) is not int or abs(seconds) >= 86400 or type(fields.get("utc")) is not bool:
            raise FormatError("a fixed time zone offset must be under one day")
        if fields["utc"]:
            return datetime.timezone.utc
        return datetime.timezone(datetime.timedelta(seconds=seconds))
    key = zone_key(fields.get("key"))
    if kind == "pytz":
        try:
            import pytz
        except ImportError:
            pass  # the same zone from the system database
        else:
            try:
                return pytz.timezone(key)
            except pytz.UnknownTimeZoneError:
                raise FormatError(f"unknown time zone {key!r}") from None
    return zone(key)


# -- one-dimensional values (a column, an index's values) ----------------------------------------


def _encode_strings(values: Any) -> dict[str, Any]:
    """UTF-8 bytes, offsets and a missing-value mask: three tensors instead of a node per
    string."""
    np = _np()
    mask = np.array([not isinstance(v, str) for v in values], dtype=bool)
    encoded = [v.encode("utf-8", "surrogatepass") if isinstance(v, str) else b"" for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return {"data": data.copy(), "offsets": offsets, "mask": mask}


def _decode_strings(state: Any) -> list[str | None]:
    np = _np()
    fields = _fields(state, "string data", {"data", "offsets", "mask"})
    data = _array(fields["data"], "string bytes", "u")
    offsets = _array(fields["offsets"], "string offsets", "i")
    mask = _array(fields["mask"], "string mask", "b")
    if data.dtype.itemsize != 1 or len(offsets) != len(mask) + 1:
        raise FormatError("pandas string data needs one offset more than there are strings")
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(data)):
        raise FormatError("pandas string offsets must start at 0 and end at the data size")
    if len(offsets) > 1 and bool(np.any(np.diff(offsets) < 0)):
        raise FormatError("pandas string offsets must not decrease")
    raw = data.tobytes()
    bounds = offsets.tolist()
    try:
        return [
            None if missing else raw[bounds[i] : bounds[i + 1]].decode("utf-8", "surrogatepass")
            for i, missing in enumerate(mask.tolist())
        ]
    except UnicodeDecodeError:
        raise FormatError("pandas string data is not valid UTF-8") from None


def encode_values(values: Any) -> dict[str, Any]:
    """Plain typed data for a one-dimensional pandas or numpy array."""
    pd, np = _pd(), _np()
    dtype = values.dtype
    if isinstance(values, np.ndarray):
        if dtype.hasobject:
            if all(type(v) is str for v in values):
                return {"kind": "object-str", "strings": _encode_strings(values)}
            return {"kind": "object", "items": list(values)}
        return {"kind": "numpy", "values": values}
    if isinstance(dtype, pd.CategoricalDtype):
        return {
            "kind": "categorical",
            "codes": np.asarray(values.codes),
            "categories": encode_index(dtype.categories),
            "ordered": bool(dtype.ordered),
        }
    if isinstance(dtype, pd.DatetimeTZDtype):
        utc = np.asarray(values.tz_convert("UTC").tz_localize(None))
        return {"kind": "datetimetz", "values": utc, "tz": _encode_tz(dtype.tz)}
    if isinstance(dtype, pd.PeriodDtype):
        return {"kind": "period", "ordinals": values.asi8.copy(), "freq": values.freqstr}
    if isinstance(dtype, pd.IntervalDtype):
        return {
            "kind": "interval",
            "left": encode_values(_unwrap(values.left)),
            "right": encode_values(_unwrap(values.right)),
            "closed": values.closed,
        }
    if isinstance(dtype, pd.StringDtype):
        na = "nan" if dtype.na_value is not pd.NA else "NA"
        return {
            "kind": "string",
            "storage": dtype.storage,
            "na": na,
            "strings": _encode_strings(values.to_numpy(dtype=object, na_value=None)),
        }
    if isinstance(dtype, pd.SparseDtype):
        return {
            "kind": "sparse",
            "dense": encode_values(_unwrap(pd.array(values.to_dense()))),
            "fill_value": values.fill_value,
        }
    if isinstance(values, pd.api.extensions.ExtensionArray) and dtype.name in MASKED:
        data_type = np.dtype(MASKED[dtype.name])
        return {
            "kind": "masked",
            "dtype": dtype.name,
            "data": values.to_numpy(dtype=data_type, na_value=data_type.type(0)),
            "mask": np.asarray(values.isna(), dtype=bool),
        }
    if isinstance(dtype, np.dtype):  # NumpyExtensionArray, DatetimeArray, TimedeltaArray
        return encode_values(values.to_numpy())
    raise SerializationError(
        f"cannot save a pandas column of dtype {dtype}: amber stores numpy, nullable, string, "
        "categorical, datetime, period, interval and sparse columns; convert it with "
        ".astype(...) first"
    )


def _unwrap(values: Any) -> Any:
    """The array behind an Index or Series."""
    np = _np()
    if isinstance(values.dtype, np.dtype) and hasattr(values, "to_numpy"):
        return values.to_numpy()  # a view of the numpy data, not a copy
    return getattr(values, "array", values)


def decode_values(state: Any) -> Any:
    """The array (numpy or pandas extension array) a ``encode_values`` dict describes."""
    pd, np = _pd(), _np()
    kind = _fields(state, "column", {"kind"}, _OPTIONAL)["kind"]
    fields = _fields(state, f"{kind!s:.20} column", {"kind", *_FIELDS.get(kind, ())})
    try:
        if kind == "numpy":
            return _array(fields["values"], "column values", "biufcmM")
        if kind == "object":
            if type(fields["items"]) is not list:
                raise FormatError("pandas object column items must be a list")
            out = np.empty(len(fields["items"]), dtype=object)
            out[:] = fields["items"]
            return out
        if kind == "object-str":
            strings = _decode_strings(fields["strings"])
            if None in strings:
                raise FormatError("an all-string object column holds no missing value")
            out = np.empty(len(strings), dtype=object)
            out[:] = strings
            return out
        if kind == "categorical":
            codes = _array(fields["codes"], "categorical codes", "i")
            categories = decode_index(fields["categories"])
            if type(fields["ordered"]) is not bool:
                raise FormatError("pandas categorical 'ordered' must be true or false")
            dtype = pd.CategoricalDtype(categories, ordered=fields["ordered"])
            return pd.Categorical.from_codes(codes, dtype=dtype)
        if kind == "datetimetz":
            values = _array(fields["values"], "datetime values", "M")
            tz = _decode_tz(fields["tz"])
            return pd.array(values).tz_localize("UTC").tz_convert(tz)
        if kind == "period":
            ordinals = _array(fields["ordinals"], "period ordinals", "i")
            freq = _string(fields["freq"], "period frequency", 40)
            dtype = pd.PeriodDtype(freq)
            return pd.arrays.PeriodArray(ordinals.astype(np.int64, copy=False), dtype=dtype)
        if kind == "interval":
            closed = _choice(fields["closed"], CLOSED, "interval side")
            left, right = decode_values(fields["left"]), decode_values(fields["right"])
            return pd.arrays.IntervalArray.from_arrays(left, right, closed=closed)
        if kind == "string":
            storage = _choice(fields["storage"], ("python", "pyarrow"), "string storage")
            na = _choice(fields["na"], ("nan", "NA"), "string missing value")
            if storage == "pyarrow" and not _has_pyarrow():
                storage = "python"  # the same values; pyarrow only changes the storage
            dtype = pd.StringDtype(storage, na_value=np.nan if na == "nan" else pd.NA)
            return pd.array(_decode_strings(fields["strings"]), dtype=dtype)
        if kind == "sparse":
            dense = decode_values(fields["dense"])
            fill = fields["fill_value"]
            if not _scalar(fill):
                raise FormatError("a pandas sparse fill value must be a number or None")
            return pd.arrays.SparseArray(dense, fill_value=fill)
        if kind == "masked":
            name = _choice(fields["dtype"], tuple(MASKED), "nullable dtype")
            data = _array(fields["data"], "nullable data", "biuf")
            mask = _array(fields["mask"], "nullable mask", "b")
            _length(mask, len(data), "nullable mask")
            if data.dtype.name != MASKED[name]:
                raise FormatError(f"pandas {name} data must be {MASKED[name]}, not {data.dtype}")
            array_class = {"b": pd.arrays.BooleanArray, "f": pd.arrays.FloatingArray}.get(
                data.dtype.kind, pd.arrays.IntegerArray
            )
            return array_class(data, mask)
    except FormatError:
        raise
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        raise FormatError(f"inconsistent pandas {kind} column: {_reason(exc)}") from None
    raise FormatError(f"unknown pandas column kind {str(kind)[:40]!r}")


_FIELDS = {
    "numpy": ("values",),
    "object": ("items",),
    "object-str": ("strings",),
    "categorical": ("codes", "categories", "ordered"),
    "datetimetz": ("values", "tz"),
    "period": ("ordinals", "freq"),
    "interval": ("left", "right", "closed"),
    "string": ("storage", "na", "strings"),
    "sparse": ("dense", "fill_value"),
    "masked": ("dtype", "data", "mask"),
}
_OPTIONAL = {name for names in _FIELDS.values() for name in names}


def _object_dtype(values: Any) -> Any:
    """``object`` for an object array, else None: pandas 3 infers ``str`` from an object
    array of strings unless told to keep it."""
    dtype = getattr(values, "dtype", None)
    return object if getattr(dtype, "hasobject", False) else None


def _numeric(name: Any) -> Any:
    """A numpy dtype from a plain name of a number, bool or date kind (``float64``)."""
    np = _np()
    if (
        type(name) is not str
        or not name.isascii()
        or not name.replace("[", "").replace("]", "").isalnum()
    ):
        raise FormatError("a pandas subtype must be a plain numpy dtype name")
    dtype = np.dtype(name)
    if dtype.kind not in "biufcmM":
        raise FormatError(f"a pandas subtype must be numeric, not {name[:20]!r}")
    return dtype


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def _scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str) or _is_numpy_scalar(value)


def _is_numpy_scalar(value: Any) -> bool:
    np = _np()
    return isinstance(value, np.generic) and value.dtype.kind in "biufcmM"


def _reason(exc: BaseException) -> str:
    """pandas' own message, one line, without object addresses."""
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


# -- indexes ------------------------------------------------------------------------------------


def encode_index(index: Any) -> dict[str, Any]:
    """Plain typed data for any pandas Index."""
    pd = _pd()
    if isinstance(index, pd.RangeIndex):
        return {
            "type": "range",
            "start": int(index.start),
            "stop": int(index.stop),
            "step": int(index.step),
            "name": index.name,
        }
    if isinstance(index, pd.MultiIndex):
        return {
            "type": "multi",
            "levels": [encode_index(level) for level in index.levels],
            "codes": [_np().asarray(codes) for codes in index.codes],
            "names": list(index.names),
        }
    out: dict[str, Any] = {
        "type": "index",
        "values": encode_values(_unwrap(index)),
        "name": index.name,
    }
    freq = getattr(index, "freq", None)
    if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and freq is not None:
        out["freq"] = freq.freqstr
    return out


def decode_index(state: Any) -> Any:
    """The Index an ``encode_index`` dict describes."""
    pd, np = _pd(), _np()
    kind = _fields(state, "index", {"type"}, _INDEX_OPTIONAL)["type"]
    try:
        if kind == "range":
            fields = _fields(state, "range index", {"type", "start", "stop", "step", "name"})
            bounds = [fields["start"], fields["stop"], fields["step"]]
            if not all(type(v) is int and abs(v) < 1 << 63 for v in bounds) or bounds[2] == 0:
                raise FormatError("a pandas RangeIndex needs integer bounds and a non-zero step")
            return pd.RangeIndex(*bounds, name=_label(fields["name"]))
        if kind == "multi":
            fields = _fields(state, "MultiIndex", {"type", "levels", "codes", "names"})
            levels, codes, names = fields["levels"], fields["codes"], fields["names"]
            if not (type(levels) is list and type(codes) is list and type(names) is list) or not (
                len(levels) == len(codes) == len(names) >= 1
            ):
                raise FormatError("a pandas MultiIndex needs as many levels, codes and names")
            return pd.MultiIndex(
                levels=[decode_index(level) for level in levels],
                codes=[_array(c, "MultiIndex codes", "i") for c in codes],
                names=[_label(n) for n in names],
                verify_integrity=True,
            )
        if kind == "index":
            fields = _fields(state, "index", {"type", "values", "name"}, {"freq"})
            values = decode_values(fields["values"])
            freq = fields.get("freq")
            name = _label(fields["name"])
            if freq is not None:
                freq = _string(freq, "index frequency", 40)
                if isinstance(values, np.ndarray) and values.dtype.kind == "m":
                    return pd.TimedeltaIndex(values, freq=freq, name=name)
                if not (isinstance(values, np.ndarray) and values.dtype.kind == "M") and not (
                    isinstance(values.dtype, pd.DatetimeTZDtype)
                ):
                    raise FormatError("only datetime and timedelta indexes have a frequency")
                return pd.DatetimeIndex(values, freq=freq, name=name)
            return pd.Index(values, name=name, dtype=_object_dtype(values), copy=False)
    except FormatError:
        raise
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        raise FormatError(f"inconsistent pandas index: {_reason(exc)}") from None
    raise FormatError(f"unknown pandas index type {str(kind)[:40]!r}")


_INDEX_OPTIONAL = {"start", "stop", "step", "name", "levels", "codes", "names", "values", "freq"}


def _label(value: Any) -> Any:
    """A row or column label: a number, string, None, or a tuple of those."""
    if _scalar(value) or isinstance(value, (datetime.date, datetime.timedelta)):
        return value
    if type(value) is tuple and all(_label(v) is v for v in value):
        return value
    raise FormatError("pandas labels must be numbers, strings, dates, None or tuples of them")


# -- frames, series, indexes and arrays as graph objects ------------------------------------------


def _frame_state(frame: Any) -> dict[str, Any]:
    return {
        "columns": encode_index(frame.columns),
        "index": encode_index(frame.index),
        "data": [encode_values(_unwrap(frame.iloc[:, i])) for i in range(frame.shape[1])],
        "attrs": dict(frame.attrs),
        "allows_duplicate_labels": bool(frame.flags.allows_duplicate_labels),
    }


def _frame(cls: type, state: Any) -> Any:
    pd = _pd()
    fields = _fields(
        state, "DataFrame", {"columns", "index", "data", "attrs", "allows_duplicate_labels"}
    )
    columns, index = decode_index(fields["columns"]), decode_index(fields["index"])
    data, attrs = fields["data"], fields["attrs"]
    if type(data) is not list or type(attrs) is not dict:
        raise FormatError("a pandas DataFrame stores its columns as a list and attrs as a dict")
    if type(fields["allows_duplicate_labels"]) is not bool:
        raise FormatError("a pandas DataFrame's allows_duplicate_labels must be true or false")
    _length(data, len(columns), "DataFrame column list")
    arrays = [decode_values(column) for column in data]
    for i, array in enumerate(arrays):
        _length(array, len(index), f"DataFrame column {i}")
    try:
        # Positional keys keep duplicate and non-string column labels exact; copy=False keeps
        # the file's arrays (mapped tensors) as the columns.
        columns_by_position = {
            i: array
            if _object_dtype(array) is None
            else pd.Series(array, index, object, copy=False)
            for i, array in enumerate(arrays)
        }
        frame = cls(columns_by_position, index=index, copy=False)
        if not arrays:
            frame = cls(index=index, columns=columns)
        frame.columns = columns
        frame.attrs = attrs
        frame.flags.allows_duplicate_labels = fields["allows_duplicate_labels"]
    except (ValueError, TypeError) as exc:
        raise FormatError(f"inconsistent pandas DataFrame: {_reason(exc)}") from None
    return frame


def _series_state(series: Any) -> dict[str, Any]:
    return {
        "values": encode_values(_unwrap(series)),
        "index": encode_index(series.index),
        "name": series.name,
        "attrs": dict(series.attrs),
    }


def _series(cls: type, state: Any) -> Any:
    fields = _fields(state, "Series", {"values", "index", "name", "attrs"})
    values, index = decode_values(fields["values"]), decode_index(fields["index"])
    _length(values, len(index), "Series")
    if type(fields["attrs"]) is not dict:
        raise FormatError("a pandas Series stores attrs as a dict")
    try:
        name = _label(fields["name"])
        series = cls(values, index=index, name=name, dtype=_object_dtype(values), copy=False)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"inconsistent pandas Series: {_reason(exc)}") from None
    series.attrs = fields["attrs"]
    return series


def _exactly(cls: type, value: Any, what: str) -> Any:
    if type(value) is not cls:
        raise FormatError(
            f"the stored pandas {what} rebuilds as {type(value).__name__}, not {cls.__name__}"
        )
    return value


def _index(cls: type, state: Any) -> Any:
    return _exactly(cls, decode_index(state), "index")


def _values(cls: type, state: Any) -> Any:
    return _exactly(cls, decode_values(state), "array")


def _dtype_state(dtype: Any) -> dict[str, Any]:
    pd = _pd()
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        return {
            "categories": None if categories is None else encode_index(categories),
            "ordered": dtype.ordered,
        }
    if isinstance(dtype, pd.StringDtype):
        return {"storage": dtype.storage, "na": "NA" if dtype.na_value is pd.NA else "nan"}
    if isinstance(dtype, pd.DatetimeTZDtype):
        return {"unit": dtype.unit, "tz": _encode_tz(dtype.tz)}
    if isinstance(dtype, pd.PeriodDtype):
        return {"freq": str(dtype)[len("period[") : -1]}
    if isinstance(dtype, pd.IntervalDtype):
        subtype = None if dtype.subtype is None else dtype.subtype.name
        return {"subtype": subtype, "closed": dtype.closed}
    if isinstance(dtype, pd.SparseDtype):
        return {"subtype": dtype.subtype.name, "fill_value": dtype.fill_value}
    return {"name": dtype.name}  # the nullable dtypes of MASKED


def _dtype(cls: type, state: Any) -> Any:
    pd, np = _pd(), _np()
    fields_given = set(state) if type(state) is dict else set()
    try:
        if "categories" in fields_given:
            fields = _fields(state, "categorical dtype", {"categories", "ordered"})
            categories = fields["categories"]
            ordered = fields["ordered"]
            if ordered not in (True, False, None):
                raise FormatError("a pandas categorical dtype's 'ordered' must be a boolean")
            built = pd.CategoricalDtype(
                None if categories is None else decode_index(categories), ordered=ordered
            )
        elif "storage" in fields_given:
            fields = _fields(state, "string dtype", {"storage", "na"})
            storage = _choice(fields["storage"], ("python", "pyarrow"), "string storage")
            na = _choice(fields["na"], ("nan", "NA"), "string missing value")
            if storage == "pyarrow" and not _has_pyarrow():
                storage = "python"
            built = pd.StringDtype(storage, na_value=np.nan if na == "nan" else pd.NA)
        elif "tz" in fields_given:
            fields = _fields(state, "datetime dtype", {"unit", "tz"})
            unit = _choice(fields["unit"], ("s", "ms", "us", "ns"), "datetime unit")
            built = pd.DatetimeTZDtype(unit, _decode_tz(fields["tz"]))
        elif "freq" in fields_given:
            freq = _string(_fields(state, "period dtype", {"freq"})["freq"], "period frequency", 40)
            built = pd.PeriodDtype(freq)
        elif "closed" in fields_given:
            fields = _fields(state, "interval dtype", {"subtype", "closed"})
            subtype = None if fields["subtype"] is None else _numeric(fields["subtype"])
            built = pd.IntervalDtype(subtype, _choice(fields["closed"], CLOSED, "interval side"))
        elif "fill_value" in fields_given:
            fields = _fields(state, "sparse dtype", {"subtype", "fill_value"})
            if not _scalar(fields["fill_value"]):
                raise FormatError("a pandas sparse fill value must be a number or None")
            built = pd.SparseDtype(_numeric(fields["subtype"]), fields["fill_value"])
        else:
            # Never pandas_dtype() on a file's string: its parser reaches extension dtypes
            # (importing pyarrow) and time zone lookups that open files by name.
            name = _choice(_fields(state, "dtype", {"name"})["name"], tuple(MASKED), "dtype")
            built = pd.api.types.pandas_dtype(name)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise FormatError(f"invalid pandas dtype: {_reason(exc)}") from None
    if type(built) is not cls:
        raise FormatError(f"the stored dtype is a {type(built).__name__}, not a {cls.__name__}")
    return built


for _name in DTYPES:
    register(_name, Constructor(_dtype_state, _dtype))

for _name in FRAMES["DataFrame"]:
    register(_name, Constructor(_frame_state, _frame))
for _name in FRAMES["Series"]:
    register(_name, Constructor(_series_state, _series))
for _names in INDEXES.values():
    for _name in _names:
        register(_name, Constructor(encode_index, _index))
for _names in ARRAYS.values():
    for _name in _names:
        register(_name, Constructor(encode_values, _values))

# Typed state (graph/schema.py): every pandas object amber rebuilds holds only data (arrays,
# numbers, strings, labels, attrs of data), and is a value wherever it appears.
SCHEMAS.add_data([*TYPES, *DTYPES])
SCHEMAS.add_value_types(DTYPES)  # calling a dtype class only makes a dtype
SCHEMAS.register_many([*TYPES, *DTYPES], Schema(default=DATA, whole=DATA))

__all__ = ["decode_index", "decode_values", "encode_index", "encode_values"]
