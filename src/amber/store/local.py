"""The local filesystem backend: one folder, one file per key.

Blobs are written to ``tmp/`` and linked into place (``link`` fails if the target exists,
which gives create-if-absent atomically), after an fsync of the data and followed by an
fsync of the directory. Compare-and-swap holds an exclusive ``flock`` on a lock file per
key while it compares and renames. Several processes on one machine (or on a shared
filesystem with working POSIX locks) can use one folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from amber.container.atomic import fsync_directory
from amber.errors import DurabilityWarning, StoreError
from amber.store.backend import Backend, Data, Stat, check_key

TMP = "tmp"
LOCKS = "locks"
CACHE = "cache"  # the store's derived data (its SQLite index): not blobs
_RESERVED = (TMP, LOCKS, CACHE)
_HINTS = {
    errno.ENOSPC: "free disk space and try again",
    errno.EDQUOT: "free space within your quota and try again",
    errno.EACCES: "check the permissions of the store folder",
    errno.EPERM: "check the permissions of the store folder",
    errno.EROFS: "the store is on a read-only filesystem",
}


def store_error(action: str, target: object, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0, "")
    hint = _HINTS.get(exc.errno or 0, "check the store folder and try again")
    error = StoreError(
        f"could not {action} {target}: {reason}{f' ({code})' if code else ''}; {hint}"
    )
    error.errno = exc.errno  # type: ignore[attr-defined]
    return error


class LocalBackend(Backend):
    """A store kept in the folder ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            for sub in _RESERVED:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error("create the store folder", self.root, exc) from None

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] in _RESERVED:
            raise StoreError(f"key {key!r} is reserved by the local backend")
        return self.root / key

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error("read", path, exc) from None

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        path = self._path(key)
        try:
            with path.open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error("read", path, exc) from None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _temporary(self) -> Path:
        return self.root / TMP / f"{os.getpid()}-{os.urandom(8).hex()}"

    def _write_temporary(self, data: Data) -> Path:
        tmp = self._temporary()
        if isinstance(data, Path):
            os.replace(data, tmp)  # the caller wrote it in this store's tmp/ (same disk)
            return tmp
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            chunks = [data] if isinstance(data, bytes) else data
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view.nbytes:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def temporary_file(self) -> Path:
        """A path in this store's ``tmp/`` for a file to pass to put_if_absent."""
        return self._temporary()

    def put_if_absent(self, key: str, data: Data) -> bool:
        path = self._path(key)
        if path.exists():
            if isinstance(data, Path):
                with contextlib.suppress(OSError):
                    data.unlink()
            return False
        try:
            return self._install(data, path, replace=False)
        except OSError as exc:
            raise store_error("write", path, exc) from None

    def _install(self, data: Data, path: Path, *, replace: bool) -> bool:
        """Write ``data`` to a temporary file, then put it at ``path``: by ``link``, which
        fails if ``path`` exists (create-only), or by ``rename`` over it."""
        tmp = self._write_temporary(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            self._sync_directory(path)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # after a link; already gone after a rename

    @staticmethod
    def _sync_directory(path: Path) -> None:
        """After a blob is in place: it is visible, so the change stands whatever happens
        here; a failure to make it durable is a warning, not an error (an error would tell
        the caller nothing was written, and a retry would write it twice)."""
        try:
            fsync_directory(path.parent)
        except OSError as exc:
            warnings.warn(
                f"{path} is written but its folder could not be synced "
                f"({exc.strerror or exc}); it may not survive a power loss",
                DurabilityWarning,
                stacklevel=4,
            )

    def _lock_path(self, key: str) -> Path:
        return self.root / LOCKS / (key.replace("/", "%") + ".lock")

    @contextlib.contextmanager
    def _locked(self, key: str, *, drop: bool = False) -> Iterator[None]:
        """Hold the lock of ``key``. ``drop``: remove the lock file before releasing it
        (when the key itself is gone), so locks/ does not grow with every object ever
        stored; a process that opened the old file sees it was replaced and retries."""
        lock = self._lock_path(key)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(lock).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    continue  # the file we locked was dropped meanwhile
                try:
                    yield
                finally:
                    if drop:
                        with contextlib.suppress(OSError):
                            os.unlink(lock)
                return
            finally:
                os.close(fd)  # releases the lock

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        path = self._path(key)
        try:
            with self._locked(key):
                try:
                    current: bytes | None = path.read_bytes()
                except FileNotFoundError:
                    current = None
                if current != expected:
                    return False
                if new is not None:
                    return self._install(new, path, replace=True)
                with contextlib.suppress(FileNotFoundError):  # absent -> absent: done
                    path.unlink()
                self._sync_directory(path)
                return True
        except OSError as exc:
            raise store_error("update", path, exc) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the folder the prefix names (and filter its last segment).
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        for dirpath, dirnames, filenames in os.walk(base):
            relative = os.path.relpath(dirpath, self.root)
            relative = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            if not relative:
                dirnames[:] = [d for d in dirnames if d not in _RESERVED]
            for name in filenames:
                key = relative + name
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise store_error("delete", path, exc) from None
        return True

    def stat(self, key: str) -> Stat | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return Stat(st.st_size, st.st_mtime)

    def touch(self, key: str) -> bool:
        path = self._path(key)
        try:
            with self._locked(key):  # never between delete_if_older's check and unlink
                os.utime(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise store_error("refresh", path, exc) from None
        return True

    def delete_if_older(self, key: str, limit: float) -> int | None:
        path = self._path(key)
        try:
            with self._locked(key, drop=True):
                st = path.stat()
                if st.st_mtime >= limit:
                    return None
                path.unlink()
                return st.st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error("delete", path, exc) from None

    def stale_temporaries(self, older_than: float) -> list[Path]:
        """Temporary files of writers that died (older than ``older_than`` seconds)."""
        limit = time.time() - older_than
        out = []
        for entry in os.scandir(self.root / TMP):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < limit:
                    out.append(Path(entry.path))
        return out
