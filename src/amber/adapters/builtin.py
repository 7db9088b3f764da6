"""Python's own types that objects commonly hold (collections, functools, enum...)."""

from __future__ import annotations

from amber.graph.trust import REGISTRY, Registry

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
    "datetime:date",
    "datetime:datetime",
    "datetime:time",
    "datetime:timedelta",
    "datetime:timezone",
    "decimal:Decimal",
    "fractions:Fraction",
    "uuid:UUID",
    "pathlib:PurePosixPath",
    "pathlib:PosixPath",
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
