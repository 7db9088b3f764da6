"""The Store API on an S3 bucket (a real moto server on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from amber.errors import InvalidArgumentError, StoreError, VersionNotFound
from amber.store import Store
from tests.store.s3_server import ACCESS, S3Server


def test_save_load_alias_and_listing(s3_url: str) -> None:
    weights = {"w": np.arange(100_000, dtype=np.float32), "b": np.ones(3)}
    with Store(s3_url) as store:
        v1 = store.save(weights, "net", metrics={"acc": 0.5})
        v2 = store.save({**weights, "b": np.zeros(3)}, "net", parent="net@1")
        store.set_alias("net@1", "production")
        assert (v1.version, v2.version) == (1, 2)
        assert repr(store).startswith("Store(s3://")
    # Another client: everything comes from the bucket.
    with Store(s3_url) as other:
        assert [v.version for v in other.versions("net")] == [1, 2]
        assert other.aliases("net")["production"] == 1
        loaded = other.load("net@production")
        np.testing.assert_array_equal(loaded["w"], weights["w"])
        assert other.get("net@2").parent == "net@1"
        assert [m.name for m in other.models()] == ["net"]
        other.delete("net@2")
        with pytest.raises(VersionNotFound):
            other.load("net@2")
        assert other.check().ok


def test_dedup_over_the_wire(s3_url: str) -> None:
    big = np.random.default_rng(0).standard_normal(300_000).astype(np.float32)
    with Store(s3_url) as store:
        store.save({"a": big, "b": big * 2}, "m")
        before = set(store.backend.list("objects/"))
        store.save({"a": big, "b": big * 3}, "m")
        after = set(store.backend.list("objects/"))
        assert len(after - before) == 1  # only the changed tensor went up


def test_gc_removes_only_unreferenced_objects(s3_url: str) -> None:
    with Store(s3_url) as store:
        store.save({"a": np.arange(50_000)}, "m")
        store.save({"a": np.arange(50_000) + 1}, "m")
        store.delete("m@1")
        report = store.gc(grace=0)
        assert report.objects_removed >= 1
        assert store.load("m")["a"][0] == 1
        assert store.check().ok


def test_env_store_location(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBER_STORE", s3_url)
    with Store() as store:
        store.save({"x": 1}, "env")
        assert store.backend.describe().startswith("s3://")
    with Store(s3_url) as store:
        assert store.load("env") == {"x": 1}


@pytest.mark.parametrize(
    "location", ["gs://bucket/x", "http://host/x", "ftp://a/b", "S3x://b/x", "azure://c"]
)
def test_unknown_schemes_name_the_known_ones(location: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"s3://bucket/prefix"):
        Store(location)
    assert list(tmp_path.iterdir()) == []  # no folder named after the URL


def test_missing_bucket_is_a_clear_error(s3_url: str, s3_server: S3Server) -> None:
    with pytest.raises(StoreError, match="does not exist; create it first"):
        Store("s3://no-such-bucket-here/x")


def test_plain_http_only_on_loopback(s3_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="loopback only"):
        Store(s3_url, endpoint="http://example.com:9000")


def test_cli_on_an_s3_store(s3_url: str, tmp_path) -> None:
    from typer.testing import CliRunner

    from amber.cli.main import app

    with Store(s3_url) as store:
        store.save({"w": np.ones(4)}, "churn", metrics={"acc": 0.9})
    runner = CliRunner()
    listing = runner.invoke(app, ["ls", "--json", "--store", s3_url])
    assert listing.exit_code == 0, listing.stderr
    assert [m["name"] for m in json.loads(listing.stdout)] == ["churn"]
    where = runner.invoke(app, ["store", "path"], env={"AMBER_STORE": s3_url})
    assert where.exit_code == 0 and where.stdout.strip() == s3_url
    bad = runner.invoke(app, ["ls", "--store", "gs://bucket/x"])
    assert bad.exit_code == 2 and "s3://bucket/prefix" in bad.stderr


def test_missing_obstore_names_the_extra(s3_url: str) -> None:
    code = (
        "import sys; sys.modules['obstore'] = None\n"
        "from amber.store import Store\n"
        "from amber.errors import MissingDependencyError\n"
        f"try:\n    Store({s3_url!r})\nexcept MissingDependencyError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": "src"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "pip install 'amber[s3]'" in out.stdout, out.stderr


def test_one_client_per_settings(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Building an obstore client costs as much as a warm load's requests: opens share one,
    # unless any setting or AWS_* variable differs (keys, region, endpoint...).
    with Store(s3_url) as a, Store(s3_url) as b:
        assert a.backend._store is b.backend._store
    # (test_s3_credentials checks that refused keys fail after good ones in one process)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-secret")
    with Store(s3_url) as other:
        assert other.backend._store is not a.backend._store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ACCESS["secret_access_key"])
    with Store(s3_url) as c:
        assert c.backend._store is a.backend._store and c.models() == []
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with Store(s3_url) as d:
        assert d.backend._store is not a.backend._store
