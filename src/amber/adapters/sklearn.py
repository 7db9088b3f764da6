"""scikit-learn: estimators and the internals they hold (trees, losses, optimizers...).

Classes are trusted by a package rule rather than a list computed by importing all of
scikit-learn (which takes seconds): a name is accepted before import when its module is a
file of the installed scikit-learn outside test and vendored code and it names a class;
after import the object must be that class, defined in that module. Functions are a fixed
list of names (score functions, metrics, kernels), checked the same way.
"""

from __future__ import annotations

import inspect

from amber.graph.constructors import allow_new_mode
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
