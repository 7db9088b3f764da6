"""The local filesystem backend: one folder, one file per key.

Blobs are written to ``tmp/`` and linked into place (``link`` fails if the target exists,
which gives create-if-absent atomically), after an fsync of the data and followed by an
fsync of the directory. Compare-and-swap holds an exclusive ``flock`` on a lock file per
key while it compares and renames. Several processes on one machine (or on a shared
filesystem with working POSIX locks) can use one folder at once.

Nothing inside the folder is followed if it is a symbolic link (the folder itself may be
one): files are opened with ``O_NOFOLLOW`` after checking that no folder between the root
and them is a link, deletes never go through a link, listings skip links, and
``foreign_entries`` names every link and stray entry for ``Store.check``. So a link planted
in a shared or unpacked store cannot make amber read, overwrite or delete a file elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
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
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")  # a key segment (backend.check_key)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A FIFO planted at a key must not block an open for reading.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_FIX = "the store folder was tampered with: remove it (store.check() lists every such entry)"
_HINTS = {
    errno.ENOSPC: "free disk space and try again",
    errno.EDQUOT: "free space within your quota and try again",
    errno.EACCES: "check the permissions of the store folder",
    errno.EPERM: "check the permissions of the store folder",
    errno.EROFS: "the store is on a read-only filesystem",
}


# What tells a store folder: its data, or the index that a store creates at once.
STORE_MARKS = ("versions", "objects", "refs", f"{CACHE}/index.sqlite")


def check_store_folder(root: Path, *, create: bool) -> None:
    """Refuse to turn a file, or a folder holding other things, into a store: a store is
    made only in a missing or empty folder, or anywhere with ``create=True``."""
    if not root.exists():
        return
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not an amber store; choose another path")
    if any((root / mark).exists() for mark in STORE_MARKS):
        return
    try:
        empty = not any(root.iterdir())
    except OSError as exc:
        raise store_error("read the folder", root, exc) from None
    if not (empty or create):
        raise StoreError(
            f"{root} is not an amber store and holds other files; choose an empty or new "
            "folder, or pass create=True to make a store there"
        )


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

    has_local_files = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            for sub in _RESERVED:  # amber's own files go there: never through a link
                self._check_folders(self.root / sub)
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error("create the store folder", self.root, exc) from None

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _check_folders(self, folder: Path) -> None:
        """StoreError unless every folder from below the root down to ``folder`` is a real
        folder (or does not exist yet): a symbolic link is never followed."""
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                return  # created later, by mkdir, as a real folder
            except OSError as exc:
                raise store_error("inspect", current, exc) from None
            if not stat.S_ISDIR(mode):
                raise self._not_regular(current, mode, "a folder")

    def _not_regular(self, path: Path, mode: int, wanted: str = "a file") -> StoreError:
        if stat.S_ISLNK(mode):
            try:
                target = f" (to {os.readlink(path)})"
            except OSError:
                target = ""
            what = f"is a symbolic link{target}; amber follows no links inside a store"
        else:
            what = "is not a regular file" if wanted == "a file" else "is not a folder"
        relative = os.path.relpath(path, self.root)
        return StoreError(
            f"{relative} in {self.root} {what}, where the store keeps {wanted}; {_FIX}"
        )

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] in _RESERVED:
            raise StoreError(f"key {key!r} is reserved by the local backend")
        path = self.root / key
        self._check_folders(path.parent)
        return path

    def _open(self, path: Path, flags: int = _READ_FLAGS) -> int | None:
        """A descriptor of the regular file ``path`` (its folders already checked), opened
        without following a link; None if there is none."""
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
                raise self._not_regular(path, stat.S_IFLNK) from None
            raise
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise self._not_regular(path, mode)
        return fd

    def _read(self, path: Path, offset: int = 0, length: int | None = None) -> bytes | None:
        fd = self._open(path)
        if fd is None:
            return None
        try:
            with os.fdopen(fd, "rb", closefd=True) as f:
                if length is not None:  # no buffer of a cap's size for a small file
                    length = min(length, max(os.fstat(f.fileno()).st_size - offset, 0))
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as exc:
            raise store_error("read", path, exc) from None

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return self._read(path)
        except OSError as exc:
            raise store_error("read", path, exc) from None

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        path = self._path(key)
        try:
            return self._read(path, offset, length)
        except OSError as exc:
            raise store_error("read", path, exc) from None

    def local_path(self, key: str) -> Path | None:
        """The file of ``key`` for a memory map; StoreError if it (or a folder above it) is
        a link or not a regular file. Open it with ``O_NOFOLLOW``."""
        path = self._path(key)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path  # the caller reports it missing
        except OSError as exc:
            raise store_error("inspect", path, exc) from None
        if not stat.S_ISREG(mode):
            raise self._not_regular(path, mode)
        return path

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
        if os.path.lexists(path):  # whatever is there, a link included, is never replaced
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
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | _CLOEXEC | _NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise self._not_regular(lock, stat.S_IFLNK) from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.lstat(lock).st_ino == os.fstat(fd).st_ino
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
                current = self._read(path)
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
        # Walk only the folder the prefix names (and filter its last segment). Links are
        # neither followed nor listed; foreign_entries reports them.
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        try:
            self._check_folders(base)
        except StoreError:
            return
        for key in self._walk(base, folder + "/" if folder else ""):
            if key.startswith(prefix):
                yield key

    def _walk(self, folder: Path, relative: str) -> Iterator[str]:
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in found:
            if not _SEGMENT.fullmatch(entry.name):
                continue  # no key has this name (foreign_entries reports it)
            if entry.is_dir(follow_symlinks=False):
                if not (relative == "" and entry.name in _RESERVED):
                    yield from self._walk(Path(entry.path), relative + entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                yield relative + entry.name

    def delete(self, key: str) -> bool:
        # Its folders are no links (``_path`` checks); unlink never follows the last part.
        return _unlink(self._path(key))

    def _lstat(self, path: Path) -> os.stat_result | None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_regular(path, st.st_mode)
        return st

    def stat(self, key: str) -> Stat | None:
        path = self._path(key)
        try:
            st = self._lstat(path)
        except OSError as exc:
            raise store_error("inspect", path, exc) from None
        return None if st is None else Stat(st.st_size, st.st_mtime)

    def touch(self, key: str) -> bool:
        path = self._path(key)
        try:
            with self._locked(key):  # never between delete_if_older's check and unlink
                fd = self._open(path)
                if fd is None:
                    return False
                try:
                    os.utime(fd)  # the file opened, never a link's target
                finally:
                    os.close(fd)
        except OSError as exc:
            raise store_error("refresh", path, exc) from None
        return True

    def delete_if_older(self, key: str, limit: float) -> int | None:
        path = self._path(key)
        try:
            with self._locked(key, drop=True):
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_mtime >= limit:
                    return None  # a link or anything foreign is left for check to report
                path.unlink()
                return st.st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error("delete", path, exc) from None

    def stale_temporaries(self, older_than: float) -> list[tuple[Path, int]]:
        """Temporary files of writers that died (older than ``older_than`` seconds), with
        their sizes. A link in ``tmp/`` counts as one (removing it removes the link only);
        folders and other entries are left alone."""
        limit = time.time() - older_than
        folder = self.root / TMP
        self._check_folders(folder)
        out = []
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat(follow_symlinks=False)
                kind = stat.S_IFMT(st.st_mode)
                if kind in (stat.S_IFREG, stat.S_IFLNK) and st.st_mtime < limit:
                    out.append((Path(entry.path), st.st_size if kind == stat.S_IFREG else 0))
        return out

    def remove_temporary(self, path: Path) -> bool:
        """Remove an entry of ``tmp/`` (a file, or a link itself: never what it points to)."""
        if path.parent != self.root / TMP:
            raise StoreError(f"{path} is not in the store's tmp/ folder")
        self._check_folders(path.parent)
        return _unlink(path)

    def foreign_entries(self) -> list[str]:
        """Every entry of the store folder that the local backend does not write: links
        (anywhere, never followed), entries that are not regular files or folders, folders
        in tmp/, locks/ or cache/, and files directly in the root. Keys of the wrong shape
        are for the store to judge (``Store.check``)."""
        out: list[str] = []

        def visit(folder: Path, top: str | None) -> None:
            try:
                with os.scandir(folder) as entries:
                    found = sorted(entries, key=lambda e: e.name)
            except OSError as exc:
                out.append(f"{folder} cannot be listed ({exc.strerror or exc})")
                return
            for entry in found:
                path = Path(entry.path)
                relative = os.path.relpath(path, self.root)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    out.append(str(self._not_regular(path, mode)))
                elif top not in _RESERVED and not _SEGMENT.fullmatch(entry.name):
                    out.append(f"{relative} is not a store entry (no key has this name)")
                elif stat.S_ISREG(mode) and top is None:
                    out.append(f"{relative} is a file in the store's root, not a store entry")
                elif stat.S_ISDIR(mode) and top in _RESERVED:
                    out.append(f"{relative} is a folder inside amber's own {top}/ folder")
                elif stat.S_ISDIR(mode):
                    visit(path, entry.name if top is None else top)

        visit(self.root, None)
        return out


def _unlink(path: Path) -> bool:
    """Remove a file or a link itself (never what a link points to); False if absent."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error("delete", path, exc) from None
    return True
