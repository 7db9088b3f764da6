"""PyTorch: tensors and parameters (``torch`` graph nodes), dtypes, devices and sizes, and
the layer classes of ``torch.nn``. Nothing here imports torch until a file or an object
needs it."""

from __future__ import annotations

import functools
import re
from typing import Any

from amber.errors import FormatError
from amber.graph.constructors import Constructor, register, register_call, register_saved_as
from amber.graph.schema import CALLABLE_GROUPS, DATA, SCHEMAS, Schema, Slot
from amber.graph.torch_nodes import PARAMETER, TENSOR, TORCH_DTYPES
from amber.graph.trust import REGISTRY, PackageRule

DTYPE = "torch:dtype"
DEVICE = "torch:device"
SIZE = "torch:Size"
_DEVICE_TEXT = re.compile(r"^(cpu|cuda|mps|xpu|meta)(:[0-9]{1,4})?$")

# Activation functions that torch.nn layers keep as attributes (TransformerEncoderLayer's
# ``activation``): pure tensor computations.
FUNCTIONS = [
    "torch.nn.functional:relu",
    "torch.nn.functional:silu",
    "torch.nn.functional:tanh",
    "torch.nn.functional:sigmoid",
    "torch.nn.functional:elu",
    "torch.nn.functional:leaky_relu",
    "torch.nn.functional:mish",
    "torch.nn.functional:hardtanh",
    "torch.nn.functional:relu6",
    "torch.nn.functional:selu",
    "torch.nn.functional:celu",
    "torch.nn.functional:glu",
    "torch.nn.functional:softmax",
    "torch.nn.functional:log_softmax",
    "torch.nn.functional:hardswish",
    "torch.nn.functional:hardsigmoid",
    "torch.nn.functional:softsign",
    "torch.nn.functional:tanhshrink",
    "torch._C._nn:gelu",
    "torch._C._nn:softplus",
    "torch._C._nn:log_sigmoid",
]


def _is_module_class(obj: object) -> bool:
    import torch

    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _dtype(cls: type, state: Any) -> Any:
    import torch

    if type(state) is not str or state not in TORCH_DTYPES:
        raise FormatError(f"unknown torch dtype {state!r}")
    return getattr(torch, state)


def _device(cls: type, state: Any) -> Any:
    if type(state) is not str or not _DEVICE_TEXT.fullmatch(state):
        raise FormatError(f"invalid torch device {state!r}")
    return cls(state)


def _size_arguments(args: tuple) -> bool:
    return (
        len(args) == 1
        and type(args[0]) is tuple
        and all(type(n) is int and n >= 0 for n in args[0])
    )


REGISTRY.add_types([str(TENSOR), str(PARAMETER), DTYPE, DEVICE, SIZE])
REGISTRY.add_functions(FUNCTIONS)
# torch.nn layers (Linear, Conv2d, LSTM, TransformerEncoder...): rebuilt from their state,
# as torch.load does, without running their initializers.
REGISTRY.add_rule(PackageRule("torch", accept=_is_module_class, within=("torch.nn.modules",)))
register(DTYPE, Constructor(lambda d: str(d).removeprefix("torch."), _dtype))
register(DEVICE, Constructor(str, _device))
register_call(SIZE, _size_arguments)
# torch.compile wraps a module in an OptimizedModule of compiled code and guards: amber saves
# the module it wraps (call torch.compile again after loading).
register_saved_as("torch._dynamo.eval_frame:OptimizedModule", lambda wrapper: wrapper._orig_mod)


# -- typed state (graph/schema.py) ------------------------------------------------------------
# A module holds tensors (data), submodules in ``_modules`` (modules only), plain config
# values, and hook dicts that must be empty (as torch.load(weights_only=True) leaves them:
# a hook is a callable torch calls on every forward). Transformer layers keep their
# activation: a pure function from the table above, or an activation module.
MODULE = Slot(objects=frozenset({"module"}))
_MODULE_ATTRIBUTES = {
    "_parameters": DATA,
    "_buffers": DATA,
    "_modules": MODULE,
    "activation": Slot(objects=frozenset({"module"}), callables=True),
}


def _no_hooks(state: Any) -> None:
    if type(state) is not dict:
        return
    for key, value in state.items():
        if "hook" in key and value and key != "_is_full_backward_hook":
            raise ValueError(f"{key} must be empty: a file cannot register hooks")


def _layer_check(cls: type) -> Any:
    """The check of a torch.nn layer's state: no hooks, and its configuration must describe
    the tensors it holds (R4). The layer is built again from the configuration in the file
    on the meta device (no memory) and every parameter and buffer the file gives it must
    have the shape that configuration makes: an LSTM whose ``hidden_size`` disagrees with
    its weights crashes or hangs in torch's kernels at the first call."""

    def check(state: Any) -> None:
        _no_hooks(state)
        if type(state) is not dict:
            return
        tensors = {
            name: value
            for group in ("_parameters", "_buffers")
            if type(state.get(group)) is dict
            for name, value in state[group].items()
            if value is not None
        }
        if tensors:
            _check_configuration(cls, state, tensors)

    return check


def _check_configuration(cls: type, state: dict, tensors: dict[str, Any]) -> None:
    parameters = _init_parameters(cls)
    if parameters is None:
        return
    config = {name: state[name] for name in parameters if name in state}
    # No configuration number may exceed what the file's own tensors could describe: the
    # rebuild below loops over layers and heads in Python.
    # Bytes the file stores, not elements: an expanded view has many elements over few bytes.
    limit = max(1024, sum(t.untyped_storage().nbytes() for t in tensors.values()))
    stack = list(config.values())
    while stack:
        value = stack.pop()
        if type(value) in (list, tuple):
            stack.extend(value)
        elif type(value) is int and not -limit <= value <= limit:
            raise ValueError(f"a configuration value {value} exceeds what its tensors hold")
    shapes = _reference_shapes(cls, config)
    for name, tensor in tensors.items():
        if shapes.get(name) != tuple(tensor.shape):
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, but its configuration makes "
                f"{shapes.get(name)}"
            )


_SHAPES: dict[Any, dict[str, tuple[int, ...]]] = {}


def _reference_shapes(cls: type, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors a layer built from ``config`` holds (cached: the layers of
    a model repeat a few configurations)."""
    import torch

    try:
        key: Any = (cls, tuple(sorted(config.items())))
        hash(key)
    except TypeError:
        key = None
    found = _SHAPES.get(key) if key is not None else None
    if found is None:
        try:
            with torch.device("meta"):
                reference = cls(**config)
        except Exception as exc:  # the file's configuration is not one the layer accepts
            raise ValueError(f"its configuration is refused by the layer: {exc}") from None
        found = {
            name: tuple(tensor.shape)
            for name, tensor in [*reference._parameters.items(), *reference._buffers.items()]
            if tensor is not None
        }
        if key is not None and len(_SHAPES) < 1024:
            _SHAPES[key] = found
    return found


@functools.cache
def _init_parameters(cls: type) -> tuple[str, ...] | None:
    """The configuration names a layer is built from: its ``__init__`` parameters, or for
    the recurrent layers (``LSTM(*args, **kwargs)``) those of ``RNNBase`` but ``mode``,
    which each of them passes itself. None when they cannot be known."""
    import inspect

    import torch

    init: Any = cls.__init__
    skip = {"self", "device", "dtype"}
    if issubclass(cls, torch.nn.RNNBase):
        init, skip = torch.nn.RNNBase.__init__, skip | {"mode"}
    try:
        parameters = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.name not in skip)


def _is_module(cls: type) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def _module_schema(cls: type, declared: Schema | None) -> Schema | None:
    if not _is_module(cls):
        return None
    if declared is None:  # a torch.nn layer: config values are data, checked against weights
        return Schema(
            attributes=_MODULE_ATTRIBUTES, default=DATA, whole=DATA, check=_layer_check(cls)
        )
    # The caller's own module: what it declared, plus the module machinery.
    return Schema(
        attributes={**declared.attributes, **_MODULE_ATTRIBUTES},
        default=declared.default,
        whole=declared.whole,
        check=_no_hooks,
    )


SCHEMAS.add_group("module", _is_module)
CALLABLE_GROUPS.add("module")
SCHEMAS.add_rule(_module_schema)
SCHEMAS.add_data([DTYPE, DEVICE, SIZE])
SCHEMAS.register_many([DTYPE, DEVICE, SIZE], Schema(whole=DATA))
