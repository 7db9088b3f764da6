"""The bad-input corpus: every malformed, truncated, hostile or mismatched request gets a
4xx with a JSON error naming what was wrong; the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

TIMEOUT = 30.0
GOOD = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}


def one(**kw: Any) -> dict[str, Any]:
    return {"inputs": [{**GOOD["inputs"][0], **kw}]}


# (label, body or JSON, headers, expected status, words the error must contain)
CASES: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("not json", b"{inputs:", {}, 400, "not valid JSON"),
    ("json array", [1, 2], {}, 400, "JSON object"),
    ("no inputs", {"outputs": []}, {}, 400, "'inputs'"),
    ("empty inputs", {"inputs": []}, {}, 400, "non-empty"),
    ("input not object", {"inputs": [3]}, {}, 400, "inputs[0]"),
    ("no name", {"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, {}, 400, "name"),
    ("bad shape", one(shape=[1, -4]), {}, 400, "'shape'"),
    ("shape not list", one(shape="1x4"), {}, 400, "'shape'"),
    ("huge shape", one(shape=[1 << 20, 1 << 20]), {}, 413, "elements"),
    ("unknown datatype", one(datatype="FP128"), {}, 400, "unknown datatype"),
    (
        "missing data",
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64"}]},
        {},
        400,
        "'data' is missing",
    ),
    ("too few values", one(data=[1, 2, 3]), {}, 400, "holds 4 elements but data has 3"),
    ("wrong shape", one(shape=[2, 2]), {}, 400, "does not match the model's [-1, 4]"),
    ("wrong rank", one(shape=[4]), {}, 400, "does not match"),
    (
        "strings for numbers",
        one(datatype="BYTES", data=["1", "2", "3", "4"]),
        {},
        400,
        "got strings",
    ),
    ("string data under FP64", one(data=["1", "2", "3", "4"]), {}, 400, "got strings"),
    ("ragged", one(shape=[2, 2], data=[[1, 2], [3]]), {}, 400, "ragged"),
    ("nulls", one(data=[1, None, 3, 4]), {}, 400, "mixed or ragged"),
    ("nested objects", one(data=[{"a": 1}, 2, 3, 4]), {}, 400, "mixed or ragged"),
    (
        "NaN",
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,NaN,3,4]}]}',
        {},
        400,
        "NaN",
    ),
    (
        "Infinity",
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,Infinity,3,4]}]}',
        {},
        400,
        "NaN or infinite",
    ),
    (
        "extra input",
        {"inputs": [GOOD["inputs"][0], {**GOOD["inputs"][0], "name": "x"}]},
        {},
        400,
        "takes one input",
    ),
    ("wrong input name", one(name="features"), {}, 400, "unknown input 'features'"),
    ("duplicate input", {"inputs": [GOOD["inputs"][0], GOOD["inputs"][0]]}, {}, 400, "twice"),
    ("floats for ints", None, {}, 400, ""),  # replaced below (echo-int8)
    ("unknown output", {**GOOD, "outputs": [{"name": "proba"}]}, {}, 400, "unknown output 'proba'"),
    ("bad parameters", {**GOOD, "parameters": [1]}, {}, 400, "'parameters'"),
    ("bad id", {**GOOD, "id": 5}, {}, 400, "'id'"),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, {}, 400, "nested too deeply"),
    (
        "wrong content type",
        b"a=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "content type",
    ),
    (
        "binary header too long",
        b"{}",
        {"Inference-Header-Content-Length": "99"},
        400,
        "Inference-Header-Content-Length",
    ),
    (
        "binary header not a number",
        b"{}",
        {"Inference-Header-Content-Length": "x"},
        400,
        "Inference-Header-Content-Length",
    ),
]


def _binary(
    size: int, payload: bytes, datatype: str = "FP64", shape: Any = (1, 4)
) -> tuple[bytes, dict]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    return head + payload, {"Inference-Header-Content-Length": str(len(head))}


BINARY = [
    ("binary size disagrees with shape", *_binary(16, b"\0" * 16), 400, "needs 32"),
    ("binary runs past the body", *_binary(32, b"\0" * 8), 400, "runs past the end"),
    ("binary trailing bytes", *_binary(32, b"\0" * 40), 400, "no input's binary_data_size"),
    ("binary NaN", *_binary(32, b"\0" * 24 + b"\0\0\0\0\0\0\xf8\x7f"), 400, "NaN"),
]


def _send(url: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        h = {"Content-Type": "application/json", **headers}
        return httpx.post(url + path, content=body, headers=h, timeout=TIMEOUT)
    return httpx.post(url + path, json=body, headers=headers, timeout=TIMEOUT)


def _check(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    assert words in message, message
    assert "0x" not in message and "Traceback" not in message  # no addresses, no internals


@pytest.mark.parametrize(
    ("label", "body", "headers", "status", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_oip_bad_input(
    url: str, label: str, body: Any, headers: dict, status: int, words: str
) -> None:
    path = "/v2/models/iris/infer"
    if label == "floats for ints":
        path = "/v2/models/echo-int8/infer"
        body = {
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1.5, 2]}]
        }
        words = "expected integers"
    _check(_send(url, path, body, headers), status, words)


@pytest.mark.parametrize(
    ("label", "body", "headers", "status", "words"), BINARY, ids=[b[0] for b in BINARY]
)
def test_binary_bad_input(
    url: str, label: str, body: bytes, headers: dict, status: int, words: str
) -> None:
    r = httpx.post(url + "/v2/models/iris/infer", content=body, headers=headers, timeout=TIMEOUT)
    _check(r, status, words)


def test_bytes_binary_lengths_disagree(url: str) -> None:
    body, headers = _binary(9, b"\x07\0\0\0abc" + b"\0\0", "BYTES", (1, 2))
    r = httpx.post(
        url + "/v2/models/echo-bytes/infer", content=body, headers=headers, timeout=TIMEOUT
    )
    _check(r, 400, "runs past binary_data_size")


def test_out_of_range_and_dataframe_mismatch(url: str) -> None:
    r = _send(
        url,
        "/v2/models/echo-uint8/infer",
        {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [300, 1]}]},
        {},
    )
    _check(r, 400, "out of range for uint8")
    missing = {"inputs": [{"name": "size", "shape": [1], "datatype": "INT64", "data": [1]}]}
    _check(_send(url, "/v2/models/frame/infer", missing, {}), 400, "missing input(s) 'color'")
    extra = {
        "inputs": [
            {"name": "size", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]},
            {"name": "weight", "shape": [1], "datatype": "FP32", "data": [1]},
        ]
    }
    _check(_send(url, "/v2/models/frame/infer", extra, {}), 400, "unknown input(s) 'weight'")
    rows = {
        "inputs": [
            {"name": "size", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]},
        ]
    }
    _check(_send(url, "/v2/models/frame/infer", rows, {}), 400, "rows")


MLFLOW = [
    ("no key", {"data": [[1, 2, 3, 4]]}, {}, 400, "exactly one of"),
    (
        "two keys",
        {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
        {},
        400,
        "exactly one of",
    ),
    (
        "split without data",
        {"dataframe_split": {"columns": ["a"]}},
        {},
        400,
        "'columns' and 'data'",
    ),
    (
        "records with different keys",
        {"dataframe_records": [{"a": 1}, {"b": 2}]},
        {},
        400,
        "different keys",
    ),
    ("strings", {"instances": [["a", "b", "c", "d"]]}, {}, 400, "got strings"),
    ("wrong width", {"instances": [[1, 2, 3]]}, {}, 400, "does not match"),
    ("bad csv rows", b"a,b,c,d\n1,2\n", {"Content-Type": "text/csv"}, 400, "every CSV row"),
    ("csv header only", b"a,b,c,d\n", {"Content-Type": "text/csv"}, 400, "header row"),
    ("csv not utf-8", b"a,b\n\xff,\xfe\n", {"Content-Type": "text/csv"}, 400, "UTF-8"),
    ("xml", b"<x/>", {"Content-Type": "application/xml"}, 415, "content type"),
    ("params not object", {"instances": [[1, 2, 3, 4]], "params": [1]}, {}, 400, "'params'"),
]


@pytest.mark.parametrize(
    ("label", "body", "headers", "status", "words"), MLFLOW, ids=[m[0] for m in MLFLOW]
)
def test_mlflow_bad_input(
    url: str, label: str, body: Any, headers: dict, status: int, words: str
) -> None:
    _check(_send(url, "/invocations?model=iris", body, headers), status, words)


def test_body_over_the_limit_is_413(url: str) -> None:
    big = b'{"inputs":[' + b" " * (2 << 20) + b"]}"
    r = httpx.post(
        url + "/v2/models/iris/infer",
        content=big,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    _check(r, 413, "at most")

    def chunks():  # no Content-Length: the limit still holds while reading
        for _ in range(40):
            yield b" " * 65536

    r = httpx.post(
        url + "/v2/models/iris/infer",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    _check(r, 413, "over")


def test_slow_client_gets_408_and_others_are_served(url: str) -> None:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"inputs"'
        )
        started = time.monotonic()
        # Meanwhile another client is served normally.
        assert (
            httpx.post(url + "/v2/models/iris/infer", json=GOOD, timeout=TIMEOUT).status_code == 200
        )
        s.settimeout(15)
        reply = b""
        while b"\r\n\r\n" not in reply:
            part = s.recv(4096)
            if not part:
                break
            reply += part
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - started < 10


def test_unknown_routes_and_methods_are_json(url: str) -> None:
    r = httpx.get(url + "/v3/anything", timeout=TIMEOUT)
    assert r.status_code == 404 and "no route" in r.json()["error"]
    r = httpx.get(url + "/v2/models/iris/infer", timeout=TIMEOUT)
    assert r.status_code == 405 and "error" in r.json()


def test_server_still_healthy_after_the_corpus(url: str) -> None:
    assert httpx.post(url + "/v2/models/iris/infer", json=GOOD, timeout=TIMEOUT).status_code == 200
    text = httpx.get(url + "/metrics", timeout=TIMEOUT).text
    assert 'status="500"' not in text.replace('model="strict",status="500"', "")
