"""amber.predict over pandas, pyarrow and numpy: equal to the model's own predictions,
signature checks before any row, clear errors for malformed, hostile and mismatched input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber
from amber.errors import InvalidArgumentError, StoreError, VersionNotFound
from amber.store import Store
from tests.batch import models

pa = pytest.importorskip(
    "pyarrow", reason="amber.predict needs pyarrow (pip install 'amber[batch]')"
)
pd = pytest.importorskip("pandas", reason="the DataFrame cases need pandas")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier

    frame, target = models.customers()
    pipe = models.pipeline(frame, target)
    x, y = models.features()
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    store = Store(tmp_path_factory.mktemp("predict") / "store")
    store.save(pipe, "churn", input_example=frame.head())
    store.save(forest, "forest", input_example=x[:3])
    yield {"frame": frame, "pipe": pipe, "x": x, "forest": forest, "store": store}
    store.close()


def test_pandas_arrow_and_numpy_inputs_match_predict(fitted: dict[str, Any]) -> None:
    frame, pipe, store = fitted["frame"], fitted["pipe"], fitted["store"]
    expected = pipe.predict(frame)
    assert np.array_equal(amber.predict("churn", frame, store=store), expected)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert np.array_equal(amber.predict("churn@1", table, store=store, batch_size=7), expected)
    batch = table.to_batches()[0]
    assert np.array_equal(amber.predict("churn", batch, store=store), expected[: batch.num_rows])
    x, forest = fitted["x"], fitted["forest"]
    assert np.array_equal(amber.predict("forest", x, store=store, batch_size=50), forest.predict(x))
    proba = amber.predict("forest", x, store=store, method="predict_proba")
    assert np.array_equal(proba, forest.predict_proba(x))


def test_columns_are_matched_by_name_not_position(fitted: dict[str, Any]) -> None:
    frame = fitted["frame"]
    shuffled = frame[["plan", "income", "age"]]
    got = amber.predict("churn", shuffled, store=fitted["store"])
    assert np.array_equal(got, fitted["pipe"].predict(frame))


def test_model_object_and_amber_file(fitted: dict[str, Any], tmp_path: Path) -> None:
    x, forest = fitted["x"], fitted["forest"]
    assert np.array_equal(amber.predict(forest, x), forest.predict(x))
    path = tmp_path / "forest.amber"
    amber.save(forest, path)
    assert np.array_equal(amber.predict(str(path), x), forest.predict(x))


def test_torch_module_runs_batched_in_inference_mode() -> None:
    torch = pytest.importorskip("torch", reason="the torch case needs torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    got = amber.predict(net, x, batch_size=16)
    with torch.inference_mode():
        assert np.array_equal(got, net(torch.from_numpy(x)).numpy())
    assert not net.training


def test_empty_input_gives_empty_output(fitted: dict[str, Any]) -> None:
    out = amber.predict("churn", fitted["frame"].head(0), store=fitted["store"])
    assert out.shape[0] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="plan"), "column 'plan' that the model needs is missing"),
        (lambda f: f.assign(extra=1), "column 'extra' is not an input of the model"),
        (lambda f: f.assign(income="high"), "column 'income' is text in the input"),
        (lambda f: f.assign(age=f["age"] + 0.5), "column 'age' is double in the input"),
        (lambda f: f.assign(plan=1.5), "column 'plan' is double in the input"),
        (lambda f: f.assign(age=f["age"].astype("Int64").where(f.index > 3)), "missing values"),
    ],
)
def test_mismatched_columns_are_named(fitted: dict[str, Any], change: Any, message: str) -> None:
    calls: list[int] = []

    class Counting:  # the stored pipeline, counting the rows it is asked to predict
        def predict(self, x: Any) -> Any:
            calls.append(len(x))
            return fitted["pipe"].predict(x)

    bad = change(fitted["frame"])
    with pytest.raises(InvalidArgumentError, match=message):
        amber.predict(Counting(), bad, signature=fitted["store"].get("churn").signature)
    assert calls == []  # refused before any row
    amber.predict(Counting(), fitted["frame"], signature=fitted["store"].get("churn").signature)
    assert calls == [len(fitted["frame"])]


def test_ints_are_accepted_for_float_and_text_columns(fitted: dict[str, Any]) -> None:
    frame = fitted["frame"]
    widened = frame.assign(income=frame["income"].round().astype("int64"))
    got = amber.predict("churn", widened, store=fitted["store"])
    assert np.array_equal(got, fitted["pipe"].predict(widened.astype({"income": float})))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 5)), "takes 6 features; the array has 5"),
        (np.zeros(6), "expected a 2-D array"),
        (np.zeros((2, 3, 6)), "expected a 2-D array"),
        (np.array([["a"] * 6]), "not numeric"),
        ([[0.0] * 6], "cannot predict over a list"),
        ("not data", "cannot predict over a str"),
    ],
)
def test_malformed_arrays_are_refused(fitted: dict[str, Any], data: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        amber.predict("forest", data, store=fitted["store"])


def test_named_model_refuses_a_bare_array(fitted: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="takes named columns"):
        amber.predict("churn", np.zeros((3, 3)), store=fitted["store"])


@pytest.mark.parametrize("size", [0, -3, True, 2.5, "100"])
def test_bad_batch_size(fitted: dict[str, Any], size: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        amber.predict("forest", fitted["x"], store=fitted["store"], batch_size=size)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("predictt", "has no method 'predictt'; it has: predict, predict_proba"),
        ("_validate_data", "public method name"),
        ("__class__", "public method name"),
        ("predict; import os", "public method name"),
        (3, "public method name"),
    ],
)
def test_bad_method(fitted: dict[str, Any], method: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        amber.predict("forest", fitted["x"], store=fitted["store"], method=method)


def test_unknown_and_malformed_specs(fitted: dict[str, Any], tmp_path: Path) -> None:
    store = fitted["store"]
    with pytest.raises(VersionNotFound):
        amber.predict("nope", fitted["x"], store=store)
    with pytest.raises(VersionNotFound):
        amber.predict("forest@9", fitted["x"], store=store)
    with pytest.raises(InvalidArgumentError):
        amber.predict("forest@@x", fitted["x"], store=store)
    with pytest.raises(StoreError, match="no store at"):
        amber.predict("forest", fitted["x"], store=str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()
    root = store.backend.root
    assert np.array_equal(
        amber.predict("forest", fitted["x"], store=str(root)), fitted["forest"].predict(fitted["x"])
    )


def test_hostile_column_names_are_quoted(fitted: dict[str, Any]) -> None:
    frame = fitted["frame"].rename(columns={"plan": "pl\x1b[31man\n"})
    with pytest.raises(InvalidArgumentError) as caught:
        amber.predict("churn", frame, store=fitted["store"])
    text = str(caught.value)
    assert "\x1b" not in text and "\n" not in text and "'plan'" in text
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        amber.predict(
            "churn",
            pa.table({"age": [1], "income": [1.0]}).append_column("age", pa.array([2])),
            store=fitted["store"],
        )


def test_model_answering_the_wrong_number_of_rows() -> None:
    class Bad:
        def predict(self, x: Any) -> Any:
            return np.zeros(len(x) + 1)

    with pytest.raises(InvalidArgumentError, match="answered 4 rows for a batch of 3"):
        amber.predict(Bad(), np.zeros((3, 2)))
