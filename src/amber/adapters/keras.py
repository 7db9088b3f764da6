"""Keras 3: ``Sequential`` and Functional models of built-in layers, with any backend.

A model is stored as its configuration (``serialize_keras_object``, as one JSON string:
inert data), its variables as amber tensors in the model's own order (weights and the
states of random seed generators), and its optimizer's variables, so ``fit`` continues
after loading exactly as without a save. Loading parses the configuration as plain JSON
and audits it against the exact allowlist of ``keras_names`` (``keras_audit``) before
Keras is asked to build anything, then checks every variable's path, shape and dtype
before assigning it. Nothing here imports Keras until a model is met.
"""

from __future__ import annotations

import json
from typing import Any

from amber.adapters.keras_audit import audit_config, parse_config
from amber.errors import FormatError, SerializationError, UntrustedTypeError
from amber.graph.constructors import Constructor, register_family
from amber.graph.schema import DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

SEQUENTIAL = "keras.src.models.sequential:Sequential"
FUNCTIONAL = "keras.src.models.functional:Functional"
MODELS = (SEQUENTIAL, FUNCTIONAL)
_STATE_KEYS = frozenset({"config", "variables", "optimizer"})
# The configuration's own name for each model class (``module``, ``class_name``).
_CONFIG_NAMES = {
    SEQUENTIAL: {("keras", "Sequential"), ("keras.models", "Sequential")},
    FUNCTIONAL: {("keras.src.models.functional", "Functional")},
}


def _dotted(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _numpy(value: Any, ops: Any) -> Any:
    """A numpy view of a CPU torch tensor (no copy; ``convert_to_numpy`` copies), else the
    backend's own conversion."""
    if type(value).__module__.startswith("torch") and str(value.device) == "cpu":
        tensor = value.detach()
        if (
            tensor.dtype.is_floating_point
            and tensor.element_size() == 2
            and str(tensor.dtype).endswith("bfloat16")
        ):
            return ops.convert_to_numpy(value)
        return tensor.numpy()
    return ops.convert_to_numpy(value)


def _arrays(variables: Any, what: str) -> dict[str, Any]:
    """``{path: array}`` in the model's order (backend tensors copied to numpy)."""
    from keras import ops

    out = {v.path: _numpy(v.value, ops) for v in variables}
    if len(out) != len(variables):
        raise SerializationError(f"the model's {what} do not have distinct paths")
    return out


def model_state(model: Any) -> dict[str, Any]:
    """The configuration (JSON text), the variables and the optimizer's variables."""
    from keras.saving import serialize_keras_object

    if _dotted(type(model)) not in MODELS:
        raise SerializationError(
            f"cannot save a {type(model).__qualname__}: amber saves Keras Sequential and "
            "Functional models of built-in layers (a subclassed model is code)"
        )
    config = serialize_keras_object(model)
    try:
        text = json.dumps(config)
        audit_config(json.loads(text))
    except UntrustedTypeError as exc:
        raise SerializationError(f"loading would refuse this model: {exc}") from None
    except TypeError as exc:
        raise SerializationError(f"the model's configuration is not plain data: {exc}") from None
    optimizer = getattr(model, "optimizer", None)
    built = optimizer is not None and getattr(optimizer, "built", False)
    return {
        "config": text,
        "variables": _arrays(model.variables, "variables"),
        "optimizer": _arrays(optimizer.variables, "optimizer variables") if built else {},
    }


def _check_arrays(arrays: Any, what: str) -> None:
    import numpy as np

    if type(arrays) is not dict or not all(
        type(k) is str and type(v) is np.ndarray and not v.dtype.hasobject
        for k, v in arrays.items()
    ):
        raise FormatError(f"a Keras model's {what} are stored as a mapping of paths to arrays")


def _assign(variables: list[Any], arrays: dict[str, Any], what: str, names: bool = True) -> None:
    """Assign stored arrays to ``variables`` after checking paths, shapes and dtypes of all."""
    import numpy as np

    pairs = list(arrays.items())
    if len(variables) != len(pairs):
        raise FormatError(
            f"the model built from the configuration has {len(variables)} {what}, the file "
            f"{len(pairs)}"
        )
    values = []
    for variable, (path, array) in zip(variables, pairs, strict=True):
        # In order; the variable's own name must match (its owners' names may not: seed
        # generators are numbered per process). Optimizer slots are named after the model
        # variables' paths, which differ between processes: they match by order only.
        name = variable.path.rsplit("/", 1)[-1]
        if names and name != path.rsplit("/", 1)[-1]:
            raise FormatError(f"Keras {what} {path[:80]!r} does not match {variable.path!r}")
        target = np.dtype(variable.dtype)
        if array.dtype != target and _same_seed_bits(name, array.dtype, target):
            array = array.view(target)  # seed states: int32 on torch, uint32 on JAX
        if tuple(variable.shape) != array.shape or target != array.dtype:
            raise FormatError(
                f"Keras {what} {path[:80]!r} is {array.dtype}{list(array.shape)} in the file, "
                f"{variable.dtype}{list(variable.shape)} in the model"
            )
        values.append(array)
    for variable, array in zip(variables, values, strict=True):
        variable.assign(array)


def _same_seed_bits(name: str, stored: Any, target: Any) -> bool:
    return (
        name == "seed_generator_state"
        and stored.kind in "iu"
        and target.kind in "iu"
        and stored.itemsize == target.itemsize
    )


def build_model(config: Any) -> Any:
    """Audit a model configuration (plain JSON data), then have Keras build the model."""
    if not isinstance(config, dict):
        raise FormatError("a Keras model configuration must be a JSON object")
    audit_config(config)
    if (config.get("module"), config.get("class_name")) not in _CONFIG_NAMES[SEQUENTIAL] | (
        _CONFIG_NAMES[FUNCTIONAL]
    ):
        raise FormatError("the Keras configuration does not describe a Sequential or Functional")
    from keras.saving import deserialize_keras_object

    try:
        return deserialize_keras_object(config, safe_mode=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise FormatError(f"Keras could not build the model from its configuration: {exc}") from (
            None
        )


def is_keras_model(obj: Any) -> bool:
    """Is ``obj`` a model this adapter saves (Sequential or Functional)?"""
    return _dotted(type(obj)) in MODELS


def model_from_state(cls: type, state: Any) -> Any:
    """Audit the configuration, build the model with Keras, then restore its variables."""
    if type(state) is not dict or set(state) != _STATE_KEYS:
        raise FormatError("a Keras model is stored as config, variables and optimizer")
    config = parse_config(state["config"])
    if not isinstance(config, dict):
        raise FormatError("a Keras model configuration must be a JSON object")
    _check_arrays(state["variables"], "variables")
    _check_arrays(state["optimizer"], "optimizer variables")
    if (config.get("module"), config.get("class_name")) not in _CONFIG_NAMES[_dotted(cls)]:
        raise FormatError(f"the Keras configuration does not describe a {cls.__qualname__}")
    model = build_model(config)
    if type(model) is not cls:
        raise FormatError(f"the Keras configuration built a {type(model).__qualname__}")
    _assign(list(model.variables), state["variables"], "variables")
    if state["optimizer"]:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise FormatError("the file has optimizer variables but the model is not compiled")
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        _assign(list(optimizer.variables), state["optimizer"], "optimizer variables", False)
    return model


REGISTRY.add_types(MODELS)
register_family(MODELS, Constructor(model_state, model_from_state))
# Typed state (graph/schema.py): a JSON string and arrays only.
SCHEMAS.register_many(MODELS, Schema(whole=DATA))
