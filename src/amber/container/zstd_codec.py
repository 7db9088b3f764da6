"""Encoding and decoding of compressed tensor payloads (codecs ``zstd`` and
``zstd-bytegroup``, docs/format.md §10.1).

A payload is cut into chunks of ``frame`` decoded bytes. ``zstd`` stores each chunk as one
zstd frame; ``zstd-bytegroup`` first splits the chunk's elements into their bytes (byte 0 of
every element, then byte 1, ...) and stores each of these planes as a frame: the planes
holding the sign and exponent of floating-point numbers repeat a few values and compress
well, the mantissa planes are stored almost as they are. Chunks are independent, so they
are encoded and decoded on several threads (zstd and numpy's copies release the GIL).

Decoding never allocates more than the manifest declares: each frame's header must state
exactly the decoded size the manifest gives its chunk, before zstd runs, and the output of
each chunk lands in the tensor's buffer, which the manifest sized. zstd hands each frame
back as a new bytes object, copied into place: each thread holds at most one decoded frame
(at most MAX_FRAME_BYTES) beyond the output while it runs. (Decompressing straight into
the output with a stream reader would accept a skippable frame after the frame, which
§10.1.3 forbids, so the exact one-shot decompress is kept.)
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from amber.container import codecs
from amber.errors import FormatError, MissingDependencyError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

# zstd level 1: ratio within 2% of level 3 on float weights, 3x faster to compress (measured
# in benchmarks/compression.py); decoding speed does not depend on the level.
LEVEL = 1
# Tensors smaller than this stay raw under compress="auto": the gain is a few bytes and
# they would lose zero-copy loading.
AUTO_MIN_BYTES = 64 << 10
# compress="auto" keeps a tensor raw unless a sample shrinks by at least this factor.
AUTO_MIN_RATIO = 1.05
# The sample: _SAMPLES slices of at most _SAMPLE_BYTES, and at most 1/_SAMPLE_SHARE of the
# tensor in all. Four 256 KiB slices of a 4 MiB tensor encoded a quarter of it twice; the
# choice only compares the ratio with AUTO_MIN_RATIO, which a small sample estimates well
# enough (measured after the change: auto 8% below the forced codec's speed).
_SAMPLE_BYTES = 256 << 10
_SAMPLES = 4
_SAMPLE_SHARE = 32
_SAMPLE_MIN = 16 << 10

_local = threading.local()


def zstandard() -> Any:
    """The zstandard module; MissingDependencyError with the install hint without it."""
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError(
            "compressed tensors need the zstandard package; install it with "
            "`pip install zstandard` (or `pip install amber[compress]`)"
        ) from None
    return zstandard


def threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _compressor() -> Any:
    # zstd contexts are not thread-safe: one per thread, reused across frames.
    cctx = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard().ZstdCompressor(level=LEVEL, write_content_size=True)
    return cctx


def _decompressor() -> Any:
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard().ZstdDecompressor()
    return dctx


def _planes(chunk: memoryview, itemsize: int) -> list[memoryview]:
    import numpy as np

    elements = np.frombuffer(chunk, np.uint8).reshape(-1, itemsize)
    # One contiguous copy per byte position: measured faster than one transposed copy.
    return [memoryview(np.ascontiguousarray(elements[:, j])) for j in range(itemsize)]


def sparse_stream(chunk: memoryview, itemsize: int) -> bytes:
    """The bitmask of the chunk's non-zero elements (any byte non-zero: -0.0 is kept),
    then those elements."""
    import numpy as np

    elements = np.frombuffer(chunk, np.uint8).reshape(-1, itemsize)
    kept = elements.any(axis=1)
    return np.packbits(kept, bitorder="little").tobytes() + elements[kept].tobytes()


def encode_chunk(chunk: memoryview, codec: str, itemsize: int) -> list[bytes]:
    """The frames of one chunk of payload bytes."""
    if codec == codecs.BITMASK:
        return [sparse_stream(chunk, itemsize)]
    cctx = _compressor()
    if codec == codecs.BITMASK_ZSTD:
        return [cctx.compress(sparse_stream(chunk, itemsize))]
    if codec == codecs.ZSTD_BYTEGROUP:
        return [cctx.compress(plane) for plane in _planes(chunk, itemsize)]
    return [cctx.compress(chunk)]


def exact_chunks(pieces: Iterable[memoryview], size: int) -> Iterator[memoryview]:
    """Re-cut byte pieces into chunks of exactly ``size`` bytes (the last may be shorter);
    pieces that already are whole chunks pass through without a copy."""
    pending = bytearray()
    for piece in pieces:
        if not pending and piece.nbytes % size == 0:
            for start in range(0, piece.nbytes, size):
                yield piece[start : start + size]
            continue
        pending += piece
        while len(pending) >= size:
            yield memoryview(bytes(pending[:size]))
            del pending[:size]
    if pending:
        yield memoryview(bytes(pending))


def encode(
    chunks: Iterable[memoryview], codec: str, itemsize: int, pool: Executor | None
) -> Iterator[tuple[memoryview, list[bytes]]]:
    """(chunk, its frames) for each chunk, in order; with a pool, a few chunks are encoded
    ahead on its threads while the caller writes the previous ones."""
    if pool is None:
        for chunk in chunks:
            yield chunk, encode_chunk(chunk, codec, itemsize)
        return
    ahead: deque[tuple[memoryview, Any]] = deque()
    limit = 2 * threads()
    for chunk in chunks:
        ahead.append((chunk, pool.submit(encode_chunk, chunk, codec, itemsize)))
        if len(ahead) >= limit:
            done, future = ahead.popleft()
            yield done, future.result()
    while ahead:
        done, future = ahead.popleft()
        yield done, future.result()


def sample_ratio(array: np.ndarray, codec: str, itemsize: int) -> float:
    """Size reduction of a few slices of ``array`` under ``codec`` (raw / stored)."""
    import numpy as np

    if array.flags.c_contiguous or array.flags.f_contiguous:
        flat = array.ravel(order="K").view(np.uint8)
        most = min(_SAMPLE_BYTES, max(_SAMPLE_MIN, flat.nbytes // (_SAMPLES * _SAMPLE_SHARE)))
        span = most - most % itemsize
        step = max(span, (flat.nbytes // _SAMPLES) // itemsize * itemsize)
        pieces = [flat[start : start + span] for start in range(0, flat.nbytes, step)]
        pieces = pieces[:_SAMPLES]
    else:
        rows = max(1, (_SAMPLES * _SAMPLE_BYTES) // max(1, array[0].nbytes))
        pieces = [np.ascontiguousarray(array[:rows]).reshape(-1).view(np.uint8)]
    raw = stored = 0
    for piece in pieces:
        piece = piece[: piece.nbytes - piece.nbytes % itemsize]
        if piece.nbytes:
            raw += piece.nbytes
            stored += sum(len(f) for f in encode_chunk(memoryview(piece), codec, itemsize))
    return raw / stored if stored else 1.0


def choose(array: np.ndarray, dtype_name: str, mode: str) -> str | None:
    """The codec a tensor is stored with under ``compress=mode`` ("auto" or a codec), or
    None to store it raw. Forced codecs apply to every non-empty tensor, byte grouping
    only to floating-point ones (plain zstd for the rest); "auto" compresses a tensor of
    at least AUTO_MIN_BYTES when a sample of it shrinks by AUTO_MIN_RATIO."""
    from amber.container import dtypes

    if array.nbytes == 0:
        return None
    if mode == "auto" or dtype_name not in codecs.BYTEGROUP_DTYPES:
        codec = codecs.ZSTD_BYTEGROUP if dtype_name in codecs.BYTEGROUP_DTYPES else codecs.ZSTD
    else:
        codec = mode
    if mode == "auto":
        if array.nbytes < AUTO_MIN_BYTES:
            return None
        if sample_ratio(array, codec, dtypes.ITEMSIZE[dtype_name]) < AUTO_MIN_RATIO:
            return None
    return codec


# -- decoding --------------------------------------------------------------------------------


def _declared_size(data: memoryview, where: str) -> int:
    zstd = zstandard()
    try:
        return int(zstd.frame_content_size(data))
    except zstd.ZstdError:
        raise FormatError(f"{where}: a stored frame is not a zstd frame") from None


def _check_header(data: memoryview, low: int, high: int, where: str) -> int:
    """The decoded size a zstd frame's header declares, which must lie in [low, high]
    (exactly the chunk's size for the dense codecs), read before anything is allocated."""
    declared = _declared_size(data, where)
    if not low <= declared <= high:
        allowed = f"declares {low}" if low == high else f"allows {low} to {high}"
        raise FormatError(
            f"{where}: a zstd frame declares {declared} decoded bytes where the manifest "
            f"{allowed}; the file is malformed (or a decompression bomb)"
        )
    return declared


def _decode_frame(data: memoryview, expected: int, where: str) -> bytes:
    zstd = zstandard()
    _check_header(data, expected, expected, where)
    try:
        out = _decompressor().decompress(data, max_output_size=expected, allow_extra_data=False)
    except zstd.ZstdError as exc:
        raise FormatError(f"{where}: a zstd frame does not decode ({exc})") from None
    if len(out) != expected:  # zstd checks the declared size; never trust it alone
        raise FormatError(f"{where}: a zstd frame decoded to {len(out)} bytes, not {expected}")
    return out


class Job:
    """Decoding one chunk of one tensor into its place in the output buffer."""

    __slots__ = ("codec", "frames", "itemsize", "out", "where")

    def __init__(
        self, codec: str, itemsize: int, out: memoryview, frames: list[memoryview], where: str
    ) -> None:
        self.codec, self.itemsize, self.out, self.frames, self.where = (
            codec,
            itemsize,
            out,
            frames,
            where,
        )

    def run(self) -> None:
        import numpy as np

        if self.codec in codecs.SPARSE_CODECS:
            self._scatter()
            return
        if self.codec != codecs.ZSTD_BYTEGROUP:
            self.out[:] = _decode_frame(self.frames[0], self.out.nbytes, self.where)
            return
        plane = self.out.nbytes // self.itemsize
        elements = np.frombuffer(self.out, np.uint8).reshape(plane, self.itemsize)
        for j, frame in enumerate(self.frames):
            elements[:, j] = np.frombuffer(_decode_frame(frame, plane, self.where), np.uint8)

    def _scatter(self) -> None:
        """Sparse chunk: the bitmask, then exactly as many elements as it has bits set,
        none of them all-zero (a zero element is encoded by its bit alone)."""
        import numpy as np

        size = self.itemsize
        count = self.out.nbytes // size
        mask_bytes, most = codecs.sparse_bound(self.out.nbytes, size)
        data: Any = self.frames[0]
        if self.codec == codecs.BITMASK_ZSTD:
            data = _decode_frame(
                data, _check_header(data, mask_bytes, most, self.where), self.where
            )
        data = np.frombuffer(data, np.uint8)
        kept = np.unpackbits(data[:mask_bytes], count=count, bitorder="little").astype(bool)
        values = data[mask_bytes:]
        padding = np.unpackbits(data[:mask_bytes], bitorder="little")[count:]
        if values.nbytes != int(kept.sum()) * size or padding.any():
            raise FormatError(
                f"{self.where}: a sparse frame's bitmask marks {int(kept.sum())} elements but "
                f"it holds {values.nbytes} bytes of values (or sets bits past the chunk)"
            )
        values = values.reshape(-1, size)
        if values.size and not values.any(axis=1).all():
            raise FormatError(
                f"{self.where}: a sparse frame stores an all-zero element under a set bit; "
                "zero elements must have their bit clear (the file is not canonical)"
            )
        elements = np.frombuffer(self.out, np.uint8).reshape(count, size)
        elements[:] = 0
        elements[kept] = values


def _chunks(
    stored: memoryview, nbytes: int, compression: codecs.Compression, itemsize: int
) -> Iterator[tuple[int, int, list[memoryview]]]:
    """(decoded start, decoded size, stored frames) of each chunk of one tensor."""
    per_chunk = codecs.frames_per_chunk(compression.codec, itemsize)
    position = index = start = 0
    for size in codecs.chunk_sizes(nbytes, compression.frame):
        frames = []
        for stored_size in compression.frames[index : index + per_chunk]:
            frames.append(stored[position : position + stored_size])
            position += stored_size
        index += per_chunk
        yield start, size, frames
        start += size


def check_headers(
    stored: memoryview, nbytes: int, compression: codecs.Compression, itemsize: int, where: str
) -> None:
    """One cheap sequential pass over every zstd frame header of a tensor: each declares
    the decoded size §10.1.3 requires. Runs before any output is allocated, so a file whose
    frames lie costs neither memory nor decoding work."""
    if compression.codec == codecs.BITMASK:
        return
    for _, size, frames in _chunks(stored, nbytes, compression, itemsize):
        if compression.codec == codecs.BITMASK_ZSTD:
            low, high = codecs.sparse_bound(size, itemsize)
        else:
            low = high = size // len(frames)
        for frame in frames:
            _check_header(frame, low, high, where)


def jobs(
    stored: memoryview, out: memoryview, compression: codecs.Compression, itemsize: int, where: str
) -> Iterator[Job]:
    """The chunk jobs decoding ``stored`` (the validated stored bytes) into ``out``,
    made one at a time as they are consumed."""
    for start, size, frames in _chunks(stored, out.nbytes, compression, itemsize):
        yield Job(compression.codec, itemsize, out[start : start + size], frames, where)


def run_jobs(work: Iterable[Job]) -> None:
    """Run decoding jobs, on a few threads, with at most two per thread in flight; the
    first error stops the run (jobs not started are dropped) and is raised once every
    started job has finished, so no thread still writes into a buffer."""
    count = threads()
    if count < 2:
        for job in work:
            job.run()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(count, "amber-decode") as pool:
        pending: deque[Any] = deque()
        try:
            for job in work:
                pending.append(pool.submit(job.run))
                while pending and (len(pending) >= 2 * count or pending[0].done()):
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _allocate(nbytes: int, name: str, where: str) -> Any:
    import numpy as np

    from amber.errors import InsufficientMemoryError

    try:
        return np.empty(nbytes, np.uint8)  # the declared size, nothing more
    except MemoryError:
        raise InsufficientMemoryError(
            f"{where}: not enough memory to decode tensor {name!r} ({nbytes} bytes); "
            "free memory, or load it on a machine with more"
        ) from None


def decode_payloads(items: list[tuple[Any, Any]], *, check: bool, where: str) -> dict[str, Any]:
    """Decode compressed tensors: ``items`` pairs a validated entry (with ``compression``)
    with its stored bytes. Returns a buffer of exactly ``entry.nbytes`` per name; with
    ``check``, CorruptFileError when decoded bytes do not match the entry's digest.
    Every frame header is checked before any buffer is allocated."""
    from amber.container import digest, dtypes
    from amber.errors import CorruptFileError

    if any(entry.compression.codec != codecs.BITMASK for entry, _ in items):
        zstandard()  # the install hint before anything else
    views = [(entry, memoryview(stored).cast("B")) for entry, stored in items]
    for entry, stored in views:
        check_headers(
            stored,
            entry.nbytes,
            entry.compression,
            dtypes.ITEMSIZE[entry.dtype],
            f"{where}: tensor {entry.name!r}",
        )
    out = {entry.name: _allocate(entry.nbytes, entry.name, where) for entry, _ in views}
    run_jobs(
        job
        for entry, stored in views
        for job in jobs(
            stored,
            memoryview(out[entry.name]),
            entry.compression,
            dtypes.ITEMSIZE[entry.dtype],
            f"{where}: tensor {entry.name!r}",
        )
    )
    if check:
        for entry, _ in items:
            if digest.hexdigest(memoryview(out[entry.name])) != entry.digest:
                raise CorruptFileError(
                    f"{where}: tensor {entry.name!r} decodes to bytes whose BLAKE3 digest "
                    "does not match the manifest; the file was altered; restore it from a "
                    "good copy"
                )
    return out
