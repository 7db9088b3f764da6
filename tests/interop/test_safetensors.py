"""safetensors interop: our reader and writer against the ``safetensors`` package, conversions
both ways, and hostile inputs (refused with a typed error, no output left behind)."""

from __future__ import annotations

import contextlib
import json
import mmap
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import amber
from amber.errors import (
    AmberError,
    CorruptFileError,
    FormatError,
    InvalidArgumentError,
    ReadError,
    SerializationError,
    WriteError,
)
from amber.interop import convert, detect_format, read_safetensors, write_safetensors
from amber.interop import safetensors as st_module

# safetensors name -> numpy dtype, every type amber maps.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "C64": np.dtype(np.complex64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E4M3FNUZ": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "F8_E5M2FNUZ": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu),
}
# What safetensors.numpy can load back (it has no table entry for the ml_dtypes types).
NUMPY_LOADABLE = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"} | {
    "F16",
    "F32",
    "F64",
    "C64",
}
SHAPES = [(3, 4), (), (0, 5), (7,), (2, 1, 3)]


def random_array(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Arbitrary bit patterns (NaNs included), 0/1 for bool."""
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape))
    if dtype == np.dtype(bool):
        return rng.integers(0, 2, count).astype(bool).reshape(shape)
    raw = rng.integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bits (NaN payloads included)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(
            np.ascontiguousarray(a).reshape(-1).view(np.uint8),
            np.ascontiguousarray(b).reshape(-1).view(np.uint8),
        )
    )


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor (0-d included), for bitwise comparison."""
    return t.detach().reshape(-1).view(torch.uint8)


def oracle(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A plain reading of a safetensors file: (header, data buffer). No validation."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def sample_tensors() -> dict[str, np.ndarray]:
    return {
        f"{name.lower()}.{i}": random_array(dtype, shape, seed=i)
        for name, dtype in DTYPES.items()
        for i, shape in enumerate(SHAPES)
    }


# -- reading files written by the safetensors package ---------------------------------------


@pytest.mark.parametrize("st_name", sorted(DTYPES))
def test_read_files_written_by_safetensors(tmp_path: Path, st_name: str) -> None:
    dtype = DTYPES[st_name]
    tensors = {f"t{i}": random_array(dtype, shape, i) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "in.safetensors"
    safetensors.numpy.save_file(tensors, path, metadata={"k": "v"})
    assert all(
        v["dtype"] == st_name for k, v in oracle(path.read_bytes())[0].items() if k[0] == "t"
    )
    arrays, metadata = read_safetensors(path)
    assert metadata == {"k": "v"}
    assert arrays.keys() == tensors.keys()
    for name, expected in tensors.items():
        assert same(arrays[name], expected), name
        assert not arrays[name].flags.writeable


def test_read_gives_views_of_one_mapping(tmp_path: Path) -> None:
    path = tmp_path / "in.safetensors"
    safetensors.numpy.save_file({"a": np.arange(10.0), "b": np.ones(3, np.int8)}, path)
    arrays, _ = read_safetensors(path)
    assert isinstance(arrays["a"].base, mmap.mmap)
    assert arrays["a"].base is arrays["b"].base
    with pytest.raises(ValueError, match="read-only"):
        arrays["a"][0] = 5
    writable, _ = read_safetensors(path, writable=True)
    writable["a"][0] = 5  # private copy-on-write: the file does not change
    assert read_safetensors(path)[0]["a"][0] == 0


def test_read_torch_written_file(tmp_path: Path) -> None:
    tensors = {
        "w": torch.randn(4, 5, dtype=torch.bfloat16),
        "f8": torch.randn(6).to(torch.float8_e5m2),
        "i": torch.arange(5, dtype=torch.int64),
    }
    path = tmp_path / "in.safetensors"
    safetensors.torch.save_file(tensors, path)
    arrays, _ = read_safetensors(path)
    for name, t in tensors.items():
        assert same(arrays[name].view(np.uint8), t.view(torch.uint8).numpy()), name
    assert arrays["w"].dtype == np.dtype(ml_dtypes.bfloat16)


# -- writing files the safetensors package reads ---------------------------------------------


@pytest.mark.parametrize("st_name", sorted(DTYPES))
def test_written_files_are_valid_safetensors(tmp_path: Path, st_name: str) -> None:
    dtype = DTYPES[st_name]
    tensors = {f"t{i}": random_array(dtype, shape, i) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "out.safetensors"
    write_safetensors(path, tensors, {"owner": "me"})
    raw = path.read_bytes()
    header, buffer = oracle(raw)
    assert (len(raw) - len(buffer)) % 8 == 0  # the buffer starts 8-aligned
    assert header["__metadata__"] == {"owner": "me"}
    for name, expected in tensors.items():
        entry = header[name]
        assert entry["dtype"] == st_name and entry["shape"] == list(expected.shape)
        begin, end = entry["data_offsets"]
        assert buffer[begin:end] == expected.tobytes()
    if st_name in NUMPY_LOADABLE:
        loaded = safetensors.numpy.load_file(path)
        assert all(same(loaded[n], tensors[n]) for n in tensors)
    elif st_name != "F8_E8M0":  # safetensors.torch 0.8 has no table entry for F8_E8M0
        loaded_t = safetensors.torch.load_file(path)
        for n, expected in tensors.items():
            got = loaded_t[n].reshape(-1).view(torch.uint8).numpy()
            assert np.array_equal(got, expected.reshape(-1).view(np.uint8)), n
            assert tuple(loaded_t[n].shape) == expected.shape
    with safetensors.safe_open(path, framework="np") as f:
        assert f.metadata() == {"owner": "me"}
        assert set(f.keys()) == set(tensors)


def test_write_handles_views_byte_order_and_shared_memory(tmp_path: Path) -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    tensors = {
        "base": base,
        "strided": base[:, ::2],  # shares memory with base: each is written in full
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
        "big_endian": base.astype(">i4"),
        "same_again": base,
    }
    path = tmp_path / "out.safetensors"
    write_safetensors(path, tensors)
    loaded = safetensors.numpy.load_file(path)
    for name, expected in tensors.items():
        assert np.array_equal(loaded[name], expected) and loaded[name].shape == expected.shape
    assert loaded["big_endian"].dtype == np.dtype("<i4")
    assert "__metadata__" not in oracle(path.read_bytes())[0]


def test_empty_tensors_with_huge_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(st_bytes({"e": entry("F32", (2**59, 0, 2), (0, 0))}))
    arrays, _ = read_safetensors(path)
    assert arrays["e"].shape == (2**59, 0, 2) and arrays["e"].dtype == np.float32
    write_safetensors(tmp_path / "again.safetensors", arrays)
    header, buffer = oracle((tmp_path / "again.safetensors").read_bytes())
    assert header == {"e": entry("F32", (2**59, 0, 2), (0, 0))} and buffer == b""
    convert(path, tmp_path / "e.amber")
    assert amber.load(tmp_path / "e.amber")["e"].shape == (2**59, 0, 2)


def test_write_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    write_safetensors(path, {})
    assert safetensors.numpy.load_file(path) == {}
    assert read_safetensors(path) == ({}, {})


@pytest.mark.parametrize(
    ("tensors", "metadata", "fragment"),
    [
        ({"a": [1, 2]}, None, "expected a numpy array or a torch tensor"),
        ({"a": np.array(["x"])}, None, "no safetensors equivalent"),
        ({"a": np.ones(2, np.complex128)}, None, "complex128"),
        ({"a": np.ones(2, ml_dtypes.float8_e3m4)}, None, "float8_e3m4"),
        ({"__metadata__": np.ones(2)}, None, "reserved"),
        ({1: np.ones(2)}, None, "names must be strings"),
        ({"a": np.ones(2)}, {"n": 1}, "strings to strings"),
        ({"a\ud800": np.ones(2)}, None, "not valid text"),
        ([np.ones(2)], None, "mapping"),
    ],
)
def test_write_refuses_what_safetensors_cannot_hold(
    tmp_path: Path, tensors: Any, metadata: Any, fragment: str
) -> None:
    path = tmp_path / "out.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(SerializationError, match=fragment):
        write_safetensors(path, tensors, metadata)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]  # no temporary left


def test_write_streams_with_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st_module, "CHUNK_BYTES", 1 << 20)
    big = np.arange(16 << 20, dtype=np.float32).reshape(4096, 4096)  # 64 MiB
    strided = big[:, ::2]  # 32 MiB that must be copied to be written: at most 1 MiB at a time
    path = tmp_path / "big.safetensors"
    tracemalloc.start()
    try:
        write_safetensors(path, {"strided": strided, "big": big})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    with safetensors.safe_open(path, framework="np") as f:
        assert np.array_equal(f.get_slice("strided")[4000:4010], strided[4000:4010])
        assert np.array_equal(f.get_tensor("big")[-1], big[-1])


def test_write_torch_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st_module, "CHUNK_BYTES", 64)  # force the slab-by-slab path
    base = torch.randn(40, 30)
    tensors = {
        "w": base,
        "t": base.t(),  # non-contiguous, shares memory with w
        "bf": torch.randn(7, 9).to(torch.bfloat16),
        "f8": torch.randn(5).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(3, dtype=torch.int16),
        "empty": torch.zeros(0, 4),
        "grad": torch.ones(3, requires_grad=True),
        "u16": torch.arange(9).to(torch.uint16)[::2],
        "conj": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj(),
        "neg": torch.tensor([1.0, 2.0])._neg_view(),
    }
    path = tmp_path / "out.safetensors"
    write_safetensors(path, tensors, {"a": "b"})
    loaded = safetensors.torch.load_file(path)
    for name, expected in tensors.items():
        got = loaded[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert torch.equal(
            bits(got),
            bits(expected.resolve_conj().resolve_neg().contiguous()),
        ), name


def test_write_refuses_sparse_and_meta_torch_tensors(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    with pytest.raises(SerializationError, match="to_dense"):
        write_safetensors(path, {"s": torch.eye(3).to_sparse()})
    with pytest.raises(SerializationError, match="meta"):
        write_safetensors(path, {"m": torch.empty(3, device="meta")})
    with pytest.raises(SerializationError, match="no safetensors equivalent"):
        write_safetensors(path, {"c": torch.ones(2, dtype=torch.complex128)})
    assert not path.exists()


# -- conversions ----------------------------------------------------------------------------


def test_amber_to_safetensors_to_amber_is_identity(tmp_path: Path) -> None:
    tensors = sample_tensors()
    metadata = {"owner": "team-a", "epoch": "3"}
    first = tmp_path / "model.amber"
    amber.save(tensors, first, metadata=metadata)
    middle, last = tmp_path / "model.safetensors", tmp_path / "back.amber"
    result = convert(first, middle)
    assert (result.src_format, result.dst_format) == ("amber", "safetensors")
    assert result.tensor_count == len(tensors)
    assert result.tensor_bytes == sum(t.nbytes for t in tensors.values())
    convert(middle, last)
    back = amber.load(last)
    assert list(back) == list(tensors)
    assert all(same(back[n], tensors[n]) for n in tensors)
    assert amber.inspect(last).metadata == metadata
    # And safetensors -> amber -> safetensors gives back the same bytes.
    again = tmp_path / "again.safetensors"
    convert(last, again)
    assert again.read_bytes() == middle.read_bytes()


def test_metadata_carries_over_as_strings(tmp_path: Path) -> None:
    src = tmp_path / "m.amber"
    metadata = {"s": "text", "n": 3, "f": 0.5, "b": True, "none": None, "d": {"k": [1, "é"]}}
    amber.save({"w": np.ones(2)}, src, metadata=metadata)
    out = tmp_path / "m.safetensors"
    convert(src, out)
    with safetensors.safe_open(out, framework="np") as f:
        st_meta = f.metadata()
    assert st_meta == {
        "s": "text",
        "n": "3",
        "f": "0.5",
        "b": "true",
        "none": "null",
        "d": '{"k": [1, "é"]}',
    }
    assert {k: json.loads(v) for k, v in st_meta.items() if k != "s"} == {
        k: v for k, v in metadata.items() if k != "s"
    }
    back = tmp_path / "back.amber"
    convert(out, back)
    assert amber.inspect(back).metadata == st_meta


def test_safetensors_metadata_becomes_amber_metadata(tmp_path: Path) -> None:
    src = tmp_path / "in.safetensors"
    safetensors.numpy.save_file({"w": np.ones(2)}, src, metadata={"format": "pt", "x": "ü"})
    dst = tmp_path / "out.amber"
    convert(src, dst)
    assert amber.inspect(dst).metadata == {"format": "pt", "x": "ü"}


def test_state_dict_views_sharing_memory_are_written_in_full(tmp_path: Path) -> None:
    base = np.arange(12.0).reshape(3, 4)
    src = tmp_path / "shared.amber"
    amber.save({"a": base, "b": base, "row": base[1]}, src)
    out = tmp_path / "shared.safetensors"
    convert(src, out)
    loaded = safetensors.numpy.load_file(out)
    assert np.array_equal(loaded["a"], base) and np.array_equal(loaded["b"], base)
    assert np.array_equal(loaded["row"], base[1])


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"enc": {"w": np.ones(2)}}, "['enc'] is a nested mapping"),
        ({"w": np.ones(2), "step": 3}, "['step'] is of type int"),
        ({"w": np.ones(2), "names": ["a"]}, "['names'] is of type list"),
        ({"o": np.array([1, "x"], dtype=object)}, "['o'] is an object array"),
        ({"s": np.array(["ab", "c"])}, "['s'] has dtype <U2"),
        ({"c": np.ones(2, np.complex128)}, "['c'] has dtype complex128"),
        ([np.ones(2)], "holds a list, not a flat mapping"),
        ({1: np.ones(2)}, "key 1 is of type int"),
        ({"__metadata__": np.ones(2)}, "reserved"),
    ],
)
def test_amber_content_that_does_not_convert(tmp_path: Path, obj: Any, fragment: str) -> None:
    src = tmp_path / "model.amber"
    amber.save(obj, src)
    out = tmp_path / "out.safetensors"
    with pytest.raises(SerializationError) as info:
        convert(src, out)
    assert fragment in str(info.value)
    assert not out.exists()
    out.write_bytes(b"keep")
    with pytest.raises(SerializationError):
        convert(src, out, force=True)
    assert out.read_bytes() == b"keep"


@pytest.fixture
def st_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.safetensors"
    safetensors.numpy.save_file({"w": np.arange(6.0).reshape(2, 3)}, path)
    return path


def test_existing_output_needs_force(tmp_path: Path, st_file: Path) -> None:
    out = tmp_path / "out.amber"
    out.write_bytes(b"old")
    with pytest.raises(WriteError, match="exists; pass force=True"):
        convert(st_file, out)
    assert out.read_bytes() == b"old"
    convert(st_file, out, force=True)
    assert np.array_equal(amber.load(out)["w"], np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize(
    ("dst_name", "error", "fragment"),
    [
        ("out.pt", InvalidArgumentError, "cannot tell the output format"),
        ("out", InvalidArgumentError, "cannot tell the output format"),
        ("out.safetensors", InvalidArgumentError, "cannot convert safetensors to safetensors"),
    ],
)
def test_unknown_output_formats(
    tmp_path: Path, st_file: Path, dst_name: str, error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        convert(st_file, tmp_path / dst_name)
    assert not (tmp_path / dst_name).exists()


def test_bad_options(tmp_path: Path, st_file: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="framework must be one of numpy, torch"):
        convert(st_file, tmp_path / "o.amber", framework="jax")
    with pytest.raises(InvalidArgumentError, match="force"):
        convert(st_file, tmp_path / "o.amber", force="yes")  # type: ignore[arg-type]
    misnamed = tmp_path / "model.safetensors"  # an amber file: converting it onto itself
    amber.save({"w": np.ones(2)}, misnamed)
    before = misnamed.read_bytes()
    with pytest.raises(InvalidArgumentError, match="is the input file"):
        convert(misnamed, misnamed, force=True)
    assert misnamed.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "suffix", "error", "fragment"),
    [
        (b"", ".bin", FormatError, "cannot tell the format"),
        (b"plain text, not a model", ".bin", FormatError, "cannot tell the format"),
        (b"\x80\x04\x95" + bytes(20), ".pkl", FormatError, "pickle"),
        (b"PK\x03\x04" + bytes(20), ".pt", FormatError, "torch archive: not a valid zip"),
        (b"\x89AMBER\r\n" + bytes(200), ".bin", FormatError, "format 0.0"),
        (b"short", ".safetensors", FormatError, "shorter than the 8-byte header length"),
    ],
)
def test_input_format_is_detected_from_content(
    tmp_path: Path, content: bytes, suffix: str, error: type, fragment: str
) -> None:
    src = tmp_path / f"input{suffix}"
    src.write_bytes(content)
    # The output format must differ from the input's, or the pair is refused first.
    out = tmp_path / ("out.safetensors" if content.startswith(b"\x89AMBER") else "out.amber")
    with pytest.raises(error, match=fragment):
        convert(src, out)
    assert not out.exists()


def test_detection_ignores_the_input_suffix(tmp_path: Path, st_file: Path) -> None:
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(st_file.read_bytes())
    assert detect_format(renamed) == "safetensors"
    amber_file = tmp_path / "model.safetensors"  # an amber file with a misleading name
    amber.save({"w": np.ones(2)}, amber_file)
    assert detect_format(amber_file) == "amber"
    convert(amber_file, tmp_path / "real.safetensors")
    assert safetensors.numpy.load_file(tmp_path / "real.safetensors")["w"].shape == (2,)


def test_missing_or_unreadable_input(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such file"):
        convert(tmp_path / "absent.safetensors", tmp_path / "o.amber")
    with pytest.raises(ReadError, match="directory"):
        convert(tmp_path, tmp_path / "o.amber")
    with pytest.raises(ReadError, match="no such file"):
        read_safetensors(tmp_path / "absent.safetensors")


def test_damaged_amber_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "m.amber"
    amber.save({"w": np.ones(1000)}, src)
    raw = bytearray(src.read_bytes())
    raw[100] ^= 1
    src.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError):
        convert(src, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


# -- torch ----------------------------------------------------------------------------------


def test_safetensors_to_amber_with_torch_tensors(tmp_path: Path) -> None:
    tensors = {
        "w": torch.randn(4, 5),
        "bf": torch.randn(3, 2).to(torch.bfloat16),
        "f8": torch.randn(6).to(torch.float8_e4m3fn),
        "mask": torch.tensor([True, False]),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3, dtype=torch.float16),
    }
    src = tmp_path / "in.safetensors"
    safetensors.torch.save_file(tensors, src, metadata={"format": "pt"})
    dst = tmp_path / "out.amber"
    convert(src, dst, framework="torch")
    loaded = amber.load(dst)
    assert amber.inspect(dst).metadata == {"format": "pt"}
    for name, expected in tensors.items():
        got = loaded[name]
        assert isinstance(got, torch.Tensor), name
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert torch.equal(bits(got), bits(expected)), name


def test_torch_state_dict_amber_to_safetensors(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    model.to(torch.bfloat16)
    state = model.state_dict()
    src = tmp_path / "model.amber"
    amber.save(state, src, metadata={"arch": "mlp"})
    out = tmp_path / "model.safetensors"
    convert(src, out)
    loaded = safetensors.torch.load_file(out)
    assert loaded.keys() == state.keys()
    for name, expected in state.items():
        assert loaded[name].dtype == torch.bfloat16
        assert torch.equal(loaded[name], expected), name


# -- hostile and malformed inputs -----------------------------------------------------------


def st_bytes(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file from a header (dict, or raw bytes as they are) and data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def entry(dtype: str = "F32", shape: Any = (2,), offsets: Any = (0, 8)) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


VALID_DATA = struct.pack("<2f", 1.0, 2.0)
HOSTILE: dict[str, tuple[bytes, type[AmberError], str]] = {
    "length-past-end": (
        st_bytes({"a": entry()}, VALID_DATA, length=4096),
        CorruptFileError,
        "runs past the end of the file",
    ),
    "length-2**63": (
        st_bytes({"a": entry()}, VALID_DATA, length=2**63),
        FormatError,
        "exceeds the limit",
    ),
    "length-2**64-1": (st_bytes(b"{}", length=2**64 - 1), FormatError, "exceeds the limit"),
    "length-0": (st_bytes(b"{}", b"{}", length=0), FormatError, "too small"),
    "not-an-object": (st_bytes(b"[1, 2]"), FormatError, "must start with '{'"),
    "leading-space": (st_bytes(b' {"a":1}'), FormatError, "must start with '{'"),
    "non-utf8": (st_bytes(b'{"\xff": 1}'), FormatError, "not valid UTF-8"),
    "invalid-json": (st_bytes(b'{"a": '), FormatError, "not valid JSON"),
    "trailing-garbage": (st_bytes(b"{}  x"), FormatError, "not valid JSON"),
    "duplicate-tensor": (
        st_bytes(
            b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
            VALID_DATA,
        ),
        FormatError,
        "duplicate key 'a'",
    ),
    "duplicate-field": (
        st_bytes(
            b'{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', VALID_DATA
        ),
        FormatError,
        "duplicate key 'dtype'",
    ),
    "duplicate-metadata": (
        st_bytes(b'{"__metadata__":{"k":"a","k":"b"}}'),
        FormatError,
        "duplicate key 'k'",
    ),
    "nan": (st_bytes(b'{"__metadata__":{"k":NaN}}'), FormatError, "NaN"),
    "infinity-shape": (
        st_bytes(b'{"a":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,8]}}', VALID_DATA),
        FormatError,
        "Infinity",
    ),
    "deep-nesting": (
        st_bytes(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        FormatError,
        "nested too deeply",
    ),
    "huge-integer": (
        st_bytes(b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,8]}}'),
        FormatError,
        "not valid JSON",
    ),
    "lone-surrogate-name": (
        st_bytes(b'{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', VALID_DATA),
        FormatError,
        "lone surrogate",
    ),
    "lone-surrogate-metadata": (
        st_bytes(b'{"__metadata__":{"k":"\\udfff"}}'),
        FormatError,
        "lone surrogate",
    ),
    "overlap": (
        st_bytes({"a": entry(), "b": entry(offsets=(4, 12))}, bytes(12)),
        FormatError,
        "overlaps",
    ),
    "same-range": (st_bytes({"a": entry(), "b": entry()}, VALID_DATA), FormatError, "overlaps"),
    "empty-inside-other": (
        st_bytes({"a": entry(), "e": entry(shape=(0,), offsets=(4, 4))}, VALID_DATA),
        FormatError,
        "overlaps",
    ),
    "gap": (st_bytes({"a": entry(offsets=(4, 12))}, bytes(12)), FormatError, "belong to no tensor"),
    "trailing-bytes": (
        st_bytes({"a": entry()}, VALID_DATA + b"x"),
        FormatError,
        "belong to no tensor",
    ),
    "out-of-range": (
        st_bytes({"a": entry(offsets=(0, 8))}, VALID_DATA[:4]),
        CorruptFileError,
        "truncated",
    ),
    "offsets-reversed": (
        st_bytes({"a": entry(offsets=(8, 0))}, VALID_DATA),
        FormatError,
        "0 <= begin <= end",
    ),
    "offsets-negative": (
        st_bytes({"a": entry(offsets=(-8, 0))}, VALID_DATA),
        FormatError,
        "data_offsets",
    ),
    "offsets-float": (
        st_bytes({"a": entry(offsets=(0.0, 8.0))}, VALID_DATA),
        FormatError,
        "data_offsets",
    ),
    "offsets-three": (
        st_bytes({"a": entry(offsets=(0, 8, 8))}, VALID_DATA),
        FormatError,
        "data_offsets",
    ),
    "negative-shape": (
        st_bytes({"a": entry(shape=(-2,))}, VALID_DATA),
        FormatError,
        "non-negative integers",
    ),
    "float-shape": (
        st_bytes({"a": entry(shape=(2.0,))}, VALID_DATA),
        FormatError,
        "non-negative integers",
    ),
    "bool-shape": (
        st_bytes({"a": entry(shape=(True, True))}, VALID_DATA),
        FormatError,
        "non-negative integers",
    ),
    "string-shape": (
        st_bytes({"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, VALID_DATA),
        FormatError,
        "non-negative integers",
    ),
    "rank-33": (
        st_bytes({"a": entry(shape=(1,) * 33, offsets=(0, 4))}, VALID_DATA[:4]),
        FormatError,
        "rank 33",
    ),
    "shape-overflow": (
        st_bytes({"a": entry(shape=(2**62, 4, 0), offsets=(0, 0))}),
        FormatError,
        "too large",
    ),
    "bytes-not-matching-shape": (
        st_bytes({"a": entry(shape=(3,))}, VALID_DATA),
        FormatError,
        "needs 12",
    ),
    "unknown-dtype": (
        st_bytes({"a": entry(dtype="F128")}, VALID_DATA),
        FormatError,
        "unknown dtype 'F128'",
    ),
    "lowercase-dtype": (
        st_bytes({"a": entry(dtype="f32")}, VALID_DATA),
        FormatError,
        "unknown dtype",
    ),
    "numeric-dtype": (st_bytes({"a": entry(dtype=4)}, VALID_DATA), FormatError, "unknown dtype"),
    "sub-byte-dtype": (
        st_bytes({"a": entry(dtype="F4", shape=(2,), offsets=(0, 1))}, b"\0"),
        FormatError,
        "4-bit",
    ),
    "entry-not-object": (st_bytes({"a": [0, 8]}, VALID_DATA), FormatError, "must be an object"),
    "entry-extra-key": (
        st_bytes({"a": {**entry(), "offset": 0}}, VALID_DATA),
        FormatError,
        "unknown 'offset'",
    ),
    "entry-missing-key": (
        st_bytes({"a": {"dtype": "F32", "shape": [2]}}, VALID_DATA),
        FormatError,
        "missing data_offsets",
    ),
    "metadata-int": (st_bytes({"__metadata__": {"k": 1}}), FormatError, "must be a string"),
    "metadata-null-value": (
        st_bytes({"__metadata__": {"k": None}}),
        FormatError,
        "must be a string",
    ),
    "metadata-nested": (
        st_bytes({"__metadata__": {"k": {"a": "b"}}}),
        FormatError,
        "must be a string",
    ),
    "metadata-list": (st_bytes({"__metadata__": ["a"]}), FormatError, "must be an object"),
    "bool-not-0-or-1": (
        st_bytes({"m": entry(dtype="BOOL", shape=(3,), offsets=(0, 3))}, b"\x00\x01\x02"),
        FormatError,
        "other than 0 and 1",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_refused_and_writes_nothing(tmp_path: Path, case: str) -> None:
    content, error, fragment = HOSTILE[case]
    src = tmp_path / "hostile.safetensors"
    src.write_bytes(content)
    with pytest.raises(error) as info:
        read_safetensors(src)
    assert type(info.value) is error
    assert fragment in str(info.value) and str(src) in str(info.value)
    assert "\n" not in str(info.value)
    out = tmp_path / "out.amber"
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        convert(src, out)
    assert not out.exists()
    out.write_bytes(b"existing")
    with pytest.raises(error):
        convert(src, out, force=True)
    assert out.read_bytes() == b"existing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.safetensors", "out.amber"]


def _valid_sample() -> bytes:
    return st_bytes(
        {
            "__metadata__": {"format": "np", "note": "ü"},
            "w": entry("F32", (2, 3), (0, 24)),
            "mask": entry("BOOL", (4,), (24, 28)),
            "empty": entry("I64", (0, 2), (28, 28)),
            "h": entry("BF16", (), (28, 30)),
            "i": entry("I8", (2,), (30, 32)),
        },
        np.arange(6, dtype=np.float32).tobytes() + b"\x01\x00\x01\x01" + b"\x80\x3f" + b"\x07\xf9",
    )


VALID_SAMPLE = _valid_sample()


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    for cut in range(len(VALID_SAMPLE)):
        path.write_bytes(VALID_SAMPLE[:cut])
        with pytest.raises((FormatError, CorruptFileError)):
            read_safetensors(path)
    path.write_bytes(VALID_SAMPLE)
    arrays, metadata = read_safetensors(path)
    assert metadata == {"format": "np", "note": "ü"}
    assert float(arrays["h"]) == 1.0 and arrays["mask"].tolist() == [True, False, True, True]


def test_truncated_input_converts_to_nothing(tmp_path: Path) -> None:
    src = tmp_path / "cut.safetensors"
    out = tmp_path / "out.amber"
    for cut in (0, 5, 8, 9, 40, len(VALID_SAMPLE) - 1):
        src.write_bytes(VALID_SAMPLE[:cut])
        with pytest.raises((FormatError, CorruptFileError)):
            convert(src, out)
        assert not out.exists()


@contextlib.contextmanager
def _written(directory: Path, data: bytes) -> Iterator[Path]:
    # A new inode per example: a mapping an earlier example left alive never sees a change.
    path = directory / "example.safetensors"
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.unlink()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to three flips, overwrites, cuts, deletions, insertions or appends,
    weighted towards the length field and the JSON header."""
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    for _ in range(draw(st.integers(1, 3))):
        ops = ["insert", "append"] + (["flip", "overwrite", "truncate", "delete"] if data else [])
        op = draw(st.sampled_from(ops))
        last = max(len(data) - 1, 0)
        at = draw(st.integers(0, last) | st.integers(0, min(last, header_end)))
        if op == "flip":
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif op == "overwrite":
            new = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"0", b"9", b"-", b"[", b"]", b",", b'"', b"{", b"}", b"NaN"])
            )
            data = data[:at] + new + data[at + len(new) :]
        elif op == "truncate":
            data = data[:at]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)) :]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        else:
            data += draw(st.binary(min_size=1, max_size=32))
    return data


def _check_against_oracle(data: bytes, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    """What the reader returned is what the bytes say, read naively."""
    header, buffer = oracle(data)
    assert meta == header.get("__metadata__", {})
    assert arrays.keys() == header.keys() - {"__metadata__"}
    for name, array in arrays.items():
        e = header[name]
        assert st_module.ST_TO_AMBER[e["dtype"]] == array.dtype.name
        assert list(array.shape) == e["shape"]
        begin, end = e["data_offsets"]
        assert array.tobytes() == buffer[begin:end]


@settings(max_examples=400, deadline=None)
@given(data=mutated(VALID_SAMPLE))
def test_mutated_files_read_exactly_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    directory = tmp_path_factory.getbasetemp()
    with _written(directory, data) as path:
        try:
            arrays, meta = read_safetensors(path)
        except AmberError as exc:
            event(type(exc).__name__)  # --hypothesis-show-statistics: how often each outcome
            return
        event("read")
        _check_against_oracle(data, arrays, meta)


def test_metadata_must_be_a_mapping(tmp_path: Path) -> None:
    for bad in (5, [("a", "b")]):
        with pytest.raises(SerializationError, match="metadata must map strings"):
            write_safetensors(tmp_path / "m.safetensors", {}, bad)  # type: ignore[arg-type]
    assert not (tmp_path / "m.safetensors").exists()
