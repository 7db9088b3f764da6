"""Copying versions between two stores (push, pull, copy): local folders or s3:// alike.

Only missing objects travel: each object the versions need is refreshed in the destination
(``touch``, so a concurrent gc keeps it) or, if absent, streamed there from the source
(a remote source's objects come through the verified cache), several at once. Then each
version's record is committed in the destination with its history (creation time, creator,
message, metrics, tags, signature) and its lineage: a parent copied along (or already
there) becomes the destination's number of it, any other stays as ``imported_parent``.
A version already in the destination (same content digest and creation time) is not
copied again, so a second run after an interruption copies only what is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.errors import AmberError, InvalidArgumentError, StoreError
from amber.store import records
from amber.store.cache import Download, fetch_verified
from amber.store.names import parse_spec
from amber.store.objects import hex_of, object_key

if TYPE_CHECKING:
    from amber.store.store import Store

Progress = Callable[[int, int], None]  # (bytes sent so far, bytes to send)
WORKERS = 8
_BLOCK = 8 << 20


@dataclass
class CopyReport:
    """What a copy did: versions copied and already present, objects and bytes sent."""

    copied: list[str] = field(default_factory=list)  # destination specs
    skipped: list[str] = field(default_factory=list)  # source specs already there
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_present: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "copied": self.copied,
            "skipped": self.skipped,
            "objects_sent": self.objects_sent,
            "bytes_sent": self.bytes_sent,
            "objects_present": self.objects_present,
        }

    def __str__(self) -> str:
        return (
            f"copied {len(self.copied)} versions ({self.objects_sent} objects, "
            f"{self.bytes_sent} bytes sent; {self.objects_present} already there); "
            f"{len(self.skipped)} versions already present"
        )


def _identity(raw: dict[str, Any]) -> tuple[Any, Any]:
    return raw.get("content_digest"), raw.get("created_at")


def source_records(source: Store, spec: str, *, every: bool) -> list[records.Record]:
    """The versions ``spec`` names: one (``NAME``, ``NAME@V``, ``NAME@alias``), or every
    live version of the model (``every``, with a bare name)."""
    if not every:
        return [source.resolve(spec)]
    parsed = parse_spec(spec)
    if parsed.version is not None or parsed.alias is not None:
        raise InvalidArgumentError(f"--all copies a whole model: give a name, not {spec!r}")
    out = source.ledger.live_records(parsed.name)
    if not out:
        source.resolve(parsed.name)  # VersionNotFound with its hints
    return out


def copy_versions(
    source: Store,
    dest: Store,
    spec: str,
    *,
    every: bool = False,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> CopyReport:
    """Copy the versions ``spec`` names from ``source`` to ``dest``; see the module doc."""
    if source.backend.describe() == dest.backend.describe():
        raise InvalidArgumentError("source and destination are the same store")
    chosen = source_records(source, spec, every=every)
    report = CopyReport()
    present: dict[tuple[Any, Any], int] = {}
    name = chosen[0].name
    for record in dest.ledger.live_records(name):
        present[_identity(record.raw)] = record.version
    todo = [r for r in chosen if _identity(r.raw) not in present]
    report.skipped = [f"{r.name}@{r.version}" for r in chosen if r not in todo]
    needed = sorted(set().union(*(r.objects() for r in todo))) if todo else []
    # Object sizes as the records give them (a pack's is asked): no HEAD per object.
    sizes = {hex_of(t.entry.digest): t.entry.nbytes for r in todo for t in r.tensors}
    send_objects(source, dest, needed, report, progress, workers, sizes)
    renamed = {
        f"{r.name}@{r.version}": f"{name}@{present[_identity(r.raw)]}"
        for r in chosen
        if r not in todo
    }
    for record in sorted(todo, key=lambda r: r.version):
        body = dict(record.raw)
        body["tags"] = source.ledger.tags(record)
        parent = body.get("parent")
        body["parent"] = renamed.get(parent) if isinstance(parent, str) else None
        if body["parent"] is None and parent is not None:
            body["imported_parent"] = parent
        body["imported_from"] = f"{source.backend.describe()}#{record.name}@{record.version}"
        objects = record.objects()
        committed = dest.ledger.commit(
            name,
            body,
            objects,
            lambda o=objects: send_objects(source, dest, sorted(o), CopyReport(), None, workers),
        )
        spec_there = f"{name}@{committed.version}"
        renamed[f"{record.name}@{record.version}"] = spec_there
        if body["tags"]:
            dest.ledger.swap_tags(name, committed.version, None, body["tags"])
        report.copied.append(spec_there)
    _copy_aliases(source, dest, name, renamed)
    return report


def _copy_aliases(source: Store, dest: Store, name: str, renamed: dict[str, str]) -> None:
    """Aliases of copied versions are set where the destination has none of that name."""
    existing = dest.ledger.aliases(name)
    for alias, version in source.ledger.aliases(name).items():
        target = renamed.get(f"{name}@{version}")
        if target is not None and alias not in existing:
            try:
                dest.set_alias(target, alias, expected=None)
            except AmberError:
                pass  # set meanwhile by someone else: theirs stands


def send_objects(
    source: Store,
    dest: Store,
    digests: list[str],
    report: CopyReport,
    progress: Progress | None,
    workers: int,
    sizes: dict[str, int] | None = None,
) -> None:
    """Make every object of ``digests`` present in ``dest``: refreshed if there, else
    copied from ``source``, ``workers`` at a time (``sizes``: of objects, where known)."""
    missing = [h for h in digests if not dest.backend.touch(object_key(h))]
    report.objects_present += len(digests) - len(missing)
    make_file = getattr(dest.backend, "temporary_file", None)
    if missing and make_file is not None and not source.files.local:
        # Remote to local: each object is downloaded once, straight into the
        # destination's temporary file, verified as it arrives, then put in place.
        _download_into(source, dest, missing, make_file, report, progress, sizes or {})
        return
    files = {h: source.files.path(h) for h in missing}  # remote: downloaded, verified
    sizes = {h: f.stat().st_size for h, f in files.items()}
    total = sum(sizes.values())
    sent = _counter(total, progress)

    def send(digest_hex: str) -> None:
        dest.backend.put_if_absent(object_key(digest_hex), _chunks(files[digest_hex], sent))

    if missing:
        pool = ThreadPoolExecutor(max(1, min(workers, len(missing))))
        try:
            for future in as_completed([pool.submit(send, h) for h in missing]):
                future.result()  # the first failure stops the copy (a rerun resumes)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    report.objects_sent += len(missing)
    report.bytes_sent += total


def _download_into(
    source: Store,
    dest: Store,
    missing: list[str],
    make_file: Callable[[], Path],
    report: CopyReport,
    progress: Progress | None,
    sizes: dict[str, int],
) -> None:
    # A size a record gives wrongly makes the download fail its checks (too short, or a
    # digest that does not match): it never installs other bytes.
    downloads = [Download(object_key(h), h, sizes.get(h), make_file()) for h in missing]
    for download in downloads:
        if download.size is None:
            stat = source.backend.stat(download.key)
            if stat is None:
                raise StoreError(f"object {download.digest_hex[:16]}... is missing from the store")
            download.size = stat.size
    total = sum(d.size or 0 for d in downloads)
    sent = _counter(total, progress)

    def install(done: Download) -> None:
        # The file is fsynced; the destination moves it into place (create-only).
        dest.backend.put_if_absent(done.key, done.path)
        report.objects_sent += 1
        report.bytes_sent += done.size or 0

    fetch_verified(source.backend, downloads, install, durable=True, progress=sent)


def _counter(total: int, progress: Progress | None) -> Callable[[int], None]:
    """A thread-safe ``sent(n)`` that reports the running total to ``progress``."""
    lock = threading.Lock()
    done = [0]

    def sent(n: int) -> None:
        with lock:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

    if progress is not None:
        progress(0, total)
    return sent


def _chunks(path: Path, sent: Callable[[int], None]) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            yield block
            sent(len(block))
