"""Content-addressed objects: tensor payloads, and one pack per version for small tensors.

A tensor of at least ``PACK_MIN_BYTES`` is stored as its raw payload bytes (exactly what an
.amber file holds for it) under ``objects/<2 hex>/<BLAKE3 hex of the payload>``: a tensor
identical to one already stored is not stored again, and a local store maps the object
file directly (zero-copy). Smaller tensors of a version go together into one pack, itself an
.amber container without an object graph, stored under the BLAKE3 of its bytes: thousands of
small arrays (a forest's nodes) then cost one file, not thousands.

Whole tensors, not chunks, are the unit of deduplication: see docs/store.md ("Dedup") for
the measurements behind that choice.

A version saved with ``compress=`` stores a compressed tensor's frames (format 1.1,
docs/format.md §10.1) as the object, under the BLAKE3 of those stored bytes, so that every
object is still named by the digest of its bytes (check, caches and gc are unchanged). The
version's record keeps the tensor's decoded digest and its ``compression`` block. Before
compressing a tensor, the store looks for the raw object of its decoded digest and, when a
version already holds it, refers to that object instead: compressing a version does not
duplicate unchanged tensors (docs/store.md, "Compressed versions").
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container import codecs, dtypes, zstd_codec
from amber.container.codecs import DEFAULT_FRAME_BYTES, Compression
from amber.container.codecs import parse as parse_compression
from amber.container.digest import hasher
from amber.container.format import DIGEST_PREFIX
from amber.container.manifest import TensorEntry
from amber.container.quantized import Quantization
from amber.container.writer import TensorItem, check_array, iter_chunks, payload_order, write
from amber.errors import CorruptFileError, ReadError, StoreError
from amber.store.backend import Backend
from amber.store.cache import ObjectCache
from amber.store.local import store_error

if TYPE_CHECKING:
    import numpy as np

PACK_MIN_BYTES = 64 << 10  # tensors below this size go into the version's pack


def object_key(hexdigest: str) -> str:
    return f"objects/{hexdigest[:2]}/{hexdigest}"


def hex_of(digest: str) -> str:
    return digest.removeprefix(DIGEST_PREFIX)


@dataclass(frozen=True)
class StoredTensor:
    """Where a tensor of a version lives: its own object, or the version's pack."""

    entry: TensorEntry  # name, dtype, shape, order, nbytes, digest (offset unused)
    in_pack: bool

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        out = {
            "name": e.name,
            "dtype": e.dtype,
            "shape": list(e.shape),
            "order": e.order,
            "nbytes": e.nbytes,
            "digest": e.digest,
        }
        if self.in_pack:
            out["pack"] = True
        if e.compression is not None:
            out["compression"] = e.compression.to_json()
        if e.quantization is not None:
            out["quantization"] = e.quantization.to_json()
        return out


def objects_of(stored: Iterable[StoredTensor], pack: str | None) -> set[str]:
    """Hex digests of the objects a version with these tensors and this pack references."""
    out = {hex_of(t.entry.stored_digest) for t in stored if not t.in_pack}
    if pack:
        out.add(pack)
    return out


def mismatch(
    tensors: Iterable[StoredTensor],
    sizes: Mapping[str, int | None],
    packed: Mapping[str, TensorEntry] | None,
) -> str | None:
    """Why a version's tensor list does not fit its objects (``sizes``: object hex digest
    to its size) and its pack's entries; None when it fits."""
    for stored in tensors:
        e = stored.entry
        if stored.in_pack:
            p = (packed or {}).get(e.name)
            if p is None or (p.digest, p.dtype, p.shape, p.order) != (
                e.digest,
                e.dtype,
                e.shape,
                e.order,
            ):
                return f"tensor {e.name!r} is not in its pack as recorded"
            # Packs are written raw: a quantization or compression block belongs to the
            # version record alone, and one in the pack would be applied on top of it.
            if p.quantization is not None or p.compression is not None:
                return (
                    f"tensor {e.name!r} carries a quantization or compression block in its "
                    "pack (packs hold raw tensors only)"
                )
        elif sizes.get(hex_of(e.stored_digest)) != e.stored_nbytes:
            found = sizes.get(hex_of(e.stored_digest))
            return f"tensor {e.name!r} needs {e.stored_nbytes} bytes, its object holds {found}"
    return None


def decoded_problem(entry: TensorEntry, stored: Any) -> str | None:
    """Why a compressed object ``stored`` (its stored digest already checked) does not
    decode to the decoded digest its record claims; None when it does. Decodes the whole
    tensor into memory (its decoded size), once."""
    from amber.errors import FormatError

    try:
        zstd_codec.decode_payloads([(entry, stored)], check=True, where="object")
    except (FormatError, CorruptFileError) as exc:
        detail = "does not decode" if isinstance(exc, FormatError) else "decodes to other bytes"
        return (
            f"tensor {entry.name!r}: its compressed object {hex_of(entry.stored_digest)[:16]}... "
            f"{detail} than its version records (decoded digest)"
        )
    return None


def _normalized(item: TensorItem) -> tuple[str, Any, str]:
    name, array, declared = item if len(item) == 3 else (*item, None)
    if callable(array):
        array = array()
    return name, array, check_array(name, array, declared)


def _scratch(backend: Backend) -> Path:
    make = getattr(backend, "temporary_file", None)
    if make is not None:
        return make()
    fd, name = tempfile.mkstemp(prefix="amber-pack-")
    os.close(fd)
    return Path(name)


def put_tensors(
    backend: Backend,
    items: Iterable[TensorItem],
    compress: str | None = None,
    quantized: Mapping[str, Quantization] | None = None,
    sparse: Iterable[str] = (),
) -> tuple[list[StoredTensor], str | None, int]:
    """Store every tensor; returns their records, the pack's hex digest (None without small
    tensors), and the number of payload bytes actually written (not deduplicated).
    ``compress`` as for ``amber.save``; the small tensors of the pack stay raw.
    ``quantized``: the quantization blocks of tensors holding quantized values (kept in
    the version's record; a pack holds such a tensor's stored values as they are).
    ``sparse``: pruned tensors, stored with the bitmask codecs (outside the pack)."""
    quantized = quantized or {}
    sparse = frozenset(sparse)
    stored: list[StoredTensor] = []
    small: list[tuple[str, Any, str]] = []
    position: dict[str, int] = {}
    written = 0
    for item in items:
        name, array, dtype_name = _normalized(item)
        position[name] = len(position)
        if array.nbytes < PACK_MIN_BYTES:
            small.append((name, array, dtype_name))
            continue
        order = payload_order(array)
        h = hasher(array.nbytes)
        for chunk in iter_chunks(array, order):
            h.update(chunk)
        digest = h.hexdigest()
        key = object_key(digest)
        codec = None if compress is None else zstd_codec.choose(array, dtype_name, compress)
        if name in sparse:
            codec = codecs.BITMASK if compress is None else codecs.BITMASK_ZSTD
        compression = None
        # touch: an existing object is refreshed so that a concurrent gc keeps it. A raw
        # object of the same decoded bytes is used even when compressing (dedup).
        if backend.touch(key):
            pass
        elif codec is not None:
            compression, stored_written = _put_compressed(backend, array, order, dtype_name, codec)
            written += stored_written
        elif backend.put_if_absent(key, iter_chunks(array, order)):
            written += array.nbytes
        entry = TensorEntry(
            name,
            dtype_name,
            tuple(array.shape),
            order,
            0,
            array.nbytes,
            DIGEST_PREFIX + digest,
            compression,
            quantized.get(name),
        )
        stored.append(StoredTensor(entry, in_pack=False))
    pack = None
    if small:
        pack, pack_entries, pack_written = _put_pack(backend, small)
        written += pack_written
        stored.extend(
            StoredTensor(dataclasses.replace(e, quantization=quantized.get(e.name)), in_pack=True)
            for e in pack_entries
        )
    return sorted(stored, key=lambda t: position[t.entry.name]), pack, written


def _put_compressed(
    backend: Backend, array: np.ndarray, order: str, dtype_name: str, codec: str
) -> tuple[Compression, int]:
    """Store the frames of ``array`` as one object named by their digest; returns the
    compression block and the bytes written (0 when that object already existed)."""
    from concurrent.futures import ThreadPoolExecutor

    itemsize = dtypes.ITEMSIZE[dtype_name]
    scratch = _scratch(backend)
    try:
        stored, sizes = hasher(0), []
        try:
            with scratch.open("wb") as f, ThreadPoolExecutor(zstd_codec.threads()) as pool:
                chunks = zstd_codec.exact_chunks(iter_chunks(array, order), DEFAULT_FRAME_BYTES)
                for _, frames in zstd_codec.encode(chunks, codec, itemsize, pool):
                    for frame in frames:
                        f.write(frame)
                        stored.update(frame)
                        sizes.append(len(frame))
        except OSError as exc:
            raise store_error("write", "a compressed tensor to the store", exc) from None
        digest = stored.hexdigest()
        key = object_key(digest)
        created = not backend.touch(key) and backend.put_if_absent(key, scratch)
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()
    block = {
        "codec": codec,
        "nbytes": sum(sizes),
        "digest": DIGEST_PREFIX + digest,
        "frame": DEFAULT_FRAME_BYTES,
        "frames": sizes,
    }
    compression = parse_compression(
        block, dtype=dtype_name, itemsize=itemsize, decoded=array.nbytes, where=repr(key)
    )
    return compression, compression.nbytes if created else 0


def _put_pack(backend: Backend, small: list[tuple[str, Any, str]]) -> tuple[str, list, int]:
    scratch = _scratch(backend)
    try:
        try:
            result = write(scratch, small)
        except OSError as exc:  # WriteError about a private temporary file
            code = exc.errno or 0
            reason = os.strerror(code) if code else str(exc)
            raise store_error(
                "write", "the small tensors to the store", OSError(code, reason)
            ) from None
        h = hasher(result.size)
        with scratch.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        digest = h.hexdigest()
        key = object_key(digest)
        created = not backend.touch(key) and backend.put_if_absent(key, scratch)
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()
    return digest, list(result.tensors), result.size if created else 0


class ObjectFiles:
    """Local files for objects: the backend's own files when it has them, else verified
    copies in an object cache (``amber.store.cache``), mapped from there."""

    def __init__(self, backend: Backend, cache: Path | None) -> None:
        self.backend = backend
        self.cache = None if cache is None else ObjectCache(cache)
        self.local = backend.has_local_files
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def path(self, digest_hex: str) -> Path:
        if self.closed:
            raise StoreError("the store is closed; open it again")
        key = object_key(digest_hex)
        local = self.backend.local_path(key)
        if local is not None:
            if not local.exists():
                raise StoreError(
                    f"object {digest_hex[:16]}... is missing from the store; run "
                    "store.check() to find the versions affected"
                )
            return local
        assert self.cache is not None
        return self.cache.fetch(self.backend, key, digest_hex)

    def freshly_verified(self, digest_hex: str) -> bool:
        """Whether this store just downloaded the object into its cache, checking its
        digest as the bytes arrived. Answered True once per download: the load that
        follows it skips a second hash, any later load hashes the cached file again."""
        if self.cache is None or self.local or digest_hex not in self.cache.fresh:
            return False
        self.cache.fresh.discard(digest_hex)
        return True

    def prefetch(self, objects: Iterable[tuple[str, int | None]]) -> None:
        """Bring the objects ``(hex digest, size or None)`` into the cache together (their
        parts downloaded in parallel) when the backend has no local files; else nothing."""
        if self.closed:
            raise StoreError("the store is closed; open it again")
        if self.cache is None or self.local:
            return
        self.cache.fetch_many(
            self.backend, [(object_key(h), h, size) for h, size in dict(objects).items()]
        )


def map_object(path: Path, nbytes: int, *, use_mmap: bool, writable: bool) -> Any:
    """The bytes of an object file: a private (copy-on-write) or read-only mapping, or a
    private copy in memory."""
    try:
        # Never through a link: a store's objects are its own files (LocalBackend).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != nbytes:
                raise CorruptFileError(
                    f"{path}: object holds {size} bytes, its version expects {nbytes}; the "
                    "store was damaged; run store.check()"
                )
            if nbytes == 0:
                return bytearray()
            if not use_mmap:
                return bytearray(f.read())
            access = mmap.ACCESS_COPY if writable else mmap.ACCESS_READ
            return mmap.mmap(f.fileno(), 0, access=access)
    except OSError as exc:
        raise ReadError(f"cannot read object {path}: {exc.strerror or exc}") from None


def array_of(buffer: Any, entry: TensorEntry, *, bits: bool = False) -> np.ndarray:
    """The tensor ``entry`` over ``buffer`` (its payload), as ContainerReader gives it."""
    import numpy as np

    if bits and entry.dtype not in dtypes.NUMPY_DTYPES:
        dtype = np.dtype(f"<u{dtypes.ITEMSIZE[entry.dtype]}")
    else:
        dtype = dtypes.to_numpy(entry.dtype)
    if entry.nbytes == 0:
        return np.zeros(entry.shape, dtype=dtype, order=entry.order)
    return np.ndarray(entry.shape, dtype, buffer=buffer, order=entry.order)


def digest_of_buffer(buffer: Any) -> str:
    view = memoryview(buffer)
    try:
        h = hasher(view.nbytes)
        h.update(view)
        return DIGEST_PREFIX + h.hexdigest()
    finally:
        view.release()
