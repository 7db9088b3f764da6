"""One exception hierarchy for every layer of amber.

Each class also inherits the builtin exception that fits, so callers that already catch
``ValueError`` or ``OSError`` keep working. Messages say what happened and what to do next.
"""

from __future__ import annotations

import re

__all__ = [
    "AliasConflict",
    "AmberError",
    "CorruptFileError",
    "DurabilityWarning",
    "EnvironmentMismatch",
    "EnvironmentMismatchWarning",
    "FormatError",
    "InsufficientMemoryError",
    "InvalidArgumentError",
    "MissingDependencyError",
    "ReadError",
    "SerializationError",
    "StateDictMismatch",
    "StoreError",
    "StoreIndexError",
    "StoreIndexWarning",
    "TensorNotFoundError",
    "UnsupportedVersionError",
    "UntrustedTypeError",
    "VersionNotFound",
    "WriteError",
]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class AmberError(Exception):
    """Root of every error amber raises on purpose.

    Messages often quote values from a file or a library's own message about them; a repr
    with a memory address (``<object at 0x7f...>``) is shortened: addresses say nothing to
    the reader and help an attacker.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(_ADDRESS.sub("", a) if isinstance(a, str) else a for a in args))


class InvalidArgumentError(AmberError, ValueError):
    """A function was called with an argument it cannot accept."""


class FormatError(AmberError, ValueError):
    """The bytes are not a well-formed amber file (wrong magic, bad structure, bad manifest)."""


class InsufficientMemoryError(AmberError, MemoryError):
    """A well-formed file declares a tensor larger than the memory this process can get."""


class CorruptFileError(AmberError, ValueError):
    """An amber file was damaged: truncated, appended to, or a digest does not match."""


class UnsupportedVersionError(FormatError):
    """The file needs a newer (or older) reader than this one."""


class UntrustedTypeError(AmberError, TypeError):
    """Loading would need types or functions that are not on the trust allowlist."""


class SerializationError(AmberError, TypeError):
    """An object cannot be saved; the message gives its path inside the saved object."""


class StateDictMismatch(AmberError, ValueError):
    """Weights in a file do not fit the module they were loaded into (missing or unexpected
    keys, other shapes or dtypes); the module was left unchanged."""


class TensorNotFoundError(AmberError, KeyError):
    """A tensor name asked for is not in the file."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class _OSErrorMessage(OSError):
    """Print our full message, not OSError's "[Errno N] ..." form."""

    def __str__(self) -> str:
        return self.strerror if self.strerror else super().__str__()


class MissingDependencyError(AmberError, ImportError):
    """An optional package needed for this file or object is not installed."""


class ReadError(AmberError, _OSErrorMessage):
    """The file could not be read (missing, unreadable, not a regular file)."""


class WriteError(AmberError, _OSErrorMessage):
    """The file could not be written; nothing was left at the target path."""


class EnvironmentMismatch(AmberError):
    """The loading environment differs from the saving one and ``strict=True`` was asked."""


class EnvironmentMismatchWarning(UserWarning):
    """The loading environment differs from the saving one (package versions)."""


class StoreError(AmberError):
    """A model store operation failed."""


class StoreIndexError(StoreError):
    """A store's SQLite index cannot be opened or read; it is derived data, rebuilt from
    storage (``amber store reindex``)."""


class DurabilityWarning(UserWarning):
    """A write took effect but could not be made durable (fsync failed): it may not survive
    a power loss."""


class StoreIndexWarning(UserWarning):
    """A change was committed to storage but the store's index could not follow; the index
    is rebuilt with ``amber store reindex`` (or ``Store.check(repair=True)``)."""


class VersionNotFound(StoreError, LookupError):
    """A model name, version or alias does not exist in the store."""


class AliasConflict(StoreError):
    """An alias moved concurrently; the update was refused instead of lost."""
