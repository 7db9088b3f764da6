"""Load files with their own library in a separate process, the reference for conversions.

    python -m tests.legacy.reference_child DIRECTORY

For every ``*.pkl``, ``*.joblib``, ``*.pt`` and ``*.npy``/``*.npz`` file of DIRECTORY
(our own benign files, written by the tests): load it with ``pickle.load``,
``joblib.load``, ``torch.load(weights_only=False)`` or ``numpy.load(allow_pickle=True)``
and save what came back with ``amber.save`` as ``<file>.ref.amber``, so that the test
process compares amber's conversion against it without ever unpickling. Prints a JSON
object of the files that failed (name -> error).
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any


def _load(path: Path) -> Any:
    suffix = path.suffix
    if suffix == ".pkl":
        with open(path, "rb") as f:
            return pickle.load(f)
    if suffix == ".joblib":
        import joblib

        return joblib.load(path)
    if suffix == ".pt":
        import torch

        return torch.load(path, weights_only=False)
    import numpy as np

    loaded = np.load(path, allow_pickle=True)
    if suffix == ".npz":
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    return loaded


def main(directory: str) -> None:
    import amber

    failures: dict[str, str] = {}
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in (".pkl", ".joblib", ".pt", ".npy", ".npz"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                amber.save(_load(path), path.with_name(path.name + ".ref.amber"))
        except Exception as exc:  # reported to the test, which fails on it
            failures[path.name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(failures))


if __name__ == "__main__":
    main(sys.argv[1])
