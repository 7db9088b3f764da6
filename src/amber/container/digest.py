"""BLAKE3 digests of payloads and manifests.

One cryptographic digest serves corruption checks, content addressing in the store and
signing (docs/format.md, "Digests", has the measurements behind this choice). Hashing
releases the GIL and uses every core for large buffers, so it overlaps with I/O.
"""

from __future__ import annotations

from blake3 import blake3

from amber.container.format import DIGEST_PREFIX

# Below this size the thread fan-out costs more than it saves.
PARALLEL_MIN_BYTES = 1 << 20


def hasher(size_hint: int = 0) -> blake3:
    if size_hint >= PARALLEL_MIN_BYTES:
        return blake3(max_threads=blake3.AUTO)
    return blake3()


def hexdigest(data: memoryview | bytes | bytearray) -> str:
    """The tagged digest ('blake3:<hex>') of a buffer."""
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size < PARALLEL_MIN_BYTES:  # the common case of many small tensors: one call
        return DIGEST_PREFIX + blake3(data).hexdigest()
    h = hasher(size)
    h.update(data)
    return DIGEST_PREFIX + h.hexdigest()


def raw_digest(data: bytes) -> bytes:
    return blake3(data).digest()


def tag(h: blake3) -> str:
    return DIGEST_PREFIX + h.hexdigest()
