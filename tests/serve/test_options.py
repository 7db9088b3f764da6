"""Bearer token, access logs, adaptive batching and the command line's refusals."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from amber.serve.batching import Batcher
from amber.serve.metrics import Metrics
from amber.serve.models import ServedModel
from amber.store.signature import infer
from tests.serve.helpers import iris, server

TIMEOUT = 30.0


def _rows(X: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": "FP64",
                "data": X.ravel().tolist(),
            }
        ]
    }


def test_token_logs_and_batching(models_store: Any, tmp_path: Path) -> None:
    root, fitted = models_store
    clf = fitted["iris"]
    X, _ = iris()
    log = tmp_path / "server.log"
    args = ["--token", "s3cret", "--batch", "iris=64,20", "--log-level", "info"]
    with server(root, ["iris@production", "strict"], *args, log=log) as url:
        # The token: required everywhere but the probes, compared in constant time.
        assert httpx.get(url + "/v2/health/ready", timeout=TIMEOUT).status_code == 200
        assert httpx.get(url + "/ping", timeout=TIMEOUT).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = httpx.post(
                url + "/v2/models/iris/infer", json=_rows(X[:1]), headers=headers, timeout=TIMEOUT
            )
            assert r.status_code == 401 and "token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url + "/metrics", timeout=TIMEOUT).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}

        # Batching: concurrent requests, each gets the answer for its own rows.
        errors: list[str] = []

        def client(i: int) -> None:
            rows = X[(i * 3) % 140 : (i * 3) % 140 + 1 + i % 4]
            with httpx.Client(timeout=TIMEOUT, headers=auth) as c:
                for _ in range(4):
                    r = c.post(url + "/v2/models/iris/infer", json=_rows(rows))
                    if (
                        r.status_code != 200
                        or r.json()["outputs"][0]["data"] != clf.predict(rows).tolist()
                    ):
                        errors.append(r.text[:200])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors[:3]
        metrics = httpx.get(url + "/metrics", headers=auth, timeout=TIMEOUT).text
        count = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('amber_batch_size_count{model="iris"}')
        )
        assert 0 < count <= 96  # 96 requests, answered by at most that many calls
        # A bad request in the batched path fails alone, with its own 400.
        r = httpx.post(
            url + "/v2/models/iris/infer", json=_rows(X[:1, :3]), headers=auth, timeout=TIMEOUT
        )
        assert r.status_code == 400
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("path") == "/v2/models/iris/infer"]
    assert {e["status"] for e in access} >= {200, 401, 400}
    assert {e["model_version"] for e in access if e["status"] == 200} == {"1"}
    assert all({"time", "client", "method", "ms"} <= e.keys() for e in access)
    assert "s3cret" not in log.read_text()


def test_batcher_groups_waiting_requests() -> None:
    """In process: while the model is busy, requests queue and are answered together."""
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    clf = LogisticRegression(max_iter=300).fit(X, y)
    calls: list[int] = []

    class Slow:
        def predict(self, x: Any) -> Any:
            calls.append(len(x))
            time.sleep(0.05)
            return clf.predict(x)

    model = ServedModel("slow", 1, Slow(), infer(clf, X[:2]))
    metrics = Metrics()
    batcher = Batcher("slow", 8, 1000, metrics)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *[batcher.submit(model, X[i : i + 2], "predict") for i in range(0, 40, 2)]
        )

    results = asyncio.run(main())
    for i, out in zip(range(0, 40, 2), results, strict=True):
        assert out[0][1].tolist() == clf.predict(X[i : i + 2]).tolist()
    assert sum(calls) == 40 and max(calls) == 8 and len(calls) < 20, calls
    assert 'amber_batch_size_count{model="slow"}' in metrics.render()


class _Result:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr


def _cli(*args: str) -> _Result:
    """``amber serve ...`` in process: every case here fails before a server would start."""
    from typer.testing import CliRunner

    from amber.cli.main import app

    result = CliRunner().invoke(app, ["serve", *args])
    return _Result(result.exit_code, result.output + (getattr(result, "stderr", "") or ""))


def test_cli_refusals(models_store: Any, tmp_path: Path) -> None:
    root = models_store[0]
    r = _cli("iris", "--store", str(tmp_path / "none"))
    assert r.returncode == 2 and "no store" in r.stderr
    r = _cli("nope", "--store", str(root), "--port", "1")
    assert r.returncode == 2 and "nope" in r.stderr
    r = _cli("iris", "--store", str(root), "--batch", "iris=x")
    assert r.returncode == 2 and "--batch" in r.stderr
    r = _cli("strict", "--store", str(root), "--batch", "iris=4")
    assert r.returncode == 2 and "not served" in r.stderr
    r = _cli("iris:fit", "--store", str(root))
    assert r.returncode == 2 and "no method 'fit'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("spec", ["iris@", "../x", "iris@production:"])
def test_cli_bad_specs(models_store: Any, spec: str) -> None:
    r = _cli(spec, "--store", str(models_store[0]))
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr


def test_forest_evaluator_can_be_turned_off(models_store: Any) -> None:
    root, fitted = models_store
    forest = fitted["forest"]
    X, _ = iris()
    on = ServedModel("forest", 1, forest, None)
    off = ServedModel("forest", 1, forest, None, forest_evaluator=False)
    assert (on.evaluator, off.evaluator) == ("amber-forest", "model")
    for model in (on, off):
        ((_, proba),) = model.call(X[:3], "predict_proba")
        assert proba.tobytes() == forest.predict_proba(X[:3]).tobytes()
    with server(root, ["forest"], "--no-forest-evaluator") as url:
        meta = httpx.get(url + "/v2/models/forest", timeout=TIMEOUT).json()
        assert meta["parameters"]["evaluator"] == "model"
        r = httpx.post(url + "/v2/models/forest/infer", json=_rows(X[:4]), timeout=TIMEOUT)
        assert r.json()["outputs"][0]["data"] == forest.predict(X[:4]).tolist()


def test_app_refuses_a_forest_evaluator_that_is_not_a_bool(models_store: Any) -> None:
    from amber.errors import InvalidArgumentError
    from amber.serve import app

    root, _ = models_store
    with pytest.raises(InvalidArgumentError, match="forest_evaluator must be True or False"):
        app("forest", store=root, forest_evaluator="no")  # type: ignore[arg-type]
