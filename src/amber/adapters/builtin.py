"""Python's own types that objects commonly hold (collections, functools, enum...)."""

from __future__ import annotations

from typing import Any

from amber.errors import FormatError, SerializationError
from amber.graph.constructors import Constructor, register, register_call
from amber.graph.schema import (
    CONTAINER_SLOT,
    DATA,
    SCHEMAS,
    Schema,
    Slot,
    default_factory_allowed,
    is_function,
    partial_state,
)
from amber.graph.trust import REGISTRY, Registry

# Values (typed state, graph/schema.py): instances are inert data wherever they appear.
VALUE_CLASSES = [
    "datetime:date",
    "datetime:datetime",
    "datetime:time",
    "datetime:timedelta",
    "datetime:timezone",
    "zoneinfo:ZoneInfo",
    "decimal:Decimal",
    "fractions:Fraction",
    "uuid:UUID",
    "pathlib:PurePosixPath",
    "pathlib:PureWindowsPath",
]
TYPES = [
    "builtins:object",
    "builtins:int",
    "builtins:float",
    "builtins:complex",
    "builtins:str",
    "builtins:bytes",
    "builtins:bytearray",
    "builtins:bool",
    "builtins:list",
    "builtins:tuple",
    "builtins:dict",
    "builtins:set",
    "builtins:frozenset",
    "builtins:slice",
    "builtins:range",
    "collections:OrderedDict",
    "collections:defaultdict",
    "collections:Counter",
    "collections:deque",
    "functools:partial",
    *VALUE_CLASSES,
]

# Functions that estimators and transformers commonly take as parameters. Each is a pure
# computation on its arguments.
FUNCTIONS = [
    "builtins:len",
    "builtins:abs",
    "builtins:min",
    "builtins:max",
    "builtins:sum",
    "builtins:round",
    "math:sqrt",
    "math:log",
    "math:log1p",
    "math:exp",
    "math:expm1",
    "operator:add",
    "operator:mul",
]


def _register(registry: Registry) -> None:
    registry.add_types(TYPES)
    registry.add_functions(FUNCTIONS)


_register(REGISTRY)


def _ints_or_none(args: tuple, count: int) -> bool:
    return len(args) <= count and all(a is None or type(a) is int for a in args)


def _small_int(value: Any) -> bool:
    return type(value) is int and 0 <= value < 1 << 31


# The argument shapes these classes' own pickling produces; anything else is refused.
register_call("collections:OrderedDict", lambda args: args == ())
register_call(
    "collections:defaultdict",
    lambda args: args == () or (len(args) == 1 and default_factory_allowed(args[0])),
)
register_call("collections:Counter", lambda args: len(args) == 1 and type(args[0]) is dict)
register_call(
    "collections:deque",
    lambda args: (
        args == ()
        or (
            len(args) in (1, 2)
            and type(args[0]) in (list, tuple)
            and (len(args) == 1 or args[1] is None or _small_int(args[1]))
        )
    ),
)
register_call("functools:partial", lambda args: len(args) == 1 and is_function(args[0]))
register_call("decimal:Decimal", lambda args: len(args) == 1 and type(args[0]) is str)
register_call("pathlib:PurePosixPath", lambda args: all(type(a) is str for a in args))
register_call("pathlib:PureWindowsPath", lambda args: all(type(a) is str for a in args))
for _name in ("date", "datetime", "time"):
    register_call(
        f"datetime:{_name}",
        lambda args: 1 <= len(args) <= 2 and type(args[0]) is bytes and len(args[0]) <= 10,
    )
register_call("datetime:timedelta", lambda args: _ints_or_none(args, 3))
register_call("datetime:timezone", lambda args: 1 <= len(args) <= 2)
register_call("uuid:UUID", lambda args: len(args) <= 1)
register_call("builtins:slice", lambda args: len(args) == 3 and _ints_or_none(args, 3))
register_call("builtins:range", lambda args: len(args) == 3 and _ints_or_none(args, 3))


def _fraction(cls: type, state: Any) -> Any:
    # Fraction("1e1000000000") computes 10**1000000000: rebuild from two integers instead.
    if not (isinstance(state, list) and len(state) == 2 and all(type(v) is int for v in state)):
        raise FormatError("a Fraction is stored as [numerator, denominator]")
    if state[1] == 0:
        raise FormatError("a Fraction cannot have a zero denominator")
    return cls(state[0], state[1])


register(
    "fractions:Fraction",
    Constructor(lambda f: [f.numerator, f.denominator], _fraction),
)


def zone_key(key: Any) -> str:
    """A time zone key from a file, checked to be a name in the zone database, never a path
    (``ZoneInfo`` reads the file its key names)."""
    if (
        type(key) is not str
        or not 0 < len(key) <= 64
        or key.startswith("/")
        or any(part in ("", ".", "..") for part in key.split("/"))
        or not all(c.isascii() and (c.isalnum() or c in "_+-/") for c in key)
    ):
        raise FormatError(f"{str(key)[:80]!r} is not a time zone name")
    return key


def _zone_state(zone: Any) -> str:
    if not isinstance(zone.key, str):
        raise SerializationError(
            "cannot save a ZoneInfo made from a file (it has no key); use ZoneInfo('Area/City')"
        )
    return zone.key


def zone(key: Any) -> Any:
    """The ``ZoneInfo`` a file names by ``key``, from this machine's zone database."""
    import zoneinfo

    return _zone(zoneinfo.ZoneInfo, key)


def _zone(cls: type, state: Any) -> Any:
    try:
        return cls(zone_key(state))
    except (ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise FormatError(f"the time zone {state!r} is not valid") from None
    except KeyError:
        raise FormatError(
            f"the time zone {state!r} is not known on this machine; install tzdata"
        ) from None


# Zones are stored as their database key and rebuilt from this machine's zone database.
register("zoneinfo:ZoneInfo", Constructor(_zone_state, _zone))


SCHEMAS.add_data(VALUE_CLASSES)
# Concrete paths are saved as the pure paths they name (graph/encode.py): data when saved.
SCHEMAS.add_data(["pathlib:PosixPath", "pathlib:WindowsPath"])
SCHEMAS.register_many(VALUE_CLASSES, Schema(whole=DATA))
SCHEMAS.register_many([n for n in TYPES if n.startswith("builtins:")], Schema(whole=DATA))
# Containers are transparent: what they hold is checked by the slot of their owner. They
# take no attributes (a defaultdict's factory comes only from its call arguments), except
# the ``_metadata`` torch keeps on state dicts.
SCHEMAS.register(
    "collections:OrderedDict", Schema(attributes={"_metadata": DATA}, whole=CONTAINER_SLOT)
)
SCHEMAS.register_many(
    ["collections:Counter", "collections:deque", "collections:defaultdict"],
    Schema(whole=CONTAINER_SLOT),
)
# Every partial built is one that may sit where a callable may: a function with numbers and
# strings bound, no keyword through which a function writes (schema.partial_state).
SCHEMAS.register("functools:partial", Schema(whole=Slot(callables=True), check=partial_state))
