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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from amber.container.digest import hasher
from amber.errors import CorruptFileError, InvalidArgumentError, StoreError
from amber.store.backend import Backend

DEFAULT_LIMIT = 20 << 30
PART = 16 << 20  # bytes per ranged GET of a large object
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

    def fetch(self, backend: Backend, key: str, digest_hex: str) -> Path:
        """The cached file of an object, downloaded from ``backend`` (``key``) and verified
        first if missing. CorruptFileError if the bytes do not hash to ``digest_hex``."""
        found = self.lookup(digest_hex)
        if found is not None:
            return found
        target = self.file(digest_hex)
        stat = backend.stat(key)
        if stat is None:
            raise StoreError(f"object {digest_hex[:16]}... is missing from the store")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{digest_hex}.{os.getpid()}-{os.urandom(4).hex()}.part")
            try:
                _download(backend, key, stat.size, tmp)
                if _digest_of_file(tmp, stat.size) != digest_hex:
                    raise CorruptFileError(
                        f"object {digest_hex[:16]}... is corrupt in the store (its bytes do not "
                        "match its digest); run store.check() there"
                    )
                os.replace(tmp, target)  # only verified bytes ever carry the name
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write to the object cache {self.root}: {exc.strerror or exc}; free "
                "space or set AMBER_CACHE to another folder"
            ) from None
        if self._total is None:
            self._total = sum(e.size for e in self.entries())
        else:
            self._total += stat.size
        if self._total > self.limit:  # other processes add too: prune recounts
            self.prune(self.limit, keep=target)
        return target

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
        self, max_bytes: int, *, keep: Path | None = None, older_than: float | None = None
    ) -> tuple[int, int]:
        """Evict least recently used objects until at most ``max_bytes`` remain (and any
        unused for ``older_than`` seconds); (objects removed, bytes freed). Half-written
        downloads of dead processes (over an hour old) go too."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = freed = 0
        now = time.time()
        for entry in entries:
            stale = older_than is not None and now - entry.last_used > older_than
            if (total <= max_bytes and not stale) or entry.path == keep:
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


def _download(backend: Backend, key: str, size: int, path: Path) -> None:
    """Write the blob at ``key`` to ``path``: in parallel ranged reads when it is large."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        if size <= PART:
            data = backend.get(key)
            if data is None:
                raise StoreError(f"{key} disappeared from the store while being read")
            view = memoryview(data)
            while view.nbytes:
                view = view[os.write(fd, view) :]
            return
        os.ftruncate(fd, size)

        def part(offset: int) -> None:
            data = backend.read_range(key, offset, PART)
            if data is None or len(data) != min(PART, size - offset):
                raise StoreError(f"{key} changed or disappeared in the store while being read")
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)

        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(part, range(0, size, PART)))
    finally:
        os.close(fd)


def _digest_of_file(path: Path, size: int) -> str:
    h = hasher(size)
    if size:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            h.update(m)
    return h.hexdigest()
