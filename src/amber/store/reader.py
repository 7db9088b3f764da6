"""Reading a stored version: the same interface as ``ContainerReader`` (``manifest``,
``entries``, ``array``, ``verify_all``), so that ``amber.api`` loads a version exactly as it
loads a file: trust audit, environment check, ``into=``, ``keys=``, ``device=``."""

from __future__ import annotations

import os
import threading
from typing import Any

from amber.container.reader import ContainerReader, Verify, check_verify_mode
from amber.errors import CorruptFileError
from amber.store.objects import (
    ObjectFiles,
    array_of,
    digest_of_buffer,
    hex_of,
    map_object,
    mismatch,
)
from amber.store.records import Record


class VersionReader:
    def __init__(
        self,
        record: Record,
        files: ObjectFiles,
        *,
        verify: Verify = "full",
        use_mmap: bool = True,
        writable: bool = True,
    ) -> None:
        check_verify_mode(verify)
        self.record = record
        self.path = f"{record.name}@{record.version}"
        self.verify_mode = verify
        self._files = files
        self._use_mmap = use_mmap
        self._writable = writable
        self._tensors = {t.entry.name: t for t in record.tensors}
        self.entries = {name: t.entry for name, t in self._tensors.items()}
        self._buffers: dict[str, Any] = {}
        self._decoded: dict[str, Any] = {}  # compressed tensors, decoded once
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self._pack: ContainerReader | None = None
        try:
            if verify == "full":  # every object is read: fetch a remote store's together
                files.prefetch(
                    [(record.pack, None)] * (record.pack is not None)
                    + [
                        (hex_of(t.entry.stored_digest), t.entry.stored_nbytes)
                        for t in record.tensors
                        if not t.in_pack
                    ]
                )
            if record.pack is not None:
                # "full" here too: the pack's data digest covers all its tensors in one pass.
                self._pack = ContainerReader(
                    files.path(record.pack),
                    verify="off" if verify == "off" else "full",
                    use_mmap=use_mmap,
                    writable=writable,
                    follow_symlinks=False,
                )
                self._check_pack()
            if verify == "full":
                self.verify_all()
        except BaseException:
            self.close()
            raise

    @property
    def manifest(self) -> dict[str, Any]:
        return self.record.manifest

    def _check_pack(self) -> None:
        assert self._pack is not None
        packed = [t for t in self._tensors.values() if t.in_pack]
        problem = mismatch(packed, {}, self._pack.entries)
        if problem:
            raise CorruptFileError(
                f"{self.path}: {problem}; the store was damaged; run store.check()"
            )

    def _buffer(self, name: str) -> Any:
        buffer = self._buffers.get(name)
        if buffer is None:
            entry = self.entries[name]
            path = self._files.path(hex_of(entry.stored_digest))
            buffer = map_object(
                path, entry.stored_nbytes, use_mmap=self._use_mmap, writable=self._writable
            )
            self._buffers[name] = buffer
        return buffer

    def verify_tensor(self, name: str) -> None:
        stored = self._tensors[name]
        digest = stored.entry.stored_digest
        fresh = not stored.in_pack and self._files.freshly_verified(hex_of(digest))
        if not stored.in_pack and not fresh and digest_of_buffer(self._buffer(name)) != digest:
            raise CorruptFileError(
                f"{self.path}: tensor {name!r} is corrupt in the store (its BLAKE3 digest "
                "does not match); run store.check() to list every damaged version"
            )
        with self._lock:
            self._verified.add(name)

    def verify_all(self) -> None:
        if self._pack is not None:
            self._pack.verify_all()
        pending = [n for n, t in self._tensors.items() if not t.in_pack and n not in self._verified]
        for name in pending:
            self._buffer(name)  # map first: mapping is not thread-safe here, hashing is
        if len(pending) < 2:
            for name in pending:
                self.verify_tensor(name)
        else:
            # Several objects at once: BLAKE3 releases the GIL, and objects under its
            # parallel threshold would otherwise be hashed one core at a time.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
                list(pool.map(self.verify_tensor, pending))
        # Compressed objects: their decoded digests too, whatever the number of objects.
        self._decode([n for n, t in self._tensors.items() if t.entry.compression is not None])

    def _decode(self, names: list[str]) -> None:
        """Decode these compressed tensors together (chunks on a few threads), checking
        their decoded digests unless verify is "off"."""
        from amber.container import zstd_codec

        todo = [self.entries[n] for n in names if n not in self._decoded]
        if not todo:
            return
        decoded = zstd_codec.decode_payloads(
            [(e, self._buffer(e.name)) for e in todo],
            check=self.verify_mode != "off",
            where=self.path,
        )
        for entry in todo:
            self._decoded.setdefault(entry.name, decoded[entry.name])
            self._buffers.pop(entry.name, None)

    def array(self, name: str, *, bits: bool = False, dequantize: bool = True) -> Any:
        stored = self._tensors[name]
        block = stored.entry.quantization
        if block is not None and dequantize:  # loaded = stored x scale (format 1.1)
            from amber.container import dtypes, quantized

            values = quantized.dequantize(
                self.array(name, bits=True, dequantize=False),
                self.array(block.scale, dequantize=False),
                block,
                f"{self.path}: tensor {name!r}",
            )
            if bits or block.dtype != "bfloat16":
                return values
            return values.view(dtypes.to_numpy("bfloat16"))
        if stored.in_pack:
            assert self._pack is not None
            # The pack's entries are raw (mismatch() refuses blocks there): only the
            # record's quantization block, applied above, is ever used.
            return self._pack.array(name, bits=bits, dequantize=False)
        if self.verify_mode == "lazy" and name not in self._verified:
            self.verify_tensor(name)
        if stored.entry.compression is not None:
            self._decode([name])
            return array_of(self._decoded[name], stored.entry, bits=bits)
        return array_of(self._buffer(name), stored.entry, bits=bits)

    def close(self) -> None:
        if self._pack is not None:
            self._pack.close()
        self._buffers.clear()  # mappings stay alive while arrays view them
        self._decoded.clear()
