"""The client's verified object cache for remote stores.

Objects are content-addressed, so one cache serves every remote store and version: an
object is downloaded once, into ``<cache>/objects/<2 hex>/<hex>``, its BLAKE3 digest checked
before it becomes visible (a file that does not hash to its name never appears there), and
then memory-mapped like a local store's object. The cache has a size limit
(``$AMBER_CACHE_SIZE``, default 20G): after each download the least recently used objects
are evicted until it fits again (a use refreshes the file's modification time). Evicting a
file a loaded model still maps is harmless: the mapping keeps its pages.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container.digest import hasher
from amber.errors import CorruptFileError, InvalidArgumentError, StoreError
from amber.store.backend import Backend

if TYPE_CHECKING:
    from concurrent.futures import Future

DEFAULT_LIMIT = 20 << 30
PART = 32 << 20  # bytes per ranged GET (at most PARALLEL of them in memory at once)
PARALLEL = 8  # ranged GETs at once
_HEX = re.compile(r"[0-9a-f]{64}")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"512M"``, ``"20G"``, ``"1000"`` (bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)i?[bB]?\s*", str(text))
    if not match:
        raise InvalidArgumentError(
            f"invalid size {text!r}: give bytes or a number with K, M, G or T (e.g. 20G)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def limit_from_env() -> int:
    raw = os.environ.get("AMBER_CACHE_SIZE")
    return DEFAULT_LIMIT if not raw else parse_size(raw)


@dataclass(frozen=True)
class CachedObject:
    digest: str
    size: int
    last_used: float
    path: Path


class ObjectCache:
    """Verified, content-addressed object files under ``root`` (created on first use)."""

    def __init__(self, root: Path, limit: int | None = None) -> None:
        self.root = Path(root)
        self.limit = limit_from_env() if limit is None else limit
        self._total: int | None = None  # bytes cached, counted once, then followed
        # Objects this process downloaded, hashed as they arrived, and named: a load that
        # follows right away need not hash them a second time.
        self.fresh: set[str] = set()

    def file(self, digest_hex: str) -> Path:
        if not _HEX.fullmatch(digest_hex):
            raise InvalidArgumentError(f"invalid object digest {digest_hex!r}")
        return self.root / "objects" / digest_hex[:2] / digest_hex

    def lookup(self, digest_hex: str) -> Path | None:
        """The cached file of an object (its use recorded), or None."""
        path = self.file(digest_hex)
        try:
            os.utime(path, follow_symlinks=False)  # least recently used: by mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot use the cache entry {path}: {exc.strerror}") from None
        return path

    def fetch(self, backend: Backend, key: str, digest_hex: str, size: int | None = None) -> Path:
        """The cached file of an object, downloaded from ``backend`` (``key``) and verified
        first if missing. CorruptFileError if the bytes do not hash to ``digest_hex``."""
        return self.fetch_many(backend, [(key, digest_hex, size)])[digest_hex]

    def fetch_many(
        self, backend: Backend, objects: list[tuple[str, str, int | None]]
    ) -> dict[str, Path]:
        """Cached files of several objects ``(key, hex digest, size or None)``, the missing
        ones downloaded together (their parts in parallel) and verified as they arrive."""
        out: dict[str, Path] = {}
        wanted: list[Download] = []
        for key, digest_hex, size in objects:
            found = self.lookup(digest_hex)
            if found is not None:
                out[digest_hex] = found
            elif digest_hex not in {d.digest_hex for d in wanted}:
                target = self.file(digest_hex)
                tmp = target.with_name(f".{digest_hex}.{os.getpid()}-{os.urandom(4).hex()}.part")
                wanted.append(Download(key, digest_hex, size, tmp))
        if not wanted:
            return out
        try:
            for download in wanted:
                download.path.parent.mkdir(parents=True, exist_ok=True)

            def install(done: Download) -> None:
                target = self.file(done.digest_hex)
                os.replace(done.path, target)  # only verified bytes ever carry the name
                out[done.digest_hex] = target
                self.fresh.add(done.digest_hex)

            fetch_verified(backend, wanted, install)
        except OSError as exc:
            raise StoreError(
                f"cannot write to the object cache {self.root}: {exc.strerror or exc}; free "
                "space or set AMBER_CACHE to another folder"
            ) from None
        added = sum(d.size or 0 for d in wanted)
        if self._total is None:
            self._total = sum(e.size for e in self.entries())
        else:
            self._total += added
        if self._total > self.limit:  # other processes add too: prune recounts
            self.prune(self.limit, keep=set(out.values()))
        return out

    def entries(self) -> list[CachedObject]:
        """Every cached object, least recently used first."""
        out = []
        for path in self._files():
            with contextlib.suppress(FileNotFoundError):
                st = path.lstat()
                out.append(CachedObject(path.name, st.st_size, st.st_mtime, path))
        return sorted(out, key=lambda e: e.last_used)

    def _files(self) -> Iterator[Path]:
        folder = self.root / "objects"
        if not folder.is_dir():
            return
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and not sub.is_symlink():
                for path in sub.iterdir():
                    if _HEX.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                        yield path

    def prune(
        self, max_bytes: int, *, keep: Iterable[Path] = (), older_than: float | None = None
    ) -> tuple[int, int]:
        """Evict least recently used objects until at most ``max_bytes`` remain (and any
        unused for ``older_than`` seconds); (objects removed, bytes freed). Half-written
        downloads of dead processes (over an hour old) go too."""
        keep = set(keep)
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = freed = 0
        now = time.time()
        for entry in entries:
            stale = older_than is not None and now - entry.last_used > older_than
            if (total <= max_bytes and not stale) or entry.path in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
                removed += 1
                freed += entry.size
            total -= entry.size
        self._drop_partials(now - 3600)
        self._total = total
        return removed, freed

    def _drop_partials(self, limit: float) -> None:
        folder = self.root / "objects"
        if not folder.is_dir():
            return
        for part in folder.glob("*/.*.part"):
            with contextlib.suppress(OSError):
                if part.lstat().st_mtime < limit:
                    part.unlink()


@dataclass
class Download:
    """An object to fetch into ``path`` (a new file); ``size`` None: asked first."""

    key: str
    digest_hex: str
    size: int | None
    path: Path


def fetch_verified(
    backend: Backend,
    downloads: list[Download],
    done: Callable[[Download], None],
    *,
    durable: bool = False,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write each object of ``downloads`` to its path and call ``done`` once its bytes
    hash to its digest (``durable``: fsynced first). Parts of every object (``PART``
    bytes each) download ``PARALLEL`` at a time, in order, while this thread hashes those
    already there from the page cache: the digest is known when the last part lands, and
    no part is kept in memory for it. CorruptFileError for bytes that do not match; every
    file not handed to ``done`` is removed on any failure. ``progress(n)``: n more bytes
    are verified."""
    for download in downloads:
        if download.size is None:
            stat = backend.stat(download.key)
            if stat is None:
                raise StoreError(f"object {download.digest_hex[:16]}... is missing from the store")
            download.size = stat.size
    tasks = [(d, offset) for d in downloads for offset in range(0, max(d.size or 0, 1), PART)]
    fds: dict[str, int] = {}
    hashers: dict[str, Any] = {}
    finished: set[str] = set()

    def part(download: Download, offset: int) -> int:
        assert download.size is not None
        length = min(PART, download.size - offset)
        if length <= 0:
            return 0
        data = backend.read_range(download.key, offset, length)
        if data is None or len(data) != length:
            raise StoreError(
                f"object {download.digest_hex[:16]}... is shorter than its version says or "
                "changed or disappeared while being read; run store.check() there"
            )
        view, fd, done_bytes = memoryview(data), fds[download.digest_hex], 0
        while done_bytes < length:
            done_bytes += os.pwrite(fd, view[done_bytes:], offset + done_bytes)
        return length  # the bytes are dropped here: the hash reads them back, in order

    def finish(download: Download, fd: int, digest: str) -> None:
        try:
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if digest != download.digest_hex:
            raise CorruptFileError(
                f"object {download.digest_hex[:16]}... is corrupt in the store (its "
                "bytes do not match its digest); run store.check() there"
            )
        done(download)
        finished.add(download.digest_hex)

    from concurrent.futures import ThreadPoolExecutor  # commands that only list skip it

    pending: deque[tuple[Download, int, Future[int]]] = deque()
    finishing: list[Future[None]] = []
    queue = iter(tasks)
    try:
        # One more thread finishes objects (fsync, rename) while the next ones arrive.
        with ThreadPoolExecutor(PARALLEL) as pool, ThreadPoolExecutor(1) as finisher:

            def submit() -> None:
                task = next(queue, None)
                if task is None:
                    return
                download, offset = task
                if offset == 0:
                    fds[download.digest_hex] = os.open(
                        download.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
                    )
                    hashers[download.digest_hex] = hasher(download.size or 0)
                pending.append((download, offset, pool.submit(part, download, offset)))

            for _ in range(2 * PARALLEL):
                submit()
            try:
                while pending:
                    download, offset, future = pending.popleft()
                    length = future.result()
                    submit()
                    # Hashed from the file (the page cache), parts in order, while later
                    # parts still download: no part is held in memory for the hash.
                    _hash_region(
                        hashers[download.digest_hex], fds[download.digest_hex], offset, length
                    )
                    if progress is not None and length:
                        progress(length)
                    if offset + PART < (download.size or 0):
                        continue
                    digest = hashers.pop(download.digest_hex).hexdigest()
                    fd = fds.pop(download.digest_hex)
                    finishing.append(finisher.submit(finish, download, fd, digest))
                    for finished_future in finishing:
                        if finished_future.done():
                            finished_future.result()  # the first failure stops it all
                for finished_future in finishing:
                    finished_future.result()
            finally:
                for _, _, future in pending:
                    future.cancel()
    finally:
        for fd in fds.values():
            os.close(fd)
        for download in downloads:
            if download.digest_hex not in finished:
                with contextlib.suppress(FileNotFoundError):
                    download.path.unlink()


def _hash_region(h: Any, fd: int, offset: int, length: int) -> None:
    if length == 0:
        return
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with (
        mmap.mmap(fd, length + offset - start, access=mmap.ACCESS_READ, offset=start) as m,
        memoryview(m) as view,
    ):
        h.update(view[offset - start :])
