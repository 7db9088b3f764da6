"""The vectorized forest evaluator: bitwise what scikit-learn's own methods give, on random
forests and on rows that sit exactly on thresholds; None (the model answers) for every input
or model it does not take."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sklearn_ensemble = pytest.importorskip(
    "sklearn.ensemble", reason="the forest cases need scikit-learn (amber[sklearn])"
)
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

import amber  # noqa: E402
from amber.adapters.forest_evaluator import MAX_ROWS, ForestEvaluator  # noqa: E402

FORESTS = [RandomForestClassifier, ExtraTreesClassifier, RandomForestRegressor, ExtraTreesRegressor]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _forest(kind: type, seed: int, n_features: int, n_classes: int, rounded: bool, **kw):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, n_features))
    if rounded:  # repeated values: ties at thresholds, constant features
        X = np.round(X, 1)
    if kind in (RandomForestClassifier, ExtraTreesClassifier):
        y = rng.integers(0, n_classes, 120)
    else:
        y = X @ rng.standard_normal(n_features) + rng.standard_normal(120) * 0.1
    model = kind(n_estimators=int(rng.integers(1, 40)), random_state=seed, **kw).fit(X, y)
    return model, X


def _methods(model) -> list[str]:
    names = ["predict", "predict_proba", "predict_log_proba"]
    return [m for m in names if hasattr(model, m)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(FORESTS),
    seed=st.integers(0, 2**16),
    n_features=st.integers(1, 6),
    n_classes=st.integers(2, 5),
    rounded=st.booleans(),
    depth=st.sampled_from([None, 1, 3]),
    rows=st.integers(1, MAX_ROWS),
)
def test_bitwise_equal_to_the_estimator(kind, seed, n_features, n_classes, rounded, depth, rows):
    model, X = _forest(kind, seed, n_features, n_classes, rounded, max_depth=depth)
    evaluator = ForestEvaluator.build(model)
    assert evaluator is not None
    rng = np.random.default_rng(seed + 1)
    # Rows from the data, from the thresholds themselves, and integers.
    queries = [
        X[rng.integers(0, len(X), rows)],
        evaluator.probe_rows()[: min(rows, 64)].astype(np.float64),
        rng.integers(-3, 3, (rows, n_features)),
    ]
    for x in queries:
        for method in _methods(model):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = getattr(model, method)(x)
            assert _same(evaluator.call(method, x), expected), (method, x)


@pytest.mark.parametrize("kind", FORESTS)
def test_weighted_and_bootstrapped_variants(kind) -> None:
    extra = {"class_weight": "balanced"} if "Classifier" in kind.__name__ else {}
    model, X = _forest(kind, 7, 4, 3, False, bootstrap=True, max_features=2, **extra)
    evaluator = ForestEvaluator.build(model)
    assert evaluator is not None
    for method in _methods(model):
        assert _same(evaluator.call(method, X[:50]), getattr(model, method)(X[:50]))


def test_a_loaded_forest_gets_the_evaluator(tmp_path) -> None:
    model, X = _forest(RandomForestClassifier, 3, 5, 3, False)
    amber.save(model, tmp_path / "f.amber")
    loaded = amber.load(tmp_path / "f.amber")
    evaluator = ForestEvaluator.build(loaded)
    assert evaluator is not None
    assert _same(evaluator.call("predict_proba", X[:9]), model.predict_proba(X[:9]))


def test_inputs_it_does_not_take_go_to_the_model() -> None:
    model, X = _forest(RandomForestClassifier, 1, 3, 2, False)
    evaluator = ForestEvaluator.build(model)
    assert evaluator is not None
    nan = X[:2].copy()
    nan[0, 1] = np.nan
    declined = [
        nan,  # NaN routing is the model's
        np.full((1, 3), 1e39),  # float32 overflow: the model's error
        X[:2, :2],  # wrong width
        X[0],  # one dimension
        np.zeros((0, 3)),  # no rows
        np.zeros((MAX_ROWS + 1, 3)),  # a batch: the model's own walk is faster
        X[:2].astype(object),
        X[:2].tolist(),  # not an array
    ]
    for x in declined:
        assert evaluator.call("predict", x) is None
    assert evaluator.call("apply", X[:2]) is None  # not a method it answers


def test_models_it_does_not_take() -> None:
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(0).standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int)

    class MyForest(RandomForestClassifier):
        pass

    assert ForestEvaluator.build(MyForest(n_estimators=3).fit(X, y)) is None
    assert ForestEvaluator.build(GradientBoostingClassifier(n_estimators=3).fit(X, y)) is None
    assert ForestEvaluator.build(DecisionTreeClassifier().fit(X, y)) is None
    multi = RandomForestClassifier(n_estimators=3).fit(X, np.stack([y, 1 - y], axis=1))
    assert ForestEvaluator.build(multi) is None
    named = RandomForestClassifier(n_estimators=3).fit(pd.DataFrame(X, columns=list("abc")), y)
    assert ForestEvaluator.build(named) is None
    assert ForestEvaluator.build(RandomForestClassifier()) is None  # not fitted
    assert ForestEvaluator.build(object()) is None


def test_an_evaluator_that_disagrees_is_not_used() -> None:
    model, _ = _forest(RandomForestClassifier, 2, 3, 3, False)
    evaluator = ForestEvaluator(model)
    assert evaluator.agrees_with(model)
    internal = evaluator.left != np.arange(evaluator.left.size)
    evaluator.threshold[np.flatnonzero(internal)[0]] += 0.5  # one split moved
    assert not evaluator.agrees_with(model)


def test_depth_is_walked_not_read_and_cycles_are_refused() -> None:
    model, _ = _forest(RandomForestClassifier, 4, 3, 2, False)
    evaluator = ForestEvaluator(model)
    assert evaluator.depth == max(e.tree_.max_depth for e in model.estimators_)
    internal = np.flatnonzero(evaluator.left != np.arange(evaluator.left.size))
    evaluator.left[internal[-1]] = evaluator.roots[-1]  # a child that points back up
    with pytest.raises(ValueError, match="do not end in leaves"):
        evaluator._levels()


def test_a_model_that_fails_on_the_probe_answers_for_itself() -> None:
    model, _ = _forest(RandomForestClassifier, 5, 3, 2, False)

    def broken(X):  # type: ignore[no-untyped-def]
        raise RuntimeError("predict_proba is broken here")

    model.predict_proba = broken
    assert ForestEvaluator.build(model) is None


def test_deep_trees_and_large_calls_go_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import amber.adapters.forest_evaluator as fe

    model, X = _forest(RandomForestClassifier, 6, 3, 3, False)
    deepest = max(e.tree_.max_depth for e in model.estimators_)
    monkeypatch.setattr(fe, "MAX_DEPTH", deepest - 1)
    assert ForestEvaluator.build(model) is None  # a walk longer than the cap: not built
    monkeypatch.setattr(fe, "MAX_DEPTH", deepest)
    evaluator = ForestEvaluator.build(model)
    assert evaluator is not None
    per_row = evaluator.n_trees * (16 + 16 * evaluator.width)
    monkeypatch.setattr(fe, "MAX_CALL_BYTES", per_row * 4)
    assert evaluator.call("predict", X[:4]) is not None
    assert evaluator.call("predict", X[:5]) is None  # more work arrays than the cap
