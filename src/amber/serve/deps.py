"""The optional packages the server needs, checked without importing them."""

from __future__ import annotations

import importlib.util

from amber.errors import MissingDependencyError


def require() -> None:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"amber serve needs {' and '.join(missing)}: pip install 'amber[serve]'"
        )
