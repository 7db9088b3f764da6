"""Resolving a version on an s3:// store reads the record the client's index expects while
storage is asked which version it is (``amber.store.prefetch``): the two round trips
overlap, and a stale index never changes what is returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amber.errors import StoreError, VersionNotFound
from amber.store import Store
from tests.store.fault_proxy import FaultProxy


def _model(seed: int) -> dict[str, object]:
    return {"w": np.full(1000, float(seed)), "seed": seed}


def _writer(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Another client of the same store: its own cache and index."""
    monkeypatch.setenv("AMBER_CACHE", str(tmp_path / "other-client"))
    return Store(url)


def test_a_stale_index_never_changes_what_load_returns(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(s3_url) as first:
        first.save(_model(1), "m")
        first.set_alias("m@1", "production")
    reader = Store(s3_url)  # its index: m@1, production -> 1
    with _writer(s3_url, tmp_path, monkeypatch) as writer:
        writer.save(_model(2), "m")
        writer.set_alias("m@2", "production", force=True)
    assert reader._guess("m") == 1 and reader._guess("m", "production") == 1  # stale
    assert reader.load("m")["seed"] == 2
    assert reader.load("m@production")["seed"] == 2
    with _writer(s3_url, tmp_path, monkeypatch) as writer:
        writer.delete("m@2", force=True)
        writer.save(_model(3), "m")
        writer.delete("m@3", force=True)
    # the index guesses 1 or 2 (it never saw 3); storage's newest live version is 1
    assert reader.load("m")["seed"] == 1
    with pytest.raises(VersionNotFound, match="no alias 'production'"):
        reader.load("m@production")  # deleting m@2 removed the alias; the index says 1
    reader.close()


def test_a_guess_that_names_a_damaged_record_is_read_again_and_reported(
    s3_url: str, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(s3_url) as store:
        store.save(_model(1), "m")
    bucket, prefix = s3_url.removeprefix("s3://").split("/", 1)
    raw = s3_server.backend(bucket, prefix)
    assert raw.compare_and_swap("versions/m/1", raw.get("versions/m/1"), b"{not json")
    with Store(s3_url) as store, pytest.raises(StoreError, match=r"store\.check"):
        store.load("m")


def test_the_record_is_read_while_storage_is_listed(proxy: FaultProxy, s3_url: str) -> None:
    with Store(s3_url) as store:
        store.save(_model(1), "m")
        store.set_alias("m@1", "production")
    for spec, slow in (("m", "list-type=2"), ("m@production", "/refs/m/production")):
        with Store(s3_url) as store:
            proxy.seen.clear()
            proxy.add("delay", method="GET", path=slow)  # 0.3 s before it is forwarded
            assert store.load(spec)["seed"] == 1
        slowed = [s for s in proxy.seen if slow in s[1]]
        record = [s for s in proxy.seen if s[0] == "GET" and s[1].endswith("/versions/m/1")]
        assert len(slowed) == 1 and len(record) == 1, proxy.seen
        # the record was answered while the slowed request was held back; one after the
        # other, it would be asked for only after the slowed one's answer
        assert record[0][3] < slowed[0][3], spec
