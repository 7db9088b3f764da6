"""The storage interface every store backend implements.

A backend is a flat key-value space of immutable blobs plus a few small mutable documents.
Keys are ``/``-separated segments of ``[A-Za-z0-9._-]`` (the store builds them; users never
do). The interface asks only for what object stores offer too: get, ranged read,
create-if-absent, compare-and-swap, list by prefix, delete and stat. It never assumes
rename or locks (a backend may use them internally, as the local one does).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from amber.errors import InvalidArgumentError

# What put_if_absent accepts: bytes, an iterable of buffers (streamed), or a local file
# whose content becomes the blob (a backend may move it into place; the caller must not
# use the file afterwards).
Data = bytes | Iterable[bytes | memoryview] | Path

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    if (
        not isinstance(key, str)
        or not _KEY.fullmatch(key)
        or any(part in (".", "..") for part in key.split("/"))
    ):
        raise InvalidArgumentError(f"invalid storage key {key!r}")
    return key


@dataclass(frozen=True)
class Stat:
    size: int
    mtime: float  # seconds since the epoch of the last write or touch


class Backend(ABC):
    """Storage of one model store. Implementations must be safe to use from several
    threads and, for shared storage, several processes at once."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The blob at ``key``, or None when there is none."""

    @abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes from ``offset`` (fewer at the end of the blob), or None."""

    @abstractmethod
    def put_if_absent(self, key: str, data: Data) -> bool:
        """Store ``data`` at ``key`` unless something is there already; True if this call
        created it. A reader never sees a partly written blob."""

    @abstractmethod
    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        """Replace the blob at ``key`` by ``new`` (None: delete it) only if it currently is
        ``expected`` (None: absent). True if it was replaced. Atomic."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix``, in no particular order."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the blob at ``key``; True if there was one."""

    @abstractmethod
    def stat(self, key: str) -> Stat | None:
        """Size and modification time of the blob at ``key``, or None."""

    @abstractmethod
    def touch(self, key: str) -> bool:
        """Refresh the modification time of an existing blob (so that gc keeps a blob a
        writer is about to reference); False if it does not exist."""

    @abstractmethod
    def delete_if_older(self, key: str, limit: float) -> int | None:
        """Delete the blob at ``key`` only if its modification time is before ``limit``,
        atomically with respect to ``touch``; the size freed, or None if kept or absent."""

    # Whether blobs are local files that ``local_path`` gives (else they are downloaded).
    has_local_files = False

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, for zero-copy memory maps; None when the backend
        has no local files."""
        return None

    def describe(self) -> str:
        return type(self).__name__
