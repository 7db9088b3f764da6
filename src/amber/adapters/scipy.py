"""scipy: sparse matrices and arrays (all seven formats, both APIs), B-splines and frozen
statistical distributions."""

from __future__ import annotations

from typing import Any

from amber.errors import FormatError
from amber.graph.constructors import Constructor, register, register_validator
from amber.graph.schema import DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

FORMATS = ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")

# Module layout of scipy >= 1.8 (scipy.sparse._csr ...). Names resolve only if they exist
# and are exactly these classes, so listing them imports nothing.
TYPES = [f"scipy.sparse._{fmt}:{fmt}_{api}" for fmt in FORMATS for api in ("matrix", "array")]

BSPLINE = "scipy.interpolate._bsplines:BSpline"
# dok matrices are dict subclasses that pickle through copyreg's protocol-0 path; amber
# stores their coordinates instead and rebuilds them through scipy's public constructors.
DOK = ("scipy.sparse._dok:dok_matrix", "scipy.sparse._dok:dok_array")

REGISTRY.add_types([*TYPES, BSPLINE])


def _bspline_state(spline: Any) -> dict[str, Any]:
    return {
        "t": spline.t,
        "c": spline.c,
        "k": int(spline.k),
        "extrapolate": spline.extrapolate,
        "axis": int(spline.axis),
    }


def _bspline(cls: type, state: Any) -> Any:
    if not isinstance(state, dict) or set(state) != {"t", "c", "k", "extrapolate", "axis"}:
        raise FormatError("BSpline state needs t, c, k, extrapolate and axis")
    t, c = state["t"], state["c"]
    # The public constructor validates knots, coefficients and degree against each other
    # (compiled evaluation code trusts them). It may copy the arrays; when it kept their
    # dtypes, rebuild around the file's own arrays so that sharing between splines stays.
    checked = cls(t, c, state["k"], state["extrapolate"], state["axis"])
    same = all(
        getattr(a, "dtype", None) == b.dtype and getattr(a, "shape", None) == b.shape
        for a, b in ((t, checked.t), (c, checked.c))
    )
    if not same:
        return checked
    return cls.construct_fast(t, c, checked.k, checked.extrapolate, checked.axis)


register(BSPLINE, Constructor(_bspline_state, _bspline))


def _dok_state(matrix: Any) -> dict[str, Any]:
    coo = matrix.tocoo()
    return {"shape": tuple(matrix.shape), "coords": list(coo.coords), "data": coo.data}


def _dok(cls: type, state: Any) -> Any:
    import scipy.sparse as sp

    if not isinstance(state, dict) or set(state) != {"shape", "coords", "data"}:
        raise FormatError("dok state needs shape, coords and data")
    coo = sp.coo_array((state["data"], tuple(state["coords"])), shape=state["shape"])
    coo._check()  # coordinates inside the shape, before any conversion uses them
    return cls(coo)


for _name in DOK:
    register(_name, Constructor(_dok_state, _dok))

# Frozen distributions (RandomizedSearchCV parameter grids) are stored as the name of a
# scipy.stats distribution and its numeric parameters, and rebuilt by calling scipy.stats.
FROZEN = (
    "scipy.stats._distn_infrastructure:rv_continuous_frozen",
    "scipy.stats._distn_infrastructure:rv_discrete_frozen",
)
REGISTRY.add_types(FROZEN)


def _number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _frozen_state(frozen: Any) -> dict[str, Any]:
    return {"name": frozen.dist.name, "args": list(frozen.args), "kwds": dict(frozen.kwds)}


def _frozen(cls: type, state: Any) -> Any:
    import scipy.stats

    if not isinstance(state, dict) or set(state) != {"name", "args", "kwds"}:
        raise FormatError("a frozen distribution is stored as name, args and kwds")
    name, args, kwds = state["name"], state["args"], state["kwds"]
    generator = getattr(scipy.stats, name, None) if isinstance(name, str) else None
    if not isinstance(generator, (scipy.stats.rv_continuous, scipy.stats.rv_discrete)):
        raise FormatError(f"{name!r} is not a scipy.stats distribution")
    if not (
        isinstance(args, list)
        and isinstance(kwds, dict)
        and all(_number(v) for v in [*args, *kwds.values()])
        and all(isinstance(k, str) and k.isidentifier() for k in kwds)
    ):
        raise FormatError("distribution parameters must be numbers")
    frozen = generator(*args, **kwds)
    if type(frozen) is not cls:
        raise FormatError(f"{name} does not freeze to a {cls.__name__}")
    return frozen


for _name in FROZEN:
    register(_name, Constructor(_frozen_state, _frozen))


def _check_compressed(matrix: Any) -> None:
    matrix.check_format(full_check=True)  # index bounds, sorted indptr, array lengths


def _check_coo(matrix: Any) -> None:
    matrix._check()  # coordinates inside the shape


def _check_dia(matrix: Any) -> None:
    data, offsets = matrix.data, matrix.offsets
    if data.ndim != 2 or offsets.ndim != 1 or data.shape[0] != offsets.shape[0]:
        raise ValueError("dia data must be (n_diagonals, n) with one offset per diagonal")


def _check_via_coo(matrix: Any) -> None:
    matrix.tocoo()._check()  # lil rows and dok keys must lie inside the shape


_CHECKS = {
    "csr": _check_compressed,
    "csc": _check_compressed,
    "bsr": _check_compressed,
    "coo": _check_coo,
    "dia": _check_dia,
    "lil": _check_via_coo,
    "dok": _check_via_coo,
}
for _fmt, _check in _CHECKS.items():
    for _api in ("matrix", "array"):
        register_validator(f"scipy.sparse._{_fmt}:{_fmt}_{_api}", _check)


# Typed state (graph/schema.py): sparse matrices, splines and frozen distributions hold
# arrays and numbers only, and are values wherever they appear.
_VALUES = [*TYPES, BSPLINE, *FROZEN]
SCHEMAS.add_data(_VALUES)
SCHEMAS.register_many(_VALUES, Schema(default=DATA, whole=DATA))
