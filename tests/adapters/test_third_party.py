"""Third-party models people save (statsmodels results, category_encoders with pandas in
their state) round-trip once their classes are trusted, in one step from inspect."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.errors import FormatError, UntrustedTypeError
from tests.graph.crafting import find, planted, saved

pd = pytest.importorskip("pandas")


def _load_trusting_what_inspect_lists(path: Path) -> object:
    names = amber.inspect(path).untrusted_types
    with pytest.raises(UntrustedTypeError):
        amber.load(path)
    return amber.load(path, trusted=names)


def test_statsmodels_results_round_trip(tmp_path: Path) -> None:
    sm = pytest.importorskip("statsmodels.api")
    x = sm.add_constant(np.arange(40.0))
    y = np.arange(40.0) + np.random.default_rng(0).normal(size=40)
    results = sm.OLS(y, x).fit()
    amber.save(results, tmp_path / "ols.amber")
    loaded = _load_trusting_what_inspect_lists(tmp_path / "ols.amber")
    assert np.array_equal(loaded.predict(x), results.predict(x))
    assert np.array_equal(loaded.params, results.params)
    assert loaded.summary().as_text() == results.summary().as_text()


def test_category_encoders_with_pandas_state_round_trip(tmp_path: Path) -> None:
    ce = pytest.importorskip("category_encoders")
    frame = pd.DataFrame({"city": ["a", "b", "a", "c"] * 10, "x": np.arange(40.0)})
    target = np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = ce.TargetEncoder(cols=["city"]).fit(frame, target)
    amber.save(encoder, tmp_path / "enc.amber")
    loaded = _load_trusting_what_inspect_lists(tmp_path / "enc.amber")
    pd.testing.assert_frame_equal(loaded.transform(frame), encoder.transform(frame))


def test_method_name_may_hold_data_in_a_trusted_class_but_never_a_function(
    tmp_path: Path,
) -> None:
    sm = pytest.importorskip("statsmodels.api")
    results = sm.OLS(np.arange(5.0), np.ones((5, 1))).fit()
    data = saved(results, tmp_path)
    names = amber.inspect(tmp_path / "benign.amber").untrusted_types

    def edit(root: dict) -> None:
        node = find(root, "statsmodels.regression.linear_model:OLSResults")
        node["state"]["v"]["normalized_cov_params"] = {"k": "func", "name": "numpy:sum"}

    with pytest.raises(FormatError, match="method or property"):
        amber.load(planted(data, edit, tmp_path), trusted=names)


def test_docstring_may_only_be_text(tmp_path: Path) -> None:
    sm = pytest.importorskip("statsmodels.api")
    results = sm.OLS(np.arange(5.0), np.ones((5, 1))).fit()
    data = saved(results, tmp_path)
    names = amber.inspect(tmp_path / "benign.amber").untrusted_types

    def edit(root: dict) -> None:
        node = find(root, "statsmodels.regression.linear_model:RegressionResultsWrapper")
        node["state"]["v"]["__doc__"] = {"k": "func", "name": "numpy:sum"}

    with pytest.raises(FormatError, match="special attribute '__doc__'"):
        amber.load(planted(data, edit, tmp_path), trusted=names)
