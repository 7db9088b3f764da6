"""``amber serve`` from an s3:// store (a real moto server on loopback): it answers, follows
an alias moved in the bucket, and serves with forked workers, whose parent never opens the
store (obstore's client cannot cross a fork); a bad bucket is one clear line, not a hang."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx

from amber.store import Store
from tests.serve.helpers import env, iris, server

FOLLOW_BOUND = 30.0  # seconds for a move to show: poll + load + verify + warm-up, busy machine


def _fill(url: str) -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    first = LogisticRegression(max_iter=500).fit(X, y)
    second = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
    with Store(url) as store:
        store.save(first, "iris", input_example=X[:5])
        store.save(second, "iris", input_example=X[:5])
        store.set_alias("iris@1", "production")
    return first, second


def _ask(base: str, rows: Any) -> tuple[str, list]:
    # A new connection per call: with several workers, calls reach different ones.
    r = httpx.post(f"{base}/invocations", json={"inputs": rows.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-amber-model-version"], r.json()["predictions"]


def _until_version(base: str, rows: Any, version: str, streak: int) -> list:
    """Ask until ``streak`` answers in a row come from ``version``; their predictions."""
    deadline = time.monotonic() + FOLLOW_BOUND
    seen = 0
    while seen < streak:
        got, predictions = _ask(base, rows)
        seen = seen + 1 if got == version else 0
        assert time.monotonic() < deadline, f"still serving {got} after {FOLLOW_BOUND} s"
        if seen == 0:
            time.sleep(0.1)
    return predictions


def test_serves_from_s3_and_follows_the_alias(s3_url: str) -> None:
    first, second = _fill(s3_url)
    X = iris()[0][::10]
    assert (first.predict(X) != second.predict(X)).any()  # the switch is visible
    with server(s3_url, ["iris@production"], "--poll", "0.2") as base:
        assert _ask(base, X) == ("1", first.predict(X).tolist())
        with Store(s3_url) as store:
            store.set_alias("iris@2", "production")
        assert _until_version(base, X, "2", 3) == second.predict(X).tolist()
        meta = httpx.get(f"{base}/v2/models/iris", timeout=10).json()
        assert meta["versions"] == ["2"] and "last_reload_error" not in meta["parameters"]


def test_forked_workers_from_s3(s3_url: str) -> None:
    first, second = _fill(s3_url)
    X = iris()[0][::10]
    with server(s3_url, ["iris@production"], "--workers", "2", "--poll", "0.2") as base:
        for _ in range(10):
            assert _ask(base, X) == ("1", first.predict(X).tolist())
        with Store(s3_url) as store:
            store.set_alias("iris@2", "production")
        # Ten answers in a row from version 2: both workers followed the move.
        assert _until_version(base, X, "2", 10) == second.predict(X).tolist()


def test_missing_bucket_with_workers_is_one_line(s3_url: str) -> None:
    bucket = s3_url.split("/")[2]
    cmd = [sys.executable, "-m", "amber.cli.main", "serve", "iris", "--port", "1"]
    for extra in ([], ["--workers", "2"]):
        r = subprocess.run(
            [*cmd, "--store", f"s3://{bucket}-missing/store", *extra],
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1, (extra, r.stderr)
        assert "Traceback" not in r.stderr and f"{bucket}-missing" in r.stderr, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, r.stderr
    _fill(s3_url)
    r = subprocess.run(
        [*cmd[:4], "nope", "--store", s3_url, "--workers", "2", "--port", "1"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr, r.stderr
