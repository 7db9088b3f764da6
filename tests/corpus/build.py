"""Craft the invalid files of the conformance corpus from a valid one.

Apart from a few files that are not amber at all, every case is derived from
``valid/weights.amber`` by ``patch`` (overwrite bytes) or by slicing. Where a case changes
the manifest, ``with_manifest`` re-seals it (new length and BLAKE3 digest in the trailer),
so the check the case is about fires, not the digest.

The byte layout below is written down from the format specification on purpose instead of
being imported from amber: the corpus checks the reader against the spec.

``python -m tests.corpus.build DIR`` writes every case to DIR (for external fuzzers).
"""

from __future__ import annotations

import enum
import json
import pickle
import random
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from amber.errors import AmberError, CorruptFileError, FormatError, UnsupportedVersionError
from tests.corpus.samples import VALID_DIR

HEADER_SIZE = 64
TRAILER_SIZE = 64
ALIGNMENT = 64
# field -> (offset inside its 64-byte structure, struct format); all little-endian.
HEADER_FIELDS = {
    "magic": (0, "8s"),
    "major": (8, "<H"),
    "minor": (10, "<H"),
    "alignment": (12, "<I"),
    "flags": (16, "<I"),
    "reserved": (20, "44s"),
}
TRAILER_FIELDS = {
    "manifest_offset": (0, "<Q"),
    "manifest_length": (8, "<Q"),
    "manifest_digest": (16, "32s"),
    "major": (48, "<H"),
    "minor": (50, "<H"),
    "reserved": (52, "<I"),
    "magic": (56, "8s"),
}


class Check(enum.Enum):
    """Which part of the reader must refuse a file; decides which entry points raise."""

    STRUCTURE = "structure"  # header, trailer, manifest: every entry point refuses the file
    PAYLOAD = "payload"  # a tensor digest: full verification, and reading that tensor
    PADDING = "padding"  # alignment padding: full verification only
    GRAPH = "graph"  # the object graph: building the object (load)
    # A compressed payload that does not decode (format 1.1): every entry point that reads
    # that tensor, verified or not (decoding is never skipped).
    DECODE = "decode"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    error: type[AmberError]  # the exact class expected
    fragment: str  # part of the message that tells the user what is wrong
    check: Check = Check.STRUCTURE


# -- the patcher -----------------------------------------------------------------------------


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with the bytes at ``offset`` (negative: from the end) replaced by ``new``."""
    start = offset if offset >= 0 else len(data) + offset
    assert 0 <= start <= len(data) - len(new), "patch outside the file"
    return data[:start] + new + data[start + len(new) :]


def _set_fields(data: bytes, base: int, layout: dict[str, tuple[int, str]], **fields: Any) -> bytes:
    for name, value in fields.items():
        offset, fmt = layout[name]
        data = patch(data, base + offset, struct.pack(fmt, value))
    return data


def set_header(data: bytes, **fields: Any) -> bytes:
    return _set_fields(data, 0, HEADER_FIELDS, **fields)


def set_trailer(data: bytes, **fields: Any) -> bytes:
    return _set_fields(data, -TRAILER_SIZE, TRAILER_FIELDS, **fields)


def flip_bit(data: bytes, offset: int, bit: int = 0) -> bytes:
    return patch(data, offset, bytes([data[offset] ^ (1 << bit)]))


def manifest_span(data: bytes) -> tuple[int, int]:
    """(offset, length) of the manifest, as the trailer of a valid file declares them."""
    return struct.unpack_from("<QQ", data, len(data) - TRAILER_SIZE)


def manifest_bytes(data: bytes) -> bytes:
    offset, length = manifest_span(data)
    return data[offset : offset + length]


def manifest_of(data: bytes) -> dict[str, Any]:
    return json.loads(manifest_bytes(data))


def with_manifest(data: bytes, manifest: bytes) -> bytes:
    """Replace the manifest of a valid file and re-seal the trailer (length and digest)."""
    offset, length = manifest_span(data)
    resized = data[:offset] + manifest + data[offset + length :]
    return set_trailer(
        resized, manifest_length=len(manifest), manifest_digest=blake3(manifest).digest()
    )


def edit_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """Apply ``edit`` to the parsed manifest and re-seal it."""
    manifest = manifest_of(data)
    edit(manifest)
    return with_manifest(data, json.dumps(manifest, separators=(",", ":")).encode())


def prepend_key(data: bytes, text: bytes) -> bytes:
    """Insert raw JSON text (``"key":value,``) at the start of the manifest object."""
    manifest = manifest_bytes(data)
    return with_manifest(data, manifest[:1] + text + manifest[1:])


def edit_tensor(data: bytes, index: int, **fields: Any) -> bytes:
    """Set fields of manifest tensor entry ``index`` (``None`` deletes the field)."""

    def edit(manifest: dict[str, Any]) -> None:
        entry = manifest["tensors"][index]
        for key, value in fields.items():
            if value is None:
                del entry[key]
            else:
                entry[key] = value

    return edit_manifest(data, edit)


def add_root_item(data: bytes, key: str, node: Any) -> bytes:
    """Add ``node`` under ``key`` to the root dict node of the object graph."""
    return edit_manifest(data, lambda m: m["root"]["v"].__setitem__(key, node))


# -- the cases -------------------------------------------------------------------------------


def base_file() -> bytes:
    return (VALID_DIR / "weights.amber").read_bytes()


def _not_amber(base: bytes) -> Iterator[Case]:
    noise = random.Random(0).randbytes(4096)
    yield Case("empty_file", b"", FormatError, "not an amber file")
    yield Case("random_bytes", noise, FormatError, "not an amber file")
    yield Case("pickle_file", pickle.dumps({"w": [1.0]}), FormatError, "not an amber file")
    yield Case("wrong_magic", patch(base, 1, b"B"), FormatError, "magic bytes")
    yield Case("magic_only", base[:4], FormatError, "too small")


def _truncated(base: bytes) -> Iterator[Case]:
    manifest_offset, manifest_length = manifest_span(base)
    last = max((t for t in manifest_of(base)["tensors"] if t["nbytes"]), key=lambda t: t["offset"])
    payload_end = last["offset"] + last["nbytes"]
    assert payload_end % ALIGNMENT, "the base file must have padding after its last payload"
    cuts = {
        "inside_header": HEADER_SIZE // 2,
        "after_header": HEADER_SIZE,
        "inside_payload": last["offset"] + last["nbytes"] // 2,
        "at_payload_end": payload_end,
        "at_manifest_start": manifest_offset,
        "inside_manifest": manifest_offset + manifest_length // 2,
        "at_manifest_end": len(base) - TRAILER_SIZE,
        "inside_trailer": len(base) - TRAILER_SIZE // 2,
    }
    for where, size in cuts.items():
        yield Case(f"truncated_{where}", base[:size], CorruptFileError, "truncated")


def _appended(base: bytes) -> Iterator[Case]:
    yield Case("trailing_zero_bytes", base + bytes(10), CorruptFileError, "appended")
    yield Case("trailer_appended_twice", base + base[-64:], CorruptFileError, "appended")
    yield Case("two_files_concatenated", base + base, CorruptFileError, "appended")


def _header(base: bytes) -> Iterator[Case]:
    def versioned(major: int, minor: int) -> bytes:
        return set_trailer(set_header(base, major=major, minor=minor), major=major, minor=minor)

    yield Case("future_major_version", versioned(2, 0), UnsupportedVersionError, "upgrade amber")
    yield Case("future_minor_version", versioned(1, 2), UnsupportedVersionError, "format 1.2")
    yield Case("version_zero", versioned(0, 9), UnsupportedVersionError, "older than any")
    yield Case(
        "header_trailer_version_mismatch",
        set_trailer(base, minor=1),
        CorruptFileError,
        "trailer says 1.1",
    )
    yield Case("header_flags_nonzero", set_header(base, flags=1), FormatError, "reserved bytes")
    yield Case("header_reserved_nonzero", patch(base, 63, b"\x01"), FormatError, "reserved bytes")
    yield Case("alignment_not_power_of_two", set_header(base, alignment=96), FormatError, "power")
    yield Case("alignment_too_small", set_header(base, alignment=8), FormatError, "power of two")
    yield Case(
        "alignment_differs_from_layout",
        set_header(base, alignment=128),
        FormatError,
        "not a multiple of the alignment 128",
    )


def _trailer(base: bytes) -> Iterator[Case]:
    manifest_offset, _ = manifest_span(base)
    moved = set_trailer(
        base[:manifest_offset] + bytes(8) + base[manifest_offset:],
        manifest_offset=manifest_offset + 8,
    )
    yield Case("trailer_magic_wrong", patch(base, -1, b"X"), CorruptFileError, "amber trailer")
    yield Case(
        "trailer_reserved_nonzero", set_trailer(base, reserved=7), CorruptFileError, "reserved"
    )
    yield Case(
        "trailer_points_past_eof",
        set_trailer(base, manifest_offset=len(base) + 4096),
        CorruptFileError,
        "does not end where the trailer starts",
    )
    yield Case(
        "manifest_offset_inside_header",
        set_trailer(base, manifest_offset=0),
        CorruptFileError,
        "does not end where the trailer starts",
    )
    yield Case(
        "manifest_length_max",
        set_trailer(base, manifest_length=2**64 - 1),
        FormatError,
        "exceeds the limit",
    )
    yield Case("manifest_offset_misaligned", moved, FormatError, "not aligned")
    yield Case(
        "manifest_digest_wrong", flip_bit(base, -TRAILER_SIZE + 16), CorruptFileError, "digest"
    )
    yield Case(
        "manifest_byte_flipped", flip_bit(base, manifest_offset + 2), CorruptFileError, "digest"
    )


def _manifest_json(base: bytes) -> Iterator[Case]:
    def nested(depth: int) -> bytes:
        return b'{"deep":' + b"[" * depth + b"]" * depth + b"}"

    # case name -> (the whole manifest, message fragment)
    replaced = {
        "manifest_empty": (b"", "not valid JSON"),
        "manifest_not_json": (b"tensors: []", "not valid JSON"),
        "manifest_not_object": (b"[]", "must be a JSON object"),
        "manifest_nested_10000": (nested(10_000), "nested deeper"),
        "manifest_nested_300": (nested(300), "nested deeper"),
        "manifest_utf8_bom": (b"\xef\xbb\xbf" + manifest_bytes(base), "not valid JSON"),
    }
    # case name -> (raw JSON text put first in the manifest object, message fragment)
    prepended = {
        "manifest_invalid_utf8": (b'"note":"caf\xe9",', "not valid UTF-8"),
        "manifest_lone_surrogate": (b'"note":"\\ud800",', "surrogate"),
        "manifest_duplicate_key": (b'"root":null,', "'root' twice"),
        "manifest_nan": (b'"lr":NaN,', "NaN"),
        "manifest_infinity": (b'"lr":-Infinity,', "-Infinity"),
        "manifest_float_overflow": (b'"lr":1e400,', "out of the float64 range"),
        "manifest_huge_integer": (b'"n":' + b"9" * 5000 + b",", "more than 20 digits"),
    }
    for name, (manifest, fragment) in replaced.items():
        yield Case(name, with_manifest(base, manifest), FormatError, fragment)
    for name, (text, fragment) in prepended.items():
        yield Case(name, prepend_key(base, text), FormatError, fragment)
    yield Case(
        "manifest_without_tensors",
        edit_manifest(base, lambda m: m.pop("tensors")),
        FormatError,
        "no 'tensors' list",
    )
    yield Case(
        "manifest_reserved_key_shards",
        edit_manifest(base, lambda m: m.update(shards=[])),
        UnsupportedVersionError,
        "upgrade amber",
    )


def _tensor_entries(base: bytes) -> Iterator[Case]:
    tensors = manifest_of(base)["tensors"]
    first, second = tensors[0], tensors[1]
    last = max(range(len(tensors)), key=lambda i: (tensors[i]["offset"], tensors[i]["nbytes"]))
    empty = next(i for i, t in enumerate(tensors) if t["nbytes"] == 0)
    grown = tensors[last]["shape"][0] * 100
    # case name -> (index of the entry, fields to set (None deletes), message fragment)
    edits: dict[str, tuple[int, dict[str, Any], str]] = {
        "tensor_missing_key": (0, {"digest": None}, "missing keys ['digest']"),
        "tensor_unknown_key": (0, {"loader": "pickle"}, "unknown keys ['loader']"),
        "tensor_name_empty": (0, {"name": ""}, "non-empty string"),
        "tensor_name_too_long": (0, {"name": "x" * 1025}, "longer than 1024 bytes"),
        "duplicate_tensor_names": (1, {"name": first["name"]}, "appears twice"),
        "unknown_dtype": (0, {"dtype": "float128"}, "unknown tensor dtype 'float128'"),
        "dtype_not_a_string": (0, {"dtype": ["<f4"]}, "unknown tensor dtype"),
        "order_unknown": (0, {"order": "K"}, "'order' must be"),
        "digest_malformed": (0, {"digest": "md5:" + "0" * 32}, "'digest' must be"),
        "shape_not_a_list": (0, {"shape": 24}, "list of integers"),
        "negative_dimension": (0, {"shape": [-4, -6]}, "dimension that is not in"),
        "bool_in_shape": (0, {"shape": [True, 24]}, "dimension that is not in"),
        "float_in_shape": (0, {"shape": [4.0, 6]}, "dimension that is not in"),
        "rank_over_limit": (0, {"shape": [1] * 33}, "rank 33 exceeds"),
        "shape_product_overflow": (0, {"shape": [2**62, 2**62]}, "overflows a 64-bit size"),
        "empty_shape_overflow": (empty, {"shape": [0, 2**63 - 1]}, "overflows a 64-bit size"),
        "nbytes_mismatch": (0, {"nbytes": first["nbytes"] + 1}, "does not match shape"),
        "nbytes_negative": (0, {"nbytes": -96}, "'nbytes' must be"),
        "offset_bool": (0, {"offset": True}, "'offset' must be"),
        "offset_over_int64": (0, {"offset": 2**64}, "'offset' must be"),
        "offset_misaligned": (1, {"offset": second["offset"] + 8}, "not a multiple of the"),
        "offset_inside_header": (0, {"offset": 0}, "overlaps the header"),
        "offsets_overlap": (1, {"offset": first["offset"]}, "overlaps"),
        "offset_past_end_of_file": (last, {"offset": 1 << 40}, "past the data region"),
        "payload_past_data_region": (last, {"shape": [grown], "nbytes": grown}, "past the data"),
    }
    for name, (index, fields, fragment) in edits.items():
        yield Case(name, edit_tensor(base, index, **fields), FormatError, fragment)
    yield Case(
        "tensor_reserved_key",
        edit_tensor(base, 0, shard="part-1"),
        UnsupportedVersionError,
        "upgrade amber",
    )
    yield Case(
        "tensor_entry_not_object",
        edit_manifest(base, lambda m: m["tensors"].__setitem__(0, first["name"])),
        FormatError,
        "must be a JSON object",
    )
    yield Case(
        "tensor_dropped_from_manifest",
        edit_manifest(base, lambda m: m["tensors"].pop(last)),
        FormatError,
        "undeclared bytes",
    )


def _payload(base: bytes) -> Iterator[Case]:
    tensors = manifest_of(base)["tensors"]
    first, last = tensors[0], max(tensors, key=lambda t: t["offset"] + t["nbytes"])
    padding = last["offset"] + last["nbytes"]
    yield Case(
        "payload_bit_flipped",
        flip_bit(base, first["offset"] + 5, 3),
        CorruptFileError,
        f"tensor {first['name']!r} is corrupt",
        Check.PAYLOAD,
    )
    yield Case(
        "payload_last_byte_flipped",
        flip_bit(base, padding - 1, 7),
        CorruptFileError,
        f"tensor {last['name']!r} is corrupt",
        Check.PAYLOAD,
    )
    yield Case(
        "padding_nonzero",
        patch(base, padding, b"\x01"),
        CorruptFileError,
        f"padding bytes at offset {padding}",
        Check.PADDING,
    )


def _graph(base: bytes) -> Iterator[Case]:
    # case name -> (node added to the root dict, message fragment); all FormatError on load
    added = {
        "graph_unknown_kind": (
            {"k": "global", "module": "os", "name": "system"},
            "unknown node kind 'global'",
        ),
        "graph_object_with_unknown_keys": (
            {"k": "object", "module": "os", "name": "system"},
            "unknown keys ['module', 'name']",
        ),
        "graph_kind_not_a_string": ({"k": ["list"], "v": []}, "unknown node kind"),
        "graph_ref_to_missing_id": ({"k": "ref", "id": 7}, "reference to id 7"),
        "graph_missing_tensor": (
            {"k": "ndarray", "tensor": "no.such.tensor"},
            "'no.such.tensor', which is not in the file",
        ),
        "graph_unknown_node_key": ({"k": "list", "v": [], "call": "eval"}, "unknown keys ['call']"),
        "graph_float_node_holds_list": ({"k": "float", "v": []}, "float node must hold"),
        "graph_bad_base64": ({"k": "bytes", "b64": "!!"}, "not valid base64"),
        "graph_unhashable_set_element": (
            {"k": "set", "v": [{"k": "list", "v": []}]},
            "set element of type list is unhashable",
        ),
    }
    for name, (node, fragment) in added.items():
        yield Case(name, add_root_item(base, "x", node), FormatError, fragment, Check.GRAPH)
    yield Case(
        "graph_root_dict_values_not_object",
        edit_manifest(base, lambda m: m.__setitem__("root", {"k": "dict", "v": 5})),
        FormatError,
        "must be a JSON object",
        Check.GRAPH,
    )
    yield Case(
        "graph_root_missing",
        edit_manifest(base, lambda m: m.pop("root")),
        FormatError,
        "no amber object graph",
        Check.GRAPH,
    )
    yield Case(
        "graph_protocol_zero",
        edit_manifest(base, lambda m: m["amber"].__setitem__("graph_protocol", 0)),
        FormatError,
        "'amber.graph_protocol' must be",
        Check.GRAPH,
    )
    yield Case(
        "graph_protocol_future",
        edit_manifest(base, lambda m: m["amber"].__setitem__("graph_protocol", 2)),
        UnsupportedVersionError,
        "protocol 2 is newer",
        Check.GRAPH,
    )


# -- compressed payloads (format 1.1) ---------------------------------------------------------


def compressed_base() -> bytes:
    return (VALID_DIR / "weights_zstd.amber").read_bytes()


def stored_payloads(data: bytes) -> dict[str, bytes]:
    """The stored bytes of every tensor of a valid file, by name."""
    out = {}
    for t in manifest_of(data)["tensors"]:
        size = t["compression"]["nbytes"] if "compression" in t else t["nbytes"]
        out[t["name"]] = data[t["offset"] : t["offset"] + size]
    return out


def relaid(data: bytes, name: str, frames: list[bytes], **fields: Any) -> bytes:
    """``data`` with the compressed tensor ``name`` stored as ``frames`` (its compression
    block's sizes and stored digest made to match, ``fields`` set on that block), every
    payload laid out again by the spec (§2.4) and the manifest re-sealed: the stored bytes
    are authentic, so only decoding can find what is wrong."""
    manifest = manifest_of(data)
    payloads = stored_payloads(data)
    stored = b"".join(frames)
    payloads[name] = stored
    out = bytearray(data[:HEADER_SIZE])
    for t in manifest["tensors"]:
        out += bytes(-len(out) % ALIGNMENT)
        t["offset"] = len(out)
        out += payloads[t["name"]]
        if t["name"] == name:
            block = t["compression"]
            block.update(
                frames=[len(f) for f in frames],
                nbytes=len(stored),
                digest="blake3:" + blake3(stored).hexdigest(),
            )
            block.update(fields)
    out += bytes(-len(out) % ALIGNMENT)
    manifest["data_digest"] = "blake3:" + blake3(bytes(out[HEADER_SIZE:])).hexdigest()
    text = json.dumps(manifest, separators=(",", ":")).encode()
    trailer = struct.pack(
        "<QQ32sHHI8s", len(out), len(text), blake3(text).digest(), 1, 1, 0, b"AMBEREND"
    )
    return bytes(out) + text + trailer


def zstd_frame(data: bytes, *, content_size: bool = True) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=1, write_content_size=content_size).compress(data)


def frame_claiming(size: int) -> bytes:
    """A zstd frame whose header declares ``size`` decoded bytes (8-byte content size
    field, single segment) followed by one RLE block: a decompression bomb's header."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", size)
    block = (1 | (1 << 1) | (4 << 3)).to_bytes(3, "little") + b"\x00"  # last, RLE, 4 bytes
    return header + block


def _compressed(base: bytes) -> Iterator[Case]:
    """Format 1.1 files: compression blocks that break a rule, and authentic stored bytes
    that do not decode to what the manifest declares."""
    tensors = manifest_of(base)["tensors"]
    index = {t["name"]: i for i, t in enumerate(tensors)}
    weight = index["embed.weight"]  # float32 (4, 6): four byte planes of 24 bytes
    block = tensors[weight]["compression"]

    def edit_block(name: str, **fields: Any) -> bytes:
        def edit(manifest: dict[str, Any]) -> None:
            target = manifest["tensors"][index[name]]["compression"]
            for key, value in fields.items():
                if value is None:
                    del target[key]
                else:
                    target[key] = value

        return edit_manifest(base, edit)

    structural = {
        "compression_not_object": (
            edit_tensor(base, weight, compression="zstd"),
            "'compression' must be a JSON object",
        ),
        "compression_unknown_codec": (edit_block("embed.weight", codec="lz4"), "unknown codec"),
        "compression_bytegroup_on_integers": (
            edit_block("ids", codec="zstd-bytegroup", frames=[3, 3, 3, 3, 3, 3, 3, 4]),
            "only for floating-point tensors, not int64",
        ),
        "compression_missing_key": (
            edit_block("embed.weight", digest=None),
            "missing keys ['digest']",
        ),
        "compression_unknown_key": (
            edit_block("embed.weight", level=19),
            "unknown keys ['level']",
        ),
        "compression_frame_too_small": (edit_block("embed.weight", frame=4), "'frame' must be"),
        "compression_frame_not_item_multiple": (
            edit_block("embed.weight", frame=65538),
            "not a multiple of the item size",
        ),
        "compression_frames_count_wrong": (
            edit_block("embed.weight", frames=[*block["frames"], 1]),
            "'frames' must list 4 frame sizes",
        ),
        "compression_frames_not_a_list": (
            edit_block("embed.weight", frames=129),
            "'frames' must list",
        ),
        "compression_frame_over_bound": (
            edit_block("embed.weight", frames=[10**9, 33, 33, 30]),
            "declares 1000000000 stored bytes",
        ),
        "compression_frame_zero_bytes": (
            edit_block("embed.weight", frames=[0, 33, 33, 63]),
            "declares 0 stored bytes",
        ),
        "compression_nbytes_not_sum": (
            edit_block("embed.weight", nbytes=block["nbytes"] + 1),
            "must equal the sum of 'frames'",
        ),
        "compression_digest_malformed": (
            edit_block("embed.weight", digest="sha1:00"),
            "compression 'digest' must be",
        ),
        "compression_in_format_1_0": (
            set_trailer(set_header(base, minor=0), minor=0),
            "format 1.0 does not allow",
        ),
    }
    for name, (data, fragment) in structural.items():
        yield Case(name, data, FormatError, fragment)
    empty = edit_tensor(base, weight, shape=[0, 6], nbytes=0)
    yield Case("compression_of_empty_tensor", empty, FormatError, "empty tensor cannot be")

    planes = [bytes(range(24)), bytes(24), bytes([0x3E]) * 24, bytes(24)]
    good = [zstd_frame(p) for p in planes]
    decoding = {
        "frame_claims_more_than_declared": (
            [frame_claiming(1 << 40), *good[1:]],
            "declares 1099511627776 decoded bytes where the manifest declares 24",
        ),
        "frame_bomb_of_zeros": ([zstd_frame(bytes(1 << 20)), *good[1:]], "decompression bomb"),
        "frame_claims_less_than_declared": (
            [zstd_frame(bytes(8)), *good[1:]],
            "declares 8 decoded bytes",
        ),
        "frame_without_content_size": (
            [zstd_frame(planes[0], content_size=False), *good[1:]],
            "declares -1 decoded bytes",
        ),
        "frame_truncated": ([good[0][:-3], *good[1:]], "does not decode"),
        "frame_with_trailing_bytes": ([good[0] + b"\x00" * 5, *good[1:]], "does not decode"),
        "frame_not_zstd": ([bytes(24), *good[1:]], "is not a zstd frame"),
        "frames_of_two_chunks_in_one": (
            [zstd_frame(planes[0][:12]) + zstd_frame(planes[0][12:]), *good[1:]],
            "declares 12 decoded bytes",
        ),
    }
    for name, (frames, fragment) in decoding.items():
        yield Case(name, relaid(base, "embed.weight", frames), FormatError, fragment, Check.DECODE)
    # Sparse codecs (pruned weights): 24 elements, so a 3-byte bitmask, then the values.
    sparse = {
        "sparse_mask_marks_more_than_it_holds": (
            "embed.weight",
            "bitmask",
            [b"\xff\xff\xff" + bytes(40)],
            "bitmask marks 24 elements but it holds 40 bytes",
        ),
        "sparse_mask_sets_bits_past_the_chunk": (
            "fc.weight",  # float64 (2, 3): six elements, two spare bits in the mask
            "bitmask",
            [bytes([0b01000001]) + bytes(8)],
            "sets bits past the chunk",
        ),
        "sparse_zstd_frame_claims_more": (
            "embed.weight",
            "bitmask-zstd",
            [frame_claiming(1 << 30)],
            "allows 3 to 99",
        ),
        "sparse_zstd_frame_not_zstd": (
            "embed.weight",
            "bitmask-zstd",
            [b"\x00" * 20],
            "is not a zstd frame",
        ),
    }
    for name, (tensor, codec, frames, fragment) in sparse.items():
        data = relaid(base, tensor, frames, codec=codec)
        yield Case(name, data, FormatError, fragment, Check.DECODE)
    yield Case(
        "sparse_frame_over_bound",
        edit_block("embed.weight", codec="bitmask", frames=[129]),
        FormatError,
        "it must be an integer in [3, 99]",
    )
    # Authentic frames of other bytes: the decoded digest is what catches them.
    yield Case(
        "decoded_digest_mismatch",
        relaid(base, "embed.weight", good),
        CorruptFileError,
        "decodes to bytes whose BLAKE3 digest does not match",
        Check.PAYLOAD,
    )
    # A bit of the stored bytes flipped: the stored digest catches it before decoding.
    # (The last byte of "step" lies in a raw zstd block, so unverified loads still decode.)
    step = tensors[index["step"]]
    yield Case(
        "compressed_payload_bit_flipped",
        flip_bit(base, step["offset"] + step["compression"]["nbytes"] - 1, 0),
        CorruptFileError,
        "tensor 'step' is corrupt",
        Check.PAYLOAD,
    )


# -- quantized tensors (format 1.1) ------------------------------------------------------------


def quantized_base() -> bytes:
    return (VALID_DIR / "weights_int8.amber").read_bytes()


def with_payload(data: bytes, name: str, payload: bytes) -> bytes:
    """``data`` with the raw payload of ``name`` replaced by bytes of the same size, its
    digest and the data digest recomputed: authentic bytes holding other values."""
    manifest = manifest_of(data)
    entry = next(t for t in manifest["tensors"] if t["name"] == name)
    assert len(payload) == entry["nbytes"]
    data = patch(data, entry["offset"], payload)
    entry["digest"] = "blake3:" + blake3(payload).hexdigest()
    region = data[HEADER_SIZE : manifest_span(data)[0]]
    manifest["data_digest"] = "blake3:" + blake3(region).hexdigest()
    return with_manifest(data, json.dumps(manifest, separators=(",", ":")).encode())


def _quantized(base: bytes) -> Iterator[Case]:
    tensors = manifest_of(base)["tensors"]
    index = {t["name"]: i for i, t in enumerate(tensors)}
    weight = index["embed.weight"]  # int8 (4, 6) of float32, scales float32 (4, 1)

    def edit_block(name: str, **fields: Any) -> bytes:
        def edit(manifest: dict[str, Any]) -> None:
            target = manifest["tensors"][index[name]]["quantization"]
            for key, value in fields.items():
                if value is None:
                    del target[key]
                else:
                    target[key] = value

        return edit_manifest(base, edit)

    structural = {
        "quantization_not_object": (
            edit_tensor(base, weight, quantization="int8"),
            "'quantization' must be a JSON object",
        ),
        "quantization_missing_key": (edit_block("embed.weight", group=None), "missing keys"),
        "quantization_unknown_key": (edit_block("embed.weight", zero=0), "unknown keys"),
        "quantization_unknown_scheme": (
            edit_block("embed.weight", scheme="int3"),
            "unknown quantization scheme 'int3'",
        ),
        "quantization_stored_dtype_mismatch": (
            edit_block("embed.weight", scheme="int4"),
            "scheme 'int4' stores uint8, but the entry is int8",
        ),
        "quantization_loads_as_integer": (
            edit_block("embed.weight", dtype="int32"),
            "quantized tensors load as",
        ),
        "quantization_shape_mismatch": (
            edit_block("embed.weight", shape=[6, 4], group=4),
            "is stored with shape",
        ),
        "quantization_shape_one_dimension": (
            edit_block("embed.weight", shape=[24]),
            "must list 2 to 32 positive dimensions",
        ),
        "quantization_group_not_row": (
            edit_block("embed.weight", group=3),
            "has one scale per row",
        ),
        "quantization_group_zero": (edit_block("embed.weight", group=0), "'group' must be"),
        "quantization_scale_missing": (
            edit_block("embed.weight", scale="no.such.scale"),
            "scale tensor 'no.such.scale' is not in the file",
        ),
        "quantization_scale_wrong_shape": (
            edit_block("embed.weight", scale="fc.weight.__scale__"),
            "must be float32 of shape [4, 1], not float32 [2, 1]",
        ),
        "quantization_scale_wrong_dtype": (
            edit_block("fc.weight", scale="mask"),
            "must be float32 of shape [2, 1], not bool [2, 2]",
        ),
        "quantization_scale_is_quantized": (
            edit_block("embed.weight", scale="fc.weight"),
            "is itself quantized",
        ),
        "quantization_fortran_order": (
            edit_tensor(base, weight, order="F"),
            "a quantized tensor is stored in C order",
        ),
        "quantization_in_format_1_0": (
            set_trailer(set_header(base, minor=0), minor=0),
            "format 1.0 does not allow",
        ),
    }
    for name, (data, fragment) in structural.items():
        yield Case(name, data, FormatError, fragment)
    scales = {
        "scale_not_a_number": [1.0, float("nan"), 1.0, 1.0],
        "scale_infinite": [1.0, 1.0, float("inf"), 1.0],
        "scale_zero": [0.0, 1.0, 1.0, 1.0],
        "scale_negative": [1.0, 1.0, 1.0, -0.5],
    }
    for name, values in scales.items():
        payload = struct.pack("<4f", *values)
        yield Case(
            name,
            with_payload(base, "embed.weight.__scale__", payload),
            FormatError,
            "holds values that are not finite and positive",
            Check.DECODE,
        )


def cases(base: bytes | None = None) -> list[Case]:
    """Every invalid file of the corpus, crafted from ``base`` (default: weights.amber)."""
    base = base_file() if base is None else base
    groups = (
        _not_amber,
        _truncated,
        _appended,
        _header,
        _trailer,
        _manifest_json,
        _tensor_entries,
        _payload,
        _graph,
    )
    found = [case for group in groups for case in group(base)]
    found.extend(_compressed(compressed_base()))
    found.extend(_quantized(quantized_base()))
    names = [case.name for case in found]
    assert len(names) == len(set(names)), "case names must be unique"
    return found


def write_corpus(directory: Path) -> list[Path]:
    """Write every case to ``directory/NAME.amber``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in cases():
        path = directory / f"{case.name}.amber"
        path.write_bytes(case.data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    written = write_corpus(Path(sys.argv[1]))
    print(f"wrote {len(written)} files to {sys.argv[1]}")
