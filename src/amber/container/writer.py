"""Stream tensors into an .amber file, one bounded chunk at a time, atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container import codecs, digest, dtypes
from amber.container.atomic import atomic_file
from amber.container.format import (
    DEFAULT_ALIGNMENT,
    FORMAT_MAJOR,
    HEADER_SIZE,
    MAX_ALIGNMENT,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_NAME_BYTES,
    MAX_RANK,
    MAX_TENSORS,
    MIN_ALIGNMENT,
    Header,
    Trailer,
    align_up,
)
from amber.container.manifest import (
    COMPRESSION_MINOR,
    RESERVED_TOP_KEYS,
    TensorEntry,
    check_scales,
    json_depth,
)
from amber.container.quantized import Quantization
from amber.errors import FormatError, InvalidArgumentError, SerializationError

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np

# Peak extra memory while saving is about one chunk (for arrays that must be copied to be
# written: non-contiguous or big-endian); contiguous arrays are written without a copy.
CHUNK_BYTES = 32 * 1024 * 1024
# Chunks smaller than this are hashed inline; handing them to a thread costs more.
_OVERLAP_MIN_BYTES = 1 << 20
# Ask the kernel to write back after this many new bytes, so the final fsync is short.
_FLUSH_BYTES = 64 * 1024 * 1024
_ZEROS = bytes(MAX_ALIGNMENT)
# compress= values: None (raw, the default), "auto", or a codec forced on every tensor.
COMPRESS_MODES = (None, "auto", codecs.ZSTD, codecs.ZSTD_BYTEGROUP)


# (name, array) or (name, array, table dtype); the array may be a zero-argument callable.
TensorItem = tuple[str, Any] | tuple[str, Any, str]


@dataclass(frozen=True)
class WriteResult:
    path: Path
    size: int
    manifest_digest: bytes
    tensors: tuple[TensorEntry, ...]


def payload_order(array: np.ndarray) -> str:
    """Fortran-ordered arrays keep their order on disk, so they load back zero-copy as such."""
    if array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous:
        return "F"
    return "C"


def _as_bytes(block: np.ndarray) -> memoryview:
    import numpy as np

    if block.dtype.byteorder == ">" or (block.dtype.byteorder == "=" and np.little_endian is False):
        block = block.astype(block.dtype.newbyteorder("<"))
    block = np.ascontiguousarray(block)
    # Through uint8 because the buffer protocol does not know ml_dtypes' types.
    return memoryview(block.reshape(-1).view(np.uint8))


def iter_chunks(array: np.ndarray, order: str, limit: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """Yield the payload bytes of ``array`` in ``order``, no piece larger than ``limit``."""
    source = array.T if order == "F" else array
    yield from _c_order_chunks(source, limit)


def _c_order_chunks(a: np.ndarray, limit: int) -> Iterator[memoryview]:
    contiguous_le = a.flags.c_contiguous and a.dtype.byteorder in ("<", "|", "=")
    if contiguous_le or a.ndim == 0 or a.nbytes <= limit:
        data = _as_bytes(a)
        for start in range(0, data.nbytes, limit):
            yield data[start : start + limit]
        return
    row_bytes = a[0].nbytes if a.shape[0] else 0
    if row_bytes > limit:
        for row in a:
            yield from _c_order_chunks(row, limit)
        return
    rows = max(1, limit // max(row_bytes, 1))
    for start in range(0, a.shape[0], rows):
        yield _as_bytes(a[start : start + rows])


def write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view.nbytes:
        written = os.write(fd, view)
        view = view[written:]


def check_array(name: str, array: Any, declared: str | None = None) -> str:
    """The table dtype of ``array``; ``declared`` names it when the array holds only the
    bits of a type numpy lacks (a torch bfloat16 tensor seen as uint16)."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise SerializationError(
            f"tensor {name!r}: expected a numpy array, got {type(array).__name__}"
        )
    if declared is not None and declared != dtypes.from_numpy(array.dtype):
        if dtypes.ITEMSIZE.get(declared) != array.dtype.itemsize or array.dtype.kind not in "biu":
            raise SerializationError(
                f"tensor {name!r}: {array.dtype} values cannot stand for {declared!r}"
            )
        dtype_name: str | None = declared
    else:
        dtype_name = dtypes.from_numpy(array.dtype)
    if dtype_name is None:
        raise SerializationError(
            f"tensor {name!r}: dtype {array.dtype} cannot be stored as a tensor; supported: "
            + ", ".join(dtypes.ITEMSIZE)
        )
    if array.ndim > MAX_RANK:
        raise SerializationError(f"tensor {name!r}: rank {array.ndim} exceeds {MAX_RANK}")
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise SerializationError(f"tensor name must be 1 to {MAX_NAME_BYTES} bytes, got {name!r}")
    return dtype_name


def _encode_manifest(manifest: dict[str, Any]) -> bytes:
    if json_depth(manifest) > MAX_JSON_DEPTH:
        raise SerializationError(
            f"the saved object is nested deeper than the format allows ({MAX_JSON_DEPTH} JSON "
            "levels); flatten it"
        )
    try:
        raw = json.dumps(manifest, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = raw.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"manifest cannot be encoded as strict JSON: {exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SerializationError(
            f"manifest is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}; store large "
            "values as arrays instead of Python lists"
        )
    return data


class _Stream:
    """Writes payloads at aligned offsets; a helper thread hashes each chunk while the next
    one is written, and another asks the kernel to write back what is already written, so
    the final fsync has little left to do.

    Two digests are kept: one per payload (lazy verification, content addressing) and one
    of the whole data region, padding included (fast full verification in one pass).
    """

    def __init__(self, fd: int, alignment: int, pool: ThreadPoolExecutor) -> None:
        self.fd = fd
        self.alignment = alignment
        self.pool = pool
        self.pos = 0
        # Single-threaded hashers: the writer thread and the hash thread already use both
        # cores of a small machine; more hashing threads only contend (measured).
        self.region = digest.hasher(0)
        self.pending: Future[None] | None = None
        from concurrent.futures import ThreadPoolExecutor

        self.flusher = ThreadPoolExecutor(1, "amber-flush")
        self.flushing: Future[None] | None = None
        self.unflushed = 0
        self.manifest_digest = b""
        self.progress: Callable[[int], None] | None = None
        self.payload_bytes = 0
        self.compress: str | None = None
        self.sparse: frozenset[str] = frozenset()
        self.encoders: ThreadPoolExecutor | None = None

    def write(self, data: memoryview | bytes) -> None:
        write_all(self.fd, data)
        size = len(data) if isinstance(data, bytes) else data.nbytes
        self.pos += size
        self.unflushed += size
        if self.unflushed >= _FLUSH_BYTES and (self.flushing is None or self.flushing.done()):
            if self.flushing is not None:
                self.flushing.result()  # a write-back error surfaces here
            self.flushing = self.flusher.submit(os.fdatasync, self.fd)
            self.unflushed = 0

    def write_data(self, data: memoryview | bytes, payload: Any = None) -> None:
        """Write bytes of the data region, hashing them into the region (and payload)."""
        size = len(data) if isinstance(data, bytes) else data.nbytes
        if size < _OVERLAP_MIN_BYTES:
            self.drain()
            _update(self.region, payload, data)
            self.write(data)
            return
        future = self.pool.submit(_update, self.region, payload, data)
        self.write(data)
        self.drain()  # the previous chunk's hash; this one runs while the next is written
        self.pending = future

    def drain(self) -> None:
        """Wait for the hashing of everything written so far."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the helpers; called before the final fsync (and on failure, ``quiet``,
        when their own errors must not hide the one being raised)."""
        try:
            self.drain()
            if self.flushing is not None:
                self.flushing.result()
        except Exception:
            if not quiet:
                raise
        finally:
            self.flusher.shutdown(wait=True)

    def pad(self) -> None:
        gap = align_up(self.pos, self.alignment) - self.pos
        if gap:
            self.write_data(_ZEROS[:gap])

    def codec_for(self, name: str, array: np.ndarray, dtype_name: str) -> str | None:
        """The codec this tensor is stored with under the ``compress`` mode, or None."""
        if name in self.sparse and array.nbytes:
            return codecs.BITMASK if self.compress is None else codecs.BITMASK_ZSTD
        if self.compress is None:
            return None
        from amber.container import zstd_codec

        return zstd_codec.choose(array, dtype_name, self.compress)

    def compressed_payload(
        self, name: str, array: np.ndarray, dtype_name: str, codec: str
    ) -> TensorEntry:
        """Write the frames of ``array`` under ``codec``; digests of both the decoded and
        the stored bytes."""
        from amber.container import zstd_codec

        self.pad()
        offset = self.pos
        order = payload_order(array)
        itemsize = dtypes.ITEMSIZE[dtype_name]
        decoded, stored, sizes = digest.hasher(0), digest.hasher(0), []
        chunks = zstd_codec.exact_chunks(iter_chunks(array, order), codecs.DEFAULT_FRAME_BYTES)
        for chunk, frames in zstd_codec.encode(chunks, codec, itemsize, self.encoders):
            decoded.update(chunk)
            for frame in frames:
                self.write_data(frame, stored)
                sizes.append(len(frame))
            if self.progress is not None:
                self.payload_bytes += chunk.nbytes
                self.progress(self.payload_bytes)
        self.drain()
        raw = {
            "codec": codec,
            "nbytes": self.pos - offset,
            "digest": digest.tag(stored),
            "frame": codecs.DEFAULT_FRAME_BYTES,
            "frames": sizes,
        }
        # The reader's own rules: a writer must never produce a file its reader refuses.
        compression = codecs.parse(
            raw, dtype=dtype_name, itemsize=itemsize, decoded=array.nbytes, where=repr(name)
        )
        return TensorEntry(
            name,
            dtype_name,
            tuple(array.shape),
            order,
            offset,
            array.nbytes,
            digest.tag(decoded),
            compression,
        )

    def payload(self, name: str, array: np.ndarray, dtype_name: str) -> TensorEntry:
        codec = self.codec_for(name, array, dtype_name)
        if codec is not None:
            return self.compressed_payload(name, array, dtype_name, codec)
        self.pad()
        offset = self.pos
        order = payload_order(array)
        h = digest.hasher(0)
        for chunk in iter_chunks(array, order):
            self.write_data(chunk, h)
            if self.progress is not None:
                self.payload_bytes += len(chunk)
                self.progress(self.payload_bytes)
        self.drain()
        nbytes = self.pos - offset
        if nbytes != array.nbytes:  # a bug in chunking must never produce a wrong file
            raise AssertionError(f"wrote {nbytes} bytes for {name!r}, expected {array.nbytes}")
        return TensorEntry(
            name, dtype_name, tuple(array.shape), order, offset, nbytes, digest.tag(h)
        )


def _update(region: Any, payload: Any, data: memoryview | bytes) -> None:
    region.update(data)
    if payload is not None:
        payload.update(data)


def check_compress(compress: object) -> None:
    """InvalidArgumentError for an unknown ``compress=`` value; MissingDependencyError
    (with the install hint) when compressing needs zstandard and it is missing."""
    if not any(compress is mode or compress == mode for mode in COMPRESS_MODES) or (
        compress is not None and not isinstance(compress, str)
    ):
        raise InvalidArgumentError(
            f"compress must be one of {', '.join(map(repr, COMPRESS_MODES))}, got {compress!r}"
        )
    if compress is not None:
        from amber.container import zstd_codec

        zstd_codec.zstandard()


def write(
    path: str | os.PathLike[str],
    tensors: Iterable[TensorItem],
    extra: dict[str, Any] | None = None,
    *,
    alignment: int = DEFAULT_ALIGNMENT,
    progress: Callable[[int, int | None], None] | None = None,
    compress: str | None = None,
    quantized: Mapping[str, Quantization] | None = None,
    sparse: Iterable[str] = (),
) -> WriteResult:
    """Write an .amber file holding ``tensors`` and the JSON object ``extra`` in its manifest.

    Each item is ``(name, array)`` or ``(name, array, dtype)``: ``array`` is a numpy array
    or a function returning one when its turn comes; ``dtype`` (a table name) declares the
    type when the array holds only its bits. Tensors are streamed in the order given; the
    file appears at ``path`` only once complete and fsynced. ``extra`` must not use the
    key ``tensors``. ``progress(done_bytes, total_bytes)`` is called as payloads are
    written (``total_bytes`` is None when some arrays are produced on demand).

    ``compress``: None stores every payload as it is (mmap-able); ``"auto"`` compresses each
    tensor whose sample shrinks enough; ``"zstd"`` or ``"zstd-bytegroup"`` compress every
    non-empty tensor (byte grouping only for floating-point ones). A file with a compressed
    tensor declares format 1.1; others stay 1.0. ``quantized`` gives the ``quantization``
    block of the tensors that hold quantized values (their scale tensors must be written
    too); such a file declares 1.1 as well. ``sparse`` names tensors stored as a bitmask
    of their non-zero elements and those elements (pruned weights; zstd over that when
    ``compress`` is set).
    """
    check_compress(compress)
    if not MIN_ALIGNMENT <= alignment <= MAX_ALIGNMENT or alignment & (alignment - 1):
        raise InvalidArgumentError(
            f"alignment must be a power of two in [{MIN_ALIGNMENT}, {MAX_ALIGNMENT}], "
            f"got {alignment}"
        )
    extra = dict(extra or {})
    reserved = RESERVED_TOP_KEYS & extra.keys()
    if reserved:
        raise InvalidArgumentError(f"manifest keys {sorted(reserved)} are reserved by the format")
    # Fail on an unencodable manifest before streaming gigabytes of tensors.
    _encode_manifest(extra)
    target = Path(path)
    from concurrent.futures import ThreadPoolExecutor  # only saving needs threads

    entries: list[TensorEntry] = []
    with atomic_file(target) as fd, ThreadPoolExecutor(1, "amber-hash") as pool:
        stream = _Stream(fd, alignment, pool)
        stream.compress = compress
        stream.sparse = frozenset(sparse)
        if compress is not None or stream.sparse:
            from amber.container.zstd_codec import threads

            stream.encoders = ThreadPoolExecutor(threads(), "amber-encode")
        if progress is not None:
            tensors = list(tensors)
            sized = [item[1] for item in tensors if not callable(item[1])]
            total = None if len(sized) < len(tensors) else sum(a.nbytes for a in sized)
            stream.progress = lambda done: progress(done, total)
        try:
            size = _write_body(stream, tensors, extra, entries, alignment, quantized or {})
        except BaseException:
            stream.close(quiet=True)  # the first error is the one to report
            raise
        finally:
            if stream.encoders is not None:
                stream.encoders.shutdown(wait=True, cancel_futures=True)
        stream.close()
    return WriteResult(target, size, stream.manifest_digest, tuple(entries))


def _write_body(
    stream: _Stream,
    tensors: Iterable[TensorItem],
    extra: dict[str, Any],
    entries: list[TensorEntry],
    alignment: int,
    quantized: Mapping[str, Quantization],
) -> int:
    """Header, payloads, manifest and trailer; returns the file size."""
    names: set[str] = set()
    # 1.0 unless a tensor is compressed (known only at the end: the header is rewritten).
    stream.write(Header(FORMAT_MAJOR, 0, alignment).pack())
    assert stream.pos == HEADER_SIZE
    for item in tensors:
        name, array, declared = item if len(item) == 3 else (*item, None)
        if callable(array):  # produced on demand, e.g. copied off a GPU one at a time
            array = array()
        dtype_name = check_array(name, array, declared)
        if name in names:
            raise SerializationError(f"tensor name {name!r} is used twice")
        if len(entries) >= MAX_TENSORS:
            raise SerializationError(f"more than {MAX_TENSORS} tensors in one file")
        names.add(name)
        entry = stream.payload(name, array, dtype_name)
        if name in quantized:
            entry = dataclasses.replace(entry, quantization=quantized[name])
        entries.append(entry)
    try:
        check_scales({e.name: e for e in entries})
    except FormatError as exc:  # a caller's mistake: never write a file the reader refuses
        raise SerializationError(str(exc)) from None
    stream.pad()
    stream.drain()
    manifest_offset = stream.pos
    manifest = {
        "tensors": [e.to_json() for e in entries],
        "data_digest": digest.tag(stream.region),
        **extra,
    }
    data = _encode_manifest(manifest)
    stream.manifest_digest = digest.raw_digest(data)
    stream.write(data)
    minor = COMPRESSION_MINOR if any(e.compression or e.quantization for e in entries) else 0
    stream.write(
        Trailer(manifest_offset, len(data), stream.manifest_digest, FORMAT_MAJOR, minor).pack()
    )
    if minor:
        os.pwrite(stream.fd, Header(FORMAT_MAJOR, minor, alignment).pack(), 0)
    return stream.pos
