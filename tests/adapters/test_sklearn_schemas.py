"""The generated scikit-learn table covers the installed scikit-learn.

When this fails after a scikit-learn upgrade, regenerate the table and review its diff:

    python -m tests.adapters.generate_sklearn_schemas
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn

from amber.adapters.sklearn import OVERRIDES, TABLE
from amber.graph.schema import Slot
from tests.adapters.sklearn_cases import all_estimator_classes, assert_round_trip, iris

REGENERATE = "python -m tests.adapters.generate_sklearn_schemas"


def _table() -> dict:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def test_every_estimator_is_in_the_table() -> None:
    table = _table()
    missing = sorted(
        f"{cls.__module__}:{cls.__qualname__}"
        for cls in all_estimator_classes().values()
        if f"{cls.__module__}:{cls.__qualname__}" not in table["classes"]
    )
    assert not missing, (
        f"scikit-learn {sklearn.__version__} has estimators amber's table (made for "
        f"{table['scikit-learn']}) does not cover: {missing[:10]}; run {REGENERATE}"
    )


def test_the_table_was_made_for_this_scikit_learn() -> None:
    made_for = _table()["scikit-learn"].split(".")[:2]
    assert made_for == sklearn.__version__.split(".")[:2], f"run {REGENERATE}"


def test_no_callable_where_a_file_could_aim_library_code_at_it() -> None:
    """Reviewed: the attributes that may hold a function are parameters scikit-learn
    declares callable, or functions estimators keep; none is a fitted array or count."""
    table = _table()
    for name, entry in table["classes"].items():
        for attribute, slot in entry["attributes"].items():
            if Slot.from_json(slot).callables:
                assert not attribute.startswith("n_"), (name, attribute)
    for attribute in OVERRIDES:  # the overrides narrow what the table allows
        assert OVERRIDES[attribute].callables is False
        assert not OVERRIDES[attribute].objects


def _variants() -> dict[str, Any]:
    from sklearn import calibration, decomposition, linear_model, neighbors, neural_network
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.gaussian_process.kernels import Matern

    return {
        "knn-ball-tree": neighbors.KNeighborsClassifier(algorithm="ball_tree"),
        "kde-ball-tree": neighbors.KernelDensity(algorithm="ball_tree"),
        "mlp-sgd": neural_network.MLPClassifier(solver="sgd", max_iter=20, random_state=0),
        "mlp-lbfgs": neural_network.MLPClassifier(solver="lbfgs", max_iter=20, random_state=0),
        "sgd-modified-huber": linear_model.SGDClassifier(loss="modified_huber", random_state=0),
        "gpc-matern": GaussianProcessClassifier(kernel=Matern(nu=2.5), random_state=0),
        "kernel-pca-inverse": decomposition.KernelPCA(fit_inverse_transform=True),
        "calibrated-temperature": calibration.CalibratedClassifierCV(method="temperature", cv=2),
    }


@pytest.mark.parametrize("case", sorted(_variants()))
def test_variants_chosen_by_parameters_load(case: str, tmp_path: Path) -> None:
    """The table covers the internals that other solvers, losses and algorithms keep (the
    generator fits every option of every string parameter)."""
    X, y = iris()
    estimator = _variants()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X) if case.startswith("kde") else estimator.fit(X, y)
    assert_round_trip(estimator, X, tmp_path)


def test_histogram_boosting_with_categorical_features_loads(tmp_path: Path) -> None:
    """Its preprocessor (a ColumnTransformer holding partial(check_array, dtype=[...]))
    is what scikit-learn builds, checked by the booster's validator."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = np.c_[rng.integers(0, 5, 120), rng.random(120)]
    y = (X[:, 0] > 2).astype(int)
    model = HistGradientBoostingClassifier(categorical_features=[0], max_iter=5).fit(X, y)
    assert_round_trip(model, X, tmp_path)
