"""Atomic creation of a file: temporary file in the target directory, fsync, rename, fsync."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from amber.errors import WriteError


def _describe(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    return f"{reason} ({code})" if code else reason


def write_error(path: Path, exc: OSError, hint: str = "", *, renamed: bool = False) -> WriteError:
    """A WriteError that keeps errno, says what happened to ``path``, and what to try."""
    advice = hint or {
        errno.ENOSPC: "free disk space and save again",
        errno.EDQUOT: "free space within your quota and save again",
        errno.EACCES: "check the permissions of the target directory",
        errno.EPERM: "check the permissions of the target directory",
        errno.EROFS: "choose a writable location",
        errno.ENOENT: "create the target directory first",
    }.get(exc.errno or 0, "check the target path and save again")
    outcome = (
        "the new file is in place but may not survive a power loss"
        if renamed
        else "nothing was written there and any existing file is unchanged"
    )
    err = WriteError(
        exc.errno or errno.EIO, f"could not write {path}: {_describe(exc)}; {outcome}; {advice}"
    )
    err.filename = str(path)
    return err


def fsync_directory(directory: Path) -> None:
    """Make a rename durable. Some filesystems refuse fsync on directories; that is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[int]:
    """Yield a file descriptor whose content appears at ``path`` only if the block succeeds.

    On any exception the temporary file is removed and ``path`` is untouched; OSErrors are
    re-raised as WriteError with the reason and what to do.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise write_error(
            target,
            IsADirectoryError(errno.EISDIR, "is a directory"),
            "give a file path, not a directory",
        )
    if not directory.is_dir():
        raise write_error(target, FileNotFoundError(errno.ENOENT, "directory does not exist"))
    tmp = directory / f".{target.name}.{os.urandom(6).hex()}.amber-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise write_error(target, exc) from exc
    try:
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(target, exc) from exc
        raise
    try:
        fsync_directory(directory)
    except OSError as exc:
        raise write_error(target, exc, "check the filesystem", renamed=True) from exc
