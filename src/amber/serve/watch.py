"""Cheap change tokens for a served spec: "has this ref changed since token X".

A watcher's ``token()`` is compared with the last one seen; only when it differs does the
follower resolve the spec again and, if the version moved, load the new one. Any backend
plugs in through ``Backend.get`` on the alias's key (the store's documented layout,
``refs/NAME/ALIAS``): the alias document itself, a hundred-odd bytes, which every move
rewrites with a new version and time. On the local backend that is one small read, on an
object store one GET. Not ``Backend.stat``: an object store's modification time has
one-second resolution (two moves within a second to documents of equal size would look
unchanged), and its stat costs a HEAD plus a read of the gc marker.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from amber.store import Store


class Watcher(Protocol):
    def token(self) -> Hashable:
        """A value that changes whenever the served spec may point elsewhere."""


class AliasWatcher:
    """An alias's ref document (every move rewrites it)."""

    def __init__(self, store: Store, name: str, alias: str) -> None:
        self._backend = store.backend
        self._key = f"refs/{name}/{alias}"

    def token(self) -> Hashable:
        return self._backend.get(self._key)


class LatestWatcher:
    """The latest version: resolved on every poll (a listing of the model's versions)."""

    def __init__(self, store: Store, spec: str) -> None:
        self._store = store
        self._spec = spec

    def token(self) -> Hashable:
        return self._store.resolve(self._spec).version
