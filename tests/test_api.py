"""amber.save / load / inspect / verify / open: round trips and option semantics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import amber
from amber.container import dtypes
from amber.errors import (
    CorruptFileError,
    InvalidArgumentError,
    ReadError,
    SerializationError,
    TensorNotFoundError,
)

NUMERIC = list(dtypes.NUMPY_DTYPES)
ML = list(dtypes.ML_DTYPES)


def _sample(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random bytes reinterpreted as ``dtype``: every bit pattern, NaN payloads included."""
    rng = np.random.default_rng(seed)
    count = math.prod(shape)
    raw = rng.integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    if dtype == np.bool_:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def _roundtrip(obj: object, tmp_path: Path, **load_kwargs: object) -> object:
    path = tmp_path / "obj.amber"
    amber.save(obj, path)
    return amber.load(path, **load_kwargs)


def _assert_same_array(a: np.ndarray, b: np.ndarray) -> None:
    assert b.dtype == a.dtype.newbyteorder("=") or b.dtype == a.dtype
    assert b.shape == a.shape
    assert a.view(np.uint8).tobytes() == np.ascontiguousarray(b).view(np.uint8).tobytes() or (
        np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    )


@pytest.mark.parametrize("name", NUMERIC + ML)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 0, 4), (2, 3, 4, 5)])
def test_every_dtype_and_shape_roundtrips_bit_exact(
    tmp_path: Path, name: str, shape: tuple[int, ...]
) -> None:
    dtype = np.dtype(getattr(ml_dtypes, name)) if name in ML else np.dtype(name)
    original = _sample(dtype, shape)
    loaded = _roundtrip({"x": original}, tmp_path)["x"]
    assert loaded.dtype == dtype
    assert loaded.shape == shape
    assert loaded.tobytes() == original.tobytes()


def test_seed_example_roundtrips_exactly(tmp_path: Path) -> None:
    seed = {"hidden": [0.1, 0.2, 0.3], "output": [0.4, 0.5, 0.6]}
    assert _roundtrip(seed, tmp_path) == seed


def test_weight_matrices_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = {
        f"layer{i}": {"w": rng.standard_normal((64, 32)), "b": np.zeros(32)} for i in range(3)
    }
    loaded = _roundtrip(weights, tmp_path)
    for layer, params in weights.items():
        for key, value in params.items():
            assert np.array_equal(loaded[layer][key], value)


def test_nested_plain_data_roundtrips(tmp_path: Path) -> None:
    obj = {
        "str": "héllo ✓",
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64, -(2**200)],
        "floats": [0.0, -0.0, 1e-308, 1.7976931348623157e308, 0.1],
        "special": [math.inf, -math.inf],
        "complex": 1.5 - 2j,
        "none": None,
        "bools": (True, False),
        "bytes": b"\x00\xff" * 10,
        "big_bytes": bytes(range(256)) * 100,
        "bytearray": bytearray(b"abc"),
        "set": {1, "a", (2, 3)},
        "frozenset": frozenset({1.5}),
        "non_str_keys": {1: "one", (1, 2): "pair", None: 0, 2.5: "x", b"k": 1},
        "empty": [[], (), {}, set(), ""],
        "nested": [[[[{"deep": [1]}]]]],
    }
    loaded = _roundtrip(obj, tmp_path)
    assert loaded == obj
    assert type(loaded["bytearray"]) is bytearray
    assert type(loaded["frozenset"]) is frozenset
    assert math.copysign(1, loaded["floats"][1]) == -1
    assert math.isnan(_roundtrip({"n": math.nan}, tmp_path)["n"])


def test_numpy_scalars_keep_their_type(tmp_path: Path) -> None:
    obj = [np.float32(1.5), np.int64(-3), np.bool_(True), np.complex64(1 - 1j), np.uint8(255)]
    loaded = _roundtrip(obj, tmp_path)
    assert [type(v) for v in loaded] == [type(v) for v in obj]
    assert loaded == obj


def test_fortran_order_is_preserved_zero_copy(tmp_path: Path) -> None:
    original = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(4, 6))
    loaded = _roundtrip({"f": original}, tmp_path)["f"]
    assert loaded.flags.f_contiguous and not loaded.flags.c_contiguous
    assert np.array_equal(loaded, original)
    info = amber.inspect(tmp_path / "obj.amber")
    assert info.tensors[0].order == "F"


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(100.0)[::3],
        lambda: np.arange(60).reshape(6, 10)[:, 2:7],
        lambda: np.arange(60).reshape(3, 4, 5).transpose(1, 0, 2),
        lambda: np.broadcast_to(np.arange(3, dtype=np.int16), (4, 3)),
        lambda: np.arange(12, dtype=">f8").reshape(3, 4),
        lambda: np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4)),
        lambda: np.arange(10, dtype=">c16")[::2],
    ],
)
def test_noncontiguous_and_big_endian_inputs_keep_values(tmp_path: Path, make) -> None:
    original = make()
    loaded = _roundtrip({"a": original}, tmp_path)["a"]
    assert loaded.dtype == original.dtype.newbyteorder("=")
    assert loaded.dtype.isnative
    assert np.array_equal(loaded, original)


def test_shared_arrays_and_containers_stay_shared(tmp_path: Path) -> None:
    shared = np.arange(5.0)
    inner = [1, 2]
    obj = {"a": shared, "b": shared, "l1": inner, "l2": inner}
    obj["self"] = obj
    loaded = _roundtrip(obj, tmp_path)
    assert loaded["a"] is loaded["b"]
    assert loaded["l1"] is loaded["l2"]
    assert loaded["self"] is loaded
    assert len(amber.inspect(tmp_path / "obj.amber").tensors) == 1


def test_metadata_and_environment_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "m.amber"
    meta = {"task": "churn", "metrics": {"auc": 0.91}, "tags": ["a", "b"]}
    saved = amber.save({"w": np.ones(3)}, path, metadata=meta)
    info = amber.inspect(path)
    assert info.metadata == meta == saved.metadata
    assert info.environment["python"]
    assert info.environment["packages"]["numpy"] == np.__version__
    assert info.environment["packages"]["amber"] == amber.__version__
    assert info.environment["platform"]
    assert info.format_version == "1.0"
    assert info.manifest_digest == saved.manifest_digest
    assert json.loads(json.dumps(info.to_dict()))["tensor_count"] == 1


@pytest.mark.parametrize(
    "metadata", [{"x": np.ones(2)}, {"x": float("nan")}, {1: "int key"}, ["not", "a", "dict"]]
)
def test_bad_metadata_is_refused_before_writing(tmp_path: Path, metadata: object) -> None:
    with pytest.raises(SerializationError, match="metadata"):
        amber.save({"w": np.ones(2)}, tmp_path / "m.amber", metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_load_modes_return_the_same_data(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    original = {"w": np.arange(1000, dtype=np.float32).reshape(10, 100)}
    amber.save(original, path)
    for kwargs in (
        {},
        {"verify": "lazy"},
        {"verify": "off"},
        {"mmap": False},
        {"writable": False},
    ):
        assert np.array_equal(amber.load(path, **kwargs)["w"], original["w"]), kwargs


def test_mmap_views_are_zero_copy_and_read_only_on_request(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    amber.save({"w": np.ones((256, 256))}, path)
    default = amber.load(path)["w"]
    assert default.flags.writeable
    assert not default.flags.owndata
    w = amber.load(path, writable=False)["w"]
    assert not w.flags.writeable
    assert not w.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 2


def test_writable_copies_never_change_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    amber.save({"w": np.ones(16)}, path)
    before = path.read_bytes()
    for kwargs in ({}, {"mmap": False}):
        w = amber.load(path, **kwargs)["w"]
        w[:] = 7
        assert w.sum() == 7 * 16
    assert path.read_bytes() == before
    amber.verify(path)


def test_lazy_open_reads_one_tensor_without_touching_others(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    amber.save({"small": np.arange(4), "big": np.zeros(1 << 20)}, path)
    raw = bytearray(path.read_bytes())
    raw[_offset(path, "big") + 10] ^= 1
    path.write_bytes(bytes(raw))
    # "big" is corrupt; lazy access to "small" neither reads nor verifies it.
    with amber.open(path) as f:
        assert set(f) == {"small", "big"} and len(f) == 2 and "small" in f
        assert np.array_equal(f["small"], np.arange(4))
        with pytest.raises(CorruptFileError, match="'big'"):
            f["big"]
        with pytest.raises(TensorNotFoundError, match="no tensor named 'nope'"):
            f["nope"]
    with pytest.raises(CorruptFileError, match="'big'"):
        amber.load(path)


def _offset(path: Path, name: str) -> int:
    with amber.open(path, verify="off") as f:
        return f._reader.entries[name].offset


def test_verify_off_skips_payload_digests_but_not_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    amber.save({"w": np.zeros(64, np.uint8)}, path)
    raw = bytearray(path.read_bytes())
    raw[_offset(path, "w")] = 1
    path.write_bytes(bytes(raw))
    assert amber.load(path, verify="off")["w"][0] == 1  # documented: no payload check
    with pytest.raises(CorruptFileError):
        amber.load(path, verify="lazy")
    with pytest.raises(CorruptFileError):
        amber.verify(path)
    assert amber.verify(path, quick=True).tensors[0].name == "w"


@pytest.mark.parametrize("verify", ["yes", None, True, "FULL"])
def test_bad_verify_mode_is_refused(tmp_path: Path, verify: object) -> None:
    path = tmp_path / "w.amber"
    amber.save([1], path)
    with pytest.raises(InvalidArgumentError, match="verify must be one of"):
        amber.load(path, verify=verify)  # type: ignore[arg-type]


def test_missing_and_non_regular_paths(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such file"):
        amber.load(tmp_path / "absent.amber")
    with pytest.raises(ReadError, match="directory"):
        amber.load(tmp_path)
    with pytest.raises(ReadError, match="no such file"):
        amber.inspect(tmp_path / "absent.amber")


def test_unsupported_objects_fail_with_path_before_writing(tmp_path: Path) -> None:
    class Custom:
        pass

    import threading

    cases = {
        "obj['model'][1]": {"model": [1, Custom()]},
        "obj['f']": {"f": lambda x: x},
        "obj['lock']": {"lock": threading.Lock()},
        "obj['method']": {"method": [].append},
        "obj['module']": {"module": np},
    }
    target = tmp_path / "x.amber"
    target.write_bytes(b"previous content")
    for where, obj in cases.items():
        with pytest.raises(SerializationError) as info:
            amber.save(obj, target)
        assert where in str(info.value), str(info.value)
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.amber"]


def test_tuple_cycle_is_refused(tmp_path: Path) -> None:
    inner: list = []
    cyclic = (inner,)
    inner.append(cyclic)
    with pytest.raises(SerializationError, match="contains itself"):
        amber.save(cyclic, tmp_path / "c.amber")


def test_nesting_limit_is_a_clear_error(tmp_path: Path) -> None:
    deep: list = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(SerializationError, match="nesting deeper"):
        amber.save(deep, tmp_path / "d.amber")
    fine: list = []
    for _ in range(75):
        fine = [fine]
    assert _roundtrip(fine, tmp_path) == fine


def test_save_returns_what_inspect_reads(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    saved = amber.save({"a": np.ones(3), "b": np.zeros((2, 2), np.int8)}, path)
    info = amber.inspect(path)
    assert saved.tensors == info.tensors
    assert saved.size == info.size == path.stat().st_size
    assert saved.object_type == info.object_type == "dict (2 keys)"
