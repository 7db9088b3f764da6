"""Fully qualified names of classes and functions, as written in files: ``module:qualname``.

The colon makes the split unambiguous, so the module imported is exactly the one audited,
and resolution checks that the object found has that same ``__module__`` and
``__qualname__`` (no attribute walks through other modules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from amber.errors import FormatError, SerializationError
from amber.gcpause import gc_resumed
from amber.stackroom import import_module

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_QUALNAME = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
MAX_NAME_LENGTH = 512
_PARSED: dict[str, QualName] = {}


@dataclass(frozen=True, order=True)
class QualName:
    module: str
    qualname: str

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname}"

    @property
    def dotted(self) -> str:
        """The familiar spelling, ``package.module.Class``."""
        return f"{self.module}.{self.qualname}"

    @property
    def top_package(self) -> str:
        return self.module.split(".", 1)[0]

    @classmethod
    def parse(cls, text: object) -> QualName:
        """Parse a name from a file; FormatError if it is not ``module:qualname``."""
        if type(text) is str:
            cached = _PARSED.get(text)
            if cached is not None:  # a forest names the same few classes thousands of times
                return cached
        name = cls._parse(text)
        if len(_PARSED) < 4096:
            _PARSED[text] = name  # type: ignore[index]
        return name

    @classmethod
    def _parse(cls, text: object) -> QualName:
        if not isinstance(text, str) or len(text) > MAX_NAME_LENGTH or text.count(":") != 1:
            raise FormatError(f"{text!r} is not a qualified name of the form 'module:qualname'")
        module, qualname = text.split(":")
        if not _MODULE.fullmatch(module) or not _QUALNAME.fullmatch(qualname):
            raise FormatError(f"{text!r} is not a qualified name of the form 'module:qualname'")
        return cls(module, qualname)

    @classmethod
    def of(cls, obj: Any, *, check: bool = True) -> QualName:
        """The name of a class or function, checked (unless ``check`` is false) to resolve
        back to ``obj``."""
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            raise SerializationError(f"{obj!r} has no importable module and name")
        if "<locals>" in qualname or "<lambda>" in qualname:
            raise SerializationError(
                f"{module}.{qualname} is defined inside a function (or is a lambda), so it "
                "cannot be found again when loading; define it at module level (and trust "
                "it when loading)"
            )
        name = cls(module, qualname)
        if not _MODULE.fullmatch(module) or not _QUALNAME.fullmatch(qualname):
            raise SerializationError(f"{name.dotted} is not an importable name")
        if not check:
            return name
        try:
            found = name.resolve()
        except LookupError as exc:
            raise SerializationError(f"{exc}; it could not be found again when loading") from None
        if found is not obj:
            raise SerializationError(
                f"{name.dotted} names a different object than the one being saved"
            )
        return name

    def resolve(self) -> Any:
        """Import the module and find the object; only call after the trust audit."""
        try:
            with gc_resumed(self.module):  # a first import runs with the collector as usual
                target: Any = import_module(self.module)  # amber.stackroom
            for part in self.qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise LookupError(f"{self.dotted} cannot be found: {exc}") from None
        found = QualName(getattr(target, "__module__", ""), getattr(target, "__qualname__", ""))
        if found != self:
            raise LookupError(f"{self.dotted} resolves to {found.dotted}, a different object")
        return target


def user_name(item: Any) -> set[str]:
    """The spellings that match a user's ``trusted=`` entry: a class/function or a string."""
    if isinstance(item, str):
        return {item.replace(":", ".")}
    # Not resolved: ``@amber.trust`` runs before the class is bound to its module name.
    return {QualName.of(item, check=False).dotted}
