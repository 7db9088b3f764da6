"""pandas objects round-trip exactly, load without copying numeric columns, and refuse
hostile state with FormatError (the pandas adapter, amber/adapters/pandas.py)."""

from __future__ import annotations

import datetime
import tracemalloc
import zoneinfo
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amber
from amber.adapters.pandas import decode_index, decode_values, encode_index
from amber.errors import FormatError, SerializationError
from tests.graph.crafting import find, planted, saved

pd = pytest.importorskip("pandas")


def _frame_with_attrs() -> Any:
    frame = pd.DataFrame({"a": [1, 2]})
    frame.attrs["source"] = "survey"
    return frame


def _cases() -> dict[str, Any]:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    return {
        "numbers-and-strings": pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [1.5, None]}),
        "series": pd.Series([1.0, 2.0], name="s"),
        "nullable": pd.DataFrame(
            {
                "i": pd.array([1, None], dtype="Int64"),
                "i8": pd.array([-1, None], dtype="Int8"),
                "u": pd.array([1, 2], dtype="UInt16"),
                "f": pd.array([1.5, None], dtype="Float32"),
                "b": pd.array([True, None], dtype="boolean"),
            }
        ),
        "strings": pd.DataFrame(
            {
                "default": pd.array(["a", None, "é"], dtype="string"),
                "python": pd.array(["a", None, "z"], dtype="string[python]"),
                "object": pd.Series(["a", 1, None], dtype=object),
                "all-str-object": pd.Series(["a", "bb", ""], dtype=object),
            }
        ),
        "categorical": pd.Series(pd.Categorical(["a", "b", "a", None], categories=["b", "a"])),
        "ordered-categorical": pd.Categorical([3, 1], categories=[3, 2, 1], ordered=True),
        "datetime-zone": pd.Series(pd.date_range("2020-03-28", periods=3, tz=paris)),
        "datetime-utc": pd.Series(pd.date_range("2020-01-01", periods=3, tz="UTC")),
        "datetime-fixed": pd.Series(
            pd.date_range("2020", periods=2, tz=datetime.timezone(datetime.timedelta(hours=5)))
        ),
        "datetime-naive-with-missing": pd.Series(pd.to_datetime(["2020-01-01", None])),
        "timedelta": pd.Series(pd.to_timedelta([1, 2], unit="s")),
        "period": pd.Series(pd.period_range("2020-01", periods=3, freq="M")),
        "interval": pd.Series(pd.interval_range(0, 3, closed="left")),
        "sparse": pd.Series(pd.arrays.SparseArray([0, 0, 1.5])),
        "complex-and-bool": pd.DataFrame({"c": [1 + 2j, 3j], "b": [True, False]}),
        "multiindex-columns": pd.DataFrame(
            np.arange(6).reshape(2, 3),
            columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["x", "y"]),
        ),
        "multiindex-rows": pd.Series(
            [1, 2, 3], index=pd.MultiIndex.from_product([["a"], [1, 2, 3]], names=["k", None])
        ),
        "duplicate-columns": pd.DataFrame([[1, 2]], columns=["a", "a"]),
        "integer-columns": pd.DataFrame([[1, 2]], columns=[10, 20]),
        "empty": pd.DataFrame(),
        "index-only": pd.DataFrame(index=pd.RangeIndex(3)),
        "empty-with-columns": pd.DataFrame({"a": pd.Series([], dtype="float32")}),
        "datetime-index-with-freq": pd.DataFrame(
            {"v": [1, 2, 3]},
            index=pd.date_range("2021-01-01", periods=3, freq="D", tz="UTC", name="when"),
        ),
        "categorical-index": pd.Series([1, 2], index=pd.CategoricalIndex(["x", "y"])),
        "period-index": pd.Series([1, 2], index=pd.period_range("2020", periods=2, freq="Y")),
        "interval-index": pd.Series([1, 2], index=pd.IntervalIndex.from_breaks([0, 1, 2])),
        "timedelta-index": pd.Series([1, 2], index=pd.timedelta_range("1D", periods=2, freq="h")),
        "range-index-step": pd.Series([1, 2], index=pd.RangeIndex(10, 0, -5, name="r")),
        "index": pd.Index(["a", "b"], name="n"),
        "attrs": _frame_with_attrs(),
    }


def _assert_same(loaded: Any, original: Any) -> None:
    assert type(loaded) is type(original)
    if isinstance(original, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, original, check_exact=True, check_freq=True)
        assert loaded.attrs == original.attrs
    elif isinstance(original, pd.Series):
        pd.testing.assert_series_equal(loaded, original, check_exact=True, check_freq=True)
    elif isinstance(original, pd.Index):
        pd.testing.assert_index_equal(loaded, original, exact=True)
    else:
        pd.testing.assert_extension_array_equal(loaded, original)


@pytest.mark.parametrize(("label", "value"), list(_cases().items()), ids=list(_cases()))
def test_round_trip_is_exact(label: str, value: Any, tmp_path: Any) -> None:
    path = tmp_path / f"{label}.amber"
    amber.save({"value": value, "in": [value]}, path)
    loaded = amber.load(path)
    _assert_same(loaded["value"], value)
    assert loaded["in"][0] is loaded["value"]  # shared objects stay shared


def test_index_keeps_its_frequency(tmp_path: Any) -> None:
    index = pd.date_range("2021-01-01", periods=4, freq="2D")
    amber.save(index, tmp_path / "i.amber")
    assert amber.load(tmp_path / "i.amber").freq == index.freq


def test_numeric_columns_load_without_copying(tmp_path: Any) -> None:
    n = 2_000_000
    frame = pd.DataFrame({"a": np.arange(n, dtype=np.float64), "b": np.arange(n)})
    amber.save(frame, tmp_path / "big.amber")
    tracemalloc.start()
    try:
        loaded = amber.load(tmp_path / "big.amber")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < frame.memory_usage().sum() / 20, peak  # 32 MB of columns, no copy of them
    pd.testing.assert_frame_equal(loaded, frame)


def test_pandas_is_not_imported_by_amber() -> None:
    import subprocess
    import sys

    code = "import amber, sys; amber.inspect; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unsupported_time_zone_is_refused_at_save(tmp_path: Any) -> None:
    class Odd(datetime.tzinfo):
        def utcoffset(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(0)

        def dst(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(0)

    series = pd.Series(pd.date_range("2020", periods=2, tz="UTC")).dt.tz_convert(Odd())
    with pytest.raises(SerializationError, match="zoneinfo, pytz and fixed-offset"):
        amber.save(series, tmp_path / "x.amber")
    assert not (tmp_path / "x.amber").exists()


def test_arrow_dtype_columns_are_refused_with_advice(tmp_path: Any) -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"a": pd.array([1, 2], dtype="int64[pyarrow]")})
    with pytest.raises(SerializationError, match=r"astype"):
        amber.save(frame, tmp_path / "x.amber")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), max_size=20),
    texts=st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=20),
    floats=st.lists(st.floats(allow_nan=True), max_size=20),
)
def test_random_columns_round_trip(ints: list, texts: list, floats: list, tmp_path: Any) -> None:
    n = min(len(ints), len(texts), len(floats))
    frame = pd.DataFrame(
        {
            "i": pd.array(ints[:n], dtype="Int64"),
            "s": pd.array(texts[:n], dtype="string"),
            "f": np.array(floats[:n], dtype=np.float64),
            "c": pd.Categorical(list(texts[:n])),
        }
    )
    amber.save(frame, tmp_path / "r.amber")
    pd.testing.assert_frame_equal(amber.load(tmp_path / "r.amber"), frame, check_exact=True)


# -- hostile state: each decoded by the adapter's own checks ------------------------------------


def _strings(data: bytes, offsets: list[int], mask: list[bool]) -> dict:
    return {
        "data": np.frombuffer(data, dtype=np.uint8).copy(),
        "offsets": np.array(offsets, dtype=np.int64),
        "mask": np.array(mask, dtype=bool),
    }


HOSTILE_VALUES = {
    "unknown kind": {"kind": "pickle"},
    "not a dict": ["numpy"],
    "extra field": {"kind": "numpy", "values": np.zeros(2), "call": "os.system"},
    "object array as numpy": {"kind": "numpy", "values": np.array([1, "a"], dtype=object)},
    "2-d numpy": {"kind": "numpy", "values": np.zeros((2, 2))},
    "codes out of range": {
        "kind": "categorical",
        "codes": np.array([0, 5], dtype=np.int8),
        "categories": {"type": "range", "start": 0, "stop": 2, "step": 1, "name": None},
        "ordered": False,
    },
    "float codes": {
        "kind": "categorical",
        "codes": np.array([0.0]),
        "categories": {"type": "range", "start": 0, "stop": 2, "step": 1, "name": None},
        "ordered": False,
    },
    "offsets past the data": {
        "kind": "string",
        "storage": "python",
        "na": "NA",
        "strings": _strings(b"ab", [0, 1, 9], [False, False]),
    },
    "decreasing offsets": {
        "kind": "string",
        "storage": "python",
        "na": "NA",
        "strings": _strings(b"abc", [0, 2, 1, 3], [False, False, False]),
    },
    "offsets and mask disagree": {
        "kind": "string",
        "storage": "python",
        "na": "NA",
        "strings": _strings(b"ab", [0, 2], [False, False]),
    },
    "invalid utf-8": {
        "kind": "string",
        "storage": "python",
        "na": "NA",
        "strings": _strings(b"\xff\xfe", [0, 2], [False]),
    },
    "unknown storage": {
        "kind": "string",
        "storage": "disk",
        "na": "NA",
        "strings": _strings(b"", [0], []),
    },
    "time zone path": {
        "kind": "datetimetz",
        "values": np.array([0], dtype="datetime64[ns]"),
        "tz": {"kind": "zoneinfo", "key": "../../../../etc/passwd"},
    },
    "absolute time zone": {
        "kind": "datetimetz",
        "values": np.array([0], dtype="datetime64[ns]"),
        "tz": {"kind": "zoneinfo", "key": "/etc/localtime"},
    },
    "offset of two days": {
        "kind": "datetimetz",
        "values": np.array([0], dtype="datetime64[ns]"),
        "tz": {"kind": "fixed", "seconds": 172800, "utc": False},
    },
    "bad period frequency": {
        "kind": "period",
        "ordinals": np.array([1], dtype=np.int64),
        "freq": "every full moon",
    },
    "interval left after right": {
        "kind": "interval",
        "left": {"kind": "numpy", "values": np.array([2, 3])},
        "right": {"kind": "numpy", "values": np.array([1, 4])},
        "closed": "left",
    },
    "interval lengths differ": {
        "kind": "interval",
        "left": {"kind": "numpy", "values": np.array([0])},
        "right": {"kind": "numpy", "values": np.array([1, 4])},
        "closed": "left",
    },
    "mask shorter than data": {
        "kind": "masked",
        "dtype": "Int64",
        "data": np.array([1, 2], dtype=np.int64),
        "mask": np.array([False]),
    },
    "masked data of another dtype": {
        "kind": "masked",
        "dtype": "Int8",
        "data": np.array([1, 2], dtype=np.int64),
        "mask": np.array([False, False]),
    },
    "sparse fill value object": {
        "kind": "sparse",
        "dense": {"kind": "numpy", "values": np.zeros(2)},
        "fill_value": [1],
    },
}


@pytest.mark.parametrize("state", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
def test_hostile_column_state_is_refused(state: Any) -> None:
    with pytest.raises(FormatError):
        decode_values(state)


HOSTILE_INDEXES = {
    "zero step": {"type": "range", "start": 0, "stop": 2, "step": 0, "name": None},
    "float bounds": {"type": "range", "start": 0.5, "stop": 2, "step": 1, "name": None},
    "huge bounds": {"type": "range", "start": 0, "stop": 2**70, "step": 1, "name": None},
    "label is a list": {"type": "range", "start": 0, "stop": 2, "step": 1, "name": [1]},
    "multi codes out of range": {
        "type": "multi",
        "levels": [{"type": "range", "start": 0, "stop": 2, "step": 1, "name": None}],
        "codes": [np.array([0, 7], dtype=np.int8)],
        "names": [None],
    },
    "multi levels and codes disagree": {
        "type": "multi",
        "levels": [{"type": "range", "start": 0, "stop": 2, "step": 1, "name": None}],
        "codes": [],
        "names": [None],
    },
    "frequency the values do not follow": {
        "type": "index",
        "values": {"kind": "numpy", "values": np.array([0, 5, 6], dtype="datetime64[D]")},
        "name": None,
        "freq": "D",
    },
    "frequency on integers": {
        "type": "index",
        "values": {"kind": "numpy", "values": np.array([0, 1])},
        "name": None,
        "freq": "D",
    },
    "unknown type": {"type": "exec"},
}


@pytest.mark.parametrize("state", list(HOSTILE_INDEXES.values()), ids=list(HOSTILE_INDEXES))
def test_hostile_index_state_is_refused(state: Any) -> None:
    with pytest.raises(FormatError):
        decode_index(state)


def test_encoded_state_decodes_to_the_same_values() -> None:
    for value in _cases().values():
        if isinstance(value, pd.Index):
            pd.testing.assert_index_equal(decode_index(encode_index(value)), value, exact=True)


def test_planted_file_with_short_column_is_refused(tmp_path: Any) -> None:
    data = saved(pd.DataFrame({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]}), tmp_path)

    def edit(root: dict) -> None:
        frame = find(root, "pandas:DataFrame")
        frame["state"]["v"]["data"]["v"].pop()  # two column labels, one column

    with pytest.raises(FormatError, match="column list"):
        amber.load(planted(data, edit, tmp_path))


def test_planted_callable_in_attrs_is_refused(tmp_path: Any) -> None:
    data = saved(pd.DataFrame({"a": [1]}), tmp_path)

    def edit(root: dict) -> None:
        frame = find(root, "pandas:DataFrame")
        frame["state"]["v"]["attrs"] = {"k": "dict", "v": {"f": {"k": "func", "name": "numpy:sum"}}}

    with pytest.raises(FormatError, match="function"):
        amber.load(planted(data, edit, tmp_path))


def test_frame_type_swapped_for_series_is_refused(tmp_path: Any) -> None:
    data = saved(pd.DataFrame({"a": [1]}), tmp_path)

    def edit(root: dict) -> None:
        find(root, "pandas:DataFrame")["type"] = "pandas:Series"

    with pytest.raises(FormatError):
        amber.load(planted(data, edit, tmp_path))


def test_dtypes_round_trip_as_instances_and_classes(tmp_path: Any) -> None:
    dtypes = [
        pd.CategoricalDtype(["a", "b"], ordered=True),
        pd.CategoricalDtype(),
        pd.DatetimeTZDtype("ns", "Europe/Paris"),
        pd.PeriodDtype("M"),
        pd.IntervalDtype("int64", "right"),
        pd.SparseDtype(float),
        pd.StringDtype(),
        pd.StringDtype("python", na_value=np.nan),
        pd.Int64Dtype(),
        pd.Float32Dtype(),
        pd.BooleanDtype(),
    ]
    classes = [pd.StringDtype, pd.Int8Dtype, pd.CategoricalDtype]
    amber.save({"instances": dtypes, "classes": classes}, tmp_path / "d.amber")
    loaded = amber.load(tmp_path / "d.amber")
    assert loaded["classes"] == classes
    for got, want in zip(loaded["instances"], dtypes, strict=True):
        assert type(got) is type(want)
        assert got == want


@pytest.mark.parametrize(
    "state",
    [
        {"name": "object"},  # a numpy dtype, not the pandas class named
        {"name": "Int64 "},
        {"name": ["Int64"]},
        {"storage": "disk", "na": "NA"},
        {"categories": None, "ordered": "yes"},
        {"name": "int64[pyarrow]"},  # pandas' string parser would import pyarrow
        {"name": "datetime64[ns, dateutil//etc/passwd]"},  # ... and open a file by name
        {"unit": "ns", "tz": {"kind": "zoneinfo", "key": "/etc/passwd"}},
        {"subtype": "object", "closed": "left"},
        {"subtype": "V8", "fill_value": 0},
    ],
)
def test_hostile_dtype_state_is_refused(state: Any, tmp_path: Any) -> None:
    data = saved(pd.Int64Dtype(), tmp_path)

    def edit(root: dict) -> None:
        node = find(root, "pandas:Int64Dtype")
        node["state"] = {"k": "dict", "v": state}

    with pytest.raises(FormatError):
        amber.load(planted(data, edit, tmp_path))
