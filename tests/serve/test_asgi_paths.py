"""The ASGI layers in process (httpx's ASGI transport, no sockets): the lean inference path
answers exactly as the Starlette routes do (same bodies, statuses and headers, also when
the app is mounted under a prefix and only the routes can answer), a client that leaves
mid-body gets nothing and is counted, and requests run on the event loop only while the
model has been quick."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from amber.serve import app as build
from amber.serve.models import QUICK_SECONDS
from amber.store import Store
from tests.serve.helpers import iris

X = iris()[0][:3]
OIP = {
    "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP64", "data": X.ravel().tolist()}]
}
REQUESTS = [
    ("/invocations", {"json": {"inputs": X.tolist()}}),
    ("/invocations?model=iris", {"json": {"instances": X.tolist()}}),
    ("/invocations?model=nope", {"json": {"inputs": X.tolist()}}),
    ("/invocations", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("/invocations", {"content": b"a,b\n1,2", "headers": {"content-type": "text/csv"}}),
    ("/v2/models/iris/infer", {"json": OIP}),
    ("/v2/models/iris/versions/1/infer", {"json": OIP}),
    ("/v2/models/iris/versions/9/infer", {"json": OIP}),
    ("/v2/models/nope/infer", {"json": OIP}),
    ("/v2/models/iris/infer", {"content": b"x", "headers": {"content-type": "text/plain"}}),
    ("/v2/models/iris/infer", {"json": {"inputs": [{"name": "input"}]}}),
]


@pytest.fixture(scope="module")
def application(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sklearn.linear_model import LogisticRegression

    X_all, y = iris()
    root = tmp_path_factory.mktemp("asgi") / "store"
    with Store(root) as store:
        store.save(LogisticRegression(max_iter=500).fit(X_all, y), "iris", input_example=X_all[:2])
    return build(["iris"], store=str(root), poll_interval=0, access_log=False)


async def _ask(asgi: Any, base: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(base + path, **kwargs)


def test_lean_path_answers_as_the_routes_do(application: Any) -> None:
    mounted = Starlette(routes=[Mount("/serve", app=application)])

    async def run() -> list[tuple[httpx.Response, httpx.Response]]:
        return [
            (
                await _ask(application, "", path, kwargs),
                await _ask(mounted, "/serve", path, kwargs),
            )
            for path, kwargs in REQUESTS
        ]

    statuses = []
    for (path, _), (lean, routed) in zip(REQUESTS, asyncio.run(run()), strict=True):
        assert lean.status_code == routed.status_code, (path, lean.text, routed.text)
        assert lean.content == routed.content, path
        for header in ("content-type", "content-length", "x-amber-model-version"):
            assert lean.headers.get(header) == routed.headers.get(header), (path, header)
        statuses.append(lean.status_code)
    assert statuses == [200, 200, 404, 400, 400, 200, 200, 404, 404, 415, 400]
    first = asyncio.run(_ask(application, "", *REQUESTS[0]))
    assert json.loads(first.content) == {"predictions": [0, 0, 0]}


def test_client_leaving_mid_body_gets_nothing_and_is_counted(application: Any) -> None:
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": b'{"inputs": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/invocations",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(application(scope, receive, send))
    assert [m for m in sent if m["type"] == "http.response.body"] == []
    metrics = application.state.server.metrics.render()
    assert 'endpoint="invocations",model="iris",status="499"' in metrics


def test_only_quick_models_run_on_the_event_loop(application: Any) -> None:
    server = application.state.server
    model = server.follower.slots["iris"].current
    assert model.cost is not None  # timed by the warm-up

    def where() -> int:
        return threading.get_ident()

    async def run(cost: float, body: bytes) -> int:
        model.cost = cost
        return await server._run(model, body, where)

    loop_thread = threading.get_ident()
    assert asyncio.run(run(QUICK_SECONDS / 10, b"{}")) == loop_thread
    assert asyncio.run(run(QUICK_SECONDS * 10, b"{}")) != loop_thread  # a worker thread
    assert asyncio.run(run(QUICK_SECONDS / 10, b" " * (1 << 17))) != loop_thread  # big body
    # A slow call moves the average over the limit: the next ones leave the loop.
    model.cost = QUICK_SECONDS / 2
    model.timed(lambda: threading.Event().wait(QUICK_SECONDS * 20))
    assert not model.quick


@pytest.mark.parametrize("version", [(3, 10), (3, 12)])
def test_raw_body_reader_limits(monkeypatch: pytest.MonkeyPatch, version: tuple[int, int]) -> None:
    """Both ways of reading (one timer on 3.11+, a timer per chunk before): the body, 413
    past the limit (declared or counted), 408 when it stalls, a disconnect."""
    import types

    from amber.serve import http
    from amber.serve.problems import RequestError

    monkeypatch.setattr(http, "sys", types.SimpleNamespace(version_info=version))

    def feeder(*messages: dict[str, Any], stall: bool = False) -> Any:
        pending = list(messages)

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            if stall:
                await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        return receive

    def part(body: bytes, more: bool) -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": more}

    read = http.read_asgi_body
    assert asyncio.run(read(feeder(part(b"ab", True), part(b"c", False)), None, 10, 5)) == b"abc"
    with pytest.raises(RequestError) as caught:
        asyncio.run(read(feeder(part(b"x", False)), b"11", 10, 5))
    assert caught.value.status == 413
    with pytest.raises(RequestError) as caught:
        asyncio.run(read(feeder(part(b"123456", True), part(b"123456", False)), None, 10, 5))
    assert caught.value.status == 413
    with pytest.raises(RequestError) as caught:
        asyncio.run(read(feeder(part(b"12", True), stall=True), None, 10, 0.2))
    assert caught.value.status == 408
    with pytest.raises(RequestError, match="not a number"):
        asyncio.run(read(feeder(part(b"", False)), b"ten", 10, 5))
    with pytest.raises(http.Disconnected):
        asyncio.run(read(feeder(part(b"12", True)), None, 10, 5))
