"""Open an .amber file: validate everything first, then hand out zero-copy tensor views."""

from __future__ import annotations

import mmap
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from amber.container import digest, dtypes, manifest
from amber.container.format import (
    HEADER_SIZE,
    MAX_MANIFEST_BYTES,
    TRAILER_SIZE,
    Header,
    Trailer,
    align_up,
)
from amber.container.manifest import TensorEntry
from amber.errors import (
    CorruptFileError,
    FormatError,
    InvalidArgumentError,
    ReadError,
    TensorNotFoundError,
)

if TYPE_CHECKING:
    import numpy as np

Verify = Literal["full", "lazy", "off"]
_READ_CHUNK = 64 * 1024 * 1024
VERIFY_MODES = ("full", "lazy", "off")


def check_verify_mode(verify: object) -> None:
    if verify not in VERIFY_MODES:
        raise InvalidArgumentError(
            f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got {verify!r}"
        )


def open_regular(path: Path, kind: str) -> tuple[int, int]:
    """A read-only descriptor of the regular file ``path`` and its size; ReadError saying
    why not (``kind`` names what the file should be: "an amber file")."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ReadError(2, f"no such file: {path}; check the path") from None
    except IsADirectoryError:
        raise ReadError(21, f"{path} is a directory, not {kind}") from None
    except OSError as exc:
        raise ReadError(exc.errno, f"cannot open {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ReadError(22, f"{path} is {what}, not {kind}")
    return fd, info.st_size


def pread_exact(fd: int, size: int, offset: int, path: Path) -> bytes:
    """Exactly ``size`` bytes at ``offset``; CorruptFileError if the file ends first."""
    chunks = []
    remaining = size
    while remaining:
        chunk = os.pread(fd, min(remaining, 1 << 30), offset)
        if not chunk:
            raise CorruptFileError(f"{path}: file ended early while reading; it was truncated")
        chunks.append(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class ContainerReader:
    """A validated, open .amber file.

    Construction reads the header, the trailer and the manifest, checks the manifest digest
    and every tensor entry, and allocates nothing from the declared sizes. Tensor payloads
    are verified all at once (``verify="full"``, before the constructor returns), on first
    access (``"lazy"``) or never (``"off"``).

    With ``use_mmap`` tensors are views of a read-only mapping (or of a private
    copy-on-write mapping when ``writable``); otherwise each tensor is read into its own
    writable buffer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: Verify = "full",
        use_mmap: bool = True,
        writable: bool = False,
    ) -> None:
        check_verify_mode(verify)
        self.path = Path(path)
        self.verify_mode = verify
        self.use_mmap = use_mmap
        self.writable = writable
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self._mmap: mmap.mmap | None = None
        self._fd = self._open()
        try:
            self._read_structure()
            if use_mmap:
                self._map()
            if verify == "full":
                self.verify_all()
        except BaseException:
            self.close()
            raise

    # -- structure -------------------------------------------------------------------------

    def _open(self) -> int:
        fd, self.size = open_regular(self.path, "an amber file")
        return fd

    def _read_structure(self) -> None:
        path = self.path
        if self.size < HEADER_SIZE + TRAILER_SIZE:
            if self.size >= len(b"\x89AMBER\r\n") and self._pread(8, 0) == b"\x89AMBER\r\n":
                raise CorruptFileError(
                    f"{path}: amber file of {self.size} bytes is truncated (an intact file has "
                    f"at least {HEADER_SIZE + TRAILER_SIZE}); re-copy or re-save it"
                )
            raise FormatError(f"{path}: not an amber file ({self.size} bytes, too small)")
        self.header = Header.unpack(self._pread(HEADER_SIZE, 0))
        try:
            trailer = Trailer.unpack(self._pread(TRAILER_SIZE, self.size - TRAILER_SIZE))
        except CorruptFileError as exc:
            raise CorruptFileError(f"{path}: {exc}") from None
        if (trailer.major, trailer.minor) != (self.header.major, self.header.minor):
            raise CorruptFileError(
                f"{path}: header says format {self.header.major}.{self.header.minor} but the "
                f"trailer says {trailer.major}.{trailer.minor}; the file is damaged"
            )
        manifest_end = self.size - TRAILER_SIZE
        if trailer.manifest_length > MAX_MANIFEST_BYTES:
            raise FormatError(
                f"{path}: manifest length {trailer.manifest_length} exceeds the limit of "
                f"{MAX_MANIFEST_BYTES} bytes"
            )
        if (
            trailer.manifest_offset < HEADER_SIZE
            or trailer.manifest_offset + trailer.manifest_length != manifest_end
        ):
            raise CorruptFileError(
                f"{path}: trailer places the manifest at {trailer.manifest_offset}+"
                f"{trailer.manifest_length}, which does not end where the trailer starts "
                f"({manifest_end}); the file was truncated, appended to or damaged"
            )
        if trailer.manifest_offset != align_up(trailer.manifest_offset, self.header.alignment):
            raise FormatError(f"{path}: manifest offset is not aligned")
        raw = self._pread(trailer.manifest_length, trailer.manifest_offset)
        if digest.raw_digest(raw) != trailer.manifest_digest:
            raise CorruptFileError(
                f"{path}: manifest digest mismatch: the manifest or trailer is damaged; "
                "re-copy or re-save the file"
            )
        try:
            self.manifest: dict[str, Any] = manifest.parse(raw)
            self.entries: dict[str, TensorEntry] = manifest.validate(
                self.manifest,
                data_start=HEADER_SIZE,
                data_end=trailer.manifest_offset,
                alignment=self.header.alignment,
            )
        except FormatError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        self.trailer = trailer
        self.manifest_digest = trailer.manifest_digest

    def _pread(self, size: int, offset: int) -> bytes:
        return pread_exact(self._fd, size, offset, self.path)

    def _map(self) -> None:
        access = mmap.ACCESS_COPY if self.writable else mmap.ACCESS_READ
        try:
            self._mmap = mmap.mmap(self._fd, 0, access=access)
        except (OSError, ValueError) as exc:
            raise ReadError(
                f"{self.path}: cannot memory-map the file ({exc}); pass mmap=False"
            ) from None

    # -- payloads --------------------------------------------------------------------------

    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            close = sorted(self.entries, key=lambda n: (not n.startswith(name[:3]), n))[:5]
            raise TensorNotFoundError(
                f"{self.path}: no tensor named {name!r}; it has {len(self.entries)} tensors"
                + (f", e.g. {', '.join(map(repr, close))}" if close else "")
            ) from None

    def _raw(self, entry: TensorEntry) -> memoryview | bytearray:
        if self._mmap is not None:
            return memoryview(self._mmap)[entry.offset : entry.offset + entry.nbytes]
        buf = bytearray(entry.nbytes)
        view = memoryview(buf)
        done = 0
        while done < entry.nbytes:
            n = os.preadv(self._fd, [view[done:]], entry.offset + done)
            if n == 0:
                raise CorruptFileError(f"{self.path}: file ended early; it was truncated")
            done += n
        return buf

    def _check(self, entry: TensorEntry, data: memoryview | bytearray) -> None:
        if digest.hexdigest(memoryview(data)) != entry.digest:
            raise CorruptFileError(
                f"{self.path}: tensor {entry.name!r} is corrupt (its BLAKE3 digest does not "
                "match the manifest); the file was damaged after it was written; restore it "
                "from a good copy"
            )

    def verify_tensor(self, name: str) -> None:
        """Check one payload's digest (reads the whole payload)."""
        entry = self._entry(name)
        data = self._raw(entry)
        try:
            self._check(entry, data)
        finally:
            if isinstance(data, memoryview):
                data.release()
        with self._lock:
            self._verified.add(name)

    def verify_all(self) -> None:
        """Check the whole data region in one parallel pass against ``data_digest``; when it
        does not match, check each payload to name the damaged tensor (or the padding)."""
        if self._region_digest() == self.manifest["data_digest"]:
            with self._lock:
                self._verified.update(self.entries)
            return
        for name in self.entries:
            self.verify_tensor(name)
        self._check_padding()
        raise CorruptFileError(  # the manifest digest covers data_digest: a byte changed
            f"{self.path}: the data region does not match its digest although every tensor "
            "does; restore the file from a good copy"
        )

    def _check_padding(self) -> None:
        ends = sorted((e.offset + e.nbytes) for e in self.entries.values())
        starts = sorted([e.offset for e in self.entries.values()] + [self.trailer.manifest_offset])
        for end, start in zip([HEADER_SIZE, *ends], starts, strict=True):
            if start > end and any(self._pread(start - end, end)):
                raise CorruptFileError(
                    f"{self.path}: padding bytes at offset {end} are not zero; the file was "
                    "modified after it was written; every tensor is intact, but restore the "
                    "file from a good copy"
                )

    def _region_digest(self) -> str:
        start, end = HEADER_SIZE, self.trailer.manifest_offset
        h = digest.hasher(end - start)
        if self._mmap is not None:
            view = memoryview(self._mmap)
            try:
                h.update(view[start:end])
            finally:
                view.release()
        else:
            for offset in range(start, end, _READ_CHUNK):
                h.update(self._pread(min(_READ_CHUNK, end - offset), offset))
        return digest.tag(h)

    def array(self, name: str, *, bits: bool = False) -> np.ndarray:
        """The tensor as a numpy array (a view of the mapping when mmap is on). ``bits``:
        types numpy lacks (bfloat16, float8...) come as unsigned integers of their size,
        for readers that reinterpret them (torch), so ml_dtypes is not needed."""
        import numpy as np

        entry = self._entry(name)
        if self.verify_mode == "lazy" and name not in self._verified:
            self.verify_tensor(name)
        if bits and entry.dtype not in dtypes.NUMPY_DTYPES:
            dtype = np.dtype(f"<u{dtypes.ITEMSIZE[entry.dtype]}")
        else:
            dtype = dtypes.to_numpy(entry.dtype)
        if entry.nbytes == 0:
            # A view of zero bytes at the end of a mapping is not allowed; nothing to share.
            array = np.zeros(entry.shape, dtype=dtype, order=entry.order)
            array.flags.writeable = self.writable or self._mmap is None
            return array
        if self._mmap is None:
            return np.ndarray(entry.shape, dtype, buffer=self._raw(entry), order=entry.order)
        # A view of the mapping itself: read-only when the mapping is (ACCESS_READ).
        return np.ndarray(
            entry.shape, dtype, buffer=self._mmap, offset=entry.offset, order=entry.order
        )

    def close(self) -> None:
        """Close the file descriptor. Arrays already handed out keep the mapping alive."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # The mmap object stays referenced by arrays that view it; it unmaps when they die.
        self._mmap = None

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
