"""Consistency checks for scikit-learn's compiled members (trees, histogram predictors,
neighbour trees): their Cython code indexes memory with values from the file, so a hostile
file must not be able to make them read or write out of bounds. Each check raises
ValueError; the decoder turns it into a FormatError naming the class."""

from __future__ import annotations

from typing import Any

from amber.graph.constructors import register_validator


def _check_tree(tree: Any) -> None:
    """Child links must point forward inside the tree (no out-of-bounds read, no cycle),
    features inside the fitted feature count, values shaped for the node count. Uses the
    tree's array properties, which view its memory (``__getstate__`` would copy it)."""
    import numpy as np

    count = int(tree.node_count)
    left, right = tree.children_left, tree.children_right
    if left.shape != (count,) or right.shape != (count,):
        raise ValueError("child arrays do not match the node count")
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise ValueError("a node has one child")
    inner = ~leaf
    index = np.arange(count)[inner]
    for child in (left[inner], right[inner]):
        if np.any((child <= index) | (child >= count)):
            raise ValueError("a child index points outside the tree or backwards")
    feature = tree.feature[inner]
    if np.any((feature < 0) | (feature >= tree.n_features)):
        raise ValueError("a split uses a feature index outside the fitted features")
    if tree.value.shape[0] != count:
        raise ValueError("values do not match the node count")


def _check_tree_predictor(predictor: Any) -> None:
    import numpy as np

    nodes = predictor.nodes
    count = len(nodes)
    inner = nodes["is_leaf"] == 0
    index = np.flatnonzero(inner)
    left, right = nodes["left"][index], nodes["right"][index]
    # Children come after their parent and inside the array: forward links, no cycles.
    if index.size and (
        (left <= index).any() or (right <= index).any() or max(left.max(), right.max()) >= count
    ):
        raise ValueError("a child index points outside the tree or backwards")
    categorical = index[nodes["is_categorical"][index] != 0]
    if categorical.size and nodes["bitset_idx"][categorical].max() >= len(
        predictor.binned_left_cat_bitsets
    ):
        raise ValueError("a categorical split points outside the bitsets")


def _check_binary_tree(tree: Any) -> None:
    """KD and ball trees index their data through idx_array and node_data in compiled code:
    every index must stay inside the data, and the metric must fit its dimension."""
    import numpy as np

    state = tree.__getstate__()
    data, idx, node_data, node_bounds = state[0], state[1], state[2], state[3]
    n_nodes, metric, sample_weight = state[6], state[11], state[12]
    if data.ndim != 2:
        raise ValueError("tree data must be two-dimensional")
    n, d = data.shape
    if idx.shape != (n,) or not np.array_equal(np.sort(idx), np.arange(n)):
        raise ValueError("idx_array must be a permutation of the data rows")
    if node_data.shape != (n_nodes,) or node_bounds.ndim != 3:
        raise ValueError("node arrays do not match the node count")
    if node_bounds.shape[1:] != (n_nodes, d):
        raise ValueError("node bounds do not match the nodes and features")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if np.any((start < 0) | (start > end) | (end > n)):
        raise ValueError("a node's index range lies outside the data")
    if sample_weight is not None and np.shape(sample_weight) != (n,):
        raise ValueError("sample weights do not match the data")
    _, vec, mat = metric.__getstate__()[:3]
    if np.shape(vec) not in ((1,), (d,)) or np.shape(mat) not in ((1, 1), (d, d)):
        raise ValueError("the distance metric does not match the data dimension")


register_validator("sklearn.tree._tree:Tree", _check_tree)
register_validator("sklearn.neighbors._kd_tree:KDTree", _check_binary_tree)
register_validator("sklearn.neighbors._ball_tree:BallTree", _check_binary_tree)
register_validator(
    "sklearn.ensemble._hist_gradient_boosting.predictor:TreePredictor", _check_tree_predictor
)
