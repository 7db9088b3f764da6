"""Keras 3 models through amber's graph: round trips, continued training, the config audit,
and hostile configurations (refused before Keras builds anything)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber
from amber.adapters.keras_audit import audit_config
from amber.errors import FormatError, SerializationError, UntrustedTypeError
from tests.adapters.keras_models import data, fdata, functional, keras, sequential, weights_equal
from tests.graph.crafting import planted, saved


def test_sequential_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = sequential()
    x, _ = data()
    info = amber.save(model, tmp_path / "m.amber")
    kernels = [t.name for t in info.tensors if t.name.endswith("/kernel")]
    assert len(kernels) == 2 and all(n.startswith("variables.") for n in kernels)
    loaded = amber.load(tmp_path / "m.amber")
    assert type(loaded) is type(model)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert weights_equal(loaded, model)


def test_functional_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = functional()
    x, y = fdata()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    amber.save(model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    ("build", "load_data", "optimizer"),
    [
        (sequential, data, lambda: keras.optimizers.Adam(1e-2)),
        (functional, fdata, lambda: keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=True)),
    ],
)
def test_fit_continues_identically_after_reload(
    tmp_path: Path, build: Any, load_data: Any, optimizer: Any
) -> None:
    model = build()
    x, y = load_data()
    model.compile(
        optimizer=optimizer(), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    keras.utils.set_random_seed(1)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    amber.save(model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    # Randomness from seeded layers (Dropout(seed=...)) is model state and saved; the data
    # order is the caller's (shuffle=False), so both runs see the same batches.
    keras.utils.set_random_seed(2)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    keras.utils.set_random_seed(2)
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    assert weights_equal(loaded, model)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        assert np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_unchanged_weights_dedup_in_the_store(tmp_path: Path) -> None:
    from amber.store import Store

    store = Store(tmp_path / "store")
    model = sequential()
    store.save(model, "net")
    model.layers[-1].kernel.assign(np.zeros(model.layers[-1].kernel.shape, "float32"))
    store.save(model, "net")
    x, _ = data()
    assert np.array_equal(store.load("net@2").predict(x, verbose=0), model.predict(x, verbose=0))
    first = {t.digest for t in amber.save(sequential(), tmp_path / "a.amber").tensors}
    second = {t.digest for t in amber.save(model, tmp_path / "b.amber").tensors}
    assert len(first - second) == 1


class Mine(keras.Model):
    def call(self, x: Any) -> Any:
        return x


def test_subclassed_model_is_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="Mine"):
        amber.save(Mine(), tmp_path / "m.amber")
    assert not (tmp_path / "m.amber").exists()


def test_lambda_layer_is_refused_at_save(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t * 2)])
    with pytest.raises(SerializationError, match="Lambda"):
        amber.save(model, tmp_path / "m.amber")
    assert not (tmp_path / "m.amber").exists()


@keras.saving.register_keras_serializable(package="amber_tests")
class Doubling(keras.layers.Layer):
    def call(self, x: Any) -> Any:
        return x * 2


def test_custom_layer_loads_only_when_trusted(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), Doubling()])
    with pytest.raises(SerializationError, match="Doubling"):
        amber.save(model, tmp_path / "m.amber")
    dotted = f"{Doubling.__module__}.Doubling"
    amber.trust(dotted)
    amber.save(model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    assert loaded.predict(np.ones((1, 2), "float32"), verbose=0).tolist() == [[2.0, 2.0]]


# -- the audit of configurations (no file) ----------------------------------------------------


def config_of(model: Any) -> dict[str, Any]:
    return json.loads(json.dumps(keras.saving.serialize_keras_object(model)))


def with_layer(layer: dict[str, Any]) -> dict[str, Any]:
    config = config_of(sequential())
    config["config"]["layers"].append(layer)
    return config


HOSTILE_LAYERS = {
    "lambda": {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "function": {"class_name": "__lambda__", "config": {"value": "4wAAAA=="}},
            "name": "l",
        },
        "registered_name": None,
    },
    "module outside keras": {
        "module": "amber_planted_module",
        "class_name": "Evil",
        "config": {},
        "registered_name": None,
    },
    "os.system": {"module": "os", "class_name": "system", "config": {}, "registered_name": None},
    "keras.utils.get_file": {
        "module": "keras.utils",
        "class_name": "get_file",
        "config": {"origin": "http://127.0.0.1:9/x", "fname": "/tmp/amber-keras-x"},
        "registered_name": None,
    },
    "enable_unsafe_deserialization": {
        "module": "keras.layers",
        "class_name": "Activation",
        "config": {
            "name": "act",
            "activation": {
                "module": "keras.config",
                "class_name": "function",
                "config": "enable_unsafe_deserialization",
                "registered_name": "enable_unsafe_deserialization",
            },
        },
        "registered_name": None,
    },
    "registered-name trick": {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"units": 2, "name": "d"},
        "registered_name": "amber_tests>Doubling",
    },
    "registered string": {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"units": 2, "name": "d", "activation": "amber_tests>Doubling"},
        "registered_name": None,
    },
    "typespec": {"class_name": "__typespec__", "spec_name": "TensorSpec", "config": []},
    "builtin function": {
        "module": "keras.layers",
        "class_name": "Activation",
        "config": {
            "name": "a",
            "activation": {
                "module": "builtins",
                "class_name": "function",
                "config": "eval",
                "registered_name": None,
            },
        },
        "registered_name": None,
    },
}


@pytest.mark.parametrize("name", sorted(HOSTILE_LAYERS))
def test_audit_refuses_hostile_layers(name: str) -> None:
    with pytest.raises(UntrustedTypeError, match="nothing was built"):
        audit_config(with_layer(copy.deepcopy(HOSTILE_LAYERS[name])))


def test_audit_lists_every_refused_name() -> None:
    config = with_layer(HOSTILE_LAYERS["os.system"])
    config["config"]["layers"].append(HOSTILE_LAYERS["module outside keras"])
    with pytest.raises(UntrustedTypeError) as info:
        audit_config(config)
    assert "os.system" in str(info.value) and "amber_planted_module.Evil" in str(info.value)


def test_audit_refuses_hostile_compile_strings() -> None:
    config = config_of(sequential())
    config["compile_config"] = {"optimizer": "amber_tests>Doubling", "loss": "mse"}
    with pytest.raises(UntrustedTypeError, match="amber_tests>Doubling"):
        audit_config(config)
    config["compile_config"] = {"optimizer": "adam", "loss": {"out": "evil>loss"}}
    with pytest.raises(UntrustedTypeError, match="evil>loss"):
        audit_config(config)


def test_audit_accepts_the_built_in_models() -> None:
    model = functional()
    model.compile(optimizer="adamw", loss="mse", metrics=["mae", keras.metrics.AUC()])
    audit_config(config_of(model))
    audit_config(config_of(sequential()))


def test_audit_refuses_malformed_configs() -> None:
    with pytest.raises(FormatError):
        audit_config([1, 2])
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(FormatError, match="too deeply"):
        audit_config(deep)
    with pytest.raises(FormatError, match="no class name"):
        audit_config({"class_name": 3})


# -- hostile files ----------------------------------------------------------------------------


def plant_config(tmp_path: Path, edit: Any) -> Path:
    def change(root: dict) -> None:
        state = root["state"]["v"]
        config = json.loads(state["config"])
        edit(config)
        state["config"] = json.dumps(config)

    return planted(saved(sequential(), tmp_path), change, tmp_path)


@pytest.mark.parametrize("name", sorted(HOSTILE_LAYERS))
def test_hostile_files_are_refused(tmp_path: Path, name: str) -> None:
    layer = HOSTILE_LAYERS[name]
    path = plant_config(tmp_path, lambda c: c["config"]["layers"].append(copy.deepcopy(layer)))
    with pytest.raises(UntrustedTypeError, match="nothing was built"):
        amber.load(path)


def test_config_of_another_class_is_refused(tmp_path: Path) -> None:
    functional_config = config_of(functional())

    def edit(config: dict) -> None:
        config.clear()
        config.update(functional_config)

    with pytest.raises(FormatError, match="does not describe a Sequential"):
        amber.load(plant_config(tmp_path, edit))


def test_malformed_state_is_refused(tmp_path: Path) -> None:
    data = saved(sequential(), tmp_path)

    def not_json(root: dict) -> None:
        root["state"]["v"]["config"] = "{not json"

    with pytest.raises(FormatError, match="not valid JSON"):
        amber.load(planted(data, not_json, tmp_path))

    def missing_weight(root: dict) -> None:
        variables = root["state"]["v"]["variables"]["v"]
        variables.pop(next(iter(variables)))

    with pytest.raises(FormatError, match="variables"):
        amber.load(planted(data, missing_weight, tmp_path))

    def swapped(root: dict) -> None:
        variables = root["state"]["v"]["variables"]["v"]
        keys = list(variables)
        variables[keys[0]], variables[keys[1]] = variables[keys[1]], variables[keys[0]]

    with pytest.raises(FormatError, match="in the file"):
        amber.load(planted(data, swapped, tmp_path))

    def extra_key(root: dict) -> None:
        root["state"]["v"]["code"] = "print(1)"

    with pytest.raises(FormatError, match="stored as config"):
        amber.load(planted(data, extra_key, tmp_path))


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.amber"
    amber.save(sequential(), path)
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(amber.errors.AmberError):
        amber.load(path)


_OTHER_BACKEND = """
import json, os, sys
os.environ["KERAS_BACKEND"] = sys.argv[2]
import numpy as np
import amber, keras
model = amber.load(sys.argv[1])
x = np.load(sys.argv[3])
print(json.dumps({"backend": keras.backend.backend(),
                  "weights": [w.tolist() for w in model.get_weights()],
                  "out": model.predict(x, verbose=0).tolist()}))
"""


def test_file_saved_with_torch_loads_with_jax(tmp_path: Path) -> None:
    """Any backend: a model saved on the torch backend loads on JAX in a fresh interpreter
    with the same weights (bit for bit) and the same predictions (to float tolerance: the
    backends' kernels differ)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed; the JAX backend cannot be tested here")
    model = functional()
    x, y = fdata()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    amber.save(model, tmp_path / "m.amber")
    np.savez(tmp_path / "x.npz", **x)
    script = _OTHER_BACKEND.replace("np.load(sys.argv[3])", "dict(np.load(sys.argv[3]))")
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m.amber"), "jax", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    for got, want in zip(report["weights"], model.get_weights(), strict=True):
        assert np.array_equal(np.asarray(got, dtype=want.dtype), want)
    np.testing.assert_allclose(report["out"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
