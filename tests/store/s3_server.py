"""A real S3-compatible server for the tests: moto's ThreadedMotoServer on loopback, one
per test session, with a fresh bucket per test. Skipped (saying why) where moto or obstore
is not installed; both are in the ``dev`` extra."""

from __future__ import annotations

import itertools
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS = {"access_key_id": "amber-test", "secret_access_key": "amber-test-secret"}
_counter = itertools.count()


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def create_bucket(self, name: str | None = None) -> str:
        """A new, empty bucket (moto accepts unsigned path-style requests)."""
        name = name or f"amber-test-{next(_counter)}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        return name

    def backend(self, bucket: str, prefix: str = "store", **options: Any) -> Any:
        from amber.store.s3 import S3Backend

        return S3Backend(bucket, prefix, endpoint=self.endpoint, **{**ACCESS, **options})


def conditional_writes_one_at_a_time(app: Any) -> Any:
    """``app`` with its conditional writes made atomic, as S3 makes them.

    moto answers ``If-None-Match: *`` and ``If-Match`` by checking, then writing, without a
    lock: two concurrent creates of one key can both succeed there, never on S3 (observed
    as a rare failure of the put-if-absent race tests under load). Requests carrying either
    header, and deletes, run one at a time; everything else stays concurrent."""
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        conditional = (
            "HTTP_IF_NONE_MATCH" in environ
            or "HTTP_IF_MATCH" in environ
            or environ.get("REQUEST_METHOD") == "DELETE"
        )
        if not conditional:
            return app(environ, start_response)
        with lock:
            # The whole answer is produced under the lock: moto writes before it returns.
            return list(app(environ, start_response))

    return wrapped


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("obstore", reason="obstore is not installed (pip install amber[s3])")
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (it is in amber[dev])"
    )
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    server._server.app = conditional_writes_one_at_a_time(server._server.app)
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.fixture
def s3_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """An empty store location ``s3://bucket/store`` that ``Store(url)`` (and forked
    children) reach through the standard AWS_* variables; the client cache is in tmp."""
    bucket = s3_server.create_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ACCESS["secret_access_key"])
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AMBER_CACHE", str(tmp_path / "amber-cache"))
    return f"s3://{bucket}/store"


@pytest.fixture
def proxy(s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fault proxy in front of the server; s3_url's store is reached through it."""
    from tests.store.fault_proxy import FaultProxy

    faults = FaultProxy(s3_server.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faults.endpoint)
    try:
        yield faults
    finally:
        faults.stop()
