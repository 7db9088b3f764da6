"""Faults on the wire between amber and an S3 server (moto on loopback, behind a
fault-injecting proxy): every operation succeeds, retries to success, or raises a
StoreError saying what failed and whether anything changed; nothing is lost or
half-visible."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from amber.errors import StoreError
from amber.store import Store
from tests.store.fault_proxy import FaultProxy


def _model(seed: int) -> dict[str, Any]:
    return {"w": np.random.default_rng(seed).standard_normal(50_000), "seed": seed}


def _round(url: str, seed: int) -> None:
    """Save, alias, load and collect: the operations a team runs."""
    with Store(url) as store:
        version = store.save(_model(seed), "m", metrics={"seed": seed})
        store.set_alias(version.spec, "production", force=True)
        loaded = store.load("m@production")
        assert loaded["seed"] == seed and np.array_equal(loaded["w"], _model(seed)["w"])
        store.gc(grace=0)


@pytest.mark.parametrize(
    "action", ["500", "503", "slowdown", "drop-before", "drop-mid-body", "delay"]
)
def test_transient_faults_are_retried_to_success(proxy: FaultProxy, s3_url: str, action):
    for method in ("PUT", "GET", "HEAD"):
        proxy.add(action, count=2, method=method)
    _round(s3_url, 1)
    proxy.add(action, count=3)  # whatever comes next
    _round(s3_url, 2)
    assert len(proxy.injected) >= 5, proxy.injected
    proxy.clear()
    with Store(s3_url) as store:
        assert [v.version for v in store.versions("m")] == [1, 2]  # nothing twice
        assert store.check().ok


def test_a_lost_answer_to_a_commit_makes_no_duplicate(proxy: FaultProxy, s3_url: str) -> None:
    # The record's PUT reaches the server, the answer is lost, the client retries and
    # meets its own record: the save succeeds once.
    proxy.add("drop-after", count=1, method="PUT", path="/versions/")
    with Store(s3_url) as store:
        assert store.save(_model(3), "m").version == 1
    assert proxy.injected and proxy.injected[0][0] == "drop-after"
    proxy.clear()
    with Store(s3_url) as store:
        assert [v.version for v in store.versions("m")] == [1]
        assert store.check().ok


def test_a_lost_answer_to_an_alias_move_is_not_a_conflict(proxy: FaultProxy, s3_url: str):
    with Store(s3_url) as store:
        store.save(_model(4), "m")
        proxy.add("drop-after", count=1, method="PUT", path="/refs/")
        store.set_alias("m@1", "production")
        assert store.aliases("m")["production"] == 1
    assert proxy.injected


def test_a_server_that_keeps_failing_is_a_clear_error(proxy: FaultProxy, s3_url: str) -> None:
    with Store(s3_url) as store:
        store.save(_model(5), "m")
        proxy.add("503", count=1000)
        with pytest.raises(StoreError, match=r"could not .* (nothing was changed|may)"):
            store.save(_model(6), "m")
        with pytest.raises(StoreError, match="could not"):
            store.load("m@1")
    proxy.clear()
    with Store(s3_url) as store:  # nothing half-visible
        assert [v.version for v in store.versions("m")] == [1]
        assert store.load("m")["seed"] == 5
        assert store.check().ok
