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


# -- the batched tree check refuses exactly what the per-tree check refused ---------------------


def _reference_check_tree(tree: object) -> None:
    """The per-tree check as it was before trees were checked in batches (the oracle)."""
    from amber.adapters.sklearn_validators import _one_parent

    count = int(tree.node_count)
    if count < 1:
        raise ValueError("no nodes")
    left, right = tree.children_left, tree.children_right
    if left.shape != (count,) or right.shape != (count,):
        raise ValueError("shapes")
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise ValueError("one child")
    inner = ~leaf
    index = np.arange(count)[inner]
    for child in (left[inner], right[inner]):
        if np.any((child <= index) | (child >= count)):
            raise ValueError("links")
    children = np.concatenate([left[inner], right[inner]])
    if children.size != count - 1:
        raise ValueError("not one tree")
    _one_parent(children, count)
    feature = tree.feature[inner]
    if np.any((feature < 0) | (feature >= tree.n_features)):
        raise ValueError("feature")
    if tree.value.shape[0] != count:
        raise ValueError("values")
    depth = int(tree.compute_node_depths().max()) - 1
    if not depth <= tree.max_depth < count:
        raise ValueError("max_depth")


def _mutated_trees() -> list[tuple[str, object]]:
    """Trees of a small forest, each with one hostile change (and some left intact)."""
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(X, y)
    out: list[tuple[str, object]] = []
    for number, estimator in enumerate(forest.estimators_):
        base = estimator.tree_.__getstate__()
        count = len(base["nodes"])
        inner = int(np.flatnonzero(base["nodes"]["left_child"] != -1)[-1])
        leaf = int(np.flatnonzero(base["nodes"]["left_child"] == -1)[0])
        changes = [
            ("intact", None, None, None),
            ("left -> outside", "left_child", inner, count),
            ("left -> itself", "left_child", inner, inner),
            ("right -> backwards", "right_child", inner, 0),
            ("right -> leaf only", "right_child", inner, -1),
            ("leaf gets a child", "left_child", leaf, count - 1),
            ("two parents", "right_child", 0, int(base["nodes"]["left_child"][0])),
            ("negative feature", "feature", 0, -5),
            ("feature too large", "feature", inner, 4),
            ("max_depth too small", "max_depth", None, 0),
            ("max_depth too large", "max_depth", None, count),
        ]
        for label, field, position, value in changes:
            tree = type(estimator.tree_)(*estimator.tree_.__reduce__()[1])
            state = {**base, "nodes": base["nodes"].copy()}
            if field == "max_depth":
                state["max_depth"] = value
            elif field is not None:
                state["nodes"][field][position] = value
            tree.__setstate__(state)
            out.append((f"tree {number}: {label}", tree))
    return out


def test_batched_tree_check_refuses_exactly_what_the_per_tree_check_refused() -> None:
    from amber.adapters.sklearn_validators import _check_trees

    cases = _mutated_trees()
    verdicts = []
    for label, tree in cases:
        try:
            _reference_check_tree(tree)
            reference = True
        except ValueError:
            reference = False
        try:
            _check_trees([tree])
            batched = True
        except ValueError:
            batched = False
        assert batched == reference, label
        verdicts.append(reference)
    assert verdicts.count(True) >= 4 and verdicts.count(False) >= 30  # both kinds tested
    good = [tree for (_, tree), ok in zip(cases, verdicts, strict=True) if ok]
    _check_trees(good)  # intact trees pass together
    for (_, tree), ok in zip(cases, verdicts, strict=True):
        if not ok:  # one bad tree among good ones, anywhere in the batch, is found
            for place in (0, len(good) // 2, len(good)):
                batch = [*good[:place], tree, *good[place:]]
                with pytest.raises(ValueError):
                    _check_trees(batch)


def test_one_bad_tree_in_a_forest_is_refused_at_load(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    path = tmp_path / "forest.amber"
    amber.save(forest, path)
    assert np.array_equal(amber.load(path).predict_proba(X), forest.predict_proba(X))
    tree = forest.estimators_[17].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["right_child"][0] = 0
    tree.__setstate__({**state, "nodes": nodes})
    _refused(forest, tmp_path, "Tree in the file is inconsistent")


def test_selected_keys_load_validated_objects(tmp_path: Path) -> None:
    # keys= builds part of a dict; validated objects in it are checked like any other.
    path = tmp_path / "parts.amber"
    amber.save({"m": sp.csr_matrix(np.eye(3)), "t": _tree()}, path)
    loaded = amber.load(path, keys=["m", "t"])
    assert (loaded["m"] != sp.csr_matrix(np.eye(3))).nnz == 0
    assert loaded["t"].tree_.node_count == _tree().tree_.node_count
