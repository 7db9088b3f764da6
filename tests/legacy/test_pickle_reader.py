"""The pickle reader: benign values of protocols 0-5 come back equal to ``pickle.loads``;
malformed or unsupported streams are refused with a typed error naming the byte offset."""

from __future__ import annotations

import collections
import functools
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.errors import AmberError, FormatError
from amber.legacy.pickle_vm import Limits, PickleError, read_pickle
from amber.legacy.reader import load, parse_bytes
from amber.legacy.translate import Refused, Translator
from tests.adapters.compare import assert_same

VALUES: dict[str, Any] = {
    "builtins": {
        "list": [1, 2.5, None, True, False, "é", -(2**70)],
        "tuple": (1, ("nested", ())),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff" * 3,
        "big_bytes": bytes(range(256)) * 40,
        "bytearray": bytearray(b"xyz"),
        "nan": float("nan"),
        "inf": float("-inf"),
        "complex": complex(1.5, -2),
        "int_keys": {1: "a", (2, 3): "b"},
    },
    "float_array": np.arange(12.0).reshape(3, 4),
    "fortran_array": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
    "empty_array": np.zeros((0, 3)),
    "bool_array": np.array([True, False]),
    "string_array": np.array(["a", "bcd"]),
    "object_array": np.array([1, "x", None], dtype=object),
    "record_array": np.array([(1, 2.0)], dtype=[("x", "<i4"), ("y", "<f8")]),
    "big_endian": np.arange(3, dtype=">f8"),
    "datetime": np.array(["2020-01-01", "2021-06-01"], dtype="datetime64[D]"),
    "scalars": [np.float32(3.5), np.int64(-7), np.bool_(True), np.str_("s")],
    "dtype": np.dtype("float64"),
    "ordered_dict": collections.OrderedDict(b=1, a=2),
    "partial": functools.partial(np.round, decimals=2),
    "shared": (lambda x: [x, x, {"again": x}])([1, 2]),
    "cycle": (lambda x: (x.append(x), x)[1])([1]),
    "slice": slice(1, 10, 2),
}


def _reference(data: bytes) -> Any:
    return pickle.loads(data)  # our own benign bytes, made just above


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("name", VALUES)
def test_benign_values_equal_pickle_load(name: str, protocol: int, tmp_path: Path) -> None:
    data = pickle.dumps(VALUES[name], protocol=protocol)
    path = tmp_path / "value.pkl"
    path.write_bytes(data)
    assert_same(_reference(data), load(path), name)


def test_sharing_and_cycles_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "shared.pkl"
    path.write_bytes(pickle.dumps(VALUES["shared"], protocol=4))
    out = load(path)
    assert out[0] is out[1] is out[2]["again"]
    path.write_bytes(pickle.dumps(VALUES["cycle"], protocol=2))
    out = load(path)
    assert out[1] is out


# -- malformed streams: each refused with a typed error naming the offset -----------------------

P = b"\x80\x04"
MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "before STOP"),
    "no_stop": (P + b"N", "before STOP"),
    "unknown_opcode": (P + b"\xfe.", "unknown or unsupported opcode 0xfe"),
    "bytes_after_stop": (P + b"N.N.", "follow STOP"),
    "stack_left_over": (P + b"NN.", "unbalanced stack"),
    "underflow": (P + b"t.", "MARK that was never set"),
    "pop_empty": (P + b"0.", "stack underflow"),
    "ext1": (P + b"\x82\x01.", "EXT1"),
    "next_buffer": (b"\x80\x05\x97.", "NEXT_BUFFER"),
    "readonly_buffer": (b"\x80\x05N\x98.", "READONLY_BUFFER"),
    "memo_missing": (P + b"h\x03.", "memo slot 3 is read before"),
    "memo_twice": (P + b"N\x94q\x00.", "written twice"),
    "memo_put_empty": (P + b"\x94.", "stack underflow"),
    "truncated_operand": (P + b"\x8c\x10abc", "truncated"),
    "truncated_binint": (P + b"J\x01", "truncated"),
    "huge_binunicode8": (P + b"\x8d" + struct.pack("<Q", 1 << 62) + b".", "exceeds the limit"),
    "huge_binbytes": (P + b"B" + struct.pack("<I", 1 << 31) + b".", "remain"),
    "long4_huge": (P + b"\x8b" + struct.pack("<i", 1 << 20) + b".", "LONG4"),
    "long4_negative": (P + b"\x8b" + struct.pack("<i", -1) + b".", "LONG4"),
    "bad_int": (b"Iabc\n.", "not a decimal integer"),
    "bad_float": (b"Fxyz\n.", "not a number"),
    "no_newline": (b"I12", "no end of line"),
    "bad_utf8": (P + b"\x8c\x02\xff\xfe.", "not valid UTF-8"),
    "unquoted_string": (b"Sabc\n.", "not quoted"),
    "frame_straddle": (P + b"\x95" + struct.pack("<Q", 2) + b"\x8c\x05hello.", "straddles"),
    "frame_past_end": (P + b"\x95" + struct.pack("<Q", 99) + b"N.", "past the end (truncated)"),
    "frame_in_frame": (P + b"\x95" + struct.pack("<Q", 10) + b"\x95" + bytes(9) + b"N.", "inside"),
    "protocol_7": (b"\x80\x07N.", "protocol 7"),
    "proto_twice": (P + b"N0\x80\x04N.", "PROTO appears twice"),
    "global_from_computed": (P + b"]" + b"\x8c\x01x\x93.", "constant strings"),
    "reduce_not_tuple": (P + b"\x8c\x01a\x8c\x01b\x93N" + b"R.", "must be a tuple"),
    "build_on_list": (P + b"]}b.", "BUILD on a list"),
    "append_to_dict": (P + b"}Na.", "APPEND(S) to a dict"),
    "setitem_on_list": (P + b"]NNs.", "SETITEM(S) on a list"),
    "additems_on_frozenset": (P + b"(\x91(N\x90.", "ADDITEMS"),
    "odd_dict": (P + b"(Nd.", "key/value pairs"),
    "persistent_id": (P + b"NQ.", "persistent id"),
    "build_twice": (P + b"\x8c\x01a\x8c\x01B\x93)\x81}b}b.", "applied twice"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_streams_are_refused_with_the_offset(name: str) -> None:
    data, expected = MALFORMED[name]
    with pytest.raises(PickleError, match=r"at byte [0-9]+") as info:
        Translator().node(read_pickle(data))
    assert expected in str(info.value)
    assert isinstance(info.value, FormatError) and isinstance(info.value, AmberError)
    assert "0x7f" not in str(info.value)


def test_limits_bound_the_work() -> None:
    small = Limits(max_opcodes=50, max_stack=10, max_memo=3)
    with pytest.raises(PickleError, match="opcodes"):
        read_pickle(P + b"N0" * 40 + b"N.", limits=small)
    with pytest.raises(PickleError, match="stack exceeds"):
        read_pickle(P + b"N" * 11 + b"(" + b"t" + b".", limits=small)
    with pytest.raises(PickleError, match="memo exceeds"):
        read_pickle(P + b"N\x94" * 4 + b".", limits=small)


def test_nesting_beyond_the_limit_is_refused() -> None:
    deep = P + b"]" * 500 + b"a" * 499 + b"."
    with pytest.raises(Refused, match="nest deeper"):
        parse_bytes(Path("x.pkl"), deep)


def test_lengths_are_checked_before_anything_is_allocated() -> None:
    # 2**40 claimed bytes in a 20-byte file: refused at once, nothing sized by the claim
    data = P + b"\x8e" + struct.pack("<Q", 1 << 33) + b"xx."
    with pytest.raises(PickleError, match="remain"):
        read_pickle(data)


def test_array_data_must_match_its_shape(tmp_path: Path) -> None:
    data = bytearray(pickle.dumps(np.arange(4, dtype=np.int64), protocol=2))
    at = data.find(b"\x04\x85")  # the shape (4,)
    data[at] = 5
    with pytest.raises(Refused, match="cannot hold an array of shape"):
        parse_bytes(Path("x.pkl"), bytes(data))


def test_python2_names_are_mapped_like_pickle_does(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({1, 2}, protocol=2))  # __builtin__ set
    assert b"__builtin__" in path.read_bytes()
    assert load(path) == {1, 2}
