"""The inert values a pickle is read into: plain constants, and these few records.

Nothing here is ever called or imported. A global is only its two strings; a construction
is the callable it names, its arguments and what later opcodes added (items, state). The
translator (``legacy.translate``) then maps these records onto amber's graph nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Value:
    """Base of the mutable records: identity matters (a pickle's memo shares objects)."""

    __slots__ = ()


@dataclass(eq=False)
class Global(Value):
    """A class or function named by GLOBAL, STACK_GLOBAL or INST/OBJ (never imported)."""

    module: str
    name: str
    offset: int

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call(Value):
    """``func(*args)`` (REDUCE, INST, OBJ) or ``cls.__new__(cls, *args)`` (NEWOBJ)."""

    func: Any
    args: Any
    opcode: str
    offset: int
    kwargs: Any = None
    state: Any = None
    has_state: bool = False
    listitems: list[Any] = field(default_factory=list)
    dictitems: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class Persistent(Value):
    """A persistent id (torch.save's storages); the container reader resolves it."""

    pid: Any
    offset: int


@dataclass(eq=False)
class PList(Value):
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class PTuple(Value):
    items: tuple[Any, ...] = ()


@dataclass(eq=False)
class PDict(Value):
    pairs: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class PSet(Value):
    items: list[Any] = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False)
class PByteArray(Value):
    data: bytes = b""


@dataclass(eq=False)
class Opaque(Value):
    """A value a container reader put on the stack (an array read after a joblib wrapper)."""

    value: Any
