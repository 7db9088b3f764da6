"""Shared pieces of the serving tests: a store of small models and a real server in a
subprocess on 127.0.0.1, with every wait bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0

# OIP datatype -> numpy dtype of an echo model (FunctionTransformer returns its input).
ECHO_DTYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def fill_store(root: Path) -> dict[str, Any]:
    """Every model the protocol tests serve; returns what the tests compare against."""
    import pandas as pd
    import torch
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from torch import nn

    from amber.store import Store

    X, y = iris()
    out: dict[str, Any] = {}
    with Store(root) as store:
        clf = LogisticRegression(max_iter=500).fit(X, y)
        store.save(clf, "iris", input_example=X[:5])
        store.set_alias("iris@1", "production")
        out["iris"] = clf

        frame = pd.DataFrame({"color": ["red", "blue", "red", "green"] * 5, "size": range(20)})
        target = [0, 1, 0, 1] * 5
        pipe = Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                            ("scale", StandardScaler(), ["size"]),
                        ]
                    ),
                ),
                ("clf", LogisticRegression()),
            ]
        ).fit(frame, target)
        store.save(
            pipe,
            "frame",
            input_example=frame.head(3),
            metadata={"input_example": [{"color": "red", "size": 1}]},
        )
        out["frame"] = (pipe, frame)

        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
        store.save(net, "net", input_example=torch.zeros(2, 4))
        out["net"] = net

        # A forest answers through amber's vectorized evaluator (a few rows) or its own.
        forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
        store.save(forest, "forest", input_example=X[:5])
        out["forest"] = forest

        for datatype, dtype in ECHO_DTYPES.items():
            example = (
                np.array([["a", "b"]], dtype=object)
                if dtype == "object"
                else np.zeros((1, 2), dtype=dtype)
            )
            store.save(FunctionTransformer(), f"echo-{datatype.lower()}", input_example=example)

        # Raises on categories it never saw: a model error on valid input (500).
        enc = OneHotEncoder(handle_unknown="error").fit(np.array([["a"], ["b"]], dtype=object))
        store.save(
            enc,
            "strict",
            input_example=np.array([["a"]], dtype=object),
            metadata={"input_example": [["a"]]},
        )
    return out


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.pop("AMBER_SERVE_TOKEN", None)
    return e


@contextlib.contextmanager
def server(
    store: Path, specs: list[str], *args: str, log: Path | None = None, extra_env: Any = None
) -> Iterator[str]:
    """``amber serve`` in a subprocess on 127.0.0.1 and a free port; yields the base URL
    once every model is ready; stopped (then killed if it lingers) on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "amber.cli.main", "serve", *specs, "--store", str(store)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args]
    logfile = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        env={**env(), **(extra_env or {})},
        stdout=logfile,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else log.read_text()  # type: ignore[union-attr]
                raise AssertionError(f"server exited with {proc.returncode}: {err[-3000:]}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within {START_TIMEOUT} s")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if proc.stderr:
            proc.stderr.close()
        if log:
            logfile.close()  # type: ignore[union-attr]


ALL_SPECS = [
    "iris@production",
    "frame",
    "net",
    "forest",
    "strict",
    *[f"echo-{d.lower()}:transform" for d in ECHO_DTYPES],
]
