"""Property: any nested structure of supported Python and numpy values round-trips exactly."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import amber

NUMERIC = [
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


def _arrays() -> st.SearchStrategy[np.ndarray]:
    dtype = st.sampled_from(NUMERIC).map(np.dtype) | st.sampled_from(
        [np.dtype(">f8"), np.dtype(">i4"), np.dtype("<U3"), np.dtype("S2"), np.dtype("M8[s]")]
    )
    return dtype.flatmap(
        lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    ).flatmap(lambda a: st.sampled_from([a, np.asfortranarray(a), a[::2] if a.ndim else a, a.T]))


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.complex_numbers()
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
    | st.binary(max_size=64)
    | st.binary(min_size=4097, max_size=4200)
    | st.sampled_from([np.float32(1.5), np.int8(-3), np.bool_(False), np.str_("x")])
)
HASHABLE = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=4)

VALUES = st.recursive(
    SCALARS | _arrays(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
        | st.dictionaries(HASHABLE, children, max_size=3)
        | st.frozensets(HASHABLE, max_size=3)
        | st.sets(HASHABLE, max_size=3)
        | st.lists(children, max_size=3).map(lambda v: np.array([*v, None], dtype=object))
        | st.dictionaries(st.text(max_size=3), children, max_size=3).map(OrderedDict)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types, arrays bitwise equal with dtype/shape, NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if not a.dtype.isnative:  # documented: values kept, stored and loaded little-endian
            a = a.astype(a.dtype.newbyteorder("="))
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(same(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True))
        return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return a == b


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_nested_structures_roundtrip_exactly(tmp_path_factory, value: Any) -> None:
    path: Path = tmp_path_factory.mktemp("prop") / "v.amber"
    amber.save({"value": value}, path)
    for kwargs in ({}, {"mmap": False}):
        loaded = amber.load(path, **kwargs)["value"]
        assert same(value, loaded), (value, loaded)
