"""One module per family of types. Each registers, at import, only names and lazy loaders:
no framework is imported until a file or an object needs it."""

from amber.adapters import (
    builtin,
    lightgbm,
    numpy,
    pandas,
    scipy,
    sklearn,
    sklearn_validators,
    torch,
    xgboost,
)

__all__ = [
    "builtin",
    "lightgbm",
    "numpy",
    "pandas",
    "scipy",
    "sklearn",
    "sklearn_validators",
    "torch",
    "xgboost",
]
