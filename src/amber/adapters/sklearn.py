"""scikit-learn: estimators and the internals they hold (trees, losses, optimizers...).

Classes are trusted by a package rule rather than a list computed by importing all of
scikit-learn (which takes seconds): a name is accepted before import when its module is a
file of the installed scikit-learn outside test and vendored code and it names a class;
after import the object must be that class, defined in that module. Functions are a fixed
table: the score functions, metrics and kernels that estimators take as parameters.
"""

from __future__ import annotations

import inspect

from amber.graph.trust import REGISTRY, PackageRule, Registry

DENIED_MODULES = (
    "sklearn.externals",
    "sklearn.utils._testing",
    "sklearn.utils.tests",
    "sklearn.tests",
    "sklearn._build_utils",
    "sklearn.conftest",
    "sklearn.utils._show_versions",
    "sklearn.datasets",
    "sklearn.experimental",
)

# Public modules whose functions estimators take as parameters (score_func, metric, kernel).
FUNCTION_MODULES = (
    "sklearn.feature_selection",
    "sklearn.metrics",
    "sklearn.metrics.pairwise",
)


def _is_sklearn_class(obj: object) -> bool:
    return isinstance(obj, type) and obj.__module__.split(".")[0] == "sklearn"


def _load_functions(registry: Registry) -> None:
    import importlib

    names = []
    for module_name in FUNCTION_MODULES:
        module = importlib.import_module(module_name)
        for attr in getattr(module, "__all__", dir(module)):
            func = getattr(module, attr, None)
            if inspect.isfunction(func) and func.__module__.startswith("sklearn."):
                names.append(f"{func.__module__}:{func.__qualname__}")
    registry.add_functions(names)


REGISTRY.add_rule(PackageRule("sklearn", accept=_is_sklearn_class, denied=DENIED_MODULES))
REGISTRY.add_loader("sklearn", "function", _load_functions)
