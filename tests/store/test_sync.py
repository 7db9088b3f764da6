"""push / pull / copy between stores, local and S3 (a real moto server on loopback)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from amber.cli.main import app
from amber.errors import CorruptFileError, InvalidArgumentError, StoreError, VersionNotFound
from amber.store import Store


def _tensors(seed: int, count: int = 6, n: int = 40_000) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {f"t{i}": rng.standard_normal(n).astype(np.float32) for i in range(count)}


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """A local store with m@1..3 (lineage, metrics, tags, message, an alias)."""
    root = tmp_path / "local"
    with Store(root) as store:
        base = _tensors(0)
        store.save(base, "m", metrics={"acc": 0.5}, message="first")
        changed = {**base, "t0": base["t0"] + 1}  # one tensor of six changes
        store.save(changed, "m", parent="m@1", metrics={"acc": 0.6}, tags={"team": "a"})
        store.save({**changed, "t1": base["t1"] * 3}, "m", parent="m@2")
        store.set_alias("m@2", "production")
    return root


def test_push_all_keeps_history_lineage_and_aliases(local: Path, s3_url: str) -> None:
    with Store(local) as source:
        report = source.push("m", s3_url, all_versions=True)
        assert report.copied == ["m@1", "m@2", "m@3"]
        assert report.objects_sent == 6 + 1 + 1  # six tensors, then one changed in each
        assert report.bytes_sent == 8 * 40_000 * 4
    with Store(local) as source, Store(s3_url) as dest:
        for v in (1, 2, 3):
            here, there = source.get(f"m@{v}"), dest.get(f"m@{v}")
            for field in ("created_at", "creator", "message", "metrics", "tags"):
                assert getattr(there, field) == getattr(here, field), field
            a, b = source.load(f"m@{v}"), dest.load(f"m@{v}")
            assert all(np.array_equal(a[k], b[k]) for k in a)
        assert dest.get("m@3").parent == "m@2" and dest.get("m@2").parent == "m@1"
        assert dest.aliases("m")["production"] == 2
        assert dest.check().ok


def test_a_second_push_sends_nothing(local: Path, s3_url: str) -> None:
    with Store(local) as source:
        source.push("m", s3_url, all_versions=True)
        again = source.push("m", s3_url, all_versions=True)
    assert again.copied == [] and again.skipped == ["m@1", "m@2", "m@3"]
    assert again.objects_sent == 0 and again.bytes_sent == 0


def test_only_missing_objects_travel(local: Path, s3_url: str) -> None:
    with Store(local) as source:
        first = source.push("m@1", s3_url)
        second = source.push("m@2", s3_url)  # one tensor of six changed
    assert first.objects_sent >= 6
    assert second.objects_present >= 5
    changed = 40_000 * 4
    assert changed <= second.bytes_sent < 2 * changed


def test_an_interrupted_push_resumes(local: Path, s3_url: str) -> None:
    with Store(local) as source, Store(s3_url) as dest:
        put = dest.backend.put_if_absent
        calls = []

        def failing(key: str, data: Any) -> bool:
            if key.startswith("objects/"):
                calls.append(key)
                if len(calls) == 4:
                    raise StoreError("connection reset (injected)")
            return put(key, data)

        dest.backend.put_if_absent = failing  # type: ignore[method-assign]
        from amber.store.sync import copy_versions

        with pytest.raises(StoreError, match="injected"):
            copy_versions(source, dest, "m", every=True, workers=1)
        assert dest.models() == []  # no version committed without its objects
        dest.backend.put_if_absent = put  # type: ignore[method-assign]
        resumed = copy_versions(source, dest, "m", every=True)
        assert resumed.copied == ["m@1", "m@2", "m@3"]
        # What went up before the interruption (3, or 4 if the worker had started the
        # next one) is not sent again.
        assert resumed.objects_present in (3, 4)
        assert resumed.objects_sent == 8 - resumed.objects_present
        assert dest.check().ok


def test_pull_into_a_new_local_store(local: Path, s3_url: str, tmp_path: Path) -> None:
    with Store(local) as source:
        source.push("m", s3_url, all_versions=True)
    with Store(tmp_path / "laptop") as laptop:
        seen = []
        report = laptop.pull(s3_url, "m@production", progress=lambda d, t: seen.append((d, t)))
        assert report.copied == ["m@1"]  # numbers follow the destination
        assert laptop.get("m@1").metrics == {"acc": 0.6}
        assert seen and seen[-1][0] == seen[-1][1] == report.bytes_sent
        assert laptop.get("m@1").parent is None  # its parent was not copied along


def test_bad_specs_and_same_store(local: Path, s3_url: str) -> None:
    with Store(local) as source:
        with pytest.raises(VersionNotFound):
            source.push("nope", s3_url)
        with pytest.raises(InvalidArgumentError, match="--all copies a whole model"):
            source.push("m@2", s3_url, all_versions=True)
        with pytest.raises(InvalidArgumentError, match="same store"):
            source.push("m", local)


def test_cli_push_pull_copy(local: Path, s3_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    pushed = runner.invoke(app, ["push", "m", "--all", "--to", s3_url, "--store", str(local)])
    assert pushed.exit_code == 0, pushed.stderr
    assert "copied 3 versions" in pushed.stdout
    target = tmp_path / "pulled"
    pulled = runner.invoke(app, ["pull", s3_url, "m@3", "--store", str(target), "--json"])
    assert pulled.exit_code == 0, pulled.stderr
    assert json.loads(pulled.stdout)["copied"] == ["m@1"]
    copied = runner.invoke(app, ["copy", f"{s3_url}#m", str(tmp_path / "third"), "--all"])
    assert copied.exit_code == 0, copied.stderr
    with Store(tmp_path / "third") as third:
        assert [v.version for v in third.versions("m")] == [1, 2, 3]
    bad = runner.invoke(app, ["copy", "no-hash-here", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "SRC_STORE#NAME" in bad.stderr
    missing = runner.invoke(app, ["push", "ghost", "--to", s3_url, "--store", str(local)])
    assert missing.exit_code == 2


def test_pull_writes_each_object_once_straight_into_the_store(
    local: Path, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amber.store import cache as cache_module

    monkeypatch.setattr(cache_module, "PART", 1 << 16)  # several ranged GETs per object
    with Store(local) as source:
        source.push("m", s3_url, all_versions=True)
    with Store(tmp_path / "laptop") as laptop:
        laptop.pull(s3_url, "m", all_versions=True)
        for n in (1, 2, 3):
            loaded, original = laptop.load(f"m@{n}"), Store(local).load(f"m@{n}")
            assert all(np.array_equal(loaded[k], original[k]) for k in original)
        assert laptop.check().ok
        assert not list((tmp_path / "laptop" / "tmp").iterdir())
    cache = Path(os.environ["AMBER_CACHE"]) / "objects"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_a_lying_object_stops_a_pull_and_leaves_nothing(
    local: Path, s3_url: str, tmp_path: Path
) -> None:
    with Store(local) as source:
        source.push("m@1", s3_url)
        record = source.resolve("m@1")
    digest = sorted(record.objects() - {record.pack})[0]
    with Store(s3_url) as remote:
        key = f"objects/{digest[:2]}/{digest}"
        size = remote.backend.stat(key).size  # type: ignore[union-attr]
        remote.backend._remove(key)  # type: ignore[attr-defined]
        remote.backend.put_if_absent(key, bytes(size))  # same size, other bytes
    with Store(tmp_path / "laptop") as laptop:
        with pytest.raises(CorruptFileError, match="corrupt"):
            laptop.pull(s3_url, "m@1")
        assert laptop.models() == []
        assert not (tmp_path / "laptop" / "objects" / digest[:2] / digest).exists()
        assert not list((tmp_path / "laptop" / "tmp").iterdir())
