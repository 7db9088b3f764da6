"""The documented example: an MLP trained on iris is saved, loaded, used, and trained
further, with results bit-identical to the same steps on an in-memory copy."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

import amber
from tests.adapters.compare import assert_same
from tests.adapters.roundtrip import round_trip

Training = Callable[[MLPClassifier, np.ndarray, np.ndarray], Any]

# Ways to load that must give a model which can keep training: the default, private
# copy-on-write mappings, and arrays read into memory.
TRAINABLE_LOADS = {"default": {}, "writable": {"writable": True}, "in_memory": {"mmap": False}}


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def trained(iris: tuple[np.ndarray, np.ndarray]) -> MLPClassifier:
    clf = MLPClassifier(
        hidden_layer_sizes=(10,), max_iter=1000, alpha=1e-4, solver="sgd", random_state=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(*iris)


@pytest.fixture
def saved(trained: MLPClassifier, tmp_path: Path) -> tuple[MLPClassifier, Path]:
    """An in-memory copy taken before saving, and the saved file."""
    reference = copy.deepcopy(trained)
    path = tmp_path / "mlp.amber"
    amber.save(trained, path)
    return reference, path


def test_loaded_model_predicts_identically(
    trained: MLPClassifier, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = iris
    loaded = round_trip(trained, tmp_path)
    assert_same(trained, loaded, "MLPClassifier")
    assert_same(trained.predict(X), loaded.predict(X), "predict")
    assert_same(trained.predict_proba(X), loaded.predict_proba(X), "predict_proba")
    accuracy = float(np.mean(loaded.predict(X) == y))
    print(f"MLPClassifier on iris: training accuracy after loading {accuracy:.3f}")
    assert accuracy == trained.score(X, y)
    assert accuracy > 0.9


def _partial_fit(clf: MLPClassifier, X: np.ndarray, y: np.ndarray) -> Any:
    return clf.partial_fit(X, y)


def _warm_start_fit(clf: MLPClassifier, X: np.ndarray, y: np.ndarray) -> Any:
    clf.set_params(warm_start=True, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


TRAININGS: dict[str, Training] = {"partial_fit": _partial_fit, "warm_start": _warm_start_fit}


@pytest.mark.parametrize("training", list(TRAININGS))
@pytest.mark.parametrize("load", list(TRAINABLE_LOADS))
def test_loaded_model_keeps_training_bit_identically(
    saved: tuple[MLPClassifier, Path],
    iris: tuple[np.ndarray, np.ndarray],
    training: str,
    load: str,
) -> None:
    reference, path = saved
    X, y = iris
    loaded = amber.load(path, **TRAINABLE_LOADS[load])
    for _ in range(2):
        TRAININGS[training](reference, X, y)
        TRAININGS[training](loaded, X, y)
    assert_same(reference.coefs_, loaded.coefs_, "coefs_")
    assert_same(reference.intercepts_, loaded.intercepts_, "intercepts_")
    assert_same(reference.predict_proba(X), loaded.predict_proba(X), "predict_proba")
    assert_same(reference, loaded, "MLPClassifier")  # optimizer state, loss curve, RNG...


@pytest.mark.parametrize("training", list(TRAININGS))
def test_read_only_arrays_refuse_training(
    saved: tuple[MLPClassifier, Path], iris: tuple[np.ndarray, np.ndarray], training: str
) -> None:
    """``writable=False`` gives read-only views of the file: predicting works, training in
    place (the optimizer's ``param += update``) is refused by numpy, not silently wrong."""
    _, path = saved
    X, y = iris
    loaded = amber.load(path, writable=False)
    assert not loaded.coefs_[0].flags.writeable
    loaded.predict(X)
    with pytest.raises(ValueError, match="read-only"):
        TRAININGS[training](loaded, X, y)
