"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint is an ordinary amber file whose object is a dict marked with
``"format": "amber.checkpoint"``: the model's state dict, the optimizer's, the LR
scheduler's and the gradient scaler's, the step and epoch, user values, and the random
number generator states of python, numpy and torch (CPU, and CUDA when in use). Restoring
checks everything it can before changing any object.
"""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amber import modules
from amber.errors import InvalidArgumentError, StateDictMismatch

if TYPE_CHECKING:
    from amber.api import FileInfo, PathLike

FORMAT = "amber.checkpoint"
VERSION = 1
_PARTS = ("optimizer", "scheduler", "scaler")


@dataclass(frozen=True)
class Checkpoint:
    """What ``load_checkpoint`` found besides the states it restored."""

    step: int | None
    epoch: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    # Which parts the file holds: "model", "optimizer", "scheduler", "scaler", "rng".
    parts: tuple[str, ...] = ()


def _rng_state() -> dict[str, Any]:
    import numpy as np

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(
    path: PathLike,
    *,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    step: int | None = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
    rng: bool = True,
    metadata: dict[str, Any] | None = None,
) -> FileInfo:
    """Save a training checkpoint atomically (a crash mid-save leaves the previous file).

    ``model`` is a torch module (or a state dict); ``optimizer``, ``scheduler`` and
    ``scaler`` are saved through their ``state_dict()``. ``rng`` records the python, numpy
    and torch generator states so that a resumed run draws the same numbers. ``extra``
    holds any other values amber can save (data-loader position, best metric...).
    """
    from amber.api import save

    for label, value in (("step", step), ("epoch", epoch)):
        if value is not None and (type(value) is not int or value < 0):
            raise InvalidArgumentError(f"{label} must be a non-negative int, got {value!r}")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidArgumentError(f"extra must be a dict, got {type(extra).__name__}")
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "epoch": epoch,
        "extra": extra or {},
    }
    if model is not None:
        state["model"] = model if isinstance(model, Mapping) else model.state_dict()
    for label, obj in zip(_PARTS, (optimizer, scheduler, scaler), strict=True):
        if obj is not None:
            state[label] = obj.state_dict()
    if rng:
        state["rng"] = _rng_state()
    return save(state, path, metadata=metadata)


def load_checkpoint(
    path: PathLike,
    *,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = True,
    trusted: Any = None,
    strict: bool = False,
) -> Checkpoint:
    """Restore the states saved by ``save_checkpoint`` into the given objects.

    Every object passed must have its part in the file, and the model's weights must match
    (StateDictMismatch otherwise); these checks run before anything is changed. With
    ``restore_rng`` the random generators continue where the saved run was.
    """
    from amber.api import load

    if model is not None:
        modules.check_target(model)
    state = load(path, trusted=trusted, strict=strict)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InvalidArgumentError(
            f"{path} is not an amber checkpoint (save one with amber.save_checkpoint); "
            "load it with amber.load"
        )
    if type(state.get("version")) is not int or state["version"] > VERSION:
        raise InvalidArgumentError(
            f"{path}: checkpoint version {state.get('version')!r} is newer than this amber "
            "reads; upgrade amber"
        )
    wanted = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    absent = [label for label, obj in wanted.items() if obj is not None and label not in state]
    if absent:
        raise StateDictMismatch(
            f"{path} holds no {', '.join(absent)} state; the checkpoint has: "
            + ", ".join(p for p in (*wanted, "rng") if p in state)
        )
    if model is not None:
        modules.load_into(model, state["model"], str(path), check_only=True)
    if optimizer is not None:
        _check_optimizer(optimizer, state["optimizer"], path)
    if scaler is not None:
        _rehearse(lambda: copy.deepcopy(scaler).load_state_dict(state["scaler"]), "scaler", path)
    if restore_rng and isinstance(state.get("rng"), dict):
        _rehearse(lambda: _restore_rng(state["rng"], scratch=True), "random generator", path)
    if model is not None:
        modules.load_into(model, state["model"], str(path))
    for label in _PARTS:
        if wanted[label] is not None:
            wanted[label].load_state_dict(state[label])
    if restore_rng and isinstance(state.get("rng"), dict):
        _restore_rng(state["rng"])
    return Checkpoint(
        step=state.get("step"),
        epoch=state.get("epoch"),
        extra=state.get("extra") or {},
        parts=tuple(p for p in (*wanted, "rng") if p in state),
    )


def _check_optimizer(optimizer: Any, saved: Any, path: Any) -> None:
    """The checks torch's Optimizer.load_state_dict makes, made before anything changes."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list):
        raise StateDictMismatch(f"{path}: the optimizer state has no parameter groups")
    current = optimizer.param_groups
    saved_sizes = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    sizes = [len(g["params"]) for g in current]
    if saved_sizes != sizes:
        raise StateDictMismatch(
            f"{path}: the saved optimizer has parameter groups of sizes {saved_sizes}, this "
            f"one {sizes}; build the optimizer over the same parameters"
        )
    # Per-parameter buffers (momentum, Adam's moments) must have their parameter's shape,
    # or the first step after loading fails inside torch.
    params = [p for group in current for p in group["params"]]
    state = saved.get("state") if isinstance(saved.get("state"), dict) else {}
    for index, values in state.items():
        if type(index) is not int or not 0 <= index < len(params) or not isinstance(values, dict):
            raise StateDictMismatch(f"{path}: the optimizer state names parameter {index!r}")
        for key, value in values.items():
            shape = getattr(value, "shape", None)
            if shape is not None and len(shape) > 0 and tuple(shape) != tuple(params[index].shape):
                raise StateDictMismatch(
                    f"{path}: optimizer state {key!r} of parameter {index} has shape "
                    f"{tuple(shape)}, the parameter {tuple(params[index].shape)}"
                )


def is_checkpoint(root: Any) -> bool:
    """Whether the graph node ``root`` is the dict of a training checkpoint (judged from the
    node, before anything is built)."""
    from amber.graph.decode import entries

    found = entries(root)
    return found is not None and found.get("format") == FORMAT


def _rehearse(step: Any, part: str, path: Any) -> None:
    """Run ``step`` on scratch objects: a state that would fail to restore is refused
    before the model and the optimizer are changed."""
    try:
        step()
    except Exception as exc:
        raise StateDictMismatch(
            f"{path}: the {part} state cannot be restored ({type(exc).__name__}: {exc}); "
            "nothing was changed"
        ) from None


def _restore_rng(state: dict[str, Any], *, scratch: bool = False) -> None:
    """Set the generators from ``state``; ``scratch``: set fresh generators instead (a
    rehearsal that leaves the process's generators alone)."""
    import numpy as np

    if "python" in state:
        (random.Random() if scratch else random).setstate(state["python"])
    if "numpy" in state:
        (np.random.RandomState() if scratch else np.random).set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        if scratch:
            torch.Generator().set_state(state["torch"].clone())
            return
        torch.set_rng_state(state["torch"].clone())
        if "cuda" in state and torch.cuda.is_available():
            saved = state["cuda"]
            if len(saved) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([s.clone() for s in saved])
