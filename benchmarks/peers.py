"""One save/load function pair per format compared, and the table of peers.

Optional libraries are imported inside the functions, so the harness runs (and says what
it skipped) without torch or safetensors installed.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Weights = dict[str, np.ndarray]


# -- amber -----------------------------------------------------------------------------------


def save_amber(weights: Weights, path: Path) -> None:
    import amber

    amber.save(weights, path)


def load_amber_full(path: Path) -> Any:
    import amber

    return amber.load(path, verify="full")


def load_amber_lazy(path: Path) -> Any:
    import amber

    return amber.load(path, verify="lazy")


def load_amber_off(path: Path) -> Any:
    import amber

    return amber.load(path, verify="off")


def open_amber_lazy(path: Path) -> Any:
    import amber

    return amber.open(path, verify="lazy")


def amber_file_arrays(f: Any) -> Iterable[np.ndarray]:
    return (f[name] for name in f.names())


# -- pickle (protocol 5) ---------------------------------------------------------------------


def save_pickle(weights: Weights, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(weights, f, protocol=5)


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


# -- numpy .npz ------------------------------------------------------------------------------


def save_npz(weights: Weights, path: Path) -> None:
    np.savez(path, **weights)


def load_npz(path: Path) -> Any:
    # An NpzFile: members are read (and copied) when indexed, so 'ready' pays for them.
    return np.load(path)


def npz_arrays(f: Any) -> Iterable[np.ndarray]:
    return (f[name] for name in f.files)


# -- safetensors -----------------------------------------------------------------------------


def save_safetensors_numpy(weights: Weights, path: Path) -> None:
    from safetensors.numpy import save_file

    save_file(weights, str(path))


def load_safetensors_numpy(path: Path) -> Any:
    from safetensors.numpy import load_file

    return load_file(str(path))


def save_safetensors_torch(tensors: Mapping[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path))


def load_safetensors_torch(path: Path) -> Any:
    from safetensors.torch import load_file

    return load_file(str(path))


# -- torch -----------------------------------------------------------------------------------


def save_torch(tensors: Mapping[str, Any], path: Path) -> None:
    import torch

    torch.save(dict(tensors), path)


def load_torch(path: Path) -> Any:
    import torch

    return torch.load(path, weights_only=True, mmap=True)


# -- glue ------------------------------------------------------------------------------------


def to_torch(weights: Weights) -> dict[str, Any]:
    """Torch tensors sharing the numpy weights' memory (no copy, no extra RAM)."""
    import torch

    return {name: torch.from_numpy(array) for name, array in weights.items()}


def tensor_arrays(tensors: Mapping[str, Any]) -> Iterable[np.ndarray]:
    return (t.numpy() for t in tensors.values())


def mapping_arrays(arrays: Mapping[str, np.ndarray]) -> Iterable[np.ndarray]:
    return arrays.values()


def _same(weights: Weights) -> Any:
    return weights


def _close(obj: Any) -> None:
    obj.close()


def _nothing(obj: Any) -> None:
    pass


@dataclass(frozen=True)
class LoadVariant:
    label: str
    load: Callable[[Path], Any]
    arrays: Callable[[Any], Iterable[np.ndarray]] = mapping_arrays
    # Called after timing, to release file handles a loader keeps open.
    close: Callable[[Any], None] = _nothing


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    suffix: str
    save: Callable[[Any, Path], None]
    loads: tuple[LoadVariant, ...]
    modules: tuple[str, ...] = ()
    # Whether save already makes the file durable (fsync); otherwise a '+ fsync' row is added.
    durable: bool = False
    # Converts the numpy weights to what this peer saves; runs once, untimed.
    prepare: Callable[[Weights], Any] = _same

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # a broken install is as good as a missing one here
                return f"{module} cannot be imported ({type(exc).__name__}: {exc})"
        return None


PEERS: tuple[Peer, ...] = (
    Peer(
        "amber",
        "amber.save",
        ".amber",
        save_amber,
        (
            LoadVariant("amber.load verify=full", load_amber_full),
            LoadVariant("amber.load verify=lazy", load_amber_lazy),
            LoadVariant("amber.load verify=off", load_amber_off),
            LoadVariant("amber.open lazy, per tensor", open_amber_lazy, amber_file_arrays, _close),
        ),
        modules=("amber",),
        durable=True,
    ),
    Peer(
        "pickle",
        "pickle protocol 5",
        ".pkl",
        save_pickle,
        (LoadVariant("pickle.load", load_pickle),),
    ),
    Peer(
        "npz",
        "np.savez",
        ".npz",
        save_npz,
        (LoadVariant("np.load (npz)", load_npz, npz_arrays, _close),),
    ),
    Peer(
        "safetensors-numpy",
        "safetensors.numpy",
        ".safetensors",
        save_safetensors_numpy,
        (LoadVariant("safetensors.numpy.load_file", load_safetensors_numpy),),
        modules=("safetensors.numpy",),
    ),
    Peer(
        "safetensors-torch",
        "safetensors.torch",
        ".safetensors",
        save_safetensors_torch,
        (LoadVariant("safetensors.torch.load_file", load_safetensors_torch, tensor_arrays),),
        modules=("torch", "safetensors.torch"),
        prepare=to_torch,
    ),
    Peer(
        "torch",
        "torch.save",
        ".pt",
        save_torch,
        (LoadVariant("torch.load mmap", load_torch, tensor_arrays),),
        modules=("torch",),
        prepare=to_torch,
    ),
)
