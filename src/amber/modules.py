"""PyTorch modules: what is saved beside a module, and loading weights into one.

``amber.save(module)`` stores the module's object graph and, first, its ``state_dict()``
(manifest key ``state_dict``). Both refer to the same container tensors, so the weights
are stored once. ``amber.load(path, into=module)`` reads only the state dict: the module's
class is never imported from the file, so weights load into a model built by code the user
runs, whether or not its class is trusted.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from amber.errors import InvalidArgumentError, StateDictMismatch

_SHOWN = 10
_EXTRA_STATE = "_extra_state"  # torch.nn.modules.module._EXTRA_STATE_KEY_SUFFIX


def is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def unwrap_compiled(module: Any) -> Any:
    """The module a ``torch.compile`` wrapper compiled (its state dict keys carry an
    ``_orig_mod.`` prefix), or ``module`` itself."""
    cls = type(module)
    if cls.__name__ == "OptimizedModule" and cls.__module__ == "torch._dynamo.eval_frame":
        return module._orig_mod
    return module


def check_device(device: Any) -> Any:
    """``device`` as torch understands it; torch is imported only when one is given."""
    if device is None:
        return None
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(
            f"device must be like 'cpu', 'cuda' or 'cuda:0', got {device!r} ({exc})"
        ) from None


def check_target(into: Any) -> None:
    if not is_module(into):
        raise InvalidArgumentError(
            f"into= takes a torch.nn.Module to load weights into, got {type(into).__name__}"
        )


def _as_tensor(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    import numpy as np

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return None


def _describe(value: Any) -> str:
    return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"


def load_into(
    module: Any, state: Any, source: str, keys: list[str] | None = None, *, check_only: bool = False
) -> Any:
    """Copy ``state`` (a mapping of names to tensors or arrays) into ``module``'s parameters
    and buffers after checking everything first: on any mismatch the module is unchanged.
    ``keys``: only these entries are expected (a partial load). ``check_only``: stop after
    the checks."""
    if not isinstance(state, Mapping):
        raise StateDictMismatch(
            f"{source} holds a {type(state).__name__}, not a state dict; save one with "
            "amber.save(model) or amber.save(model.state_dict(), path)"
        )
    given, module = module, unwrap_compiled(module)
    expected = module.state_dict()
    wanted = list(expected) if keys is None else keys
    # Tied parameters (an LM head sharing the embedding's weight) are often saved once, as
    # Hugging Face's save_pretrained does: loading the twin fills both and keeps the tie.
    ties = tied_keys(module)
    through_twin = {
        k: twin for k in wanted if k not in state for twin in ties.get(k, ()) if twin in state
    }
    missing = [k for k in wanted if k not in state and k not in through_twin]
    unexpected = [k for k in state if k not in expected]
    tensors: dict[str, Any] = {}
    mismatched = []
    for key, value in state.items():
        if key not in expected:
            continue
        target = expected[key]
        if key.endswith(_EXTRA_STATE):  # get_extra_state(): any value, the module's business
            tensors[key] = value
            continue
        tensor = _as_tensor(value)
        if tensor is None:
            mismatched.append(f"{key}: the file holds a {type(value).__name__}, not a tensor")
        elif _as_tensor(target) is None:
            mismatched.append(f"{key}: the module holds a {type(target).__name__} here")
        elif tensor.shape != target.shape or tensor.dtype != target.dtype:
            mismatched.append(f"{key}: file {_describe(tensor)}, module {_describe(target)}")
        else:
            tensors[key] = tensor
    problems = []
    for one, many, items in (
        ("missing key", "missing keys", missing),
        ("unexpected key", "unexpected keys", unexpected),
        ("shape/dtype mismatch", "shape/dtype mismatches", mismatched),
    ):
        if items:
            shown = ", ".join(items[:_SHOWN]) + (
                f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            )
            problems.append(f"{len(items)} {one if len(items) == 1 else many}: {shown}")
    if problems:
        if through_twin:
            shown = ", ".join(f"{k} (tied to {t})" for k, t in list(through_twin.items())[:_SHOWN])
            problems.append(f"tied keys that load through their twin: {shown}")
        raise StateDictMismatch(
            f"cannot load {source} into {type(module).__name__}; the module was not changed. "
            + "; ".join(problems)
        )
    if check_only:
        return given
    result = module.load_state_dict(tensors, strict=keys is None and not through_twin)
    if keys is not None and result.unexpected_keys:  # checked above; torch agrees or fails
        raise StateDictMismatch(f"unexpected keys {result.unexpected_keys}")
    if set(result.missing_keys) - set(through_twin) - (set(expected) - set(wanted)):
        raise StateDictMismatch(f"{source}: torch reports missing keys {result.missing_keys}")
    return given


def tied_keys(module: Any) -> dict[str, list[str]]:
    """For each state-dict key of ``module``, the other keys whose tensor is the same memory
    (same storage, offset, shape and strides): tied weights."""
    groups: dict[tuple, list[str]] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        if _as_tensor(tensor) is None or tensor.is_meta or tensor.numel() == 0:
            continue
        place = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
        )
        groups.setdefault(place, []).append(key)
    return {
        key: [other for other in group if other != key]
        for group in groups.values()
        if len(group) > 1
        for key in group
    }
