"""Small, fast instances of every scikit-learn estimator and data each can be fit on.

``make_estimator(name)`` builds the estimator with small settings (few iterations, few
trees, small sub-estimators for meta-estimators) and every ``random_state`` fixed, so
that fitting is fast and every method is deterministic. ``data_for(name, estimator)``
picks training data from the estimator's tags, or from ``SPECIAL_DATA`` for estimators
that take text, dicts, label lists, kernels or images.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.datasets import load_iris
from sklearn.experimental import (  # noqa: F401  (import-time switches: list them too)
    enable_halving_search_cv,
    enable_iterative_imputer,
)
from sklearn.utils import all_estimators
from sklearn.utils._tags import get_tags

from tests.adapters.compare import assert_same
from tests.adapters.roundtrip import round_trip

# Settings scikit-learn's own common tests use for small data (few iterations...), when
# this version has them; PARAMS below takes precedence and alone suffices to build all.
try:
    from sklearn.utils._test_common.instance_generator import INIT_PARAMS
except ImportError:  # pragma: no cover - private module of scikit-learn
    INIT_PARAMS = {}

METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
)
N_PER_CLASS = 15


@dataclass(frozen=True)
class Data:
    """What to fit on (``fit(X)`` when ``y`` is None) and what to call methods on."""

    X: Any
    y: Any = None
    X_test: Any = None

    @property
    def test(self) -> Any:
        return self.X if self.X_test is None else self.X_test


def all_estimator_classes() -> dict[str, type]:
    """Every estimator class, experimental ones (enabled above) included, by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(all_estimators())


# -- data -------------------------------------------------------------------------------------


@functools.cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    """15 flowers of each of the 3 species: positive float features, integer classes."""
    X, y = load_iris(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:N_PER_CLASS] for c in range(3)])
    return X[keep], y[keep]


def regression_target() -> np.ndarray:
    X, _ = iris()
    noise = np.random.RandomState(0).normal(scale=0.1, size=len(X))
    return X @ np.array([0.5, -0.3, 0.2, 0.1]) + 1.0 + noise  # positive, for Gamma/Poisson


def _classes(y: np.ndarray) -> Data:
    return Data(iris()[0], y)


def _binary() -> Data:
    return _classes(iris()[1] == 2)


def _multi_output_classes() -> Data:
    X, y = iris()
    return _classes(np.column_stack([y, X[:, 0] > np.median(X[:, 0])]).astype(np.int64))


def _multi_output_regression() -> Data:
    y = regression_target()
    return Data(iris()[0], np.column_stack([y, y**2]))


def _with_missing() -> Data:
    X, y = iris()
    X = X.copy()
    X[::4, 1] = np.nan
    X[1::5, 3] = np.nan
    return Data(X, y)


def _semi_supervised() -> Data:
    X, y = iris()
    y = y.copy()
    y[::3] = -1  # unlabeled
    return Data(X, y)


def _categories() -> Data:
    X, y = iris()
    colours = np.array(["red", "green", "blue", "white"], dtype=object)
    sizes = np.array(["S", "M", "L"], dtype=object)
    X_cat = np.column_stack([colours[(X[:, 0] * 3).astype(int) % 4], sizes[y]])
    return Data(X_cat, y)


def _small_integers() -> Data:
    X, y = iris()
    return Data(np.floor(X).astype(np.int64), y)


def _documents() -> Data:
    words = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey"]
    _, y = iris()
    docs = [" ".join(words[(i * j) % len(words)] for j in range(1, 4 + i % 3)) for i in range(45)]
    return Data(docs, y)


def _dicts() -> Data:
    X, y = iris()
    return Data([{"length": a, "width": b, f"kind_{int(c)}": 1} for a, b, c, _ in X], y)


def _counts() -> Data:
    X, y = _small_integers().X, iris()[1]
    return Data(X * (X > 1), y)


def _one_dimensional() -> Data:
    return Data(iris()[0][:, 2], regression_target())


def _labels() -> Data:
    names = np.array(["setosa", "versicolor", "virginica"])
    return Data(names[iris()[1]])


def _label_sets() -> Data:
    y = iris()[1]
    return Data([(int(c),) if c else (0, 2) for c in y])


def _kernel() -> Data:
    X = iris()[0]
    return Data(X @ X.T, iris()[1])


def _images() -> Data:
    return Data(np.random.RandomState(0).uniform(size=(3, 6, 5)))


def as_frame(data: Data) -> Data | None:
    """``data`` with ``X`` (and ``X_test``) as pandas DataFrames of named columns, as users
    fit estimators (which then keep ``feature_names_in_`` and other DataFrame-only state);
    None when ``X`` is not a 2-D array."""
    import pandas as pd

    if not isinstance(data.X, np.ndarray) or data.X.ndim != 2:
        return None

    def frame(X: Any) -> Any:
        if X is None:
            return None
        return pd.DataFrame(X, columns=[f"col_{i}" for i in range(X.shape[1])])

    return Data(frame(data.X), data.y, frame(data.X_test))


SPECIAL_DATA: dict[str, Callable[[], Data]] = {
    "CategoricalNB": _small_integers,
    "CountVectorizer": _documents,
    "DictVectorizer": _dicts,
    "FeatureHasher": _dicts,
    "HashingVectorizer": _documents,
    "IsotonicRegression": _one_dimensional,
    "IterativeImputer": _with_missing,
    "KNNImputer": _with_missing,
    "KernelCenterer": _kernel,
    "LabelBinarizer": _labels,
    "LabelEncoder": _labels,
    "LabelPropagation": _semi_supervised,
    "LabelSpreading": _semi_supervised,
    "MissingIndicator": _with_missing,
    "MultiLabelBinarizer": _label_sets,
    "OneHotEncoder": _categories,
    "OrdinalEncoder": _categories,
    "PatchExtractor": _images,
    "SelfTrainingClassifier": _semi_supervised,
    "SimpleImputer": _with_missing,
    "TargetEncoder": _categories,
    "TfidfTransformer": _counts,
    "TfidfVectorizer": _documents,
}


def data_for(name: str, estimator: BaseEstimator) -> Data:
    if name in SPECIAL_DATA:
        return SPECIAL_DATA[name]()
    tags = get_tags(estimator)
    if not tags.target_tags.single_output:
        return _multi_output_classes() if is_classifier(estimator) else _multi_output_regression()
    if is_classifier(estimator) and not tags.classifier_tags.multi_class:
        return _binary()
    if is_regressor(estimator):
        return Data(iris()[0], regression_target())
    return Data(*iris())


# -- estimators -------------------------------------------------------------------------------


def _classifier() -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=50, random_state=0)


def _regressor() -> BaseEstimator:
    from sklearn.linear_model import Ridge

    return Ridge(random_state=0)


def _trees_and_linear(kind: str) -> list[tuple[str, BaseEstimator]]:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if kind == "classifier":
        return [("tree", DecisionTreeClassifier(max_depth=2)), ("linear", _classifier())]
    return [("tree", DecisionTreeRegressor(max_depth=2)), ("linear", _regressor())]


def _params() -> dict[str, Callable[[], dict[str, Any]]]:
    """Constructor arguments by estimator name: every required argument (sub-estimators),
    and settings that keep fitting fast on 45 samples. Built fresh for each instance."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    def frozen() -> dict[str, Any]:
        return {"estimator": fit(_classifier(), Data(*iris()))}

    return {
        "ClassifierChain": lambda: {"estimator": _classifier(), "cv": 3},
        "ColumnTransformer": lambda: {
            "transformers": [
                ("scale", StandardScaler(), [0, 1]),
                ("pca", PCA(n_components=1), slice(2, 4)),
            ]
        },
        "FeatureUnion": lambda: {
            "transformer_list": [("pca", PCA(n_components=2)), ("scale", StandardScaler())]
        },
        "FixedThresholdClassifier": lambda: {"estimator": _classifier()},
        "FrozenEstimator": frozen,
        "GridSearchCV": lambda: {
            "estimator": _classifier(),
            "param_grid": {"C": [0.1, 1.0]},
            "cv": 2,
        },
        "HalvingGridSearchCV": lambda: {
            "estimator": _classifier(),
            "param_grid": {"C": [0.1, 1.0]},
            "cv": 2,
            "min_resources": "smallest",
        },
        "HalvingRandomSearchCV": lambda: {
            "estimator": _classifier(),
            "param_distributions": {"C": [0.1, 1.0]},
            "cv": 2,
        },
        "MultiOutputClassifier": lambda: {"estimator": _classifier()},
        "MultiOutputRegressor": lambda: {"estimator": _regressor()},
        "OneVsOneClassifier": lambda: {"estimator": _classifier()},
        "OneVsRestClassifier": lambda: {"estimator": _classifier()},
        "OutputCodeClassifier": lambda: {"estimator": _classifier()},
        "Pipeline": lambda: {"steps": [("scale", StandardScaler()), ("clf", _classifier())]},
        "RFE": lambda: {"estimator": _classifier()},
        "RFECV": lambda: {"estimator": _classifier(), "cv": 3},
        "RandomizedSearchCV": lambda: {
            "estimator": _classifier(),
            "param_distributions": {"C": [0.1, 1.0]},
            "n_iter": 2,
            "cv": 2,
        },
        "RegressorChain": lambda: {"estimator": _regressor(), "cv": 3},
        "SelectFromModel": lambda: {"estimator": _classifier()},
        "SelfTrainingClassifier": lambda: {"estimator": _classifier(), "max_iter": 5},
        "SequentialFeatureSelector": lambda: {
            "estimator": _classifier(),
            "n_features_to_select": 2,
            "cv": 2,
        },
        "SparseCoder": lambda: {"dictionary": np.random.RandomState(0).normal(size=(3, 4))},
        "StackingClassifier": lambda: {"estimators": _trees_and_linear("classifier"), "cv": 3},
        "StackingRegressor": lambda: {"estimators": _trees_and_linear("regressor"), "cv": 3},
        "TunedThresholdClassifierCV": lambda: {"estimator": _classifier(), "cv": 3},
        "VotingClassifier": lambda: {
            "estimators": _trees_and_linear("classifier"),
            "voting": "soft",
        },
        "VotingRegressor": lambda: {"estimators": _trees_and_linear("regressor")},
    }


PARAMS = _params()


def _sklearn_params(cls: type) -> dict[str, Any]:
    params = INIT_PARAMS.get(cls, {})
    return dict(params[0] if isinstance(params, list) else params)


def make_estimator(name: str, cls: type) -> BaseEstimator:
    """A fresh instance with small settings and every random_state (nested too) fixed."""
    params = PARAMS[name]() if name in PARAMS else _sklearn_params(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated estimators
        estimator = cls(**params)
    seeds = {
        key: 0
        for key, value in estimator.get_params(deep=True).items()
        if key.endswith("random_state") and value is None
    }
    if seeds:  # FrozenEstimator refuses set_params on its (already seeded) estimator
        estimator.set_params(**seeds)
    return estimator


def fit(estimator: BaseEstimator, data: Data) -> BaseEstimator:
    """Fit quietly: convergence and deprecation warnings are beside the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data.y is None:
            return estimator.fit(data.X)
        return estimator.fit(data.X, data.y)


def method_outputs(estimator: BaseEstimator, X: Any) -> dict[str, Any]:
    """The output of every method of ``METHODS`` the estimator offers, or the exception
    it raises (type and message), by method name.

    Each call gets its own copy of ``X``: scikit-learn takes shortcuts when the input *is*
    the training array it kept (``euclidean_distances(X, X)`` zeroes the diagonal), which
    an estimator rebuilt from a file, holding a copy, would not take."""
    out: dict[str, Any] = {}
    for method in METHODS:
        if not hasattr(estimator, method):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[method] = _plain(getattr(estimator, method)(copy.deepcopy(X)))
            except Exception as exc:
                out[method] = (type(exc), str(exc))
    return out


def _plain(result: Any) -> Any:
    """A DataFrame answer (estimators fitted on DataFrames may give one) as its column
    names, dtypes and values, which the comparison walks; anything else as it is."""
    if type(result).__module__.startswith("pandas") and hasattr(result, "columns"):
        return (
            "DataFrame",
            [str(c) for c in result.columns],
            [str(t) for t in result.dtypes],
            result.to_numpy(),
        )
    return result


def assert_round_trip(
    estimator: BaseEstimator, X: Any, directory: Path, **load_options: Any
) -> BaseEstimator:
    """Save and load ``estimator``; assert the copy has the same attributes, recursively,
    and gives the same output from every method of ``METHODS`` on ``X``. Returns the copy."""
    loaded = round_trip(estimator, directory, **load_options)
    assert_same(estimator, loaded, type(estimator).__name__)
    assert_same(method_outputs(estimator, X), method_outputs(loaded, X), "outputs")
    return loaded
