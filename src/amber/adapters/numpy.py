"""numpy: scalar types, dtypes, random generators with their exact state, and the
functions (ufuncs and a few others) that estimators take as parameters."""

from __future__ import annotations

from typing import Any

from amber.errors import FormatError
from amber.graph.constructors import Constructor, register
from amber.graph.trust import REGISTRY, Registry

SCALAR_TYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "longdouble",
    "complex64",
    "complex128",
    "str_",
    "bytes_",
    "object_",
    "datetime64",
    "timedelta64",
    "ndarray",
    "dtype",
    "intc",
    "uintc",
    "intp",
    "uintp",
    "longlong",
    "ulonglong",
]

BIT_GENERATORS = {
    "MT19937": "numpy.random._mt19937:MT19937",
    "PCG64": "numpy.random._pcg64:PCG64",
    "PCG64DXSM": "numpy.random._pcg64:PCG64DXSM",
    "Philox": "numpy.random._philox:Philox",
    "SFC64": "numpy.random._sfc64:SFC64",
}
RANDOM_STATE = "numpy.random.mtrand:RandomState"
GENERATOR = "numpy.random._generator:Generator"

# Functions commonly passed to FunctionTransformer, aggregations and scorers: pure numeric
# computations. Every numpy ufunc is also trusted (see _load).
FUNCTIONS = [
    "mean",
    "median",
    "sum",
    "prod",
    "std",
    "var",
    "min",
    "max",
    "amin",
    "amax",
    "nanmean",
    "nanmedian",
    "nansum",
    "argmax",
    "argmin",
    "clip",
    "round",
    "cumsum",
    "percentile",
    "quantile",
    "average",
]


def _load_types(registry: Registry) -> None:
    import numpy as np

    registry.add_types(
        f"numpy:{name}"
        for name in SCALAR_TYPES
        if isinstance(getattr(np, name, None), type) and getattr(np, name).__module__ == "numpy"
    )


def _load_functions(registry: Registry) -> None:
    import numpy as np

    ufuncs = [n for n in dir(np) if isinstance(getattr(np, n), np.ufunc)]
    registry.add_functions(
        f"numpy:{getattr(np, n).__name__}"
        for n in ufuncs
        if getattr(np, n).__name__ == n  # aliases resolve under their own name
    )
    registry.add_functions(
        f"numpy:{n}"
        for n in FUNCTIONS
        if callable(getattr(np, n, None)) and getattr(getattr(np, n), "__module__", "") == "numpy"
    )


REGISTRY.add_types([*BIT_GENERATORS.values(), RANDOM_STATE, GENERATOR])
REGISTRY.add_loader("numpy", "type", _load_types)
REGISTRY.add_loader("numpy", "function", _load_functions)


def _check_generator_name(state: Any) -> str:
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        found = state.get("bit_generator") if isinstance(state, dict) else state
        raise FormatError(
            f"random generator state must name one of {sorted(BIT_GENERATORS)}, got {found!r}"
        )
    return state["bit_generator"]


def _bit_generator(state: Any) -> Any:
    import numpy as np

    generator = getattr(np.random, _check_generator_name(state))()
    try:
        generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise FormatError(f"invalid {state['bit_generator']} state: {exc}") from None
    return generator


def _random_state(cls: type, state: Any) -> Any:
    import numpy as np

    rs = cls(getattr(np.random, _check_generator_name(state))())
    try:
        rs.set_state(state)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise FormatError(f"invalid RandomState state: {exc}") from None
    return rs


def _generator(cls: type, state: Any) -> Any:
    return cls(_bit_generator(state))


for _name in BIT_GENERATORS.values():
    register(_name, Constructor(lambda g: g.state, lambda cls, state: _bit_generator(state)))
register(RANDOM_STATE, Constructor(lambda rs: rs.get_state(legacy=False), _random_state))
register(GENERATOR, Constructor(lambda g: g.bit_generator.state, _generator))
