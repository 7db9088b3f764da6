"""Open Inference Protocol v2 and MLflow scoring against a real server in a subprocess."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serve.helpers import ECHO_DTYPES, iris

TIMEOUT = 30.0


def get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, timeout=TIMEOUT)


def post(url: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.post(url + path, timeout=TIMEOUT, **kw)


def tensor(name: str, arr: np.ndarray, datatype: str) -> dict[str, Any]:
    data = arr.reshape(-1).tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


def binary_body(inputs: list[tuple[str, np.ndarray, str]], **extra: Any) -> tuple[bytes, dict]:
    """A request in the binary tensor extension, built from the specification."""
    head: dict[str, Any] = {"inputs": [], **extra}
    blobs = []
    for name, arr, datatype in inputs:
        if datatype == "BYTES":
            raw = b"".join(
                struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in arr.reshape(-1))
            )
        else:
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        head["inputs"].append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        blobs.append(raw)
    js = json.dumps(head).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(js)),
        "Content-Type": "application/octet-stream",
    }
    return js + b"".join(blobs), headers


def read_binary(resp: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    n = int(resp.headers["inference-header-content-length"])
    head = json.loads(resp.content[:n])
    pos, out = n, {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        chunk = resp.content[pos : pos + size]
        pos += size
        if o["datatype"] == "BYTES":
            vals, i = [], 0
            while i < len(chunk):
                (k,) = struct.unpack_from("<I", chunk, i)
                vals.append(chunk[i + 4 : i + 4 + k].decode())
                i += 4 + k
            out[o["name"]] = np.array(vals, dtype=object).reshape(o["shape"])
        else:
            dt = np.dtype(ECHO_DTYPES[o["datatype"]]).newbyteorder("<")
            out[o["name"]] = np.frombuffer(chunk, dt).reshape(o["shape"])
    assert pos == len(resp.content)
    return head, out


# -- health and metadata -------------------------------------------------------------------


def test_health_and_server_metadata(url: str) -> None:
    assert get(url, "/v2/health/live").json() == {"live": True}
    assert get(url, "/v2/health/ready").status_code == 200
    meta = get(url, "/v2").json()
    assert meta["name"] == "amber" and "binary_tensor_data" in meta["extensions"]
    assert get(url, "/ping").status_code == 200
    assert get(url, "/health").status_code == 200
    import amber

    assert get(url, "/version").text == amber.__version__


def test_model_metadata_from_signature(url: str) -> None:
    meta = get(url, "/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert meta["parameters"]["spec"] == "iris@production"
    assert get(url, "/v2/models/iris/versions/1").json()["versions"] == ["1"]
    assert get(url, "/v2/models/iris/ready").json()["ready"] is True
    assert get(url, "/v2/models/iris/versions/1/ready").status_code == 200
    frame = get(url, "/v2/models/frame").json()
    assert frame["inputs"] == [
        {"name": "color", "datatype": "BYTES", "shape": [-1]},
        {"name": "size", "datatype": "INT64", "shape": [-1]},
    ]
    net = get(url, "/v2/models/net").json()
    assert net["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    # Torch modules have no predict: outputs come from the warm-up call.
    assert net["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]


def test_unknown_model_and_version_are_404(url: str) -> None:
    for path in (
        "/v2/models/nope",
        "/v2/models/iris/versions/9",
        "/v2/models/iris/versions/9/ready",
    ):
        r = get(url, path)
        assert r.status_code == 404 and "error" in r.json()
    r = post(url, "/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404 and "not served" in r.json()["error"]


# -- inference -----------------------------------------------------------------------------


def test_infer_json_matches_local_predictions(url: str, models_store: Any) -> None:
    X, _ = iris()
    clf = models_store[1]["iris"]
    r = post(
        url, "/v2/models/iris/infer", json={"id": "r1", "inputs": [tensor("input", X[:7], "FP64")]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "iris" and body["model_version"] == "1" and body["id"] == "r1"
    (out,) = body["outputs"]
    assert out["name"] == "predict" and out["datatype"] == "INT64" and out["shape"] == [7]
    assert out["data"] == clf.predict(X[:7]).tolist()
    # Nested data and an explicit version work too; FP32 input is cast to the model's FP64.
    nested = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X[:2].tolist()}
    r = post(url, "/v2/models/iris/versions/1/infer", json={"inputs": [nested]})
    assert r.json()["outputs"][0]["data"] == clf.predict(X[:2]).tolist()


def test_method_per_request_and_binary_outputs(url: str, models_store: Any) -> None:
    X, _ = iris()
    clf = models_store[1]["iris"]
    req = {
        "inputs": [tensor("input", X[:5], "FP64")],
        "parameters": {"method": "predict_proba"},
        "outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}],
    }
    r = post(url, "/v2/models/iris/infer", json=req)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    head, outs = read_binary(r)
    np.testing.assert_array_equal(outs["predict_proba"], clf.predict_proba(X[:5]))
    assert head["model_version"] == "1"
    bad = {**req, "parameters": {"method": "fit"}}
    r = post(url, "/v2/models/iris/infer", json=bad)
    assert r.status_code == 400 and "predict_proba" in r.json()["error"]


def test_forest_through_amber_evaluator_is_bitwise_the_model(url: str, models_store: Any) -> None:
    X, _ = iris()
    forest = models_store[1]["forest"]
    assert get(url, "/v2/models/forest").json()["parameters"]["evaluator"] == "amber-forest"
    assert get(url, "/v2/models/iris").json()["parameters"]["evaluator"] == "model"
    rows = np.random.default_rng(0).permutation(np.concatenate([X, X]))  # 300: past MAX_ROWS
    for n in (1, 7, 300):
        body, headers = binary_body(
            [("input", rows[:n], "FP64")],
            parameters={"binary_data_output": True, "method": "predict_proba"},
        )
        r = post(url, "/v2/models/forest/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        _, outs = read_binary(r)
        assert outs["predict_proba"].tobytes() == forest.predict_proba(rows[:n]).tobytes()
        r = post(
            url, "/v2/models/forest/infer", json={"inputs": [tensor("input", rows[:n], "FP64")]}
        )
        assert r.json()["outputs"][0]["data"] == forest.predict(rows[:n]).tolist()


def test_binary_inputs_and_outputs(url: str, models_store: Any) -> None:
    X, _ = iris()
    clf = models_store[1]["iris"]
    body, headers = binary_body([("input", X[:9], "FP64")], parameters={"binary_data_output": True})
    r = post(url, "/v2/models/iris/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    _, outs = read_binary(r)
    np.testing.assert_array_equal(outs["predict"], clf.predict(X[:9]))


@pytest.mark.parametrize("datatype", sorted(ECHO_DTYPES))
def test_every_datatype_json_and_binary(url: str, datatype: str) -> None:
    rng = np.random.default_rng(len(datatype))
    dtype = ECHO_DTYPES[datatype]
    if datatype == "BYTES":
        arr = np.array([["héllo", ""], ["x" * 300, "z"]], dtype=object)
    elif datatype == "BOOL":
        arr = rng.integers(0, 2, (3, 2)).astype(bool)
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        arr = np.array([[info.min, info.max], [0, 1], [info.max - 1, info.min + 1]], dtype=dtype)
    else:
        arr = rng.standard_normal((3, 2)).astype(dtype)
    path = f"/v2/models/echo-{datatype.lower()}/infer"
    # JSON in, JSON out.
    r = post(url, path, json={"inputs": [tensor("input", arr, datatype)]})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["datatype"] == datatype and out["shape"] == list(arr.shape)
    got = np.array(out["data"], dtype=dtype).reshape(arr.shape)
    if datatype == "FP16":
        np.testing.assert_array_equal(got, arr)
    else:
        assert got.tolist() == arr.tolist()
    # Binary in, binary out: bit-exact.
    body, headers = binary_body([("input", arr, datatype)], parameters={"binary_data_output": True})
    r = post(url, path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    head, outs = read_binary(r)
    assert head["outputs"][0]["datatype"] == datatype
    assert outs["transform"].tolist() == arr.tolist()


def test_dataframe_model_with_bytes_columns(url: str, models_store: Any) -> None:
    pipe, frame = models_store[1]["frame"]
    inputs = [
        {"name": "color", "shape": [4], "datatype": "BYTES", "data": frame["color"][:4].tolist()},
        {"name": "size", "shape": [4, 1], "datatype": "INT64", "data": frame["size"][:4].tolist()},
    ]
    r = post(url, "/v2/models/frame/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == pipe.predict(frame.head(4)).tolist()
    # The same columns through the binary extension.
    body, headers = binary_body(
        [
            ("color", np.array(frame["color"][:4], dtype=object), "BYTES"),
            ("size", frame["size"][:4].to_numpy(), "INT64"),
        ]
    )
    r = post(url, "/v2/models/frame/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == pipe.predict(frame.head(4)).tolist()


def test_torch_module_forward(url: str, models_store: Any) -> None:
    import torch

    net = models_store[1]["net"]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    body, headers = binary_body([("input", x, "FP32")], parameters={"binary_data_output": True})
    r = post(url, "/v2/models/net/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    _, outs = read_binary(r)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outs["output"], expected, rtol=1e-6, atol=1e-6)


# -- MLflow scoring ------------------------------------------------------------------------


def test_mlflow_payloads(url: str, models_store: Any) -> None:
    X, _ = iris()
    clf = models_store[1]["iris"]
    want = clf.predict(X[:3]).tolist()
    payloads = [
        {"instances": X[:3].tolist()},
        {"inputs": X[:3].tolist()},
        {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": X[:3].tolist()}},
        {"dataframe_records": [dict(zip("abcd", row, strict=True)) for row in X[:3].tolist()]},
    ]
    for payload in payloads:
        r = post(url, "/invocations?model=iris", json=payload)
        assert r.status_code == 200, (payload, r.text)
        assert r.json() == {"predictions": want}
        assert r.headers["x-amber-model-version"] == "1"
    csv = "a,b,c,d\n" + "\n".join(",".join(map(str, row)) for row in X[:3].tolist())
    r = post(url, "/invocations?model=iris", content=csv, headers={"Content-Type": "text/csv"})
    assert r.json() == {"predictions": want}, r.text
    r = post(
        url,
        "/invocations?model=iris",
        json={"instances": X[:3].tolist(), "params": {"method": "predict_proba"}},
    )
    np.testing.assert_allclose(r.json()["predictions"], clf.predict_proba(X[:3]))


def test_mlflow_dataframe_model(url: str, models_store: Any) -> None:
    pipe, frame = models_store[1]["frame"]
    want = pipe.predict(frame.head(5)).tolist()
    split = json.loads(frame.head(5).to_json(orient="split", index=False))
    r = post(url, "/invocations?model=frame", json={"dataframe_split": split})
    assert r.json() == {"predictions": want}, r.text
    records = frame.head(5).to_dict(orient="records")
    r = post(url, "/invocations?model=frame", json={"dataframe_records": records})
    assert r.json() == {"predictions": want}, r.text
    csv = frame.head(5).to_csv(index=False)
    r = post(url, "/invocations?model=frame", content=csv, headers={"Content-Type": "text/csv"})
    assert r.json() == {"predictions": want}, r.text


def test_invocations_needs_a_model_name_when_several_are_served(url: str) -> None:
    r = post(url, "/invocations", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 400 and "?model=" in r.json()["error"]


def test_model_error_is_500_and_server_keeps_serving(url: str) -> None:
    req = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": ["zzz"]}]}
    r = post(url, "/v2/models/strict/infer", json=req)
    assert r.status_code == 500
    assert "unknown categor" in r.json()["error"].lower()
    ok = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]}
    assert post(url, "/v2/models/strict/infer", json=ok).status_code == 200


def test_metrics_and_repository_load(url: str) -> None:
    X, _ = iris()
    post(url, "/v2/models/iris/infer", json={"inputs": [tensor("input", X[:1], "FP64")]})
    text = get(url, "/metrics").text
    assert 'amber_model_version{model="iris"} 1' in text
    assert 'amber_requests_total{endpoint="infer",model="iris",status="200"}' in text
    assert 'amber_request_seconds_bucket{endpoint="infer",model="iris",le="+Inf"}' in text
    r = post(url, "/v2/repository/models/iris/load")
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["swapped"] is False
