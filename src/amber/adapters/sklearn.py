"""scikit-learn: estimators and the internals they hold (trees, losses, optimizers...).

Classes and functions are trusted by an exact, generated table (``sklearn_schemas.json``,
made by ``python -m tests.adapters.generate_sklearn_schemas`` and reviewed): the classes
scikit-learn's estimators really hold, and for each, what every attribute may hold. Judging
a name reads the table and imports nothing.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

from amber.graph.constructors import READ_ONLY_STATE, allow_new_mode, register_call
from amber.graph.schema import CALLABLE_GROUPS, REFUSED_KEYWORDS, SCHEMAS, Schema, Slot
from amber.graph.trust import REGISTRY, Registry

# Functions that estimators take as parameters (score_func, metric, kernel, scoring):
# pure computations on arrays. The generator finds them in the modules where this
# scikit-learn defines them; the table then trusts exactly those ``module:name``s.
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

# Reviewed security decisions, applied to these attributes of every scikit-learn class
# over what the generated table allows (tests/adapters/generate_sklearn_schemas.py).
OVERRIDES: dict[str, Slot] = {
    # A string makes joblib.Memory cache to (write files in) that folder at fit time.
    "memory": Slot(strings=frozenset()),
    # "filename"/"file" make a vectorizer open the strings it is given as paths.
    "input": Slot(strings=frozenset({"content"})),
    # pandas/polars output: the only other value imports a library at transform time.
    "_sklearn_output_config": Slot(strings=frozenset({"transform", "default", "pandas", "polars"})),
}
# Attributes whose dicts become keyword arguments of a function call: none may name a
# keyword through which a function writes into an array (``out=``, ``where=``) or starts
# worker processes (``n_jobs=``).
KEYWORD_ATTRIBUTES = frozenset(
    {"kw_args", "inv_kw_args", "_kwargs", "metric_params", "kernel_params", "kwds"}
)
# joblib evaluates a string ``pre_dispatch`` as a Python expression.
_PRE_DISPATCH = re.compile(r"^\s*(\d{1,4}\s*\*\s*)?n_jobs\s*$|^\s*\d{1,6}\s*$")


# Never taken from a file: worker processes are the caller's choice (set_params after load),
# and OpenMP thread counts are this machine's (a file asking for 100,000 threads at
# predict makes libgomp abort the process).
def _machine_threads(value: Any) -> Any:
    """k-means' ``_n_threads`` (an int its predict passes to OpenMP): this machine's
    logical CPUs within its affinity and cgroup quota. Not scikit-learn's default count of
    physical cores: joblib finds those by running ``lscpu``, and a load starts no process."""
    if value is None:
        return None
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return _openmp_effective_n_threads(only_physical_cores=False)


RESET = {
    "n_jobs": lambda value: None,
    "_n_threads": _machine_threads,
    # The histogram bin mapper's ``n_threads``: None is its own default, counted by
    # scikit-learn when it transforms (as a freshly fitted model does).
    "n_threads": lambda value: None,
}
# Parameters a search may set on its estimators (``param_grid`` keys) are parameters too:
# none of those the rules above refuse or reset.
_SEARCH_SPACES = ("param_grid", "param_distributions")
_UNSEARCHABLE = frozenset({*OVERRIDES, *RESET, "pre_dispatch"})
_REFUSED_KEYWORDS = REFUSED_KEYWORDS | RESET.keys()
# k-means routines take a thread count that reaches OpenMP: only BisectingKMeans keeps one.
KMEANS_ROUTINES = frozenset(
    {"sklearn.cluster._kmeans:_kmeans_single_lloyd", "sklearn.cluster._kmeans:_kmeans_single_elkan"}
)
# Set by ``set_output`` on any transformer, so allowed on every class (with its override).
ANYWHERE = frozenset({"_sklearn_output_config"})
_HGB = "sklearn.ensemble._hist_gradient_boosting.gradient_boosting"
CLASS_OVERRIDES = {
    "sklearn.cluster._bisect_k_means:BisectingKMeans": {
        "_kmeans_single": Slot(callables=True, functions=KMEANS_ROUTINES)
    },
    # Categorical features: the ColumnTransformer the booster builds (its validator checks
    # it is exactly the one scikit-learn makes).
    f"{_HGB}:HistGradientBoostingClassifier": {
        "_preprocessor": Slot(objects=frozenset({"estimator"}))
    },
    f"{_HGB}:HistGradientBoostingRegressor": {
        "_preprocessor": Slot(objects=frozenset({"estimator"}))
    },
}
TABLE = Path(__file__).with_name("sklearn_schemas.json")


def _check_state(state: Any) -> None:
    if type(state) is not dict:
        return
    pre_dispatch = state.get("pre_dispatch")
    if type(pre_dispatch) is str and not _PRE_DISPATCH.fullmatch(pre_dispatch):
        raise ValueError(
            f"pre_dispatch={pre_dispatch[:40]!r} is not a number or 'N*n_jobs' (joblib "
            "evaluates it as Python code)"
        )
    for key in _SEARCH_SPACES:
        spaces = state.get(key)
        for space in spaces if isinstance(spaces, list) else [spaces]:
            for name in space if isinstance(space, dict) else ():
                if str(name).rsplit("__", 1)[-1] in _UNSEARCHABLE:
                    raise ValueError(f"{key} may not search {str(name)[:60]!r}")
    for key in KEYWORD_ATTRIBUTES & state.keys():
        value = state[key]
        if isinstance(value, dict) and _REFUSED_KEYWORDS & set(value):
            raise ValueError(f"{key} may not pass {sorted(_REFUSED_KEYWORDS & set(value))}")


@functools.cache
def _table() -> dict[str, Any]:
    with TABLE.open(encoding="utf-8") as handle:
        return json.load(handle)


def _load_types(registry: Registry) -> None:
    registry.add_types(_table()["classes"])


# Functions scikit-learn itself places in the estimators it builds (HistGradientBoosting's
# categorical preprocessor passes numeric columns through ``partial(check_array, ...)``).
BUILT_IN_FUNCTIONS = ("sklearn.utils.validation:check_array",)


def _load_functions(registry: Registry) -> None:
    registry.add_functions([*_table()["functions"], *BUILT_IN_FUNCTIONS])


# Compiled classes rebuilt by ``cls.__new__`` + ``__setstate__(tuple)`` read their state
# tuple by position without bounds checks: a short tuple reads past its end while loading.
_POSITIONAL_STATE = (
    "sklearn.neighbors._kd_tree:",
    "sklearn.neighbors._ball_tree:",
    "sklearn.metrics._dist_metrics:",
)


@functools.cache
def _state_length(name: str) -> int:
    """How many items this scikit-learn's own ``__getstate__`` gives for the class."""
    import numpy as np

    module, _, qualname = name.partition(":")
    cls = getattr(sys.modules[module], qualname)
    if module.startswith("sklearn.neighbors"):
        return len(cls(np.zeros((2, 1))).__getstate__())
    from sklearn.metrics import DistanceMetric

    return len(DistanceMetric.get_metric("euclidean").__getstate__())


def _positional_check(name: str) -> Any:
    def check(state: Any) -> None:
        if type(state) is not tuple or len(state) != _state_length(name):
            raise ValueError(
                f"the state must be a tuple of {_state_length(name)} items, as this "
                "scikit-learn writes it"
            )

    return check


def _schema(name: str) -> Schema:
    """The schema of one class of the table (built when a load first meets the class)."""
    entry = _table()["classes"][name]
    attributes = {key: Slot.from_json(value) for key, value in entry["attributes"].items()}
    for key, slot in OVERRIDES.items():
        if key in attributes or key in ANYWHERE:
            attributes[key] = slot
    attributes.update(CLASS_OVERRIDES.get(name, {}))
    return Schema(
        attributes=attributes,
        whole=Slot.from_json(entry.get("whole", {})),
        check=_positional_check(name) if name.startswith(_POSITIONAL_STATE) else _check_state,
        reset=RESET,
    )


def _load_schemas() -> None:
    # 338 classes, 4,400 slots: built one class at a time, as loads meet them (building
    # them all took ~20 ms of a fresh process's first load).
    SCHEMAS.register_lazy(_table()["classes"], _schema)


def _is_estimator(cls: type) -> bool:
    return callable(getattr(cls, "fit", None)) and callable(getattr(cls, "get_params", None))


def _is_kernel(cls: type) -> bool:
    module = sys.modules.get("sklearn.gaussian_process.kernels")
    return module is not None and issubclass(cls, module.Kernel)


# Classes and functions: exactly those of the generated table, judged by name before
# anything is imported (a class the table does not know imports nothing).
REGISTRY.add_loader("sklearn", "type", _load_types)
REGISTRY.add_loader("sklearn", "function", _load_functions)
SCHEMAS.add_loader("sklearn", _load_schemas)
SCHEMAS.restrict(KMEANS_ROUTINES)
SCHEMAS.add_group("estimator", _is_estimator)
SCHEMAS.add_group("kernel", _is_kernel)
CALLABLE_GROUPS.add("kernel")
# KD/ball trees and distance metrics pickle as cls.__new__(cls) + __setstate__.
allow_new_mode(
    "sklearn.neighbors._kd_tree",
    "sklearn.neighbors._ball_tree",
    "sklearn.neighbors._binary_tree",
    "sklearn.metrics._dist_metrics",
)


def _tree_arguments(args: tuple) -> bool:
    """``Tree(n_features, n_classes, n_outputs)`` allocates per output and reads one class
    count per output: sizes must agree and stay small (R5)."""
    import numpy as np

    if len(args) != 3:
        return False
    n_features, n_classes, n_outputs = args
    return (
        type(n_features) is int
        and 0 < n_features < 1 << 31
        and type(n_outputs) is int
        and 0 < n_outputs <= 1 << 16
        and isinstance(n_classes, np.ndarray)
        and n_classes.dtype.kind == "i"
        and n_classes.shape == (n_outputs,)
        and bool(((n_classes >= 1) & (n_classes < 1 << 31)).all())
    )


register_call("sklearn.tree._tree:Tree", _tree_arguments)

READ_ONLY_STATE.update(
    {
        "sklearn.neighbors._kd_tree:KDTree",
        "sklearn.neighbors._ball_tree:BallTree",
    }
)
