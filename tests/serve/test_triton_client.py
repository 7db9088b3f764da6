"""Conformance with the official Open Inference Protocol client, ``tritonclient[http]``,
run from its own virtual environment (``$AMBER_TRITONCLIENT_PYTHON``, default
/work/peers/tritonclient/bin/python) against the real server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serve.helpers import iris

PYTHON = os.environ.get("AMBER_TRITONCLIENT_PYTHON", "/work/peers/tritonclient/bin/python")

SCRIPT = r"""
import json, sys
import numpy as np
import tritonclient.http as http

c = http.InferenceServerClient(url=sys.argv[1], network_timeout=30)
X = np.array(json.loads(sys.argv[2]))
out = {"live": c.is_server_live(), "ready": c.is_server_ready(),
       "model_ready": c.is_model_ready("iris"), "server": c.get_server_metadata(),
       "model": c.get_model_metadata("iris"), "versioned": c.is_model_ready("iris", "1")}
for binary in (True, False):
    inp = http.InferInput("input", list(X.shape), "FP64")
    inp.set_data_from_numpy(X, binary_data=binary)
    req = http.InferRequestedOutput("predict", binary_data=binary)
    res = c.infer("iris", [inp], outputs=[req])
    out[f"predict_binary_{binary}"] = res.as_numpy("predict").tolist()
    out["version"] = res.get_response()["model_version"]
words = np.array([["héllo", "w"]], dtype=object)
for binary in (True, False):
    inp = http.InferInput("input", [1, 2], "BYTES")
    inp.set_data_from_numpy(words, binary_data=binary)
    want = http.InferRequestedOutput("transform", binary_data=binary)
    res = c.infer("echo-bytes", [inp], outputs=[want])
    got = res.as_numpy("transform")
    out[f"bytes_binary_{binary}"] = [v.decode() if isinstance(v, bytes) else v for v in got.ravel()]
half = np.arange(6, dtype=np.float16).reshape(3, 2)
inp = http.InferInput("input", [3, 2], "FP16")
inp.set_data_from_numpy(half, binary_data=True)
want = http.InferRequestedOutput("transform", binary_data=True)
res = c.infer("echo-fp16", [inp], outputs=[want])
out["fp16"] = res.as_numpy("transform").tolist()
try:
    c.infer("nope", [inp])
except http.InferenceServerException as exc:
    out["missing"] = str(exc)
print(json.dumps(out))
"""


def test_official_client(url: str, models_store: Any) -> None:
    if not Path(PYTHON).exists():
        pytest.skip(f"tritonclient[http] is not installed at {PYTHON} (AMBER_TRITONCLIENT_PYTHON)")
    X, _ = iris()
    clf = models_store[1]["iris"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [PYTHON, "-c", SCRIPT, url.removeprefix("http://"), json.dumps(X[:5].tolist())],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["live"] and out["ready"] and out["model_ready"] and out["versioned"]
    assert out["server"]["name"] == "amber"
    assert out["model"]["inputs"][0]["name"] == "input"
    want = clf.predict(X[:5]).tolist()
    assert out["predict_binary_True"] == want and out["predict_binary_False"] == want
    assert out["version"] == "1"
    assert out["bytes_binary_True"] == ["héllo", "w"] == out["bytes_binary_False"]
    assert out["fp16"] == [[0, 1], [2, 3], [4, 5]]
    assert "not served" in out["missing"]
