"""Constructors owned by the library, for types whose pickling protocol amber does not
replay generically (random generators, Cython types with checks...).

Adapters register them by qualified name, so registering imports nothing. A file can only
select one by naming its (audited) type; the file never supplies code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Constructor:
    """``encode(obj)`` returns plain state the graph can store; ``decode(cls, state)``
    rebuilds the object from the decoded state (after ``validate``, if any)."""

    encode: Callable[[Any], Any]
    decode: Callable[[type, Any], Any]


CONSTRUCTORS: dict[str, Constructor] = {}

# Modules whose compiled (Cython) classes are designed to be created by ``cls.__new__(cls)``
# and then filled by their own ``__setstate__`` (their pickling does exactly that, through a
# helper function named ``newObj``). Other compiled classes are never created that way.
NEW_MODE_MODULES: set[str] = set()


# Checks run on a rebuilt object before it is handed out, for classes whose compiled code
# trusts its data (sparse matrix indices, tree child links): a hostile file must not be
# able to make them read or write out of bounds. Each raises ValueError when the object is
# inconsistent.
VALIDATORS: dict[str, Callable[[Any], None]] = {}
# The same checks over every instance of the class one load builds, at once (one numpy
# pass over a forest's 200 trees). The decoder collects such objects and runs their batch
# before any other validator runs and before the load returns, so owners are still
# checked after their members. Only for classes that no construction step uses (their
# owners' own checks read only shapes and counts).
BATCH_VALIDATORS: dict[str, Callable[[list[Any]], None]] = {}


# For library-trusted classes rebuilt by calling them: which decoded arguments a call may
# take (the shapes their own pickling produces), so a file cannot make a trusted type do
# unbounded work, e.g. deque(range(2**62)).
CALL_ARGUMENTS: dict[str, Callable[[tuple], bool]] = {}


# Validated compiled classes that keep the arrays of their state by reference (neighbour
# trees, histogram tree predictors): those arrays become read-only once validated, so no
# other holder can change what the check saw.
READ_ONLY_STATE: set[str] = set()


# Wrappers saved as the object they wrap (a ``torch.compile``d module as the module it
# compiled): the wrapper holds compiled code and caches that no file can carry.
SAVED_AS: dict[str, Callable[[Any], Any]] = {}


def register_saved_as(name: str, unwrap: Callable[[Any], Any]) -> None:
    """Save instances of the class named ``module:qualname`` as ``unwrap(obj)``."""
    SAVED_AS[name] = unwrap


def register_call(name: str, check: Callable[[tuple], bool]) -> None:
    """Allow calling the class named ``module:qualname`` with arguments ``check`` accepts."""
    CALL_ARGUMENTS[name] = check


def register_validator(
    name: str,
    check: Callable[[Any], None],
    *,
    batch: Callable[[list[Any]], None] | None = None,
) -> None:
    """Register a consistency check for the class named ``module:qualname``; ``batch``:
    the same check over a list of instances (see ``BATCH_VALIDATORS``)."""
    VALIDATORS[name] = check
    if batch is not None:
        BATCH_VALIDATORS[name] = batch


def register(name: str, constructor: Constructor) -> None:
    """Register the constructor for the class named ``module:qualname``."""
    CONSTRUCTORS[name] = constructor


def register_family(
    names: tuple[str, ...] | list[str],
    constructor: Constructor,
    validator: Callable[[Any], None] | None = None,
) -> None:
    """Register one constructor (and validator) for several classes of a family (a
    library's estimator wrappers)."""
    for name in names:
        register(name, constructor)
        if validator is not None:
            register_validator(name, validator)


def allow_new_mode(*modules: str) -> None:
    """Allow the 'new' construction mode for the compiled classes of ``modules``."""
    NEW_MODE_MODULES.update(modules)
