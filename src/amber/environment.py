"""The producing environment recorded in every file, and its comparison on load."""

from __future__ import annotations

import functools
import platform
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from amber._version import __version__
from amber.errors import EnvironmentMismatch, EnvironmentMismatchWarning

# Import names whose distribution is named differently.
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "Pillow"}
_NOT_PACKAGES = set(sys.stdlib_module_names) | {"builtins", "__main__", "amber"}


@functools.lru_cache(maxsize=256)
def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it (cached: reading package
    metadata costs milliseconds, and versions do not change under a running process)."""
    from importlib import metadata  # imported here: it costs ~25 ms, and only saving needs it

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# A distribution name as packaging defines it (PEP 508), bounded.
_DISTRIBUTION_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")


def distribution(top_level: str) -> str:
    return _DISTRIBUTIONS.get(top_level, top_level)


_IMPORT_NAMES = {dist: module for module, dist in _DISTRIBUTIONS.items()}


def installed_version(dist: str) -> str | None:
    """The installed version, from the already-imported module when there is one (cheap),
    else from the package metadata."""
    module = sys.modules.get(_IMPORT_NAMES.get(dist, dist))
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else package_version(dist)


def current(modules: Iterable[str] = ()) -> dict[str, Any]:
    """Versions of python, amber, numpy and the distributions of ``modules`` (top-level
    import names of the classes and functions a file refers to), plus the platform."""
    packages = {"amber": __version__, "numpy": package_version("numpy")}
    for module in sorted(set(modules) - _NOT_PACKAGES):
        # The imported module's own version first: the distribution may be named otherwise
        # (xgboost-cpu installs xgboost).
        name = distribution(module)
        packages[name] = installed_version(name)
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{sys.platform}-{platform.machine()}",
        "byteorder": sys.byteorder,
        "packages": {k: v for k, v in packages.items() if v is not None},
    }


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def differences(saved: dict[str, Any]) -> list[str]:
    """'name saved X, installed Y' for python and each saved package whose minor differs."""
    out = []
    python = saved.get("python")
    if isinstance(python, str) and _minor(python) != _minor(platform.python_version()):
        out.append(f"python saved {python}, running {platform.python_version()}")
    packages = saved.get("packages")
    for name, version in (packages if isinstance(packages, dict) else {}).items():
        if name == "amber" or not isinstance(version, str):
            continue
        if not isinstance(name, str) or not _DISTRIBUTION_NAME.fullmatch(name):
            # Written by whoever wrote the file: never handed to the metadata lookup.
            out.append(f"{name[:40]!r} saved {version[:40]!r}, not a package name")
            continue
        installed = installed_version(name)
        if installed is None:
            out.append(f"{name} saved {version}, not installed")
        elif _minor(installed) != _minor(version):
            out.append(f"{name} saved {version}, installed {installed}")
    return out


def check(saved: dict[str, Any], *, strict: bool, source: str) -> None:
    """Warn (or raise with ``strict``) when the loading environment differs by minor version."""
    diffs = differences(saved)
    if not diffs:
        return
    message = (
        f"{source} was saved in a different environment: {'; '.join(diffs)}. "
        "The object may behave differently here; re-save it with the versions you run, or "
        "install the saved ones"
    )
    if strict:
        raise EnvironmentMismatch(message + " (strict=True refused to load it)")
    warnings.warn(message, EnvironmentMismatchWarning, stacklevel=4)
