"""Constants and fixed-size structures of the .amber container (see docs/format.md).

Bumping the format: change ``FORMAT_MINOR`` for additions an older reader of the same major
version can safely refuse with a clear message (new optional manifest keys), ``FORMAT_MAJOR``
for any change of the byte layout. Keep a fixture of every released version under
``tests/corpus/valid`` so old files stay readable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from amber.errors import CorruptFileError, FormatError, UnsupportedVersionError

FORMAT_MAJOR = 1
FORMAT_MINOR = 1

HEADER_MAGIC = b"\x89AMBER\r\n"
TRAILER_MAGIC = b"AMBEREND"
HEADER_SIZE = 64
TRAILER_SIZE = 64
DEFAULT_ALIGNMENT = 64
MIN_ALIGNMENT = 64
MAX_ALIGNMENT = 1 << 20

# Limits a reader enforces before allocating anything. Writers refuse to exceed them.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 256
MAX_TENSORS = 1 << 20
MAX_RANK = 32
MAX_NAME_BYTES = 1024
MAX_INT64 = (1 << 63) - 1

DIGEST_PREFIX = "blake3:"
DIGEST_HEX_LEN = 64

# "<" little endian: magic, major, minor, alignment, flags, 44 reserved bytes.
_HEADER = struct.Struct("<8sHHII44s")
# manifest offset, manifest length, manifest blake3, major, minor, reserved, magic.
_TRAILER = struct.Struct("<QQ32sHHI8s")
assert _HEADER.size == HEADER_SIZE
assert _TRAILER.size == TRAILER_SIZE


@dataclass(frozen=True)
class Header:
    major: int
    minor: int
    alignment: int

    def pack(self) -> bytes:
        return _HEADER.pack(HEADER_MAGIC, self.major, self.minor, self.alignment, 0, bytes(44))

    @classmethod
    def unpack(cls, raw: bytes) -> Header:
        if len(raw) < HEADER_SIZE or not raw.startswith(HEADER_MAGIC):
            raise FormatError(
                "not an amber file: it does not start with the amber magic bytes; "
                "check the path (amber reads only files written by amber.save)"
            )
        _, major, minor, alignment, flags, reserved = _HEADER.unpack(raw[:HEADER_SIZE])
        check_version(major, minor)
        if flags != 0 or reserved != bytes(44):
            raise FormatError(
                "amber header has non-zero reserved bytes; the file was not written by a "
                f"format {major}.{minor} writer"
            )
        if not (MIN_ALIGNMENT <= alignment <= MAX_ALIGNMENT) or alignment & (alignment - 1):
            raise FormatError(
                f"amber header declares alignment {alignment}; it must be a power of two "
                f"between {MIN_ALIGNMENT} and {MAX_ALIGNMENT}"
            )
        return cls(major, minor, alignment)


@dataclass(frozen=True)
class Trailer:
    manifest_offset: int
    manifest_length: int
    manifest_digest: bytes
    major: int
    minor: int

    def pack(self) -> bytes:
        return _TRAILER.pack(
            self.manifest_offset,
            self.manifest_length,
            self.manifest_digest,
            self.major,
            self.minor,
            0,
            TRAILER_MAGIC,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Trailer:
        offset, length, digest, major, minor, reserved, magic = _TRAILER.unpack(raw)
        if magic != TRAILER_MAGIC:
            raise CorruptFileError(
                "the file does not end with an amber trailer: it was truncated, is still "
                "being written, or has bytes appended; re-copy or re-save it"
            )
        if reserved != 0:
            raise CorruptFileError("amber trailer has non-zero reserved bytes; re-save the file")
        return cls(offset, length, digest, major, minor)


def check_version(major: int, minor: int) -> None:
    """Refuse files this reader cannot read, naming the version they need."""
    if major != FORMAT_MAJOR or minor > FORMAT_MINOR:
        raise UnsupportedVersionError(
            f"file uses amber format {major}.{minor}; this amber reads format "
            f"{FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR}; "
            + (
                "upgrade amber (pip install -U amber) to read it"
                if (major, minor) > (FORMAT_MAJOR, FORMAT_MINOR)
                else "it is older than any format this amber reads"
            )
        )


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)
