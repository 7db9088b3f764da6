"""Signatures read from Keras input specs and ONNX graphs, recorded by the store; the
predictors serving and batch prediction call (named inputs, checked)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend the dev environment has
keras = pytest.importorskip("keras", reason="the Keras cases need keras (amber[keras])")
onnx = pytest.importorskip("onnx", reason="the ONNX cases need onnx (amber[onnx])")
pytest.importorskip("onnxruntime", reason="ONNX predictions need onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from amber.adapters.predictors import (  # noqa: E402
    KerasPredictor,
    OnnxPredictor,
    predictor,
    signature_of,
)
from amber.errors import InvalidArgumentError  # noqa: E402
from amber.store import Store  # noqa: E402
from amber.store.signature import compatible  # noqa: E402


def test_sequential_signature() -> None:
    model = keras.Sequential([keras.Input((3, 2), name="seq"), keras.layers.Dense(5)])
    assert signature_of(model) == {
        "inputs": {"type": "ndarray", "name": "seq", "dtype": "float32", "shape": [None, 3, 2]},
        "outputs": {"type": "ndarray", "name": "output", "dtype": "float32", "shape": [None, 3, 5]},
        "source": "keras",
    }


def test_sequential_without_input_has_none() -> None:
    model = keras.Sequential([keras.layers.Dense(5)])
    assert signature_of(model) is None


def test_functional_list_inputs_with_dtypes() -> None:
    ids = keras.Input((6,), dtype="int32", name="ids")
    extra = keras.Input((2,), name="extra")
    emb = keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids))
    out = keras.layers.Dense(1, name="y")(keras.layers.Concatenate()([emb, extra]))
    model = keras.Model([ids, extra], out)
    sig = signature_of(model)
    assert sig["inputs"] == {
        "type": "tensors",
        "tensors": [
            {"name": "ids", "dtype": "int32", "shape": [None, 6]},
            {"name": "extra", "dtype": "float32", "shape": [None, 2]},
        ],
    }
    assert sig["outputs"]["name"] == "y"
    pred = predictor(model)
    assert isinstance(pred, KerasPredictor) and not pred.by_name
    feeds = {"ids": np.arange(12, dtype=np.int32).reshape(2, 6) % 10, "extra": np.ones((2, 2))}
    np.testing.assert_array_equal(
        pred.predict(feeds), model.predict([feeds["ids"], feeds["extra"]], verbose=0)
    )
    with pytest.raises(InvalidArgumentError, match="missing input 'extra'"):
        pred.predict({"ids": feeds["ids"]})
    with pytest.raises(InvalidArgumentError, match="2 inputs"):
        pred.predict(feeds["ids"])


def _onnx(inputs: list, initializers: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"])],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_signature_symbolic_dims_and_initializer_inputs() -> None:
    bias = numpy_helper.from_array(np.ones(3), "bias")
    model = _onnx(
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 3]),
            # Older exporters list initializers among the inputs: not an input to feed.
            helper.make_tensor_value_info("bias", TensorProto.DOUBLE, [3]),
        ],
        [bias],
    )
    sig = signature_of(model)
    assert sig["inputs"] == {
        "type": "ndarray",
        "name": "x",
        "dtype": "float64",
        "shape": [None, 3],
        "dims": ["batch", None],
    }
    # An output without a declared shape: no shape recorded, never guessed.
    assert sig["outputs"] == {"type": "ndarray", "name": "y", "dtype": "float64"}
    pred = predictor(model)
    assert isinstance(pred, OnnxPredictor)
    np.testing.assert_array_equal(pred.predict(np.zeros((2, 3))), np.ones((2, 3)))
    with pytest.raises(InvalidArgumentError, match="unknown input 'z'"):
        pred.predict({"x": np.zeros((2, 3)), "z": np.zeros(1)})


def test_store_records_declared_signatures(tmp_path: Path) -> None:
    seq = keras.Sequential([keras.Input((4,), name="f"), keras.layers.Dense(2)])
    wider = keras.Sequential([keras.Input((5,), name="f"), keras.layers.Dense(2)])
    bias = numpy_helper.from_array(np.ones(3), "bias")
    model = _onnx([helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 3])], [bias])
    with Store(tmp_path / "s") as store:
        assert store.save(seq, "k").signature == signature_of(seq)
        assert store.save(wider, "k").signature["inputs"]["shape"] == [None, 5]
        assert store.get("k@1").signature["inputs"]["name"] == "f"
        assert store.save(model, "o").signature == signature_of(model)
        # A given signature wins over the declared one.
        assert store.save(model, "o", signature={"inputs": None}).signature == {"inputs": None}
        ok, notes = compatible(store.get("k@1").signature, store.get("k@2").signature)
        assert not ok and any("shape [None, 4] -> [None, 5]" in n for n in notes)


def test_compatibility_of_named_inputs() -> None:
    def sig(*tensors: tuple[str, str, list]) -> dict:
        specs = [{"name": n, "dtype": d, "shape": s} for n, d, s in tensors]
        return {"inputs": {"type": "tensors", "tensors": specs}, "outputs": None}

    a = sig(("a", "float32", [None, 1]), ("b", "int64", [None, 1]))
    assert compatible(a, a) == (True, [])
    ok, notes = compatible(a, sig(("a", "float32", [None, 1])))
    assert ok and notes == ["input 'b' no longer used"]
    ok, notes = compatible(
        a, sig(("a", "float64", [None, 1]), ("b", "int64", [None, 1]), ("c", "bool", [None]))
    )
    assert not ok
    assert notes == ["new required input 'c'", "input 'a' dtype float32 -> float64"]
