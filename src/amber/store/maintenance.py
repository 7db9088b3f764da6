"""Keeping a store healthy: rebuild the index, collect garbage, check everything."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amber.container.digest import hasher
from amber.container.reader import ContainerReader
from amber.errors import AmberError, InvalidArgumentError, StoreError
from amber.store import records
from amber.store.changes import is_journal_key
from amber.store.index import row_of
from amber.store.names import check_alias, check_name
from amber.store.objects import decoded_problem, hex_of, map_object, mismatch, object_key

if TYPE_CHECKING:
    from amber.container.manifest import TensorEntry
    from amber.store.store import Store

_READ = 1 << 24


def _live_records(store: Store, problems: list[str] | None = None) -> list[records.Record]:
    out = []
    for name in store.ledger.names():
        out += store.ledger.live_records(name, problems)
    return out


def reindex(store: Store) -> int:
    # Storage is read inside the index's write transaction: a save that commits meanwhile
    # either is read here or updates the index after this transaction.
    with store.index.transaction() as db:
        live = _live_records(store, problems=[])
        rows = [row_of(r, store.ledger.tags(r)) for r in live]
        refs = []
        for name in {r.name for r in live}:
            refs += [
                (name, alias, version) for alias, version in store.ledger.aliases(name, []).items()
            ]
        store.index.clear(db)
        for row in rows:
            store.index.add_version(db, row)
        db.executemany("INSERT INTO aliases (name, alias, version) VALUES (?, ?, ?)", refs)
    return len(rows)


@dataclass
class GcReport:
    objects_removed: int = 0
    bytes_freed: int = 0
    temporaries_removed: int = 0
    objects_kept: int = 0
    dry_run: bool = False
    # Unreferenced objects kept because they are younger than the grace period: a save
    # that is still running may be about to reference them.
    objects_young: int = 0
    bytes_young: int = 0
    grace: float = 0.0

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.objects_removed} objects ({self.bytes_freed} bytes) and "
            f"{self.temporaries_removed} temporary files; {self.objects_kept} objects in use"
        )


def gc(store: Store, *, grace: float, dry_run: bool) -> GcReport:
    """Objects are listed first and the records read after, so an object written by a
    save that commits meanwhile is either referenced by the records read or younger than
    the grace period; saves refresh every object they reuse right before committing, and
    ``delete_if_older`` is atomic with that refresh."""
    if grace < 0:
        raise StoreError("grace must be >= 0 seconds")
    report = GcReport(dry_run=dry_run)
    limit = time.time() - grace
    report.grace = grace
    candidates, young = [], []
    for key in store.backend.list("objects/"):
        stat = store.backend.stat(key)
        if stat is not None:
            (candidates if stat.mtime < limit else young).append((key, stat.size))
    referenced = set()
    for record in _live_records(store):
        referenced |= {object_key(h) for h in record.objects()}
    report.objects_kept = len(referenced)
    for key, size in young:
        if key not in referenced:
            report.objects_young += 1
            report.bytes_young += size
    for key, size in candidates:
        if key in referenced:
            continue
        if dry_run:
            report.objects_removed += 1
            report.bytes_freed += size
            continue
        freed = store.backend.delete_if_older(key, limit)
        if freed is not None:
            report.objects_removed += 1
            report.bytes_freed += freed
    stale = getattr(store.backend, "stale_temporaries", None)
    if stale is not None:
        for path, size in stale(grace):  # a link there is removed itself, never followed
            report.temporaries_removed += 1
            if not dry_run and store.backend.remove_temporary(path):  # type: ignore[attr-defined]
                report.bytes_freed += size
    # Tags of deleted versions.
    for key in list(store.backend.list("tags/")):
        parts = key.split("/")
        if len(parts) == 3 and parts[2].isdigit():
            record = store.ledger.record(parts[1], int(parts[2]))
            if (record is None or record.deleted) and not dry_run:
                store.ledger.drop_tags(parts[1], int(parts[2]))
    return report


@dataclass
class CheckReport:
    versions_checked: int = 0
    objects_checked: int = 0
    # spec -> what is wrong with it
    damaged: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    index_drift: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems and (not self.index_drift or self.repaired)

    def __str__(self) -> str:
        lines = [
            f"checked {self.versions_checked} versions and {self.objects_checked} objects: "
            + ("no problems" if self.ok else "PROBLEMS FOUND")
        ]
        lines += [f"damaged {spec}: {'; '.join(why)}" for spec, why in sorted(self.damaged.items())]
        lines += self.problems
        lines += [
            f"index: {d}" + (" (repaired)" if self.repaired else "") for d in self.index_drift
        ]
        return "\n".join(lines)


def _object_problem(
    store: Store, digest_hex: str, is_pack: bool, packs: dict[str, dict]
) -> str | None:
    """What is wrong with an object (None: nothing); a valid pack's entries go to
    ``packs``."""
    key = object_key(digest_hex)
    try:
        if store.backend.stat(key) is None:
            return f"object {digest_hex[:16]}... is missing"
        h = hasher(1 << 30)
        offset = 0
        while True:
            block = store.backend.read_range(key, offset, _READ)
            if not block:
                break
            h.update(block)
            offset += len(block)
    except StoreError as exc:  # e.g. a link where the object should be
        return f"object {digest_hex[:16]}... cannot be read: {exc}"
    if h.hexdigest() != digest_hex:
        return f"object {digest_hex[:16]}... is corrupt (its digest does not match)"
    if is_pack:
        try:  # "full" checks every tensor digest of the pack, which records repeat
            path = store.files.path(digest_hex)
            with ContainerReader(path, verify="full", follow_symlinks=False) as pack:
                packs[digest_hex] = dict(pack.entries)
        except AmberError as exc:
            return f"pack {digest_hex[:16]}... is invalid: {exc}"
    return None


def _decoded_verdict(
    store: Store, entry: TensorEntry, seen: dict[tuple[str, str], str | None]
) -> str | None:
    """For a compressed object, whether it decodes to the digest the record claims: decoded
    once per (object, claimed digest), one tensor in memory at a time."""
    if entry.compression is None:
        return None
    key = (entry.stored_digest, entry.digest)
    if key not in seen:
        path = store.files.path(hex_of(entry.stored_digest))
        buffer = map_object(path, entry.stored_nbytes, use_mmap=True, writable=False)
        seen[key] = decoded_problem(entry, buffer)
    return seen[key]


_HEX = re.compile(r"[0-9a-f]{64}")


def _is_store_key(key: str) -> bool:
    """Whether ``key`` has the shape of a key the store writes (objects/ab/abc..., a
    version record, an alias, a tag)."""
    if is_journal_key(key):
        return True
    parts = key.split("/")
    if len(parts) != 3:
        return False
    kind, name, leaf = parts
    if kind == "objects":
        return bool(_HEX.fullmatch(leaf)) and leaf[:2] == name
    try:
        check_name(name)
        if kind == "refs":
            check_alias(leaf)
            return True
    except InvalidArgumentError:
        return False
    return kind in ("versions", "tags") and leaf.isdigit() and not leaf.startswith("0")


def foreign(store: Store) -> list[str]:
    """Entries of the store that it did not write: links and stray entries the backend
    finds (``foreign_entries``), and keys that are no object, record, alias or tag."""
    out = []
    entries = getattr(store.backend, "foreign_entries", None)
    if entries is not None:
        out += entries()
    for key in sorted(store.backend.list("")):
        if not _is_store_key(key):
            out.append(
                f"{key} is not a store object, version record, alias or tag; remove it if "
                "you did not put it there on purpose"
            )
    return out


def check(store: Store, *, repair: bool) -> CheckReport:
    report = CheckReport()
    report.problems += foreign(store)
    live = _live_records(store, report.problems)
    report.versions_checked = len(live)
    verdicts: dict[str, str | None] = {}
    decoded: dict[tuple[str, str], str | None] = {}
    packs: dict[str, dict] = {}
    for record in live:
        spec = f"{record.name}@{record.version}"
        for digest_hex in sorted(record.objects()):
            if digest_hex not in verdicts:
                is_pack = digest_hex == record.pack
                verdicts[digest_hex] = _object_problem(store, digest_hex, is_pack, packs)
            if verdicts[digest_hex]:
                report.damaged.setdefault(spec, []).append(verdicts[digest_hex])
        if spec in report.damaged:
            continue
        sizes = {}
        for digest_hex in record.objects():
            stat = store.backend.stat(object_key(digest_hex))
            sizes[digest_hex] = None if stat is None else stat.size
        problem = mismatch(record.tensors, sizes, packs.get(record.pack or ""))
        if problem:
            report.damaged.setdefault(spec, []).append(problem)
            continue
        for stored in record.tensors:
            problem = _decoded_verdict(store, stored.entry, decoded)
            if problem:
                report.damaged.setdefault(spec, []).append(problem)
    report.objects_checked = len(verdicts)
    # The index against storage.
    indexed = {
        (name, version): digest
        for name, version, digest in store.index.query(
            "SELECT name, version, content_digest FROM versions"
        )
    }
    stored = {(r.name, r.version): r.raw.get("content_digest") for r in live}
    for name, version in sorted(stored.keys() - indexed.keys()):
        report.index_drift.append(f"{name}@{version} is in storage but not in the index")
    for name, version in sorted(indexed.keys() - stored.keys()):
        report.index_drift.append(f"{name}@{version} is in the index but not in storage")
    for key in sorted(stored.keys() & indexed.keys()):
        if stored[key] != indexed[key]:
            report.index_drift.append(f"{key[0]}@{key[1]} differs between index and storage")
    aliases = {
        (n, a): v for n, a, v in store.index.query("SELECT name, alias, version FROM aliases")
    }
    refs = {}
    for name in {r.name for r in live}:
        refs.update({(name, a): v for a, v in store.ledger.aliases(name, report.problems).items()})
    for name, alias in sorted(aliases.keys() | refs.keys()):
        if aliases.get((name, alias)) != refs.get((name, alias)):
            report.index_drift.append(
                f"alias {name}@{alias}: index says {aliases.get((name, alias))}, storage "
                f"{refs.get((name, alias))}"
            )
    if repair and report.index_drift:
        reindex(store)
        report.repaired = True
    return report


def describe_json(report: CheckReport) -> str:
    return json.dumps(
        {
            "ok": report.ok,
            "versions_checked": report.versions_checked,
            "objects_checked": report.objects_checked,
            "damaged": report.damaged,
            "problems": report.problems,
            "index_drift": report.index_drift,
            "repaired": report.repaired,
        }
    )
