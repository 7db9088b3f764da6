"""XGBoost and LightGBM models survive ``amber.save`` / ``amber.load`` exactly, through
their own native model formats, without ``trusted=``; callables are refused on save; and
hostile native payloads are refused with amber's errors, never by crashing the process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification, make_regression

import amber
from amber.adapters.xgboost import parse_ubjson
from amber.errors import FormatError, SerializationError
from tests.adapters.native_payload import (
    LOADED,
    REFUSED,
    load_isolated,
    mutations,
    replace_tensor,
    tensor_bytes,
)
from tests.adapters.roundtrip import round_trip
from tests.corpus.build import edit_manifest

ROUNDS = 30  # with early stopping: enough for a best iteration before the last


def _frame(X: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Numeric columns plus one pandas categorical column that carries signal."""
    frame = pd.DataFrame(X, columns=[f"num_{i}" for i in range(X.shape[1])])
    rng = np.random.RandomState(seed)
    frame["colour"] = pd.Categorical(rng.choice(["red", "green", "blue"], len(X)))
    return frame


@pytest.fixture(scope="module")
def binary() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(400, 5, n_informative=3, random_state=0)
    frame = _frame(X)
    y = np.where(frame["colour"] == "red", 1 - y, y)
    return frame, y


@pytest.fixture(scope="module")
def multiclass() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(450, 5, n_informative=3, n_redundant=1, n_classes=3, random_state=1)
    return _frame(X, 1), y


@pytest.fixture(scope="module")
def regression() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_regression(400, 5, noise=5.0, random_state=2)
    return _frame(X, 2), y


@pytest.fixture(scope="module")
def ranking() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    X, y = make_regression(300, 5, random_state=3)
    relevance = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))
    query = np.repeat(np.arange(30), 10)
    return _frame(X, 3), relevance, query


def _split(frame: pd.DataFrame, y: np.ndarray) -> tuple[Any, Any, Any, Any]:
    cut = int(len(frame) * 0.75)
    return frame.iloc[:cut], y[:cut], frame.iloc[cut:], y[cut:]


def _same_methods(loaded: Any, model: Any, X: Any, methods: tuple[str, ...]) -> None:
    for method in methods:
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))


# -- XGBoost -----------------------------------------------------------------------------------


def _same_xgb(loaded: Any, model: Any, X: Any, methods: tuple[str, ...]) -> None:
    assert type(loaded) is type(model)
    _same_methods(loaded, model, X, methods)
    np.testing.assert_equal(loaded.get_params(), model.get_params())  # NaN missing too
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.n_features_in_ == model.n_features_in_
    assert loaded.get_booster().feature_types == model.get_booster().feature_types
    assert loaded.get_booster().attributes() == model.get_booster().attributes()
    if "best_iteration" in model.get_booster().attributes():  # else the property raises
        assert loaded.best_iteration == model.best_iteration
        assert loaded.best_score == model.best_score
    assert loaded.evals_result() == model.evals_result()
    assert loaded.get_booster().num_boosted_rounds() == model.get_booster().num_boosted_rounds()


@pytest.mark.parametrize("data", ["binary", "multiclass"])
def test_xgb_classifier(data: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*request.getfixturevalue(data))
    model = xgb.XGBClassifier(
        n_estimators=ROUNDS, max_depth=3, enable_categorical=True, early_stopping_rounds=3
    )
    model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)
    assert model.best_iteration < ROUNDS - 1  # early stopping did stop early
    loaded = round_trip(model, tmp_path)
    _same_xgb(loaded, model, X_val, ("predict", "predict_proba"))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.n_classes_ == model.n_classes_


def test_xgb_regressor(regression: Any, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*regression)
    model = xgb.XGBRegressor(
        n_estimators=ROUNDS, max_depth=3, enable_categorical=True, early_stopping_rounds=3
    )
    model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)
    _same_xgb(round_trip(model, tmp_path), model, X_val, ("predict", "apply"))


def test_xgb_ranker(ranking: Any, tmp_path: Path) -> None:
    frame, relevance, query = ranking
    model = xgb.XGBRanker(n_estimators=10, max_depth=3, enable_categorical=True)
    model.fit(frame, relevance, qid=query, eval_set=[(frame, relevance)], eval_qid=[query])
    _same_xgb(round_trip(model, tmp_path), model, frame, ("predict",))


@pytest.mark.parametrize("cls", [xgb.XGBRFClassifier, xgb.XGBRFRegressor])
def test_xgb_random_forests(cls: type, binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    model = cls(n_estimators=5, max_depth=3, enable_categorical=True).fit(frame, y)
    loaded = round_trip(model, tmp_path)
    assert type(loaded) is cls
    _same_methods(loaded, model, frame, ("predict",))


def test_xgb_bare_booster(multiclass: Any, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*multiclass)
    train = xgb.DMatrix(X_train, y_train, enable_categorical=True)
    valid = xgb.DMatrix(X_val, y_val, enable_categorical=True)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    booster = xgb.train(
        params, train, ROUNDS, evals=[(valid, "valid")], early_stopping_rounds=3, verbose_eval=False
    )
    loaded = round_trip(booster, tmp_path)
    assert type(loaded) is xgb.Booster
    for dmatrix in (valid, xgb.DMatrix(X_val, enable_categorical=True)):
        np.testing.assert_array_equal(loaded.predict(dmatrix), booster.predict(dmatrix))
    np.testing.assert_array_equal(loaded.inplace_predict(X_val), booster.inplace_predict(X_val))
    assert loaded.best_iteration == booster.best_iteration
    assert loaded.feature_names == booster.feature_names
    assert loaded.feature_types == booster.feature_types


def test_xgb_other_boosters(regression: Any, tmp_path: Path) -> None:
    X = regression[0].drop(columns="colour").to_numpy()
    y = regression[1]
    for params in ({"booster": "dart", "max_depth": 2}, {"booster": "gblinear"}):
        booster = xgb.train(params, xgb.DMatrix(X, y), 4)
        loaded = round_trip(booster, tmp_path)
        np.testing.assert_array_equal(
            loaded.predict(xgb.DMatrix(X)), booster.predict(xgb.DMatrix(X))
        )


def test_xgb_unfitted_keeps_parameters(tmp_path: Path) -> None:
    model = xgb.XGBClassifier(n_estimators=7, max_depth=2, custom_flag=3)  # an extra kwarg
    loaded = round_trip(model, tmp_path)
    np.testing.assert_equal(loaded.get_params(), model.get_params())
    assert loaded.kwargs == {"custom_flag": 3}
    assert not loaded.__sklearn_is_fitted__()


# -- LightGBM ----------------------------------------------------------------------------------


def _same_lgb(loaded: Any, model: Any, X: Any, methods: tuple[str, ...]) -> None:
    assert type(loaded) is type(model)
    _same_methods(loaded, model, X, methods)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_name_ == model.feature_name_
    assert loaded.booster_.feature_name() == model.booster_.feature_name()
    assert loaded.n_features_in_ == model.n_features_in_
    assert loaded.best_iteration_ == model.best_iteration_
    assert loaded.best_score_ == model.best_score_
    assert loaded.evals_result_ == model.evals_result_
    assert loaded.booster_.num_trees() == model.booster_.num_trees()
    assert loaded.booster_.pandas_categorical == model.booster_.pandas_categorical


def _lgb_fit(model: Any, X_train: Any, y_train: Any, X_val: Any, y_val: Any, **fit: Any) -> Any:
    return model.fit(
        X_train,
        y_train,
        eval_X=(X_val,),
        eval_y=(y_val,),
        callbacks=[lgb.early_stopping(3, verbose=False)],
        **fit,
    )


@pytest.mark.parametrize("data", ["binary", "multiclass"])
def test_lgb_classifier(data: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*request.getfixturevalue(data))
    model = lgb.LGBMClassifier(n_estimators=ROUNDS, num_leaves=7, learning_rate=0.5, verbose=-1)
    _lgb_fit(model, X_train, y_train, X_val, y_val, categorical_feature=["colour"])
    assert 0 < model.best_iteration_ < ROUNDS
    loaded = round_trip(model, tmp_path)
    _same_lgb(loaded, model, X_val, ("predict", "predict_proba"))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.n_classes_ == model.n_classes_


def test_lgb_classifier_with_string_labels(binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    labels = np.array(["no", "yes"])[y]
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(frame, labels)
    loaded = round_trip(model, tmp_path)
    _same_methods(loaded, model, frame, ("predict", "predict_proba"))
    np.testing.assert_array_equal(loaded.classes_, ["no", "yes"])


def test_lgb_regressor(regression: Any, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*regression)
    model = lgb.LGBMRegressor(n_estimators=ROUNDS, num_leaves=7, learning_rate=0.5, verbose=-1)
    _lgb_fit(model, X_train, y_train, X_val, y_val)
    loaded = round_trip(model, tmp_path)
    _same_lgb(loaded, model, X_val, ("predict",))
    np.testing.assert_array_equal(
        loaded.predict(X_val, pred_leaf=True), model.predict(X_val, pred_leaf=True)
    )


def test_lgb_ranker(ranking: Any, tmp_path: Path) -> None:
    frame, relevance, query = ranking
    group = np.bincount(query)
    model = lgb.LGBMRanker(n_estimators=10, num_leaves=7, verbose=-1, min_child_samples=5)
    model.fit(frame, relevance, group=group)
    _same_lgb(round_trip(model, tmp_path), model, frame, ("predict",))


def test_lgb_bare_booster(regression: Any, tmp_path: Path) -> None:
    X_train, y_train, X_val, y_val = _split(*regression)
    train = lgb.Dataset(X_train, y_train, categorical_feature=["colour"])
    valid = lgb.Dataset(X_val, y_val, reference=train)
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 7, "learning_rate": 0.5, "verbose": -1},
        train,
        ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
    )
    assert 0 < booster.best_iteration < ROUNDS
    loaded = round_trip(booster, tmp_path)
    assert type(loaded) is lgb.Booster
    # predict() stops at best_iteration by default; all trees must still be there.
    np.testing.assert_array_equal(loaded.predict(X_val), booster.predict(X_val))
    np.testing.assert_array_equal(
        loaded.predict(X_val, num_iteration=-1), booster.predict(X_val, num_iteration=-1)
    )
    assert loaded.best_iteration == booster.best_iteration
    assert loaded.current_iteration() == booster.current_iteration()
    assert loaded.feature_name() == booster.feature_name()
    assert loaded.best_score == booster.best_score


# -- loading needs no trust; callables are refused --------------------------------------------


def test_boosters_are_trusted_by_default(binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    for model in (
        xgb.XGBClassifier(n_estimators=2, enable_categorical=True).fit(frame, y),
        lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(frame, y),
    ):
        path = tmp_path / "model.amber"
        amber.save(model, path)
        assert amber.inspect(path).untrusted_types == ()


def _objective(y_true: Any, y_pred: Any) -> Any:  # a custom objective: code, not data
    return y_pred - y_true, np.ones_like(y_pred)


@pytest.mark.parametrize(
    ("model", "param"),
    [
        (xgb.XGBRegressor(n_estimators=2, objective=_objective), "objective"),
        (xgb.XGBRegressor(n_estimators=2, eval_metric=[_objective]), "eval_metric"),
        (
            xgb.XGBRegressor(n_estimators=2, callbacks=[xgb.callback.EarlyStopping(rounds=2)]),
            "callbacks",
        ),
        (lgb.LGBMRegressor(n_estimators=2, objective=_objective, verbose=-1), "objective"),
    ],
)
def test_callables_are_refused_on_save(model: Any, param: str, tmp_path: Path) -> None:
    # Unfitted: the parameters alone decide (fitting with a callback needs an eval set).
    with pytest.raises(SerializationError, match=f"parameter '{param}'.*is code"):
        amber.save(model, tmp_path / "model.amber")
    assert not (tmp_path / "model.amber").exists()


# -- consistency checks ------------------------------------------------------------------------


def _refused(model: Any, tmp_path: Path, match: str) -> None:
    path = tmp_path / "bad.amber"
    amber.save(model, path)
    with pytest.raises(FormatError, match=match):
        amber.load(path)


def test_lgb_feature_count_must_match_the_booster(binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(frame, y)
    model._n_features = 3
    _refused(model, tmp_path, "_n_features differs from the booster")


def test_lgb_class_count_must_match_the_booster(multiclass: Any, tmp_path: Path) -> None:
    frame, y = multiclass
    model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(frame, y)
    model._classes, model._n_classes = np.arange(2), 2
    _refused(model, tmp_path, "classes do not fit")


def test_xgb_class_count_must_match_the_booster(multiclass: Any, tmp_path: Path) -> None:
    frame, y = multiclass
    model = xgb.XGBClassifier(n_estimators=2, enable_categorical=True).fit(frame, y)
    model.n_classes_ = 5
    _refused(model, tmp_path, "does not match the booster")


def test_fitted_attributes_cannot_shadow_methods(binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(frame, y)
    model.__dict__["predict"] = np.sum  # a trusted function in place of a method
    with pytest.raises(SerializationError, match=r"attribute 'predict'.*is code"):
        amber.save(model, tmp_path / "m.amber")


def test_file_attributes_cannot_shadow_methods(binary: Any, tmp_path: Path) -> None:
    frame, y = binary
    model = xgb.XGBClassifier(n_estimators=2, enable_categorical=True).fit(frame, y)
    model.__dict__["predict_proba"] = 3  # data, so it is saved; loading must refuse it
    _refused(model, tmp_path, "'predict_proba' is not a fitted attribute")


# -- hostile native payloads -------------------------------------------------------------------


def _saved(model: Any, tmp_path: Path) -> tuple[bytes, str]:
    """The file's bytes and the name of the tensor holding the native model."""
    path = tmp_path / "valid.amber"
    amber.save(model, path)
    data = path.read_bytes()
    from tests.corpus.build import manifest_of

    names = [t["name"] for t in manifest_of(data)["tensors"] if t["name"].startswith("booster.")]
    assert len(names) == 1, names  # the native model is large enough to be a tensor
    return data, names[0]


def _xgb_first_int32(payload: bytes, key: str) -> int:
    """Offset of the first value of the first tree's int32 array ``key`` (``[$l#<count>``)."""
    at = payload.index(key.encode()) + len(key)
    assert payload[at : at + 4] == b"[$l#"
    count_size = {"i": 1, "U": 1, "I": 2, "l": 4, "L": 8}[chr(payload[at + 4])]
    return at + 5 + count_size


def _xgb_bad_split(payload: bytes) -> bytes:
    """The first tree's first split on feature 1,000,000 (same length: an int32 in place)."""
    first = parse_ubjson(payload)["learner"]["gradient_booster"]["model"]["trees"][0]
    at = _xgb_first_int32(payload, "split_indices")
    assert int.from_bytes(payload[at : at + 4], "big", signed=True) == first["split_indices"][0]
    return payload[:at] + (10**6).to_bytes(4, "big") + payload[at + 4 :]


def _xgb_bad_child(payload: bytes) -> bytes:
    at = _xgb_first_int32(payload, "left_children")
    return payload[:at] + (0).to_bytes(4, "big") + payload[at + 4 :]  # root -> itself


def _lgb_edit(payload: bytes, field: str, value: str) -> bytes:
    """Tree 0's first ``field`` value replaced by ``value`` of the same length."""
    text = payload.decode()
    match = re.search(rf"\nTree=0\n(?:.*\n)*?{field}=(\S+)", text)
    assert match is not None and len(match.group(1)) == len(value)
    return (text[: match.start(1)] + value + text[match.end(1) :]).encode()


def _hostile_payloads(library: str, payload: bytes) -> list[tuple[str, bytes]]:
    cases = list(mutations(payload, seed=7, count=30))
    cases.append(("not the format at all", b"\x00garbage" * 100))
    if library == "xgboost":
        cases += [("split index beyond the features", _xgb_bad_split(payload))]
        cases += [("child link back to the root", _xgb_bad_child(payload))]
        cases += [("JSON instead of UBJSON", b'{"learner": {}}' + b" " * 5000)]
    else:
        cases += [("split feature beyond the features", _lgb_edit(payload, "split_feature", "9"))]
        cases += [("child link back to the root", _lgb_edit(payload, "left_child", "0"))]
        cases += [("tree sizes shifted", payload.replace(b"tree_sizes=", b"tree_sizes=1", 1))]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_hostile_native_payloads_never_crash(library: str, multiclass: Any, tmp_path: Path) -> None:
    frame, y = multiclass
    if library == "xgboost":
        model: Any = xgb.XGBClassifier(n_estimators=4, max_depth=3, enable_categorical=True)
    else:
        model = lgb.LGBMClassifier(n_estimators=4, num_leaves=7, verbose=-1)
    data, tensor = _saved(model.fit(frame, y), tmp_path)
    payload = tensor_bytes(data, tensor)
    cases = _hostile_payloads(library, payload)
    paths = []
    for i, (_, bad) in enumerate(cases):
        paths.append(tmp_path / f"case{i}.amber")
        paths[-1].write_bytes(replace_tensor(data, tensor, bad))
    # The re-sealing itself is sound: the untouched payload still loads.
    paths.append(tmp_path / "resealed.amber")
    paths[-1].write_bytes(replace_tensor(data, tensor, payload))
    codes = load_isolated(paths, frame.iloc[:20])
    assert codes.pop(paths[-1]) == LOADED
    outcomes = {name: codes[path] for (name, _), path in zip(cases, paths, strict=False)}
    # Every case ends in amber's FormatError, except mutations that happen to leave a valid
    # model (a changed digit of a leaf value): those load and predict.
    wrong = {name: code for name, code in outcomes.items() if code not in (REFUSED, LOADED)}
    assert not wrong, f"crashed (negative: signal) or escaped amber's errors: {wrong}"
    targeted = [name for name, _ in cases[-4:]]
    assert all(outcomes[name] == REFUSED for name in targeted), outcomes
    assert sum(code == REFUSED for code in outcomes.values()) >= len(outcomes) // 2


@pytest.mark.parametrize("key", ["n_jobs", "num_threads"])
def test_thread_counts_from_a_file_are_bounded(tmp_path: Path, key: str) -> None:
    """A huge thread count reaches OpenMP at predict time and crashes LightGBM's predictor;
    amber refuses it at save and, in a crafted file, at load."""
    X, y = np.random.default_rng(0).normal(size=(100, 3)), np.arange(100) % 2
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y)
    model.set_params(**{key: 10**7})
    with pytest.raises(SerializationError, match="thread count"):
        amber.save(model, tmp_path / "m.amber")
    model.set_params(**{key: 2})
    path = tmp_path / "m.amber"
    amber.save(model, path)
    assert amber.load(path).predict(X).shape == (100,)

    def hostile(manifest: dict) -> None:
        manifest["root"]["state"]["v"]["params"]["v"][key] = 10**7

    path.write_bytes(edit_manifest(path.read_bytes(), hostile))
    with pytest.raises(FormatError, match="thread count"):
        amber.load(path)  # refused before LightGBM sees it: no crash at predict


@pytest.mark.parametrize("value", ["-5", "abc", "1000000000"])
def test_best_iteration_attribute_must_be_a_round_of_the_model(value: str) -> None:
    from amber.adapters.xgboost import check_model

    X, y = np.random.default_rng(0).normal(size=(100, 3)), np.arange(100) % 2
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=4)
    booster.set_attr(best_iteration="3")
    check_model(bytes(booster.save_raw("ubj")))
    booster.set_attr(best_iteration=value)
    with pytest.raises(FormatError, match="best_iteration"):
        check_model(bytes(booster.save_raw("ubj")))
