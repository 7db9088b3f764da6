"""Keras test helpers: the backend (torch, chosen before Keras is imported) and small models."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'amber[keras]')")


def sequential() -> Any:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", kernel_regularizer="l2"),
            keras.layers.Dropout(0.2, seed=7),  # seeded: its state is saved
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def functional() -> Any:
    keras.utils.set_random_seed(0)
    a = keras.Input((6,), name="a")
    b = keras.Input((4,), name="b")
    x = keras.layers.Dense(8, activation=keras.activations.gelu)(a)
    y = keras.layers.BatchNormalization()(keras.layers.Dense(8)(b))
    z = keras.layers.Concatenate()([x, y])
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.1, seed=8)(z))
    return keras.Model({"a": a, "b": b}, out)


def data(seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((32, 6)).astype("float32"), rng.integers(0, 3, 32)


def fdata(seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = {"a": rng.standard_normal((32, 6)), "b": rng.standard_normal((32, 4))}
    return {k: v.astype("float32") for k, v in x.items()}, rng.integers(0, 3, 32)


def weights_equal(a: Any, b: Any) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
