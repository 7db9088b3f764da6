"""The producing environment recorded in every file (and compared on load, later)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from amber._version import __version__


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def current(extra_packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Versions of python, amber, numpy (and ``extra_packages``) plus the platform."""
    packages = {"amber": __version__, "numpy": package_version("numpy")}
    for name in extra_packages:
        packages[name] = package_version(name)
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{sys.platform}-{platform.machine()}",
        "byteorder": sys.byteorder,
        "packages": {k: v for k, v in packages.items() if v is not None},
    }
