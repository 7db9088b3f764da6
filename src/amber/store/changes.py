"""Telling the other clients of a shared store that something changed, in one request.

Each client of an s3:// store keeps its own index, refreshed from the bucket on open
(``refresh.py``). Listing ``versions/``, ``refs/`` and ``tags/`` costs one LIST per
thousand keys; to spare that when nothing changed, every change to a record, alias or tag
goes through a *journal* of two kinds of keys under ``changes/``:

1. before the change, the writer creates an *intent* ``changes/open/<random id>``;
2. it makes the change (creates the record, swaps the alias...);
3. it rewrites ``changes/generation`` (unique content: its ETag changes every time);
4. it deletes its intent.

A reader LISTs ``changes/`` (one request: the intents and the generation's ETag). With no
intent open and the generation it settled on last time, nothing changed and the index is
current. Otherwise it lists the three prefixes (comparing ETags, reading only what is new
or changed) and settles on the generation it saw, but only if no intent was open then.

Why a crashed writer can never make a reader miss a change: a reader settles on
generation G only after a LIST that showed no intent, followed by a full listing. A change
missing from that listing happened after it started, so its writer created its intent
after the reader's LIST of ``changes/`` (an intent created before would have been seen,
unless already deleted, which happens only after the change and step 3). From then on,
either the intent is still there (the writer died: every reader lists in full) or step 3
replaced G (every reader sees a new generation). The records stay the source of truth:
the journal only tells a reader when it may skip reading them.

An intent left by a dead writer is removed by a reader that listed after seeing it, once
it is older than ``LEASE`` (the same bound as gc's grace period: longer than any change).
As a last guard (clients of older amber versions write no journal), a reader lists in
full at least every ``RELIST_AFTER`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

from amber.errors import AmberError
from amber.store.backend import Backend

PREFIX = "changes/"
OPEN = "changes/open/"
GENERATION = "changes/generation"
LEASE = 3600.0
RELIST_AFTER = 600.0
MAX_DOCUMENT = 4096


def is_journal_key(key: str) -> bool:
    """Whether ``key`` is one of the journal's (``Store.check`` accepts them)."""
    if key == GENERATION:
        return True
    leaf = key.removeprefix(OPEN)
    return leaf != key and len(leaf) == 32 and all(c in "0123456789abcdef" for c in leaf)


class Journal:
    """The writer's side: ``with journal.change(what): ...`` around every change."""

    def __init__(self, backend: Backend, by: str) -> None:
        self.backend = backend
        self.by = by

    @contextlib.contextmanager
    def change(self, what: str) -> Iterator[None]:
        intent = OPEN + os.urandom(16).hex()
        self.backend.put_if_absent(intent, self._document({"started": time.time(), "what": what}))
        try:
            yield
        finally:
            # Even after a failure: the change may have happened (a lost answer). If the
            # generation cannot be replaced, the intent stays: readers then list in full,
            # which is slower but never wrong, and the change itself stands.
            with contextlib.suppress(AmberError):
                if self._bump(what):
                    self.backend.delete(intent)

    def _bump(self, what: str) -> bool:
        current = self.backend.read_range(GENERATION, 0, MAX_DOCUMENT + 1)
        for _ in range(5):
            new = self._document({"changed": time.time(), "what": what})
            if self.backend.compare_and_swap(GENERATION, current, new):
                return True
            now = self.backend.read_range(GENERATION, 0, MAX_DOCUMENT + 1)
            if now != current:
                return True  # another writer replaced it, after our change: as good as ours
            current = now
        return False

    def _document(self, fields: dict[str, object]) -> bytes:
        # A random nonce: no two documents are equal, so every write changes the ETag.
        return json.dumps({**fields, "by": self.by, "nonce": os.urandom(8).hex()}).encode()


def stale_intents(backend: Backend, intents: list[str], now: float) -> list[str]:
    """The intents of ``intents`` older than ``LEASE``: left by writers that died."""
    out = []
    for key in intents:
        try:
            stat = backend.stat(key)
        except AmberError:
            continue
        if stat is not None and now - stat.mtime > LEASE:
            out.append(key)
    return out
