"""torch.Tensor values: every dtype, layouts, storage sharing, devices, zero-copy loads."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import amber
from amber.errors import InvalidArgumentError, SerializationError
from amber.graph.torch_nodes import TORCH_DTYPES
from tests.corpus.build import manifest_of


def bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert type(a) is type(b)
    assert (a.dtype, a.shape, a.requires_grad) == (b.dtype, b.shape, b.requires_grad)
    assert bits(a) == bits(b)


def roundtrip(obj: Any, tmp_path: Path, **load: Any) -> Any:
    path = tmp_path / "t.amber"
    amber.save(obj, path)
    return amber.load(path, **load)


def sample(name: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, name)
    if dtype == torch.bool:
        return torch.rand(3, 4, generator=gen) > 0.5
    if dtype.is_complex:
        with warnings.catch_warnings():  # complex32 is "experimental" in torch
            warnings.simplefilter("ignore")
            return torch.randn(3, 4, dtype=torch.complex64, generator=gen).to(dtype)
    if dtype.is_floating_point and dtype.itemsize > 1:
        return (torch.randn(3, 4, generator=gen) * 100).to(dtype)
    # integers, float8 and float4 pairs: any bit pattern of the size
    raw = torch.randint(0, 256, (3, 4 * dtype.itemsize), dtype=torch.uint8, generator=gen)
    return raw.view(dtype)


@pytest.mark.parametrize("name", sorted(TORCH_DTYPES))
def test_every_dtype_roundtrips_bit_exactly(tmp_path: Path, name: str) -> None:
    t = sample(name)
    out = roundtrip({"t": t, "scalar": t.reshape(-1)[0].clone()}, tmp_path)
    same(out["t"], t)
    same(out["scalar"], t.reshape(-1)[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.tensor(2.5),
        lambda: torch.zeros(0, 3),
        lambda: torch.zeros(2, 0, 5, dtype=torch.int16),
        lambda: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1),
        lambda: torch.arange(40.0).reshape(5, 8)[::2, 1::3],
        lambda: torch.ones(3).expand(4, 3),
        lambda: torch.arange(12.0).reshape(3, 4).t(),
        lambda: torch.randn(2, 3, dtype=torch.complex64).conj(),
        lambda: -torch.randn(2, 3, dtype=torch.complex64).conj().imag,
    ],
    ids=["0d", "empty", "empty3d", "permuted", "strided-slice", "expanded", "t", "conj", "neg"],
)
def test_layouts_are_saved_by_value(tmp_path: Path, make: Any) -> None:
    t = make()
    out = roundtrip([t], tmp_path)[0]
    assert out.dtype == t.dtype and out.shape == t.shape
    assert torch.equal(out.resolve_conj().resolve_neg(), t.resolve_conj().resolve_neg())


def test_views_of_one_storage_are_stored_once_and_share_again(tmp_path: Path) -> None:
    big = torch.arange(1000, dtype=torch.float32)
    views = {"all": big, "head": big[:10], "grid": big[100:200].view(10, 10).t(), "tail": big[-1]}
    info = amber.save(views, tmp_path / "v.amber")
    assert [t.name for t in info.tensors] == ["all"]
    assert info.tensor_bytes == big.nbytes
    out = amber.load(tmp_path / "v.amber")
    for key, value in views.items():
        same(out[key], value)
    ptr = out["all"].untyped_storage().data_ptr()
    assert all(out[k].untyped_storage().data_ptr() == ptr for k in views)
    out["all"][105] = -1.0  # writes through to every view, as before saving
    assert out["grid"][5, 0] == -1.0


def test_a_lone_slice_stores_only_its_elements(tmp_path: Path) -> None:
    big = torch.zeros(1_000_000)
    info = amber.save({"slice": big[10:20]}, tmp_path / "s.amber")
    assert info.tensor_bytes == 40


def test_views_of_different_dtypes_share_one_storage(tmp_path: Path) -> None:
    raw = torch.arange(16, dtype=torch.uint8)
    as_int32 = raw.view(torch.int32)
    out = roundtrip({"bytes": raw[1:], "ints": as_int32}, tmp_path)
    same(out["bytes"], raw[1:])
    same(out["ints"], as_int32)
    assert out["ints"].untyped_storage().data_ptr() == out["bytes"].untyped_storage().data_ptr()


def test_tied_weights_state_dict_stays_tied(tmp_path: Path) -> None:
    weight = torch.randn(10, 4)
    state = {"embed.weight": weight, "head.weight": weight.detach()}  # two objects, one storage
    info = amber.save(state, tmp_path / "tied.amber")
    assert [(t.name, t.shape) for t in info.tensors] == [("embed.weight", (10, 4))]
    out = amber.load(tmp_path / "tied.amber")
    assert out["embed.weight"] is not out["head.weight"]
    assert out["embed.weight"].data_ptr() == out["head.weight"].data_ptr()


def test_one_object_twice_comes_back_as_one_object(tmp_path: Path) -> None:
    p = torch.nn.Parameter(torch.randn(3))
    out = roundtrip({"a": p, "b": [p]}, tmp_path)
    assert out["a"] is out["b"][0]
    assert isinstance(out["a"], torch.nn.Parameter)


def test_parameters_and_requires_grad(tmp_path: Path) -> None:
    values = {
        "param": torch.nn.Parameter(torch.randn(2)),
        "frozen": torch.nn.Parameter(torch.randn(2), requires_grad=False),
        "leaf": torch.randn(2, requires_grad=True),
        "plain": torch.randn(2),
        "nonleaf": torch.randn(2, requires_grad=True) * 2,
    }
    out = roundtrip(values, tmp_path)
    for key in ("param", "frozen", "leaf", "plain"):
        same(out[key], values[key])
    assert out["nonleaf"].requires_grad and out["nonleaf"].is_leaf
    assert torch.equal(out["nonleaf"].detach(), values["nonleaf"].detach())


def _mapped_files() -> dict[int, str]:
    maps = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            maps[start] = (end, parts[5])
    return maps


def _mapping_of(address: int) -> str | None:
    for start, (end, name) in _mapped_files().items():
        if start <= address < end:
            return name
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_loaded_tensors_are_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.amber"
    amber.save({"w": torch.randn(512, 512), "b": torch.randn(512)}, path)
    out = amber.load(path)
    assert _mapping_of(out["w"].data_ptr()) == str(path)
    copied = amber.load(path, mmap=False)
    assert _mapping_of(copied["w"].data_ptr()) != str(path)


def test_writes_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.amber"
    amber.save({"w": torch.zeros(4)}, path)
    before = path.read_bytes()
    out = amber.load(path)
    out["w"] += 1  # copy-on-write pages of the mapping
    assert path.read_bytes() == before
    assert torch.equal(amber.load(path)["w"], torch.zeros(4))


def test_read_only_loads_give_private_copies(tmp_path: Path) -> None:
    path = tmp_path / "ro.amber"
    amber.save({"w": torch.zeros(4)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about non-writable numpy arrays
        out = amber.load(path, writable=False)
    out["w"][0] = 5.0  # a private copy: must not crash on a read-only page
    assert amber.load(path)["w"][0] == 0.0


def test_device_cpu_and_invalid_devices(tmp_path: Path) -> None:
    path = tmp_path / "d.amber"
    amber.save({"w": torch.ones(3)}, path)
    assert amber.load(path, device="cpu")["w"].device.type == "cpu"
    assert amber.load(path, device=torch.device("cpu"))["w"].device.type == "cpu"
    with pytest.raises(InvalidArgumentError, match="device must be like"):
        amber.load(path, device="gpu:zero")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.amber"
    amber.save({"w": torch.ones(3)}, path)
    with pytest.raises(InvalidArgumentError, match="cannot place tensors on cuda"):
        amber.load(path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_load_keeps_sharing(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    base = torch.randn(8, 8)
    path = tmp_path / "c.amber"
    amber.save({"w": base, "row": base[2], "p": torch.nn.Parameter(torch.ones(2))}, path)
    out = amber.load(path, device="cuda:0")
    assert out["w"].is_cuda and out["row"].is_cuda and out["p"].is_cuda
    assert out["w"].untyped_storage().data_ptr() == out["row"].untyped_storage().data_ptr()
    assert torch.equal(out["w"].cpu(), base)
    # saving straight from the GPU
    amber.save(out, tmp_path / "from-gpu.amber")
    assert torch.equal(amber.load(tmp_path / "from-gpu.amber")["w"], base)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: torch.randn(3, 3).to_sparse(), "sparse_coo"),
        (lambda: torch.quantize_per_tensor(torch.randn(3), 0.1, 0, torch.quint8), "quantized"),
        (lambda: torch.empty(3, device="meta"), "meta tensors"),
        (lambda: torch.zeros(2, dtype=torch.int4), "cannot be saved"),
    ],
    ids=["sparse", "quantized", "meta", "int4"],
)
def test_unsupported_tensors_fail_before_writing(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "x.amber"
    with pytest.raises(SerializationError, match=message) as info:
        amber.save({"model": {"w": make()}}, path)
    assert "obj['model']['w']" in str(info.value)
    assert not path.exists()


def test_tensor_subclasses_are_refused(tmp_path: Path) -> None:
    class Marked(torch.Tensor):
        pass

    with pytest.raises(SerializationError, match="tensor subclass"):
        amber.save([torch.ones(2).as_subclass(Marked)], tmp_path / "x.amber")


def test_files_with_torch_tensors_name_torch(tmp_path: Path) -> None:
    info = amber.save({"w": torch.ones(2), "p": torch.nn.Parameter(torch.ones(1))}, tmp_path / "n")
    assert info.referenced_types == ("torch.Tensor", "torch.nn.parameter.Parameter")
    assert info.untrusted_types == ()
    assert "torch" in info.environment["packages"]


def test_numpy_readers_see_the_stored_tensors(tmp_path: Path) -> None:
    path = tmp_path / "np.amber"
    amber.save(
        {"w": torch.arange(6.0).reshape(2, 3), "h": torch.ones(2, dtype=torch.bfloat16)}, path
    )
    with amber.open(path) as f:
        np.testing.assert_array_equal(f["w"], np.arange(6.0, dtype=np.float32).reshape(2, 3))
        assert str(f["h"].dtype) == "bfloat16"
    entries = {t["name"]: t for t in manifest_of(path.read_bytes())["tensors"]}
    assert entries["h"]["dtype"] == "bfloat16"


def test_conjugate_and_negative_views_keep_their_values(tmp_path: Path) -> None:
    z = torch.tensor([1 + 2j, 3 - 4j, 5 + 6j])
    x = torch.tensor([1.0, 2.0])
    out = roundtrip(
        {"z": z, "conj": z.conj(), "tail": z[1:].conj(), "x": x, "neg": x._neg_view()}, tmp_path
    )
    assert torch.equal(out["conj"], z.conj().resolve_conj())
    assert torch.equal(out["tail"], z[1:].conj().resolve_conj())
    assert torch.equal(out["neg"], -x)
    assert torch.equal(out["z"], z)


def test_storages_at_one_address_are_kept_apart(tmp_path: Path) -> None:
    buffer = np.arange(10, dtype=np.float32)
    short, whole = torch.from_numpy(buffer[:2]), torch.from_numpy(buffer)[::2]
    out = roundtrip({"short": short, "whole": whole}, tmp_path)
    assert torch.equal(out["short"], short) and torch.equal(out["whole"], whole)
