"""scipy.sparse matrices and arrays (all seven formats, both APIs)."""

from __future__ import annotations

from amber.graph.trust import REGISTRY

FORMATS = ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")

# Module layout of scipy >= 1.8 (scipy.sparse._csr ...). Names resolve only if they exist
# and are exactly these classes, so listing them imports nothing.
TYPES = [f"scipy.sparse._{fmt}:{fmt}_{api}" for fmt in FORMATS for api in ("matrix", "array")]

REGISTRY.add_types(TYPES)
