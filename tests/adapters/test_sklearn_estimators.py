"""Every scikit-learn estimator survives ``amber.save`` / ``amber.load`` exactly.

For each class of ``sklearn.utils.all_estimators()``: an unfitted instance keeps its
parameters, and a fitted one comes back with the same attributes (recursively, arrays
bit for bit) and the same output from every prediction and transform method. Estimators
amber cannot yet save are listed in NOT_COVERED with the reason; each is expected to fail
(strict xfail), so fixing one makes its test fail until its entry is removed.

Then hand-built cases: nested pipelines and column selections, search CVs, neighbor trees,
text vectorizers, calibrated and ensemble classifiers.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.decomposition import PCA
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (import-time switch)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MinMaxScaler,
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from amber.errors import AmberError
from tests.adapters.compare import assert_same
from tests.adapters.roundtrip import round_trip
from tests.adapters.sklearn_cases import (
    Data,
    all_estimator_classes,
    as_frame,
    assert_round_trip,
    data_for,
    fit,
    iris,
    make_estimator,
)

ESTIMATORS = all_estimator_classes()
MIN_COVERAGE = 0.98

# Estimators amber cannot save yet, with the reason. Empty: every estimator is covered.
NOT_COVERED: dict[str, str] = {}
# Those of NOT_COVERED that fail before fitting too (their default parameters fail).
NOT_COVERED_UNFITTED: frozenset[str] = frozenset()


def _not_covered(reason: str, raises: type[BaseException] = AmberError) -> pytest.MarkDecorator:
    """Expected to fail with an amber error; strict, so a fix makes the test ask for the
    entry's removal."""
    return pytest.mark.xfail(
        strict=True, raises=raises, reason=f"NOT_COVERED (remove once fixed): {reason}"
    )


def _estimator_params(failing: Collection[str]) -> list[Any]:
    return [
        pytest.param(name, marks=_not_covered(NOT_COVERED[name]) if name in failing else ())
        for name in ESTIMATORS
    ]


# -- every estimator ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", _estimator_params(NOT_COVERED))
def test_fitted_estimator_round_trips(name: str, tmp_path: Path) -> None:
    estimator = make_estimator(name, ESTIMATORS[name])
    data = data_for(name, estimator)
    fit(estimator, data)
    assert_round_trip(estimator, data.test, tmp_path)


def _frame_names() -> list[str]:
    """Estimators whose data is a 2-D table (not documents, dicts, labels, 1-D or 3-D
    arrays): each is fitted on a DataFrame too (the others never see one)."""
    out = []
    for name, cls in ESTIMATORS.items():
        if name in NOT_COVERED:  # expected to fail on arrays already
            continue
        if as_frame(data_for(name, make_estimator(name, cls))) is not None:
            out.append(name)
    return out


FRAME_ESTIMATORS = _frame_names()


@pytest.mark.parametrize("name", FRAME_ESTIMATORS)
def test_fitted_on_a_dataframe_round_trips(name: str, tmp_path: Path) -> None:
    """Fitted on a DataFrame, an estimator keeps ``feature_names_in_`` (and, for column
    transformers, column names): all of it comes back, and every method answers alike on
    a DataFrame."""
    estimator = make_estimator(name, ESTIMATORS[name])
    data = as_frame(data_for(name, estimator))
    assert data is not None
    fit(estimator, data)
    assert_round_trip(estimator, data.test, tmp_path)


def test_most_estimators_are_fitted_on_a_dataframe() -> None:
    assert len(FRAME_ESTIMATORS) >= 0.85 * len(ESTIMATORS), len(FRAME_ESTIMATORS)


@pytest.mark.parametrize("name", _estimator_params(NOT_COVERED_UNFITTED))
def test_unfitted_estimator_keeps_its_parameters(name: str, tmp_path: Path) -> None:
    estimator = make_estimator(name, ESTIMATORS[name])
    loaded = round_trip(estimator, tmp_path)
    assert type(loaded) is type(estimator)
    assert_same(estimator.get_params(deep=True), loaded.get_params(deep=True), "params")


def test_not_covered_lists_only_estimators() -> None:
    assert set(NOT_COVERED) <= set(ESTIMATORS), set(NOT_COVERED) - set(ESTIMATORS)
    assert set(NOT_COVERED_UNFITTED) <= set(NOT_COVERED)


def test_coverage() -> None:
    covered = len(ESTIMATORS) - len(NOT_COVERED)
    ratio = covered / len(ESTIMATORS)
    print(f"scikit-learn estimators covered: {covered}/{len(ESTIMATORS)} ({ratio:.1%})")
    assert ratio >= MIN_COVERAGE


# -- hand-built cases ---------------------------------------------------------------------------


def _classification() -> Data:
    return Data(*iris())


def _fitted(estimator: Any, data: Data | None = None) -> Any:
    return fit(estimator, data or _classification())


def test_nested_pipeline_union_and_column_selections(tmp_path: Path) -> None:
    columns = ColumnTransformer(
        [
            ("by_list", StandardScaler(), [0, 1]),
            (
                "by_slice",
                Pipeline([("scale", MinMaxScaler()), ("pca", PCA(n_components=1))]),
                slice(2, 4),
            ),
            (
                "by_mask",
                FeatureUnion(
                    [
                        ("poly", PolynomialFeatures(degree=2)),
                        ("bins", KBinsDiscretizer(n_bins=3, encode="ordinal")),
                    ]
                ),
                np.array([True, False, True, False]),
            ),
            ("dropped", "drop", [3]),
        ],
        remainder="passthrough",
    )
    model = Pipeline(
        [
            ("columns", columns),
            ("union", FeatureUnion([("pca", PCA(n_components=2)), ("keep", "passthrough")])),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    )
    loaded = assert_round_trip(_fitted(model), iris()[0], tmp_path)
    assert loaded.named_steps["columns"].named_transformers_["by_slice"]["pca"].n_components_ == 1


def test_column_selector_callable_is_trusted(tmp_path: Path) -> None:
    selector = make_column_selector(dtype_include=np.number)
    columns = ColumnTransformer([("numbers", StandardScaler(), selector)])
    loaded = round_trip(columns, tmp_path)
    assert_same(columns.get_params(deep=True), loaded.get_params(deep=True))


def _dataframe_columns(selection: str) -> ColumnTransformer:
    if selection == "names":
        return ColumnTransformer(
            [
                ("sepals", StandardScaler(), ["sepal_l", "sepal_w"]),
                ("petals", MinMaxScaler(), ["petal_l", "petal_w"]),
                ("colour", OneHotEncoder(), ["colour"]),
            ]
        )
    return ColumnTransformer(
        [
            ("numbers", StandardScaler(), make_column_selector(dtype_include=np.number)),
            ("others", OneHotEncoder(), make_column_selector(dtype_exclude=np.number)),
        ]
    )


@pytest.mark.parametrize("selection", ["names", "selectors"])
def test_column_transformer_on_a_dataframe(selection: str, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    X, y = iris()
    frame = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    frame["colour"] = np.array(["red", "blue", "green"], dtype=object)[np.arange(len(y)) % 3]
    model = Pipeline(
        [("columns", _dataframe_columns(selection)), ("clf", LogisticRegression(max_iter=200))]
    )
    loaded = assert_round_trip(_fitted(model, Data(frame, y)), frame, tmp_path)
    assert list(loaded.feature_names_in_) == list(frame.columns)


def test_column_transformer_passthrough_on_a_mixed_dataframe(tmp_path: Path) -> None:
    """The case users met: a ColumnTransformer passing the other columns through (its
    remainder a FunctionTransformer fitted on a DataFrame slice), then a forest, on a frame
    of floats, integers, booleans and strings."""
    pd = pytest.importorskip("pandas")
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris()
    frame = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    frame["count"] = np.arange(len(y)) % 7
    frame["flag"] = np.arange(len(y)) % 2 == 0
    frame["colour"] = np.array(["red", "blue", "green"], dtype=object)[np.arange(len(y)) % 3]
    model = Pipeline(
        [
            ("log", FunctionTransformer(feature_names_out="one-to-one")),
            (
                "columns",
                ColumnTransformer(
                    [("colour", OneHotEncoder(), ["colour"]), ("petals", MinMaxScaler(), [2, 3])],
                    remainder="passthrough",
                ),
            ),
            ("forest", RandomForestClassifier(n_estimators=5, random_state=0)),
        ]
    )
    loaded = assert_round_trip(_fitted(model, Data(frame, y)), frame, tmp_path)
    assert list(loaded.feature_names_in_) == list(frame.columns)
    assert_same(
        model[:-1].get_feature_names_out(), loaded[:-1].get_feature_names_out(), "feature names"
    )


def test_function_transformer_with_numpy_ufuncs(tmp_path: Path) -> None:
    transformer = FunctionTransformer(np.log1p, inverse_func=np.expm1, check_inverse=True)
    loaded = assert_round_trip(_fitted(transformer), iris()[0], tmp_path)
    assert loaded.func is np.log1p and loaded.inverse_func is np.expm1
    assert_same(transformer.inverse_transform(iris()[0]), loaded.inverse_transform(iris()[0]))


def _pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=200))])


SEARCHES = {
    "grid": lambda: GridSearchCV(_pipeline(), {"clf__C": [0.1, 1.0, 10.0]}, cv=3),
    "randomized": lambda: RandomizedSearchCV(
        _pipeline(), {"clf__C": [0.1, 1.0, 10.0]}, n_iter=2, cv=3, random_state=0
    ),
    "halving_grid": lambda: HalvingGridSearchCV(
        _pipeline(), {"clf__C": [0.1, 1.0, 10.0]}, cv=3, random_state=0
    ),
}


@pytest.mark.parametrize("kind", list(SEARCHES))
def test_fitted_search(kind: str, tmp_path: Path) -> None:
    search = _fitted(SEARCHES[kind]())
    loaded = assert_round_trip(search, iris()[0], tmp_path)
    assert loaded.best_params_ == search.best_params_


def test_randomized_search_over_scipy_distributions(tmp_path: Path) -> None:
    from scipy.stats import loguniform, norm, randint

    grid = {
        "clf__C": loguniform(1e-2, 1e1),
        "clf__tol": norm(loc=1e-3, scale=1e-5),
        "clf__max_iter": randint(100, 300),
    }
    search = RandomizedSearchCV(_pipeline(), grid, n_iter=2, cv=3, random_state=0)
    assert_round_trip(_fitted(search), iris()[0], tmp_path)


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree", "brute"])
def test_nearest_neighbors_index(algorithm: str, tmp_path: Path) -> None:
    knn = _fitted(KNeighborsClassifier(n_neighbors=3, algorithm=algorithm))
    loaded = assert_round_trip(knn, iris()[0], tmp_path)
    X = iris()[0][:5].copy()
    assert_same(knn.kneighbors(X), loaded.kneighbors(X))


def test_tfidf_vectorizer_keeps_its_vocabulary(tmp_path: Path) -> None:
    docs = [
        "the quick brown fox",
        "jumps over the lazy dog",
        "the dog sleeps",
        "a quick brown dog jumps",
    ]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(docs)
    loaded = assert_round_trip(vectorizer, docs, tmp_path)
    assert loaded.vocabulary_ == vectorizer.vocabulary_
    assert list(loaded.get_feature_names_out()) == list(vectorizer.get_feature_names_out())

    fixed = TfidfVectorizer(vocabulary={"dog": 0, "fox": 1, "quick": 2}).fit(docs)
    assert_round_trip(fixed, ["a dog", "a quick fox"], tmp_path)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_classifier(method: str, tmp_path: Path) -> None:
    calibrated = CalibratedClassifierCV(LinearSVC(random_state=0), method=method, cv=3)
    assert_round_trip(_fitted(calibrated), iris()[0], tmp_path)


def _base_classifiers() -> list[tuple[str, Any]]:
    return [
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ("nb", GaussianNB()),
        ("linear", _pipeline()),
    ]


def test_stacking_classifier(tmp_path: Path) -> None:
    stacking = StackingClassifier(
        _base_classifiers(), final_estimator=LogisticRegression(), passthrough=True, cv=3
    )
    loaded = assert_round_trip(_fitted(stacking), iris()[0], tmp_path)
    assert list(loaded.named_estimators_) == ["tree", "nb", "linear"]


@pytest.mark.parametrize("voting", ["hard", "soft"])
def test_voting_classifier(voting: str, tmp_path: Path) -> None:
    voting_clf = VotingClassifier(_base_classifiers(), voting=voting, weights=[1, 2, 1])
    assert_round_trip(_fitted(voting_clf), iris()[0], tmp_path)
