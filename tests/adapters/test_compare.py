"""The comparison helper itself: it must see every difference a round trip could make."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import Bunch

from tests.adapters.compare import assert_same


def _fitted_pipeline() -> Pipeline:
    X = np.arange(24, dtype=float).reshape(8, 3) % 5
    y = np.array([0, 1] * 4)
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)


def _fitted_tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit([[0], [1], [2], [3]], [0, 1, 0, 1])


def _change_tree(tree: DecisionTreeClassifier) -> None:
    tree.tree_.value[0, 0, 0] += 1.0  # state reachable only through __reduce_ex__


def _set(attr: str, value: Any) -> Callable[[Any], None]:
    return lambda obj: setattr(obj, attr, value)


SAME = {
    "nan": (float("nan"), float("nan")),
    "nan_array": (np.array([np.nan, 1.0]), np.array([np.nan, 1.0])),
    "strided_view": (
        np.arange(12.0).reshape(3, 4)[:, ::2],
        np.arange(12.0).reshape(3, 4)[:, ::2].copy(),
    ),
    "sparse": (sp.csr_matrix(np.eye(3)), sp.csr_matrix(np.eye(3))),
    "random_state": (np.random.RandomState(3), np.random.RandomState(3)),
    "function": (np.log1p, np.log1p),
    "bunch": (Bunch(a=1), Bunch(a=1)),
}

DIFFERENT = {
    "float_bits": (0.0, -0.0),
    "int_vs_float": (1, 1.0),
    "dtype": (np.zeros(2, np.float32), np.zeros(2, np.float64)),
    "shape": (np.zeros((2, 1)), np.zeros((1, 2))),
    "one_ulp": (np.array([1.0]), np.array([np.nextafter(1.0, 2.0)])),
    "layout": (np.zeros((2, 3), order="F"), np.zeros((2, 3), order="C")),
    "object_array": (np.array(["a", 1], dtype=object), np.array(["a", 2], dtype=object)),
    "sparse": (sp.csr_matrix(np.eye(3)), sp.csr_matrix(2 * np.eye(3))),
    "random_state": (np.random.RandomState(3), np.random.RandomState(4)),
    "dict_order": ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    "list_vs_tuple": ([1], (1,)),
    "function_copy": (np.log1p, np.expm1),
}


@pytest.mark.parametrize("name", list(SAME))
def test_equal_values_pass(name: str) -> None:
    assert_same(*SAME[name])


@pytest.mark.parametrize("name", list(DIFFERENT))
def test_differences_are_reported(name: str) -> None:
    with pytest.raises(AssertionError):
        assert_same(*DIFFERENT[name])


@pytest.mark.parametrize(
    ("make", "change", "where"),
    [
        (_fitted_pipeline, lambda p: p["clf"].coef_.__setitem__((0, 0), 9.0), "coef_"),
        (_fitted_pipeline, _set("extra_", 1), "extra_"),
        (_fitted_pipeline, lambda p: p["scale"].set_params(with_mean=False), "with_mean"),
        (_fitted_tree, _change_tree, "tree_"),
    ],
)
def test_nested_estimator_changes_are_found(
    make: Callable[[], Any], change: Callable[[Any], None], where: str
) -> None:
    original = make()
    altered = copy.deepcopy(original)
    assert_same(original, altered)
    change(altered)
    with pytest.raises(AssertionError, match=where):
        assert_same(original, altered)


def test_sharing_must_be_kept() -> None:
    shared = [1]
    with pytest.raises(AssertionError, match="shared"):
        assert_same([shared, shared], [[1], [1]])
    twice = [[1]] * 2
    assert_same([shared, shared], twice)
    with pytest.raises(AssertionError, match="one object in the copy"):
        assert_same([[1], [1]], twice)
