"""Save an object with amber and load it back, the way a user would."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import amber

_counter = itertools.count()


def round_trip(obj: Any, directory: Path, **load_options: Any) -> Any:
    """``amber.save`` then ``amber.load`` (default allowlist, no ``trusted=``).

    Any warning while saving or loading (an environment mismatch, a scikit-learn version
    warning...) is an error: a round trip in one environment must be silent. Only
    scikit-learn's notice that a class is deprecated, given on every construction, passes.
    """
    path = directory / f"obj{next(_counter)}.amber"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "Class .* is deprecated", FutureWarning)
        amber.save(obj, path)
        return amber.load(path, **load_options)
