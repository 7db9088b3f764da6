"""Bringing a client's index of a remote store up to date, incrementally.

A remote store has one index per client (under ``$AMBER_CACHE``), so other clients' saves,
deletes, alias moves and tag changes reach it only from storage. On open:

1. One LIST of ``changes/`` (``changes.py``): when no writer has a change open and the
   generation is the one this index settled on, nothing changed: done.
2. Otherwise the store lists ``versions/``, ``refs/`` and ``tags/`` with each key's ETag
   (one LIST request per thousand keys) and compares with the ETags it saw last time
   (table ``remote_keys``): only new or changed documents are read, and documents gone
   are dropped from the index.

A store of 10,000 versions in sync therefore costs one request to open, and after a change
ten LIST requests plus a GET per changed document, never 10,000 GETs. (Listing only the
keys after the last one seen would need keys that sort in the order they are made; the
version numbers in ``versions/NAME/N`` are not zero-padded and names interleave, so the
journal tells when to list instead.) The index is a cache for listing and search: ``load``
and ``resolve`` always read storage, so a stale index can never change which bytes a load
returns.
"""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from amber.errors import AmberError
from amber.store import changes
from amber.store.index import row_of

if TYPE_CHECKING:
    from amber.store.records import Record
    from amber.store.store import Store

SCHEMA = "CREATE TABLE IF NOT EXISTS remote_keys (key TEXT PRIMARY KEY, etag TEXT NOT NULL)"
STATE = "CREATE TABLE IF NOT EXISTS remote_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
_VERSION = re.compile(r"^versions/([^/]+)/([1-9][0-9]*)$")
_TAGS = re.compile(r"^tags/([^/]+)/([1-9][0-9]*)$")
_REF = re.compile(r"^refs/([^/]+)/([^/]+)$")
READERS = 16  # documents read at once


def refresh(store: Store) -> int:
    """Read what changed in storage since the last refresh into the index; the number of
    documents read. Backends that cannot list ETags get a full reindex."""
    list_etags = getattr(store.backend, "list_etags", None)
    if list_etags is None:
        return store.reindex()
    journal = dict(list_etags(changes.PREFIX))
    intents = sorted(k for k in journal if k.startswith(changes.OPEN))
    generation = journal.get(changes.GENERATION)
    with store.index.transaction() as db:
        db.execute(SCHEMA)
        db.execute(STATE)
        state = dict(db.execute("SELECT name, value FROM remote_state").fetchall())
        listed_at = float(state.get("listed_at") or 0)
        if (
            not intents
            and generation is not None
            and state.get("generation") == generation
            and 0 <= time.time() - listed_at < changes.RELIST_AFTER
        ):
            return 0  # nothing changed since the last listing
        count = _read_changes(store, db, list_etags)
        # Settle on this generation only if no change was open before the listing.
        settled = generation if not intents and generation is not None else ""
        db.executemany(
            "INSERT OR REPLACE INTO remote_state (name, value) VALUES (?, ?)",
            [("generation", settled), ("listed_at", repr(time.time()))],
        )
    # Intents of writers that died long ago: their change (if any) is in the listing above.
    for key in changes.stale_intents(store.backend, intents, time.time()):
        with contextlib.suppress(AmberError):
            store.backend.delete(key)
    return count


def _read_changes(store: Store, db: Any, list_etags: Any) -> int:
    now: dict[str, str] = {}
    for prefix in ("versions/", "refs/", "tags/"):
        now.update(list_etags(prefix))
    known = dict(db.execute("SELECT key, etag FROM remote_keys").fetchall())
    changed = [k for k, e in now.items() if known.get(k) != e]
    gone = [k for k in known if k not in now]
    versions: set[tuple[str, int]] = set()
    refs: set[tuple[str, str]] = set()
    for key in changed + gone:
        if match := _VERSION.match(key) or _TAGS.match(key):
            versions.add((match.group(1), int(match.group(2))))
        elif match := _REF.match(key):
            refs.add((match.group(1), match.group(2)))
    failed: set[str] = set()
    # Documents are read in parallel (a first sync reads thousands), the index written here.
    with ThreadPoolExecutor(READERS) as pool:
        found = pool.map(
            lambda v: _read_version(store, v[0], v[1], f"tags/{v[0]}/{v[1]}" in now),
            sorted(versions),
        )
        for (name, number), (record, tags) in zip(sorted(versions), found, strict=True):
            if tags is None:  # damaged: store.check() reports it
                failed |= {f"versions/{name}/{number}", f"tags/{name}/{number}"}
            if tags is None or record is None or record.deleted:
                store.index.remove_version(db, name, number)
            else:
                store.index.add_version(db, row_of(record, tags))
    for name, alias in sorted(refs):
        try:
            version = store.ledger.ref(name, alias)[1]
        except AmberError:
            version = None  # a damaged ref: store.check() reports it
            failed.add(f"refs/{name}/{alias}")
        store.index.set_alias(db, name, alias, version)
    db.executemany("DELETE FROM remote_keys WHERE key = ?", [(k,) for k in gone])
    db.executemany(
        "INSERT OR REPLACE INTO remote_keys (key, etag) VALUES (?, ?)",
        [(k, now[k]) for k in changed if k not in failed],
    )
    return len(versions) + len(refs)


def forget(store: Store) -> None:
    """Make the next refresh read everything again (after a full reindex)."""
    with store.index.transaction() as db:
        db.execute(SCHEMA)
        db.execute(STATE)
        db.execute("DELETE FROM remote_keys")
        db.execute("DELETE FROM remote_state")


def _read_version(
    store: Store, name: str, number: int, has_tags: bool
) -> tuple[Record | None, dict[str, str] | None]:
    """(record, tags) of ``name@number`` as storage has it: (None, {}) if absent, (None,
    None) if damaged. The tags document is read only when the listing showed one."""
    try:
        record = store.ledger.record(name, number)
        if record is None or record.deleted:
            return record, {}
        return record, store.ledger.tags(record) if has_tags else dict(record.raw.get("tags") or {})
    except AmberError:
        return None, None
