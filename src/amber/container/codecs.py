"""The closed table of per-tensor codecs (format 1.1) and validation of a tensor entry's
``compression`` block, before anything is allocated from it (docs/format.md, §10.1).

This module only declares and checks; encoding and decoding live in ``zstd_codec`` (which
imports the zstandard package, lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amber.container.format import DIGEST_HEX_LEN, DIGEST_PREFIX, MAX_INT64
from amber.errors import FormatError

ZSTD = "zstd"
ZSTD_BYTEGROUP = "zstd-bytegroup"
# Sparse payloads (pruned weights): per chunk, a bitmask of the non-zero elements (bit i of
# byte i // 8, least significant first) followed by those elements; "bitmask-zstd" stores
# that stream as one zstd frame per chunk.
BITMASK = "bitmask"
BITMASK_ZSTD = "bitmask-zstd"
SPARSE_CODECS = (BITMASK, BITMASK_ZSTD)
CODECS = (ZSTD, ZSTD_BYTEGROUP, *SPARSE_CODECS)
# Byte grouping splits each element into its bytes; it pays only for floating-point types,
# whose high bytes (sign and exponent) repeat a few values while the low bytes look random.
BYTEGROUP_DTYPES = frozenset(
    {"float16", "bfloat16", "float32", "float64", "complex64", "complex128"}
)
# Decoded bytes per chunk (the last chunk of a tensor may be shorter): bounds the memory a
# frame can ask for and lets chunks be encoded and decoded in parallel.
MIN_FRAME_BYTES = 1 << 16
MAX_FRAME_BYTES = 1 << 26
DEFAULT_FRAME_BYTES = 1 << 22

_KEYS = {"codec", "nbytes", "digest", "frame", "frames"}


def frame_bound(decoded: int) -> int:
    """The most stored bytes a frame decoding to ``decoded`` bytes may take (zstd's worst
    case expansion of incompressible input is far below this)."""
    return decoded + (decoded >> 8) + 1024


# zstd's densest encoding: an RLE block of 3 header bytes and 1 byte of content regenerates
# at most Block_Maximum_Size = 128 KiB (RFC 8878, 3.1.1.2), so a frame never decodes to more
# than 32768 times its stored size (a frame header adds at least 6 bytes more).
MAX_ZSTD_RATIO = (128 << 10) // 4


def frame_floor(decoded: int) -> int:
    """The fewest stored bytes a zstd frame decoding to ``decoded`` bytes can take: a tiny
    file cannot declare a huge decoded size."""
    return max(1, -(-decoded // MAX_ZSTD_RATIO))


def sparse_bound(decoded: int, itemsize: int) -> tuple[int, int]:
    """(mask bytes, most bytes) of the sparse stream of a chunk of ``decoded`` bytes."""
    mask = -(-(decoded // itemsize) // 8)
    return mask, mask + decoded


def stored_bounds(codec: str, decoded: int, itemsize: int) -> tuple[int, int]:
    """The fewest and most stored bytes a frame decoding to ``decoded`` bytes may take."""
    if codec == BITMASK:
        return sparse_bound(decoded, itemsize)
    if codec == BITMASK_ZSTD:
        mask, most = sparse_bound(decoded, itemsize)
        return frame_floor(mask), frame_bound(most)
    return frame_floor(decoded), frame_bound(decoded)


def frames_per_chunk(codec: str, itemsize: int) -> int:
    """zstd: one frame per chunk; zstd-bytegroup: one per byte of the element."""
    return itemsize if codec == ZSTD_BYTEGROUP else 1


def chunk_sizes(nbytes: int, frame: int) -> list[int]:
    """Decoded size of each chunk of a payload of ``nbytes``."""
    full, rest = divmod(nbytes, frame)
    return [frame] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class Compression:
    """A validated ``compression`` block: how the stored bytes of one tensor decode."""

    codec: str
    nbytes: int  # stored bytes (the sum of ``frames``)
    digest: str  # BLAKE3 of the stored bytes
    frame: int  # decoded bytes per chunk
    frames: tuple[int, ...]  # stored size of each zstd frame, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "nbytes": self.nbytes,
            "digest": self.digest,
            "frame": self.frame,
            "frames": list(self.frames),
        }


def _is_digest(value: object) -> bool:
    return (
        type(value) is str
        and len(value) == len(DIGEST_PREFIX) + DIGEST_HEX_LEN
        and value.startswith(DIGEST_PREFIX)
        and all(c in "0123456789abcdef" for c in value[len(DIGEST_PREFIX) :])
    )


def parse(raw: object, *, dtype: str, itemsize: int, decoded: int, where: str) -> Compression:
    """Validate the ``compression`` block of an entry whose payload decodes to ``decoded``
    bytes of ``dtype``; FormatError naming what is wrong."""
    if not isinstance(raw, dict):
        raise FormatError(f"{where}: 'compression' must be a JSON object")
    missing, extra = _KEYS - raw.keys(), raw.keys() - _KEYS
    if missing or extra:
        raise FormatError(
            f"{where}: 'compression' has missing keys {sorted(missing)} / unknown keys "
            f"{sorted(extra)}"
        )
    codec = raw["codec"]
    if codec not in CODECS:
        raise FormatError(f"{where}: unknown codec {codec!r}; this amber knows {', '.join(CODECS)}")
    if codec == ZSTD_BYTEGROUP and dtype not in BYTEGROUP_DTYPES:
        raise FormatError(
            f"{where}: codec {codec!r} is only for floating-point tensors, not {dtype}"
        )
    if decoded == 0:
        raise FormatError(f"{where}: an empty tensor cannot be compressed")
    frame = raw["frame"]
    if type(frame) is not int or not MIN_FRAME_BYTES <= frame <= MAX_FRAME_BYTES:
        raise FormatError(
            f"{where}: 'frame' must be an integer in [{MIN_FRAME_BYTES}, {MAX_FRAME_BYTES}], "
            f"got {frame!r}"
        )
    if frame % itemsize:
        raise FormatError(f"{where}: 'frame' {frame} is not a multiple of the item size")
    frames = raw["frames"]
    per_chunk = frames_per_chunk(codec, itemsize)
    # Checked before the list is walked: its length follows from declared sizes alone.
    chunks = -(-decoded // frame)
    if not isinstance(frames, list) or len(frames) != chunks * per_chunk:
        raise FormatError(
            f"{where}: 'frames' must list {chunks * per_chunk} frame sizes "
            f"({chunks} chunks of {frame} bytes x {per_chunk})"
        )
    for index, size in enumerate(chunk_sizes(decoded, frame)):
        low, high = stored_bounds(codec, size // per_chunk, itemsize)
        for stored in frames[index * per_chunk : (index + 1) * per_chunk]:
            if type(stored) is not int or not low <= stored <= high:
                raise FormatError(
                    f"{where}: a frame of chunk {index} declares {stored!r} stored bytes; "
                    f"it must be an integer in [{low}, {high}]"
                )
    nbytes = raw["nbytes"]
    if type(nbytes) is not int or not 0 <= nbytes <= MAX_INT64 or nbytes != sum(frames):
        raise FormatError(
            f"{where}: compression 'nbytes' {nbytes!r} must equal the sum of 'frames'"
        )
    if not _is_digest(raw["digest"]):
        raise FormatError(
            f"{where}: compression 'digest' must be 'blake3:' followed by 64 lowercase hex digits"
        )
    return Compression(codec, nbytes, raw["digest"], frame, tuple(frames))
