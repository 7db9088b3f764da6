"""Small Keras and ONNX models for the serving and batch tests, and a store holding them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")


def keras_models() -> dict[str, Any]:
    """A Sequential of one input, and a Functional of two named one-value inputs (a dict)
    with two named outputs."""
    import keras

    keras.utils.set_random_seed(0)
    seq = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    age = keras.Input((1,), name="age")
    income = keras.Input((1,), name="income")
    joined = keras.layers.Concatenate()([age, income])
    hidden = keras.layers.Dense(4, activation="tanh")(joined)
    score = keras.layers.Dense(1, name="score")(hidden)
    probs = keras.layers.Dense(2, activation="softmax", name="probs")(hidden)
    two = keras.Model({"age": age, "income": income}, [score, probs])
    return {"seq": seq, "two": two}


def onnx_models() -> dict[str, Any]:
    """``lin``: y = x @ w with a symbolic batch dimension; ``mix``: two inputs of other
    element types (float32 ``a`` and int64 ``b``, one value per row) added."""
    from onnx import TensorProto, helper, numpy_helper

    opset = [helper.make_opsetid("", 17)]
    w = np.arange(8, dtype=np.float32).reshape(4, 2) / 8
    lin = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "w")],
    )
    mix = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "bf"], ["total"]),
        ],
        "mix",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["n", 1]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["n", 1])],
    )
    return {
        "lin": helper.make_model(lin, opset_imports=opset),
        "mix": helper.make_model(mix, opset_imports=opset),
    }


def onnx_run(model: Any, feeds: dict[str, Any]) -> list[Any]:
    """onnxruntime's own outputs for ``model`` (a session built from its bytes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def fill(root: Path) -> dict[str, Any]:
    """A store with every model above (one version each); returns the models."""
    from amber.store import Store

    models = {**keras_models(), **onnx_models()}
    with Store(root) as store:
        for name, model in models.items():
            store.save(model, name)
    return models
