"""Open an .amber file: validate everything first, then hand out zero-copy tensor views."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
from collections.abc import Iterator
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
VERIFY_MODES = ("full", "lazy", "off")
# Payloads under the parallel-hash size are hashed on threads, several per thread, when
# there are at least this many bytes of them (fewer: the threads cost more than they save).
_THREADED_MIN_BYTES = 4 << 20
_THREADED_MIN_AVERAGE = 16 << 10
_MAX_THREADS = 4


def check_verify_mode(verify: object) -> None:
    if verify not in VERIFY_MODES:
        raise InvalidArgumentError(
            f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got {verify!r}"
        )


def open_regular(path: Path, kind: str, *, follow_symlinks: bool = True) -> tuple[int, int]:
    """A read-only descriptor of the regular file ``path`` and its size; ReadError saying
    why not (``kind`` names what the file should be: "an amber file"). Without
    ``follow_symlinks`` a link at ``path`` itself is refused."""
    # O_NONBLOCK: opening a FIFO named by the caller must not wait for a writer (it is
    # refused below as not a regular file); it changes nothing for regular files.
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReadError(2, f"no such file: {path}; check the path") from None
    except IsADirectoryError:
        raise ReadError(21, f"{path} is a directory, not {kind}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise ReadError(exc.errno, f"{path} is a symbolic link, not {kind}") from None
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
    writable buffer, once, and (unless ``verify="off"``) checked in that buffer.
    ``follow_symlinks=False`` refuses a link at ``path`` (files inside a model store).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: Verify = "full",
        use_mmap: bool = True,
        writable: bool = False,
        follow_symlinks: bool = True,
    ) -> None:
        check_verify_mode(verify)
        self.path = Path(path)
        self._follow_symlinks = follow_symlinks
        self.verify_mode = verify
        self.use_mmap = use_mmap
        self.writable = writable
        self._verified: set[str] = set()
        # Without mmap: payloads read and checked, handed out by array() (never re-read).
        self._buffers: dict[str, bytearray] = {}
        # Compressed tensors (format 1.1), decoded once into memory, never mapped.
        self._decoded: dict[str, Any] = {}
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
        fd, self.size = open_regular(
            self.path, "an amber file", follow_symlinks=self._follow_symlinks
        )
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
                minor=self.header.minor,
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

    def _read(self, entry: TensorEntry, gap: int = 0) -> tuple[bytearray, bytes]:
        """The payload of ``entry`` in a buffer of its own, and the ``gap`` bytes before it
        (padding), in one read."""
        buf = bytearray(entry.stored_nbytes)
        pad = bytearray(gap)
        views = [v for v in (memoryview(pad), memoryview(buf)) if v.nbytes]
        offset = entry.offset - gap
        while views:
            n = os.preadv(self._fd, views, offset)
            if n == 0:
                raise CorruptFileError(f"{self.path}: file ended early; it was truncated")
            offset += n
            while views and n >= views[0].nbytes:
                n -= views.pop(0).nbytes
            if views:
                views[0] = views[0][n:]
        return buf, bytes(pad)

    def _corrupt(self, name: str) -> CorruptFileError:
        return CorruptFileError(
            f"{self.path}: tensor {name!r} is corrupt (its BLAKE3 digest does not match the "
            "manifest); the file was damaged or altered after it was written; restore it "
            "from a good copy"
        )

    def _buffer(self, entry: TensorEntry) -> bytearray:
        """Without mmap: the payload's own buffer, the one that was checked; read (and,
        unless verify is "off", checked and kept) now if it was not read yet."""
        with self._lock:
            buf = self._buffers.get(entry.name)
        if buf is not None:
            return buf
        buf = self._read(entry)[0]
        if self.verify_mode == "off":
            return buf  # a fresh copy each time, as nothing is checked
        if digest.hexdigest(memoryview(buf)) != entry.stored_digest:
            raise self._corrupt(entry.name)
        with self._lock:
            self._verified.add(entry.name)
            return self._buffers.setdefault(entry.name, buf)

    def verify_tensor(self, name: str) -> None:
        """Check one payload's digest (reads the whole payload)."""
        entry = self._entry(name)
        if self._mmap is None:
            self._buffer(entry)  # read once, checked, kept: what array() hands out
            return
        with memoryview(self._mmap)[entry.offset : entry.offset + entry.stored_nbytes] as data:
            if digest.hexdigest(data) != entry.stored_digest:
                raise self._corrupt(name)
        with self._lock:
            self._verified.add(name)

    def verify_all(self) -> None:
        """Check every payload against its own digest, and that every padding byte is zero:
        together they cover each byte of the data region once (format.md, step 18).
        Without mmap each payload is read into its own buffer once, checked, and that
        buffer is what ``array`` hands out: the bytes checked are the bytes used."""
        ordered = sorted(self.entries.values(), key=lambda e: (e.offset, e.stored_nbytes))
        if self._mmap is None:
            bad, padding = self._read_all(ordered)
        else:
            bad, padding = self._hash_mapped(ordered), self._mapped_padding(ordered)
        for name in self.entries:  # the first damaged tensor in list order
            if name in bad:
                raise self._corrupt(name)
        if padding is not None:
            raise CorruptFileError(
                f"{self.path}: padding bytes at offset {padding} are not zero; the file was "
                "modified after it was written; every tensor is intact, but restore the "
                "file from a good copy"
            )
        with self._lock:
            self._verified.update(self.entries)
        self._decode([e for e in self.entries.values() if e.compression is not None])
        self._check_scales()

    def _gaps(self, ordered: list[TensorEntry]) -> Iterator[tuple[int, int]]:
        """(start, length) of each padding run of the data region (validated layout)."""
        end = HEADER_SIZE
        for entry in ordered:
            if entry.offset > end:
                yield end, entry.offset - end
            end = max(end, entry.offset + entry.stored_nbytes)
        if self.trailer.manifest_offset > end:
            yield end, self.trailer.manifest_offset - end

    def _mapped_padding(self, ordered: list[TensorEntry]) -> int | None:
        """Offset of the first padding run that is not all zero, or None."""
        assert self._mmap is not None
        for start, length in self._gaps(ordered):
            if self._mmap[start : start + length].count(0) != length:
                return start
        return None

    def _hash_mapped(self, ordered: list[TensorEntry]) -> set[str]:
        """Names of the payloads whose digest does not match. Large payloads are hashed one
        at a time with every core; smaller ones, many at once on a few threads (BLAKE3
        releases the GIL for inputs of 2 KiB or more)."""
        assert self._mmap is not None
        view = memoryview(self._mmap)

        def bad_among(entries: list[TensorEntry]) -> list[str]:
            # The hot loop of files with thousands of small tensors: kept minimal.
            return [
                e.name
                for e in entries
                if digest.hexdigest(view[e.offset : e.offset + e.stored_nbytes]) != e.stored_digest
            ]

        try:
            large = [e for e in ordered if e.stored_nbytes >= digest.PARALLEL_MIN_BYTES]
            small = [e for e in ordered if e.stored_nbytes < digest.PARALLEL_MIN_BYTES]
            bad = set(bad_among(large))
            groups = _groups(small, _threads_for(small))
            if len(groups) < 2:
                bad.update(bad_among(small))
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(len(groups), "amber-verify") as pool:
                    for names in pool.map(bad_among, groups):
                        bad.update(names)
            return bad
        finally:
            view.release()

    def _read_all(self, ordered: list[TensorEntry]) -> tuple[set[str], int | None]:
        """Read every payload not read yet into its own buffer with the padding before it
        (one read each), check both, keep the buffers; hashing overlaps the next read."""
        bad: set[str] = set()
        padding: int | None = None
        end = HEADER_SIZE
        from concurrent.futures import ThreadPoolExecutor

        def check(entry: TensorEntry, buf: bytearray) -> None:
            if digest.hexdigest(memoryview(buf)) != entry.stored_digest:
                bad.add(entry.name)
            else:
                with self._lock:
                    self._buffers.setdefault(entry.name, buf)

        with ThreadPoolExecutor(1, "amber-verify") as pool:
            pending = None
            for entry in ordered:
                gap = max(0, entry.offset - end)
                end = max(end, entry.offset + entry.stored_nbytes)
                with self._lock:
                    kept = self._buffers.get(entry.name)
                if kept is not None:  # read and checked already (lazy access)
                    buf, pad = kept, self._pread(gap, entry.offset - gap)
                else:
                    buf, pad = self._read(entry, gap)
                if padding is None and pad.count(0) != gap:
                    padding = entry.offset - gap
                if kept is not None:
                    continue
                if entry.stored_nbytes < digest.PARALLEL_MIN_BYTES:
                    check(entry, buf)  # a thread hand-off would cost more than the hash
                    continue
                if pending is not None:
                    pending.result()
                pending = pool.submit(check, entry, buf)
            if pending is not None:
                pending.result()
        tail = self.trailer.manifest_offset - end
        if padding is None and tail > 0 and self._pread(tail, end).count(0) != tail:
            padding = end
        return bad, padding

    def array(self, name: str, *, bits: bool = False, dequantize: bool = True) -> np.ndarray:
        """The tensor as a numpy array (a view of the mapping when mmap is on). ``bits``:
        types numpy lacks (bfloat16, float8...) come as unsigned integers of their size,
        for readers that reinterpret them (torch), so ml_dtypes is not needed. A quantized
        tensor (format 1.1) comes dequantized, in its original dtype and shape, unless
        ``dequantize=False`` (then: the stored values; its scales are another tensor)."""
        import numpy as np

        entry = self._entry(name)
        if entry.quantization is not None and dequantize:
            from amber.container import quantized

            values = quantized.dequantize(
                self.array(name, bits=True, dequantize=False),
                self.array(entry.quantization.scale, dequantize=False),
                entry.quantization,
                f"{self.path}: tensor {name!r}",
            )
            if bits or entry.quantization.dtype != "bfloat16":
                return values
            return values.view(dtypes.to_numpy("bfloat16"))
        if self.verify_mode == "lazy" and name not in self._verified:
            self.verify_tensor(name)
        if bits and entry.dtype not in dtypes.NUMPY_DTYPES:
            dtype = np.dtype(f"<u{dtypes.ITEMSIZE[entry.dtype]}")
        else:
            dtype = dtypes.to_numpy(entry.dtype)
        if entry.compression is not None:
            decoded = self._decoded_buffer(entry)  # in memory, never a view of the file
            return np.ndarray(entry.shape, dtype, buffer=decoded, order=entry.order)
        if entry.nbytes == 0:
            # A view of zero bytes at the end of a mapping is not allowed; nothing to share.
            array = np.zeros(entry.shape, dtype=dtype, order=entry.order)
            array.flags.writeable = self.writable or self._mmap is None
            return array
        if self._mmap is None:
            return np.ndarray(entry.shape, dtype, buffer=self._buffer(entry), order=entry.order)
        # A view of the mapping itself: read-only when the mapping is (ACCESS_READ).
        return np.ndarray(
            entry.shape, dtype, buffer=self._mmap, offset=entry.offset, order=entry.order
        )

    # -- compressed payloads (format 1.1) -------------------------------------------------

    def _check_scales(self) -> None:
        """Full verification also checks that every scale of a quantized tensor is finite
        and positive and that int4 padding nibbles are 0 (format 1.1), so that a file that
        verifies also dequantizes."""
        from amber.container import quantized

        for entry in self.entries.values():
            if entry.quantization is not None:
                quantized.check_padding(
                    self.array(entry.name, bits=True, dequantize=False),
                    entry.quantization,
                    f"{self.path}: tensor {entry.name!r}",
                )
                quantized.check_scale_values(
                    self.array(entry.quantization.scale, dequantize=False),
                    entry.quantization,
                    f"{self.path}: tensor {entry.name!r}",
                )

    def _stored(self, entry: TensorEntry) -> Any:
        """The stored bytes of ``entry``: a view of the mapping, or the checked buffer."""
        if self._mmap is None:
            return self._buffer(entry)
        return memoryview(self._mmap)[entry.offset : entry.offset + entry.stored_nbytes]

    def _decoded_buffer(self, entry: TensorEntry) -> Any:
        with self._lock:
            buf = self._decoded.get(entry.name)
        if buf is None:
            self._decode([entry])
            with self._lock:
                buf = self._decoded[entry.name]
        return buf

    def _decode(self, entries: list[TensorEntry]) -> None:
        """Decode these compressed tensors (not decoded yet) together, chunks of all of
        them on a few threads; keep the buffers; their decoded digests are checked unless
        verify is "off"."""
        from amber.container import zstd_codec

        with self._lock:
            todo = [e for e in entries if e.name not in self._decoded]
        if not todo:
            return
        decoded = zstd_codec.decode_payloads(
            [(e, self._stored(e)) for e in todo],
            check=self.verify_mode != "off",
            where=str(self.path),
        )
        with self._lock:
            for entry in todo:
                self._decoded.setdefault(entry.name, decoded[entry.name])
                self._buffers.pop(entry.name, None)  # the stored bytes are not needed now

    def close(self) -> None:
        """Close the file descriptor. Arrays already handed out keep the mapping alive."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # The mmap object stays referenced by arrays that view it; it unmaps when they die.
        self._mmap = None
        with self._lock:
            self._buffers.clear()  # arrays keep their own buffers alive
            self._decoded.clear()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _threads_for(entries: list[TensorEntry]) -> int:
    """Threads for hashing these payloads: one unless they are many bytes, and large enough
    on average that hashing, not the Python loop that holds the GIL, takes the time."""
    total = sum(e.nbytes for e in entries)
    if total < _THREADED_MIN_BYTES or total < _THREADED_MIN_AVERAGE * len(entries):
        return 1
    return max(1, min(_MAX_THREADS, os.cpu_count() or 1))


def _groups(entries: list[TensorEntry], count: int) -> list[list[TensorEntry]]:
    """``entries`` cut into at most ``count`` runs of about equal bytes, in order."""
    if count < 2:
        return [entries] if entries else []
    share = sum(e.nbytes for e in entries) / count
    groups: list[list[TensorEntry]] = [[]]
    done = 0
    for e in entries:
        groups[-1].append(e)
        done += e.nbytes
        if done >= share * len(groups) and len(groups) < count:
            groups.append([])
    return [g for g in groups if g]
