"""Deep, exact comparison of an object with its round-tripped copy.

``assert_same(original, loaded)`` walks both objects together and raises AssertionError
naming the first path where they differ. It is strict where a saved model must be
exact and lenient only where the difference cannot change behaviour:

* types must be identical (``type(a) is type(b)``) at every level;
* arrays: same dtype, shape and bits (except NaN payloads); a C- or Fortran-contiguous
  original must stay so (a strided view may come back contiguous); object arrays are
  compared element by element, record arrays field by field (not their padding bytes);
* floats: equal bits, except that any NaN equals any NaN;
* sparse matrices, estimators and other objects: by their ``__dict__`` (and, for classes
  that customise pickling or have no ``__dict__``, such as Cython trees, by what
  ``__reduce_ex__(4)`` returns);
* random generators: by their full state;
* classes and functions: by identity;
* sharing: an object reached twice in the original must be one object in the copy too,
  and two objects of the original must not become one.

One allowance: attributes that a class's own ``__setstate__`` discards (``DISCARDED``) may
be missing from the copy, as they are from a copy made with pickle.
"""

from __future__ import annotations

import math
import struct
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np

_ATOMS = (type(None), bool, int, str, bytes, bytearray, complex, range, slice)
# Attributes that unpickling drops by the class's own design, by class (dotted name).
DISCARDED: dict[str, frozenset[str]] = {
    # Bunch.__setstate__ is a no-op: the table of deprecated keys (used only to warn) is
    # rebuilt empty by pickle too.
    "sklearn.utils._bunch.Bunch": frozenset({"_deprecated_key_to_warnings"}),
}
# Attributes amber's load resets to None, the class's own "count it when used" value (a
# thread count is this machine's, never the file's), by class (dotted name).
COUNTED_WHEN_USED: dict[str, frozenset[str]] = {
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper": frozenset({"n_threads"}),
}
_CODE_TYPES = (type, types.FunctionType, types.BuiltinFunctionType, np.ufunc, type(np.mean))


class _Walker:
    """One comparison: remembers pairs already compared (for sharing and cycles)."""

    def __init__(self) -> None:
        # id(original) -> (original, copy) and id(copy) -> original; holding the objects
        # keeps their ids from being reused.
        self._seen: dict[int, tuple[Any, Any]] = {}
        self._seen_copies: dict[int, Any] = {}

    def check(self, a: Any, b: Any, path: str) -> None:
        if type(a) is not type(b):
            _fail(path, f"type {_tname(a)} != {_tname(b)}")
        if isinstance(a, _ATOMS):
            if a != b:
                _fail(path, f"{a!r} != {b!r}")
            return
        if isinstance(a, float):
            _check_float(a, b, path)
            return
        if isinstance(a, np.generic):
            _check_scalar(a, b, path)
            return
        if _is_code(a):
            if a is not b:
                _fail(path, f"{a!r} is not {b!r}")
            return
        if _mutable(a) and self._already_seen(a, b, path):
            return
        handler = self._handler(a)
        handler(a, b, path)

    def _already_seen(self, a: Any, b: Any, path: str) -> bool:
        entry = self._seen.get(id(a))
        if entry is not None:
            if entry[1] is not b:
                _fail(path, "shared in the original but a separate object in the copy")
            return True
        if id(b) in self._seen_copies:
            _fail(path, "separate objects in the original but one object in the copy")
        self._seen[id(a)] = (a, b)
        self._seen_copies[id(b)] = a
        return False

    def _handler(self, a: Any) -> Callable[[Any, Any, str], None]:
        if isinstance(a, (list, tuple)):
            return self._sequence
        if isinstance(a, dict):
            return self._dict
        if isinstance(a, (set, frozenset)):
            return _check_set
        if isinstance(a, np.ndarray):
            return self._array
        if isinstance(a, np.random.RandomState):
            return self._random_state
        if isinstance(a, np.random.Generator):
            return self._generator
        if isinstance(a, np.random.BitGenerator):
            return self._bit_generator
        return self._object

    # -- containers ---------------------------------------------------------------------------

    def _sequence(self, a: Any, b: Any, path: str) -> None:
        if len(a) != len(b):
            _fail(path, f"length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            self.check(x, y, f"{path}[{i}]")

    def _dict(self, a: dict, b: dict, path: str) -> None:
        keys_a, keys_b = list(a), list(b)
        if len(keys_a) != len(keys_b) or set(keys_a) != set(keys_b):
            missing = [k for k in keys_a if k not in b]
            extra = [k for k in keys_b if k not in a]
            _fail(path, f"keys differ: missing {missing!r}, unexpected {extra!r}")
        self.check(keys_a, keys_b, f"{path}.keys()")  # same order and key types
        for key in keys_a:
            self.check(a[key], b[key], f"{path}[{key!r}]")
        if isinstance(a, defaultdict):
            self.check(a.default_factory, b.default_factory, f"{path}.default_factory")
        self._attributes(a, b, path)

    # -- numpy --------------------------------------------------------------------------------

    def _array(self, a: np.ndarray, b: np.ndarray, path: str) -> None:
        if a.dtype != b.dtype:
            _fail(path, f"dtype {a.dtype} != {b.dtype}")
        if a.shape != b.shape:
            _fail(path, f"shape {a.shape} != {b.shape}")
        for order in ("c_contiguous", "f_contiguous"):
            if getattr(a.flags, order) and not getattr(b.flags, order) and a.ndim > 1:
                _fail(path, f"the original is {order}, the copy is not")
        if type(a) is not np.ndarray:  # masked arrays, matrices...: their data, then attributes
            self._array(np.asarray(a), np.asarray(b), f"{path}<data>")
            self._attributes(a, b, path)
            return
        if a.dtype.names is not None:  # records: field by field (padding bytes are noise)
            for field in a.dtype.names:
                self._array(a[field], b[field], f"{path}[{field!r}]")
            return
        if a.dtype.hasobject:
            for index in np.ndindex(a.shape):
                self.check(a[index], b[index], f"{path}[{', '.join(map(str, index))}]")
            return
        if a.tobytes() != b.tobytes() and not _equal_with_nan(a, b):
            _fail(path, f"values differ:\n{a!r}\n{b!r}")

    def _random_state(self, a: np.random.RandomState, b: Any, path: str) -> None:
        self.check(a.get_state(legacy=False), b.get_state(legacy=False), f"{path}<state>")

    def _generator(self, a: np.random.Generator, b: Any, path: str) -> None:
        self._bit_generator(a.bit_generator, b.bit_generator, f"{path}.bit_generator")

    def _bit_generator(self, a: np.random.BitGenerator, b: Any, path: str) -> None:
        if type(a) is not type(b):
            _fail(path, f"type {_tname(a)} != {_tname(b)}")
        self.check(a.state, b.state, f"{path}<state>")

    # -- other objects ------------------------------------------------------------------------

    def _object(self, a: Any, b: Any, path: str) -> None:
        has_dict = self._attributes(a, b, path)
        if not has_dict or _customises_pickling(type(a)):
            self._reduced(a, b, path)

    def _attributes(self, a: Any, b: Any, path: str) -> bool:
        """Compare ``__dict__`` (as attributes); False when the objects have none."""
        vars_a, vars_b = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
        if vars_a is None and vars_b is None:
            return False
        if not isinstance(vars_a, dict) or not isinstance(vars_b, dict):
            _fail(path, "only one of the objects has a __dict__")
        discarded = DISCARDED.get(_tname(a), frozenset())
        missing = [k for k in vars_a if k not in vars_b and k not in discarded]
        extra = [k for k in vars_b if k not in vars_a]
        if missing or extra:
            _fail(path, f"attributes differ: missing {missing!r}, unexpected {extra!r}")
        counted = COUNTED_WHEN_USED.get(_tname(a), frozenset())
        for key in vars_a:
            if key in counted:
                if vars_b[key] is not None:
                    _fail(f"{path}.{key}", f"{vars_b[key]!r} was kept; the load resets it")
            elif key in vars_b:
                self.check(vars_a[key], vars_b[key], f"{path}.{key}")
        return True

    def _reduced(self, a: Any, b: Any, path: str) -> None:
        """Compare what pickling would store: constructor, arguments, state, items."""
        ra, rb = _reduce(a, path), _reduce(b, path)
        if len(ra) != len(rb):
            _fail(path, f"__reduce_ex__ gives {len(ra)} parts for the original, {len(rb)}")
        if ra[0] is not rb[0]:
            _fail(path, f"rebuilt by {ra[0]!r} in the original, {rb[0]!r} in the copy")
        for i, label in enumerate(("args", "state", "listitems", "dictitems")[: len(ra) - 1]):
            self.check(ra[i + 1], rb[i + 1], f"{path}<{label}>")


def assert_same(original: Any, loaded: Any, path: str = "obj") -> None:
    """Raise AssertionError naming the first place where ``loaded`` differs from
    ``original`` (see the module docstring for what "the same" means)."""
    _Walker().check(original, loaded, path)


# -- leaves ---------------------------------------------------------------------------------


def _fail(path: str, message: str) -> NoReturn:
    raise AssertionError(f"{path}: {message}")


def _tname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_float(a: float, b: float, path: str) -> None:
    if math.isnan(a) and math.isnan(b):
        return
    if struct.pack("<d", a) != struct.pack("<d", b):
        _fail(path, f"{a!r} != {b!r}")


def _check_scalar(a: np.generic, b: np.generic, path: str) -> None:
    if a.dtype != b.dtype:
        _fail(path, f"dtype {a.dtype} != {b.dtype}")
    if a.dtype.hasobject:
        assert_same(a.item(), b.item(), path)
    elif a.tobytes() != b.tobytes() and not _equal_with_nan(np.asarray(a), np.asarray(b)):
        _fail(path, f"{a!r} != {b!r}")


def _check_set(a: set | frozenset, b: set | frozenset, path: str) -> None:
    if a != b:
        _fail(path, f"{sorted(map(repr, a ^ b))} in only one of the sets")


def _equal_with_nan(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bits except NaN payloads (only float and complex arrays can differ so)."""
    if a.dtype.kind not in "fc":
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        return False
    return np.where(nan_a, 0, a).tobytes() == np.where(nan_b, 0, b).tobytes()


def _is_code(obj: Any) -> bool:
    """Classes and functions: the same object must come back, not a copy."""
    return isinstance(obj, _CODE_TYPES) or type(obj).__name__ == "cython_function_or_method"


def _mutable(obj: Any) -> bool:
    return not isinstance(obj, (tuple, frozenset))


def _customises_pickling(cls: type) -> bool:
    return cls.__reduce_ex__ is not object.__reduce_ex__ or cls.__reduce__ is not object.__reduce__


def _reduce(obj: Any, path: str) -> tuple:
    reduced = obj.__reduce_ex__(4)
    if not isinstance(reduced, tuple):
        _fail(path, f"{_tname(obj)} reduces to the global {reduced!r}")
    parts = list(reduced)
    for i in (3, 4):  # listitems / dictitems are iterators
        if len(parts) > i and parts[i] is not None:
            parts[i] = list(parts[i])
    return tuple(parts)
