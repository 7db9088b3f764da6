"""Magnitude pruning on save (docs/compression.md, "Pruning"): the smallest weights become
zero, and the pruned tensors are stored sparse (a bitmask of the non-zero elements, then
those elements: codec ``bitmask``, format 1.1), so the file shrinks. The same tensors as
quantization are chosen by default (``amber.quantization.selected``); pruning runs first, so
it composes with ``quantize=`` (the quantized values keep the zeros) and ``compress=``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber import quantization
from amber.errors import InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Prune:
    """Magnitude pruning: ``fraction`` (in [0, 1): that share of the smallest magnitudes
    become zero) or ``threshold`` (magnitudes below it become zero), per tensor
    (``scope="layer"``) or over all chosen tensors together (``"global"``, fraction only);
    ``include``/``exclude`` as for ``amber.Quantize``."""

    fraction: float | None = None
    threshold: float | None = None
    scope: str = "layer"
    include: tuple[str, ...] = field(default_factory=tuple)
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.threshold is None):
            raise InvalidArgumentError("prune needs exactly one of fraction= or threshold=")
        for label, value, high in (
            ("fraction", self.fraction, 1.0),
            ("threshold", self.threshold, math.inf),
        ):
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and 0 <= value < high)
            ):
                raise InvalidArgumentError(
                    f"prune {label} must be a number in [0, {high}), got {value!r}"
                )
        if self.scope not in ("layer", "global"):
            raise InvalidArgumentError(
                f"prune scope must be 'layer' or 'global', got {self.scope!r}"
            )
        if self.scope == "global" and self.fraction is None:
            raise InvalidArgumentError("scope='global' takes a fraction (a threshold is global)")
        for patterns in (self.include, self.exclude):
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise InvalidArgumentError("include and exclude must be lists of name patterns")
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))


def as_spec(prune: Any) -> Prune | None:
    """``prune=`` of save: None, a fraction, or a ``Prune``."""
    if prune is None or isinstance(prune, Prune):
        return prune
    if isinstance(prune, (int, float)) and not isinstance(prune, bool):
        return Prune(fraction=float(prune))
    raise InvalidArgumentError(
        f"prune must be None, a fraction or amber.Prune(...), not {type(prune).__name__}"
    )


def plan(
    obj: Any, tensors: Iterable[tuple[Any, ...]], spec: Prune
) -> tuple[list[tuple[Any, ...]], set[str]]:
    """The tensors with the chosen ones pruned (new arrays; the model is not changed), and
    the names of the pruned ones."""
    import numpy as np

    items = [quantization.materialized(item) for item in tensors]
    default = quantization.default_names(obj)
    chosen = [
        i
        for i, (name, array, dtype) in enumerate(items)
        if quantization.selected(name, array, dtype, default, spec.include, spec.exclude)
    ]
    values = {i: quantization.as_float(items[i][1], items[i][2]) for i in chosen}
    if spec.threshold is not None:
        cutoffs = dict.fromkeys(chosen, float(spec.threshold))
    elif spec.scope == "global":
        everything = np.concatenate([np.abs(values[i]).ravel() for i in chosen]) if chosen else None
        cut = _kth_smallest(everything, spec.fraction) if everything is not None else 0.0
        cutoffs = dict.fromkeys(chosen, cut)
    else:
        cutoffs = {i: _kth_smallest(np.abs(values[i]).ravel(), spec.fraction) for i in chosen}
    for i in chosen:
        name, array, dtype = items[i]
        if cutoffs[i] is None:
            continue
        pruned = np.array(array, copy=True, order="C")
        pruned[np.abs(values[i]) <= cutoffs[i]] = 0
        items[i] = (name, pruned, dtype)
    return items, {items[i][0] for i in chosen}


def _kth_smallest(magnitudes: np.ndarray, fraction: float) -> float | None:
    """The magnitude at or below which ``fraction`` of the elements lie (None: prune none)."""
    import numpy as np

    count = int(fraction * magnitudes.size)
    if count == 0:
        return None
    return float(np.partition(magnitudes, count - 1)[count - 1])


def prune(model: Any, prune: float | Prune = 0.5) -> Any:
    """A copy of ``model`` with its chosen weights pruned: what ``amber.load`` gives for a
    file saved with ``prune=``."""
    import amber

    with tempfile.TemporaryDirectory(prefix="amber-prune-") as folder:
        path = Path(folder) / "model.amber"
        amber.save(model, path, prune=prune)
        return amber.load(path, mmap=False)
