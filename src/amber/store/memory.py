"""An in-memory backend: for tests and for throwaway stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from amber.store.backend import Backend, Data, Stat, check_key


def _materialize(data: Data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, Path):
        content = data.read_bytes()
        data.unlink()
        return content
    return b"".join(bytes(chunk) for chunk in data)


class MemoryBackend(Backend):
    """Blobs in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, tuple[bytes, float]] = {}

    def get(self, key: str) -> bytes | None:
        entry = self._blobs.get(check_key(key))
        return None if entry is None else entry[0]

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        blob = self.get(key)
        return None if blob is None else blob[offset : offset + length]

    def put_if_absent(self, key: str, data: Data) -> bool:
        check_key(key)
        content = _materialize(data)
        with self._lock:
            if key in self._blobs:
                return False
            self._blobs[key] = (content, time.time())
            return True

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        check_key(key)
        with self._lock:
            current = self._blobs.get(key)
            if (current[0] if current else None) != expected:
                return False
            if new is None:
                self._blobs.pop(key, None)
            else:
                self._blobs[key] = (new, time.time())
            return True

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = [k for k in self._blobs if k.startswith(prefix)]
        return iter(keys)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._blobs.pop(check_key(key), None) is not None

    def stat(self, key: str) -> Stat | None:
        entry = self._blobs.get(check_key(key))
        return None if entry is None else Stat(len(entry[0]), entry[1])

    def touch(self, key: str) -> bool:
        with self._lock:
            entry = self._blobs.get(check_key(key))
            if entry is None:
                return False
            self._blobs[key] = (entry[0], time.time())
            return True

    def delete_if_older(self, key: str, limit: float) -> int | None:
        with self._lock:
            entry = self._blobs.get(check_key(key))
            if entry is None or entry[1] >= limit:
                return None
            del self._blobs[key]
            return len(entry[0])

    def set_mtime(self, key: str, mtime: float) -> None:
        """For tests: pretend a blob was written at ``mtime``."""
        with self._lock:
            self._blobs[key] = (self._blobs[key][0], mtime)
