"""``--workers N`` shares the weights: the proportional set size (PSS) of N workers together
stays close to one worker's, because every worker maps the same verified store files and
inherits the framework imports from the parent it was forked from.

``AMBER_SERVE_PSS_MB`` sets the model size (the suite uses 128 MiB; the issue's ~500 MB run
is ``AMBER_SERVE_PSS_MB=512``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from amber.store import Store
from tests.serve.helpers import server

psutil = pytest.importorskip("psutil", reason="psutil measures PSS")
if not sys.platform.startswith("linux"):
    pytest.skip("PSS is read from /proc (Linux only)", allow_module_level=True)

MB = int(os.environ.get("AMBER_SERVE_PSS_MB", "128"))
WORKERS = 4


def _tree_pss(pid: int, expect_workers: int, model_bytes: int) -> tuple[int, list[int]]:
    """PSS of a server and its workers once every worker has mapped the model."""
    deadline = time.monotonic() + 120
    while True:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        workers = procs[1:] if expect_workers > 1 else procs
        ready = len(workers) >= expect_workers and all(
            p.memory_info().rss > model_bytes * 0.95 for p in workers
        )
        if ready:
            time.sleep(1.0)  # let warm-up allocations settle
            pss = [p.memory_full_info().pss for p in procs]
            return sum(pss), pss
        assert time.monotonic() < deadline, "workers did not load the model in time"
        time.sleep(0.3)


def _server_pid(url: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            proc = psutil.Process(conn.pid)
            while proc.parent() is not None and "amber.cli.main" in " ".join(
                proc.parent().cmdline()
            ):
                proc = proc.parent()
            return proc.pid
    raise AssertionError("no process listens on the server's port")


def test_four_workers_cost_little_more_than_one(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    n = int((MB * 2**20 / 4 / 4) ** 0.5)
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(n, n) for _ in range(4)]).eval()
    model_bytes = sum(p.numel() * 4 for p in net.parameters())
    root = tmp_path / "store"
    with Store(root) as store:
        store.save(net, "big", input_example=torch.zeros(1, n))
    x = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    del net
    body = {
        "inputs": [
            {"name": "input", "shape": [2, n], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    totals = {}
    for workers in (1, WORKERS):
        with server(root, ["big"], "--workers", str(workers), "--no-access-log") as url:
            pid = _server_pid(url)
            totals[workers], each = _tree_pss(pid, workers, model_bytes)
            # Every worker answers correctly (connections spread over them).
            for _ in range(2 * workers):
                with httpx.Client(timeout=60) as c:
                    r = c.post(url + "/v2/models/big/infer", json=body)
                assert r.status_code == 200, r.text
                got = np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        print(
            f"{workers} worker(s), model {model_bytes >> 20} MiB: PSS {[p >> 20 for p in each]} MiB"
        )
    ratio = totals[WORKERS] / totals[1]
    print(f"total PSS {WORKERS} workers / 1 worker = {ratio:.2f}")
    assert ratio <= 1.5, (totals, ratio)
