"""numpy: scalar types, dtypes, random generators with their exact state, and the
functions (ufuncs and a few others) that estimators take as parameters."""

from __future__ import annotations

from typing import Any

from amber.errors import FormatError
from amber.graph.constructors import Constructor, register
from amber.graph.schema import DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY, Registry

# Scalar types and dtype, as values (``dtype=np.float64``) or rebuilt from a file. Never
# ``ndarray`` or ``object_``: constructing them from file data could make an array whose
# elements are pointers taken from the file.
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
    "datetime64",
    "timedelta64",
    "dtype",
    # abstract scalar types, used as values (make_column_selector(dtype_include=np.number))
    "generic",
    "number",
    "integer",
    "signedinteger",
    "unsignedinteger",
    "inexact",
    "floating",
    "complexfloating",
    "character",
    "flexible",
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
MASKED_ARRAY = "numpy.ma:MaskedArray"
RECORD_ARRAY = "numpy.rec:recarray"
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


def _load_functions(registry: Registry) -> None:
    import numpy as np

    # vars(), not dir()/getattr(): numpy loads some submodules lazily on attribute access,
    # and auditing a name must not import them.
    namespace = vars(np)
    registry.add_functions(
        f"numpy:{name}"
        for name, value in namespace.items()
        if isinstance(value, np.ufunc) and value.__name__ == name  # aliases: own name only
    )
    registry.add_functions(
        f"numpy:{n}"
        for n in FUNCTIONS
        if callable(namespace.get(n)) and getattr(namespace[n], "__module__", "") == "numpy"
    )


REGISTRY.add_types([*BIT_GENERATORS.values(), RANDOM_STATE, GENERATOR, MASKED_ARRAY, RECORD_ARRAY])
# Listed by name, so judging a numpy class name imports nothing; a name that this numpy
# does not have fails to resolve in the audit's second step.
REGISTRY.add_types(f"numpy:{name}" for name in SCALAR_TYPES)
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


def _bit_generator_of(cls: type, state: Any) -> Any:
    if _check_generator_name(state) != cls.__name__:
        raise FormatError(f"a {cls.__name__} cannot take {state['bit_generator']} state")
    return _bit_generator(state)


for _name in BIT_GENERATORS.values():
    register(_name, Constructor(lambda g: g.state, _bit_generator_of))
register(RANDOM_STATE, Constructor(lambda rs: rs.get_state(legacy=False), _random_state))
register(GENERATOR, Constructor(lambda g: g.bit_generator.state, _generator))


def _masked_state(array: Any) -> dict[str, Any]:
    import numpy as np

    return {
        "data": np.asarray(array.data),
        "mask": np.ma.getmaskarray(array),
        "fill_value": array.fill_value,
        "hard_mask": bool(array.hardmask),
        "shared_mask": bool(array._sharedmask),
    }


def _masked_array(cls: type, state: Any) -> Any:
    import numpy as np

    keys = {"data", "mask", "fill_value", "hard_mask", "shared_mask"}
    if not isinstance(state, dict) or set(state) != keys:
        raise FormatError(f"masked array state needs exactly {sorted(keys)}")
    data, mask = state["data"], state["mask"]
    if not isinstance(data, np.ndarray) or not isinstance(mask, np.ndarray):
        raise FormatError("masked array data and mask must be arrays")
    if mask.shape != data.shape or mask.dtype != np.bool_:
        raise FormatError("masked array mask must be a boolean array of the data's shape")
    out = cls(
        data, mask=mask, fill_value=state["fill_value"], hard_mask=state["hard_mask"], copy=True
    )
    out._sharedmask = bool(state["shared_mask"])
    return out


register(MASKED_ARRAY, Constructor(_masked_state, _masked_array))


def _record_array(cls: type, state: Any) -> Any:
    import numpy as np

    if type(state) is not np.ndarray or state.dtype.names is None:
        raise FormatError("a record array is stored as an array with named fields")
    return state.view(cls)


# A record array is a structured array seen through attribute access to its fields.
register(RECORD_ARRAY, Constructor(lambda array: array.view(_ndarray()), _record_array))


def _ndarray() -> type:
    import numpy as np

    return np.ndarray


# Typed state (graph/schema.py): generators and masked arrays are values wherever they
# appear; scalar types may appear as class objects (dtype=np.float64) anywhere.
_VALUES = [*BIT_GENERATORS.values(), RANDOM_STATE, GENERATOR, MASKED_ARRAY, RECORD_ARRAY]
SCHEMAS.add_data(_VALUES)
SCHEMAS.add_value_types(f"numpy:{name}" for name in SCALAR_TYPES)
SCHEMAS.register_many([*_VALUES, *(f"numpy:{name}" for name in SCALAR_TYPES)], Schema(whole=DATA))
