"""The verified object cache of remote stores (a real S3 server, moto on loopback)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from amber.cli.main import app
from amber.errors import CorruptFileError, InvalidArgumentError
from amber.store import Store
from amber.store.cache import ObjectCache, parse_size
from amber.store.objects import object_key


def _model(seed: int = 0, n: int = 200_000) -> dict[str, Any]:
    a = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return {"a": a, "b": a * 2}  # two distinct objects of one size


def _cache_dir() -> Path:
    return Path(os.environ["AMBER_CACHE"])


def _counting(store: Store) -> list[str]:
    """Record every blob read of ``store``'s backend (keys)."""
    reads: list[str] = []
    backend = store.backend
    get, read_range = backend.get, backend.read_range

    def counted_get(key: str) -> Any:
        reads.append(key)
        return get(key)

    def counted_range(key: str, offset: int, length: int) -> Any:
        reads.append(key)
        return read_range(key, offset, length)

    backend.get = counted_get  # type: ignore[method-assign]
    backend.read_range = counted_range  # type: ignore[method-assign]
    return reads


def test_second_load_reads_no_object(s3_url: str) -> None:
    model = _model()
    with Store(s3_url) as store:
        store.save(model, "m")
    with Store(s3_url) as store:
        reads = _counting(store)
        first = store.load("m")
        assert any(k.startswith("objects/") for k in reads)
        reads.clear()
        second = store.load("m")
        assert [k for k in reads if k.startswith("objects/")] == []  # all from the cache
        np.testing.assert_array_equal(first["a"], second["a"])
        np.testing.assert_array_equal(second["b"], model["b"])
    entries = ObjectCache(_cache_dir()).entries()
    assert {e.size for e in entries} >= {model["a"].nbytes, model["b"].nbytes}


def test_objects_shared_across_stores_are_not_downloaded_again(s3_url: str, s3_server: Any) -> None:
    model = _model(1)
    other_url = f"s3://{s3_server.create_bucket()}/team"
    with Store(s3_url) as a, Store(other_url) as b:
        a.save(model, "m")
        b.save(model, "m")
        a.load("m")
        reads = _counting(b)
        np.testing.assert_array_equal(b.load("m")["a"], model["a"])
        assert [k for k in reads if k.startswith("objects/")] == []


def test_a_lying_object_is_refused_and_never_cached(s3_url: str) -> None:
    model = _model(2)
    with Store(s3_url) as store:
        version = store.save(model, "m")
        digest = next(
            t["digest"].split(":")[1]
            for t in json.loads(store.backend.get(f"versions/m/{version.version}"))["tensors"]
            if t["name"] == "a"
        )
        key = object_key(digest)
        # Replace the object by other bytes of the same size (a lying bucket).
        store.backend._remove(key)  # type: ignore[attr-defined]
        store.backend.put_if_absent(key, np.zeros_like(model["a"]).tobytes())
    with Store(s3_url) as store, pytest.raises(CorruptFileError, match="corrupt"):
        store.load("m")
    cache = ObjectCache(_cache_dir())
    assert digest not in {e.digest for e in cache.entries()}
    assert not list((_cache_dir() / "objects").glob("*/.*.part"))  # no partial left


def test_lru_limit_evicts_least_recently_used(s3_url: str, monkeypatch) -> None:
    size = _model(3)["a"].nbytes
    monkeypatch.setenv("AMBER_CACHE_SIZE", str(int(size * 4.5)))  # room for four objects
    with Store(s3_url) as store:
        for seed in range(4):
            store.save(_model(seed + 10), f"m{seed}")
        for seed in range(4):
            store.load(f"m{seed}")  # 8 objects of one size, the limit holds 4
        entries = ObjectCache(_cache_dir()).entries()
        assert sum(e.size for e in entries) <= size * 4.5
        assert len(entries) == 4
        np.testing.assert_array_equal(store.load("m3")["a"], _model(13)["a"])  # still works


def test_large_objects_download_in_verified_parts(s3_url: str, monkeypatch) -> None:
    from amber.store import cache as cache_module

    monkeypatch.setattr(cache_module, "PART", 1 << 18)  # many ranged GETs, in parallel
    model = {"big": np.random.default_rng(5).standard_normal(1_000_000).astype(np.float32)}
    with Store(s3_url) as store:
        store.save(model, "big")
    with Store(s3_url) as store:
        np.testing.assert_array_equal(store.load("big")["big"], model["big"])


def test_cache_cli(s3_url: str) -> None:
    with Store(s3_url) as store:
        store.save(_model(4), "m")
        store.load("m")
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "ls", "--json"])
    assert listed.exit_code == 0, listed.stderr
    info = json.loads(listed.stdout)
    assert info["path"] == str(_cache_dir()) and len(info["objects"]) >= 2
    assert info["total"] == sum(o["size"] for o in info["objects"])
    assert runner.invoke(app, ["cache", "ls"]).exit_code == 0
    bad = runner.invoke(app, ["cache", "prune", "--max-size", "lots"])
    assert bad.exit_code == 2 and "invalid size" in bad.stderr
    pruned = runner.invoke(app, ["cache", "prune", "--all", "--json"])
    assert pruned.exit_code == 0
    assert json.loads(pruned.stdout)["removed"] == len(info["objects"])
    assert ObjectCache(_cache_dir()).entries() == []
    with Store(s3_url) as store:  # downloaded again when needed
        np.testing.assert_array_equal(store.load("m")["a"], _model(4)["a"])


@pytest.mark.parametrize(
    ("text", "expected"), [("1000", 1000), ("2K", 2048), ("1.5G", 3 << 29), ("5MiB", 5 << 20)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "G", "1X", "1e9", "ten"])
def test_parse_size_refuses_garbage(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid size"):
        parse_size(text)


def test_hostile_digest_names_are_refused(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path)
    for bad in ["../../etc/passwd", "ab" * 31, "AB" * 32, "zz" * 32]:
        with pytest.raises(InvalidArgumentError):
            cache.file(bad)


def test_only_the_load_right_after_a_download_skips_the_second_hash(s3_url: str) -> None:
    model = _model(7)
    with Store(s3_url) as store:
        store.save(model, "m")
    with Store(s3_url) as store:
        np.testing.assert_array_equal(store.load("m")["a"], model["a"])  # downloaded, checked
        digest = store.resolve("m").tensors[0].entry.digest.split(":")[1]
        cached = ObjectCache(_cache_dir()).file(digest)
        data = bytearray(cached.read_bytes())
        data[0] ^= 0xFF
        cached.write_bytes(bytes(data))  # damaged in the cache afterwards
        with pytest.raises(CorruptFileError, match="corrupt"):
            store.load("m")  # the same process hashes it again
