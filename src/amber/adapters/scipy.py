"""scipy: sparse matrices and arrays (all seven formats, both APIs) and B-splines."""

from __future__ import annotations

from typing import Any

from amber.errors import FormatError
from amber.graph.constructors import Constructor, register
from amber.graph.trust import REGISTRY

FORMATS = ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")

# Module layout of scipy >= 1.8 (scipy.sparse._csr ...). Names resolve only if they exist
# and are exactly these classes, so listing them imports nothing.
TYPES = [f"scipy.sparse._{fmt}:{fmt}_{api}" for fmt in FORMATS for api in ("matrix", "array")]

BSPLINE = "scipy.interpolate._bsplines:BSpline"

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
