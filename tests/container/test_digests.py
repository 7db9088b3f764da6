"""Every digest in a file is authenticated by full verification: a file whose tensor
digests were copied from another file (the bytes swapped, ``data_digest`` and the manifest
digest recomputed so that they agree) is refused, naming the tensor, by every reader that
checks payloads, whatever the verification path (mapped or read, large or small tensors).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from blake3 import blake3

import amber
from amber.container.reader import ContainerReader
from amber.errors import CorruptFileError
from tests.corpus.build import manifest_of, patch, with_manifest

BIG = (1 << 20) // 4 + 16  # float32 elements: over 1 MiB, the parallel-hash path


def forged_copy(genuine: Path, swapped: Path, target: Path, names: list[str]) -> Path:
    """``swapped`` (a valid file of the same layout) with the digests of ``names`` taken
    from ``genuine``: its own bytes and data digest, re-sealed, so only the tensor digests
    lie about the payloads."""
    claimed = {t["name"]: t["digest"] for t in manifest_of(genuine.read_bytes())["tensors"]}
    data = swapped.read_bytes()
    manifest = manifest_of(data)
    for entry in manifest["tensors"]:
        if entry["name"] in names:
            entry["digest"] = claimed[entry["name"]]
    text = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    target.write_bytes(with_manifest(data, text))
    return target


def region_digest(data: bytes) -> str:
    offset = int.from_bytes(data[-64:-56], "little")
    return "blake3:" + blake3(data[64:offset]).hexdigest()


def models(size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(size)
    genuine = {f"t{i}": rng.standard_normal(size).astype(np.float32) for i in range(3)}
    swapped = dict(genuine)
    swapped["t1"] = -genuine["t1"]  # other weights, same dtype and shape
    return genuine, swapped


@pytest.fixture(params=[7, BIG], ids=["small", "large"])
def forged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    genuine, swapped = models(request.param)
    amber.save(genuine, tmp_path / "genuine.amber")
    amber.save(swapped, tmp_path / "swapped.amber")
    path = forged_copy(
        tmp_path / "genuine.amber", tmp_path / "swapped.amber", tmp_path / "forged.amber", ["t1"]
    )
    return tmp_path / "genuine.amber", path


def test_the_forgery_is_consistent_apart_from_the_tensor_digest(
    forged: tuple[Path, Path],
) -> None:
    genuine, path = forged
    data = path.read_bytes()
    manifest = manifest_of(data)
    assert manifest["data_digest"] == region_digest(data)  # the region digest agrees
    assert [t["digest"] for t in manifest["tensors"]] == [
        t["digest"] for t in manifest_of(genuine.read_bytes())["tensors"]
    ]  # it claims exactly the genuine tensors
    with ContainerReader(path, verify="off") as reader:  # the manifest digest agrees
        assert set(reader.entries) == {"t0", "t1", "t2"}


@pytest.mark.parametrize(
    "read",
    [
        lambda p: amber.load(p),
        lambda p: amber.load(p, mmap=False),
        lambda p: amber.load(p, writable=False),
        lambda p: amber.load(p, verify="lazy"),
        lambda p: amber.verify(p),
        lambda p: ContainerReader(p, verify="full"),
        lambda p: ContainerReader(p, verify="full", use_mmap=False),
        lambda p: amber.open(p, verify="full"),
        lambda p: amber.open(p)["t1"],
    ],
    ids=[
        "load",
        "load-no-mmap",
        "load-read-only",
        "load-lazy",
        "verify",
        "reader-full",
        "reader-full-no-mmap",
        "open-full",
        "open-read-t1",
    ],
)
def test_copied_tensor_digests_are_refused(forged: tuple[Path, Path], read) -> None:
    _, path = forged
    with pytest.raises(CorruptFileError, match="tensor 't1' is corrupt"):
        read(path)


def test_the_untouched_tensors_still_read(forged: tuple[Path, Path]) -> None:
    _, path = forged
    with amber.open(path) as f:  # lazy: only what is read is checked
        assert f["t0"].shape == f["t2"].shape


def test_the_first_forged_tensor_in_list_order_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    genuine = {f"t{i:03}": rng.standard_normal(3 + i % 5) for i in range(300)}
    swapped = {k: -v for k, v in genuine.items()}
    amber.save(genuine, tmp_path / "g.amber")
    amber.save(swapped, tmp_path / "s.amber")
    names = ["t017", "t123", "t299"]
    path = forged_copy(tmp_path / "g.amber", tmp_path / "s.amber", tmp_path / "f.amber", names)
    for use_mmap in (True, False):
        with pytest.raises(CorruptFileError, match="tensor 't017' is corrupt"):
            ContainerReader(path, verify="full", use_mmap=use_mmap)


def test_padding_is_checked_with_every_tensor_intact(tmp_path: Path) -> None:
    amber.save({"a": np.arange(3, dtype=np.int8), "b": np.arange(5.0)}, tmp_path / "p.amber")
    data = (tmp_path / "p.amber").read_bytes()
    first = min(manifest_of(data)["tensors"], key=lambda t: t["offset"])
    gap = first["offset"] + first["nbytes"]  # padding follows the 3-byte tensor
    (tmp_path / "p.amber").write_bytes(patch(data, gap, b"\x01"))
    for use_mmap in (True, False):
        with pytest.raises(CorruptFileError, match=f"padding bytes at offset {gap}"):
            ContainerReader(tmp_path / "p.amber", verify="full", use_mmap=use_mmap)


def test_no_mmap_hands_out_the_bytes_it_checked(tmp_path: Path) -> None:
    """With mmap=False a fully verified tensor is read once: rewriting the file after the
    check does not change what the reader hands out (no second, unchecked read)."""
    weights = {"w": np.arange(64, dtype=np.float64)}
    path = tmp_path / "w.amber"
    amber.save(weights, path)
    with ContainerReader(path, verify="full", use_mmap=False) as reader:
        offset = reader.entries["w"].offset
        with open(path, "r+b") as f:  # another writer changes the payload in place
            f.seek(offset)
            f.write(b"\xff" * 8)
        first = reader.array("w")
        assert np.array_equal(first, weights["w"])
        assert first.flags.writeable
        assert np.array_equal(reader.array("w"), weights["w"])
    reader = ContainerReader(path, verify="lazy", use_mmap=False)
    with reader, pytest.raises(CorruptFileError, match="tensor 'w' is corrupt"):
        reader.array("w")
