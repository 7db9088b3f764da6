"""Cheap change tokens for a served spec: "has this ref changed since token X".

A watcher's ``token()`` is compared with the last one seen; only when it differs does the
follower resolve the spec again and, if the version moved, load the new one. Any backend
plugs in through ``Backend.stat`` on the alias's key (the store's documented layout,
``refs/NAME/ALIAS``): on the local backend a ``stat`` of one small file, on an object store a
HEAD request (a conditional GET's cheaper cousin).
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
    """An alias's ref: its size and modification time (every move rewrites it)."""

    def __init__(self, store: Store, name: str, alias: str) -> None:
        self._backend = store.backend
        self._key = f"refs/{name}/{alias}"

    def token(self) -> Hashable:
        st = self._backend.stat(self._key)
        return None if st is None else (st.size, st.mtime)


class LatestWatcher:
    """The latest version: resolved on every poll (a listing of the model's versions)."""

    def __init__(self, store: Store, spec: str) -> None:
        self._store = store
        self._spec = spec

    def token(self) -> Hashable:
        return self._store.resolve(self._spec).version
