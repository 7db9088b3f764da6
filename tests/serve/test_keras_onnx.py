"""`amber serve` with stored Keras and ONNX models: OIP v2 and MLflow answers equal the
framework's own outputs; metadata comes from the declared inputs; bad inputs are 4xx
errors naming the input. A real server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend the dev environment has
pytest.importorskip("keras", reason="the Keras models need keras (amber[keras])")
pytest.importorskip("onnxruntime", reason="the ONNX models need onnxruntime (amber[onnx])")

from tests.serve.helpers import server
from tests.serve.keras_onnx_models import fill, onnx_run

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("keras-onnx") / "store"
    models = fill(root)
    with server(root, list(models), "--poll", "0", extra_env={"KERAS_BACKEND": "torch"}) as base:
        yield base, models


def infer(url: str, model: str, inputs: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=TIMEOUT)


def tensor(name: str, arr: np.ndarray, datatype: str) -> dict[str, Any]:
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.tolist()}


def outputs(resp: httpx.Response) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {
        o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
        for o in resp.json()["outputs"]
    }


def test_metadata_from_declared_inputs(served: tuple[str, dict[str, Any]]) -> None:
    url, _ = served
    meta = httpx.get(f"{url}/v2/models/seq", timeout=TIMEOUT).json()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1, 3]}]
    two = httpx.get(f"{url}/v2/models/two", timeout=TIMEOUT).json()
    assert two["inputs"] == [
        {"name": "age", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "income", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert [o["name"] for o in two["outputs"]] == ["score", "probs"]
    mix = httpx.get(f"{url}/v2/models/mix", timeout=TIMEOUT).json()
    assert mix["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "b", "datatype": "INT64", "shape": [-1, 1]},
    ]


def test_keras_oip_matches_predict(served: tuple[str, dict[str, Any]]) -> None:
    url, models = served
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    got = outputs(infer(url, "seq", [tensor("features", x, "FP32")]))
    np.testing.assert_array_equal(got["predict"], models["seq"].predict(x, verbose=0))
    # The generic name every other tensor model takes works too.
    again = outputs(infer(url, "seq", [tensor("input", x, "FP32")]))
    np.testing.assert_array_equal(again["predict"], got["predict"])
    age = np.array([[30.0], [45.0]], np.float32)
    income = np.array([[1.5], [0.2]], np.float32)
    got = outputs(infer(url, "two", [tensor("income", income, "FP32"), tensor("age", age, "FP32")]))
    score, probs = models["two"].predict({"age": age, "income": income}, verbose=0)
    np.testing.assert_array_equal(got["score"], score)
    np.testing.assert_array_equal(got["probs"], probs)


def test_onnx_oip_matches_onnxruntime(served: tuple[str, dict[str, Any]]) -> None:
    url, models = served
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    got = outputs(infer(url, "lin", [tensor("x", x, "FP32")]))
    (want,) = onnx_run(models["lin"], {"x": x})
    np.testing.assert_array_equal(got["predict"], want)
    a = np.array([[0.5], [1.5]], np.float32)
    b = np.array([[2], [3]], np.int64)
    got = outputs(infer(url, "mix", [tensor("a", a, "FP32"), tensor("b", b, "INT64")]))
    (want,) = onnx_run(models["mix"], {"a": a, "b": b})
    np.testing.assert_array_equal(got["predict"], want)


def test_mlflow_invocations(served: tuple[str, dict[str, Any]]) -> None:
    url, models = served
    x = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)

    def post(model: str, payload: Any) -> Any:
        r = httpx.post(f"{url}/invocations?model={model}", json=payload, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        return r.json()["predictions"]

    want = models["seq"].predict(x, verbose=0)
    np.testing.assert_array_equal(np.float32(post("seq", {"instances": x.tolist()})), want)
    np.testing.assert_array_equal(np.float32(post("seq", {"inputs": x.tolist()})), want)
    (lin,) = onnx_run(models["lin"], {"x": x})
    np.testing.assert_array_equal(np.float32(post("lin", {"instances": x.tolist()})), lin)
    # Named inputs: MLflow's {"inputs": {name: tensor}} and records of named tensors.
    age, income = [[30.0], [45.0]], [[1.5], [0.2]]
    score, probs = models["two"].predict(
        {"age": np.float32(age), "income": np.float32(income)}, verbose=0
    )
    got = post("two", {"inputs": {"age": age, "income": income}})
    np.testing.assert_array_equal(np.float32(got["score"]), score)
    np.testing.assert_array_equal(np.float32(got["probs"]), probs)
    records = [{"age": a, "income": i} for a, i in zip(age, income, strict=True)]
    got = post("two", {"instances": records})
    np.testing.assert_array_equal(np.float32(got["probs"]), probs)
    got = post("mix", {"inputs": {"a": [[0.5]], "b": [[2]]}})
    assert got == [[2.5]]


@pytest.mark.parametrize(
    ("model", "inputs", "words"),
    [
        ("seq", [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
         ["'features'", "[-1, 4]"]),
        ("seq", [{"name": "features", "shape": [1, 4], "datatype": "BYTES",
                  "data": ["a", "b", "c", "d"]}], ["'features'", "strings"]),
        ("seq", [{"name": "pixels", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
         ["'pixels'", "'features'"]),
        ("two", [{"name": "age", "shape": [1, 1], "datatype": "FP32", "data": [3]}],
         ["missing input 'income'"]),
        ("two", [{"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [3, 4]},
                 {"name": "income", "shape": [1, 1], "datatype": "FP32", "data": [3]}],
         ["'income'", "rows"]),
        ("mix", [{"name": "a", "shape": [1, 1], "datatype": "FP32", "data": [1]},
                 {"name": "b", "shape": [1, 1], "datatype": "FP32", "data": [1.5]}],
         ["'b'", "int64"]),
        ("lin", [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
         ["'x'", "[-1, 4]"]),
        ("lin", [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                 {"name": "z", "shape": [1], "datatype": "FP32", "data": [1]}],
         ["'z'"]),
    ],
)  # fmt: skip
def test_bad_inputs_are_400_naming_the_input(
    served: tuple[str, dict[str, Any]], model: str, inputs: list[Any], words: list[str]
) -> None:
    url, _ = served
    r = infer(url, model, inputs)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    for word in words:
        assert word in error, error
    assert "0x" not in error and "Traceback" not in error
    # The server keeps serving.
    good = np.zeros((1, 4), np.float32)
    assert infer(url, "lin", [tensor("x", good, "FP32")]).status_code == 200


def test_onnx_version_is_served_from_the_store_session(tmp_path: Path) -> None:
    """The ONNX version's session takes its initializers from the store's verified files:
    a flipped weight byte is refused, never served."""
    from amber.adapters.predictors import load
    from amber.errors import CorruptFileError
    from amber.store import Store
    from tests.serve.keras_onnx_models import onnx_models

    model = onnx_models()["lin"]
    with Store(tmp_path / "store") as store:
        store.save(model, "lin")
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(load(store, "lin@1").predict(x), onnx_run(model, {"x": x})[0])
        weight = (np.arange(8, dtype=np.float32).reshape(4, 2) / 8).tobytes()
        holders = [
            p for p in (tmp_path / "store").rglob("*") if p.is_file() and weight in p.read_bytes()
        ]
        assert holders, "the weight is stored as an amber tensor, outside the protobuf"
        for p in holders:
            data = p.read_bytes()
            at = data.index(weight) + 5
            p.chmod(0o644)
            p.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
        with pytest.raises(CorruptFileError):
            load(store, "lin@1")
