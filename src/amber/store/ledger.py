"""Records, refs and tags: the store's commit protocol over one backend, in one place.

Every backend (a local folder, memory, S3) holds a store's history in three kinds of small
documents, and this module is the only code that reads or writes them:

- ``versions/NAME/N``: the immutable record of a version (``records.py``). A save commits
  by *creating* it (create-if-absent) under the next free N; another writer that took N
  makes the save try N+1. Deleting a version swaps its record for a tombstone, so N is
  never handed out again.
- ``refs/NAME/ALIAS``: an alias, ``{"version": N, ...}``, moved by compare-and-swap from
  the document read, so a concurrent move is detected, never overwritten.
- ``tags/NAME/N``: the editable tags of a version, by compare-and-swap too.

Before a record is created, every object it references is *touched* (its modification time
refreshed, atomically with respect to gc's delete-if-older), and any that vanished is
written again: gc's grace period then counts from the commit.

Documents are read with a size cap (``MAX_RECORD``, ``MAX_SMALL``): a huge document planted
in storage is refused before it is read into memory. On a backend whose clients keep their
own index (``journal``: s3://), every change also goes through ``changes.py``, so that
other clients learn of it with one request.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from amber.container.format import MAX_MANIFEST_BYTES
from amber.errors import FormatError, InvalidArgumentError, StoreError
from amber.store import records
from amber.store.backend import Backend
from amber.store.changes import Journal
from amber.store.objects import object_key

# A record holds a manifest (capped by the container format) plus the tensor list.
MAX_RECORD = MAX_MANIFEST_BYTES + (64 << 20)
MAX_SMALL = 1 << 20  # an alias or the tags of a version


def now() -> str:
    """The current time as the store writes it (UTC, ISO 8601, microseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def creator() -> str:
    """``user@host`` of this process, recorded as who saved or moved something."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = f"uid{os.getuid()}"
    import socket  # only writers name themselves

    return f"{user}@{socket.gethostname()}"


def check_metrics(metrics: Any) -> dict[str, float | int]:
    """``metrics`` as a dict of finite numbers by name; InvalidArgumentError otherwise."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidArgumentError(f"metrics must be a dict of numbers, got {type(metrics)}")
    out: dict[str, float | int] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"metric names must be non-empty strings, got {key!r}")
        if hasattr(value, "item") and callable(value.item):  # numpy/torch scalars
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentError(f"metric {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InvalidArgumentError(f"metric {key!r} must be finite, got {value!r}")
        out[key] = value
    return out


def check_tags(tags: Any) -> dict[str, str]:
    """``tags`` as a dict of non-empty strings to strings; InvalidArgumentError otherwise."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidArgumentError("tags must be a dict of non-empty strings to strings")
    return dict(tags)


def ref_key(name: str, alias: str) -> str:
    return f"refs/{name}/{alias}"


def tags_key(name: str, version: int) -> str:
    return f"tags/{name}/{version}"


Committed = Callable[[records.Record, dict[str, str]], None]


class Ledger:
    """The records, refs and tags of the store on ``backend``. ``committed(record, tags)``
    is called after each new record is created (the store updates its index there).
    ``journal``: announce every change in ``changes/`` for other clients' indexes."""

    def __init__(
        self, backend: Backend, *, committed: Committed | None = None, journal: bool = False
    ) -> None:
        self.backend = backend
        self.committed = committed
        self.journal = Journal(backend, creator()) if journal else None

    @contextlib.contextmanager
    def _changing(self, what: str) -> Iterator[None]:
        if self.journal is None:
            yield
        else:
            with self.journal.change(what):
                yield

    # -- reading -----------------------------------------------------------------------------

    def read(self, key: str, limit: int, what: str) -> bytes | None:
        """The document at ``key``, None if absent; StoreError, without reading it, if it
        is larger than ``limit`` bytes."""
        raw = self.backend.read_range(key, 0, limit + 1)
        if raw is not None and len(raw) > limit:
            raise StoreError(
                f"{what} ({key}) in {self.backend.describe()} is larger than {limit} bytes, "
                "more than amber ever writes; it was not read: delete it if you did not put "
                "it there (store.check() lists damaged versions)"
            )
        return raw

    def names(self) -> list[str]:
        """Every model name with at least one allocated version number."""
        return sorted(
            {key.split("/")[1] for key in self.backend.list("versions/") if key.count("/") == 2}
        )

    def numbers(self, name: str) -> list[int]:
        """Every allocated version number of ``name`` (deleted ones included), ascending."""
        prefix = f"versions/{name}/"
        out = []
        for key in self.backend.list(prefix):
            tail = key[len(prefix) :]
            if tail.isdigit() and not tail.startswith("0"):
                out.append(int(tail))
        return sorted(out)

    def record(self, name: str, version: int) -> records.Record | None:
        """The record of ``name@version`` (a tombstone too), None if never allocated;
        StoreError if it is damaged."""
        key = records.version_key(name, version)
        raw = self.read(key, MAX_RECORD, f"the record of {name}@{version}")
        if raw is None:
            return None
        try:
            return records.decode(raw, name, version)
        except FormatError as exc:
            raise StoreError(f"{exc}; run store.check() to list damaged versions") from None

    def latest(self, name: str, numbers: list[int] | None = None) -> records.Record | None:
        """The newest live version of ``name`` (``numbers``: its allocated numbers, when
        already listed); None if it has none."""
        numbers = self.numbers(name) if numbers is None else numbers
        for number in reversed(numbers):
            record = self.record(name, number)
            if record is not None and not record.deleted:
                return record
        return None

    def live_records(self, name: str, problems: list[str] | None = None) -> list[records.Record]:
        """Every live version of ``name``, oldest first. A damaged record raises, or is
        described in ``problems`` and skipped when that list is given."""
        out = []
        for number in self.numbers(name):
            try:
                record = self.record(name, number)
            except StoreError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
                continue
            if record is not None and not record.deleted:
                out.append(record)
        return out

    def ref(self, name: str, alias: str) -> tuple[bytes | None, int | None]:
        """The alias document as stored (for a compare-and-swap) and its version number;
        (None, None) when the alias is not set. StoreError if it is damaged."""
        raw = self.read(ref_key(name, alias), MAX_SMALL, f"alias {name}@{alias}")
        if raw is None:
            return None, None
        try:
            version = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError):
            version = None
        if type(version) is not int or version < 1:
            raise StoreError(
                f"alias {name}@{alias} is damaged; set it again (amber alias NAME@V "
                f"{alias} --force)"
            )
        return raw, version

    def aliases(self, name: str, problems: list[str] | None = None) -> dict[str, int]:
        """``{alias: version}`` of every alias of ``name`` set in storage. A damaged alias
        raises, or is described in ``problems`` and skipped when that list is given."""
        out = {}
        for key in self.backend.list(f"refs/{name}/"):
            alias = key.rsplit("/", 1)[1]
            try:
                version = self.ref(name, alias)[1]
            except StoreError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
                continue
            if version is not None:
                out[alias] = version
        return out

    def tags_document(self, name: str, version: int) -> bytes | None:
        return self.read(tags_key(name, version), MAX_SMALL, f"the tags of {name}@{version}")

    def tags(self, record: records.Record) -> dict[str, str]:
        """The current tags of a version: its tags document, else those it was saved with."""
        raw = self.tags_document(record.name, record.version)
        if raw is None:
            return dict(record.raw.get("tags") or {})
        try:
            return check_tags(json.loads(raw))
        except (ValueError, InvalidArgumentError):
            raise StoreError(
                f"the tags of {record.name}@{record.version} are damaged; set them again "
                "(store.set_tags)"
            ) from None

    # -- writing -----------------------------------------------------------------------------

    def commit(
        self,
        name: str,
        body: dict[str, Any],
        needed: set[str],
        restore: Callable[[], Any],
    ) -> records.Record:
        """Create ``body`` as the record of the next free version of ``name``: the commit
        point of a save, an import or a copy. ``needed``: hex digests of the objects it
        references; ``restore()`` writes them (again)."""
        # Refresh every object right before committing, so that gc's grace period counts
        # from now; one that vanished meanwhile (a concurrent gc) is written again.
        for _ in range(3):
            if all(self.backend.touch(object_key(h)) for h in needed):
                break
            restore()
        else:
            raise StoreError(f"objects of {name} keep disappearing (a concurrent gc?); retry")
        numbers = self.numbers(name)
        number = (numbers[-1] if numbers else 0) + 1
        with self._changing(f"versions/{name}"):
            for _ in range(10_000):
                body["version"] = number
                raw = records.encode(body)
                if self.backend.put_if_absent(records.version_key(name, number), raw):
                    record = records.decode(raw, name, number)
                    break
                number += 1  # another writer took it
            else:
                raise StoreError(f"could not allocate a version number for {name!r}")
        if self.committed is not None:
            self.committed(record, dict(body.get("tags") or {}))
        return record

    def swap_alias(
        self, name: str, alias: str, current: bytes | None, version: int | None
    ) -> bytes | None:
        """Point ``alias`` at ``version`` if its document still is ``current`` (None: not
        set); the document written, or None if someone else moved it meanwhile."""
        doc = json.dumps(
            {
                "version": version,
                "previous": self._version_in(current),
                "moved_at": now(),
                "by": creator(),
            }
        ).encode()
        with self._changing(ref_key(name, alias)):
            swapped = self.backend.compare_and_swap(ref_key(name, alias), current, doc)
        return doc if swapped else None

    def restore_alias(self, name: str, alias: str, written: bytes, previous: bytes | None) -> bool:
        """Undo a swap (``written`` back to ``previous``) if nobody moved it since."""
        with self._changing(ref_key(name, alias)):
            return self.backend.compare_and_swap(ref_key(name, alias), written, previous)

    def remove_alias(self, name: str, alias: str, current: bytes) -> bool:
        """Remove ``alias`` if its document still is ``current``."""
        with self._changing(ref_key(name, alias)):
            return self.backend.compare_and_swap(ref_key(name, alias), current, None)

    def swap_tags(
        self, name: str, version: int, current: bytes | None, tags: dict[str, str]
    ) -> bool:
        """Replace the tags document of ``name@version`` if it still is ``current``."""
        with self._changing(tags_key(name, version)):
            return self.backend.compare_and_swap(
                tags_key(name, version), current, json.dumps(tags).encode()
            )

    def drop_tags(self, name: str, version: int) -> None:
        """Remove the tags document of a deleted version."""
        with self._changing(tags_key(name, version)):
            self.backend.delete(tags_key(name, version))

    def tombstone(self, record: records.Record) -> bool:
        """Replace a live record by a tombstone (its number stays allocated); False if the
        record changed meanwhile."""
        key = records.version_key(record.name, record.version)
        current = self.read(key, MAX_RECORD, f"the record of {record.spec}")
        tombstone = records.encode(
            {
                "format": records.FORMAT,
                "format_version": records.VERSION,
                "name": record.name,
                "version": record.version,
                "deleted": True,
                "deleted_at": now(),
                "by": creator(),
            }
        )
        if current is None:
            return False
        with self._changing(key):
            return self.backend.compare_and_swap(key, current, tombstone)

    @staticmethod
    def _version_in(document: bytes | None) -> int | None:
        if document is None:
            return None
        try:
            version = json.loads(document)["version"]
        except (ValueError, KeyError, TypeError):
            return None
        return version if type(version) is int else None
