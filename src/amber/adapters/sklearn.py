"""scikit-learn: estimators and the internals they hold (trees, losses, optimizers...).

Classes are trusted by a package rule rather than a list computed by importing all of
scikit-learn (which takes seconds): a name is accepted before import when its module is a
file of the installed scikit-learn outside test and vendored code and it names a class;
after import the object must be that class, defined in that module. Functions are a fixed
list of names (score functions, metrics, kernels), checked the same way.
"""

from __future__ import annotations

import inspect
from typing import Any

from amber.graph.constructors import allow_new_mode, register_validator
from amber.graph.trust import REGISTRY, PackageRule

DENIED_MODULES = (
    "sklearn.externals",
    "sklearn.utils._testing",
    "sklearn.utils.tests",
    "sklearn.tests",
    "sklearn._build_utils",
    "sklearn.conftest",
    "sklearn.utils._show_versions",
    "sklearn.datasets",
    "sklearn.experimental",
)

# Functions that estimators take as parameters (score_func, metric, kernel, scoring):
# pure computations on arrays. Trusted by name, in any scikit-learn module (they move
# between private modules across versions), and resolved to exactly that function.
FUNCTIONS = frozenset(
    {
        # feature_selection score functions
        "chi2",
        "f_classif",
        "f_oneway",
        "f_regression",
        "r_regression",
        "mutual_info_classif",
        "mutual_info_regression",
        # metrics used by make_scorer / scoring
        "accuracy_score",
        "balanced_accuracy_score",
        "f1_score",
        "fbeta_score",
        "precision_score",
        "recall_score",
        "roc_auc_score",
        "average_precision_score",
        "log_loss",
        "brier_score_loss",
        "matthews_corrcoef",
        "jaccard_score",
        "r2_score",
        "mean_squared_error",
        "mean_absolute_error",
        "median_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_log_error",
        "explained_variance_score",
        "max_error",
        "d2_absolute_error_score",
        "mean_poisson_deviance",
        "mean_gamma_deviance",
        "adjusted_rand_score",
        "rand_score",
        "adjusted_mutual_info_score",
        "normalized_mutual_info_score",
        "mutual_info_score",
        "homogeneity_score",
        "completeness_score",
        "v_measure_score",
        "fowlkes_mallows_score",
        "top_k_accuracy_score",
        # pairwise metrics and kernels
        "euclidean_distances",
        "manhattan_distances",
        "cosine_distances",
        "cosine_similarity",
        "linear_kernel",
        "polynomial_kernel",
        "rbf_kernel",
        "laplacian_kernel",
        "sigmoid_kernel",
        "chi2_kernel",
        "additive_chi2_kernel",
        "pairwise_distances",
        "pairwise_kernels",
        # held by fitted estimators (BisectingKMeans keeps the k-means routine it used)
        "_kmeans_single_lloyd",
        "_kmeans_single_elkan",
    }
)

# Classes whose names are not CapWords, trusted one by one.
TYPES = ["sklearn.compose._column_transformer:make_column_selector"]


def _is_sklearn_class(obj: object) -> bool:
    return isinstance(obj, type) and obj.__module__.split(".")[0] == "sklearn"


def _is_sklearn_function(obj: object) -> bool:
    return inspect.isfunction(obj) and obj.__module__.split(".")[0] == "sklearn"


REGISTRY.add_types(TYPES)
REGISTRY.add_rule(PackageRule("sklearn", accept=_is_sklearn_class, denied=DENIED_MODULES))
# KD/ball trees and distance metrics pickle as cls.__new__(cls) + __setstate__.
allow_new_mode(
    "sklearn.neighbors._kd_tree",
    "sklearn.neighbors._ball_tree",
    "sklearn.neighbors._binary_tree",
    "sklearn.metrics._dist_metrics",
)
REGISTRY.add_rule(
    PackageRule(
        "sklearn",
        accept=_is_sklearn_function,
        kind="function",
        denied=DENIED_MODULES,
        functions=FUNCTIONS,
    )
)


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
