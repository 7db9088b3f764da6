"""Objects whose compiled code trusts its data are checked after they are rebuilt: a file
cannot make a sparse matrix or a tree index outside its arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier

import amber
from amber.errors import FormatError


def _refused(obj: object, tmp_path: Path, match: str) -> None:
    path = tmp_path / "bad.amber"
    amber.save(obj, path)  # the writer stores what it is given
    with pytest.raises(FormatError, match=match):
        amber.load(path)


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr", "coo"])
def test_sparse_indices_outside_the_shape_are_refused(fmt: str, tmp_path: Path) -> None:
    matrix = getattr(sp, f"{fmt}_matrix")(np.eye(4))
    if fmt == "coo":
        matrix.coords[0][0] = 100
    else:
        matrix.indices[0] = 100
    _refused(matrix, tmp_path, "inconsistent")


def test_dia_offsets_must_match_data(tmp_path: Path) -> None:
    matrix = sp.dia_array(np.eye(3))
    matrix.offsets = np.array([0, 1])
    _refused(matrix, tmp_path, "one offset per diagonal")


def test_valid_sparse_matrices_still_load(tmp_path: Path) -> None:
    for fmt in ("csr", "csc", "bsr", "coo", "dia", "lil", "dok"):
        for api in ("matrix", "array"):
            original = getattr(sp, f"{fmt}_{api}")(np.arange(16.0).reshape(4, 4) % 3)
            path = tmp_path / f"{fmt}_{api}.amber"
            amber.save(original, path)
            loaded = amber.load(path)
            assert type(loaded) is type(original)
            assert (loaded != original).nnz == 0


def _tree() -> DecisionTreeClassifier:
    X, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(random_state=0).fit(X, y)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("left_child", 10**6, "outside the tree"),
        ("right_child", 0, "backwards"),
        ("feature", 99, "feature index"),
    ],
)
def test_tree_links_are_checked(field: str, value: int, match: str, tmp_path: Path) -> None:
    model = _tree()
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    model.tree_.__setstate__({**state, "nodes": nodes})
    _refused(model, tmp_path, match)


def test_histogram_tree_links_are_checked(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=2).fit(X, y)
    predictor = model._predictors[0][0]
    nodes = predictor.nodes.copy()
    nodes["left"][0] = 10**6
    predictor.nodes = nodes
    _refused(model, tmp_path, "outside the tree")
