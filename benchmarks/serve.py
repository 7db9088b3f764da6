"""``python -m benchmarks.serve``: amber serve against ``mlflow models serve`` and MLServer,
the same models on the same machine, in one run.

1. Throughput and latency (JSON): the iris MLP and a 200-tree forest, C concurrent clients
   for D seconds after a warm-up; requests/s, p50, p99. Equal worker counts. MLflow on
   ``/invocations``; MLServer (scikit-learn runtime, ``parallel_workers`` = workers) on the
   Open Inference Protocol's ``/v2/models/{m}/infer``, against amber's same endpoint.
2. Binary: a torch MLP (~100 MB) with batches of 64 through the binary tensor extension,
   and the same rows as JSON on ``/invocations`` against MLflow's pytorch flavor (when
   MLflow's venv has torch: MLflow has no binary tensor protocol).
3. Cold start: process start to the first successful answer, for a large MLP (``--big-mb``).
4. Memory: proportional set size (PSS) of all server processes, amber with 1 and 4 workers
   and MLflow with 4 workers, serving the large MLP.

Load comes from ``wrk`` when it is on PATH (``apt-get install wrk``; ``--client``), else from
Python threads with httpx. On a 2-CPU machine the Python client needs about as much CPU per
request as the servers do, so it caps both and squeezes the ratios toward 1 (amber before its
request-path work: 1.32x MLflow's requests/s with httpx on a quiet machine, 2.5x with wrk on
a loaded one); wrk costs a few microseconds per request.

Peers live in their own virtual environments: ``$MLFLOW_PYTHON`` (default
/work/peers/mlflow-serve/bin/python) and ``$MLSERVER_BIN`` (default
/work/peers/mlserver/bin/mlserver); a missing peer is reported as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import user_environment

SRC = Path(__file__).resolve().parents[1] / "src"
MLFLOW_PYTHON = os.environ.get("MLFLOW_PYTHON", "/work/peers/mlflow-serve/bin/python")
MLSERVER_BIN = os.environ.get("MLSERVER_BIN", "/work/peers/mlserver/bin/mlserver")

SAVE_MLFLOW_TORCH = """
import sys, torch, mlflow.pytorch, numpy as np
from torch import nn
w = int(sys.argv[3])
net = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w))
net.load_state_dict(torch.load(sys.argv[1]))
mlflow.pytorch.save_model(net.eval(), sys.argv[2], input_example=np.zeros((2, w), np.float32))
"""

SAVE_MLFLOW = """
import pickle, sys, mlflow.sklearn, numpy as np
model = pickle.load(open(sys.argv[1], "rb"))
example = np.load(sys.argv[3])
# cloudpickle: MLflow 3 defaults to skops, which refuses the MLP optimizer type.
mlflow.sklearn.save_model(
    model, sys.argv[2], input_example=example, serialization_format="cloudpickle"
)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    e = user_environment()  # .pyc files written once, as on a user's machine
    e["PYTHONPATH"] = str(SRC)
    return e


class Proc:
    """A server process group, stopped with SIGINT then SIGKILL."""

    def __init__(self, argv: list[str], url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.started = time.perf_counter()
        self.p = subprocess.Popen(
            argv,
            env=env or _env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait_answer(self, path: str, body: bytes, headers: dict, timeout: float = 600) -> float:
        """Seconds from process start to the first 200 answer."""
        import httpx

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"server exited: {self.p.stderr.read().decode()[-2000:]}")
            try:
                r = httpx.post(self.url + path, content=body, headers=headers, timeout=30)
                if r.status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not answer in time")

    def pss(self) -> int:
        import psutil

        root = psutil.Process(self.p.pid)
        procs = [root, *root.children(recursive=True)]
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().pss
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(30)
        try:
            os.killpg(self.p.pid, signal.SIGKILL)  # stray workers
        except ProcessLookupError:
            pass


def amber_server(store: Path, spec: str, workers: int, *extra: str) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "amber.cli.main", "serve", spec, "--store", str(store), *extra]
    argv += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--poll", "0"]
    argv += ["--log-level", "warning"]
    return Proc(argv, f"http://127.0.0.1:{port}")


def _peer_env(executable: str) -> dict[str, str]:
    """A peer's environment: its own virtual environment first on PATH (as when activated),
    without amber's sources."""
    env = {k: v for k, v in user_environment().items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def mlflow_server(model_dir: Path, workers: int) -> Proc:
    port = free_port()
    argv = [MLFLOW_PYTHON, "-m", "mlflow", "models", "serve", "-m", str(model_dir)]
    argv += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    # MLflow runs `uvicorn` from PATH, as in an activated virtual environment.
    return Proc(argv, f"http://127.0.0.1:{port}", _peer_env(MLFLOW_PYTHON))


def mlserver_server(
    root: Path,
    name: str,
    uri: Path,
    workers: int,
    implementation: str = "mlserver_sklearn.SKLearnModel",
) -> Proc:
    """MLServer serving ``uri`` under the Open Inference Protocol, ``workers`` inference
    processes: its scikit-learn runtime on a pickle (joblib.load reads one), or its MLflow
    runtime (``mlserver_mlflow.MLflowRuntime``) on an MLflow model folder."""
    folder = root / f"mlserver-{name}-{workers}"
    (folder / name).mkdir(parents=True, exist_ok=True)
    port, grpc, metrics = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": workers,
        "debug": False,
        # Its Prometheus files, which default to .metrics/ in the working directory.
        "metrics_dir": str(folder / "metrics"),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": name,
        "implementation": implementation,
        "parameters": {"uri": str(uri)},
    }
    (folder / name / "model-settings.json").write_text(json.dumps(model))
    return Proc(
        [MLSERVER_BIN, "start", str(folder)], f"http://127.0.0.1:{port}", _peer_env(MLSERVER_BIN)
    )


def load(url: str, path: str, body: bytes, headers: dict, clients: int, seconds: float) -> dict:
    """C threads posting for ``seconds``: requests/s, p50 and p99 in ms, errors."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=60) as c:
            mine = []
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = c.post(url + path, content=body, headers=headers).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    mine.append(time.perf_counter() - t0)
                else:
                    with lock:
                        errors[0] += 1
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"rps": len(lat) / elapsed, "p50": pick(0.5), "p99": pick(0.99), "errors": errors[0]}


def _wrk_ms(text: str) -> float:
    units = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    return float("nan")


def load_wrk(url: str, path: str, body: bytes, headers: dict, clients: int, seconds: float) -> dict:
    """The same measurement with wrk (one thread, ``clients`` connections): requests/s of
    successful answers, p50 and p99 in ms, errors (non-2xx and socket errors)."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="amber-wrk-") as tmp:
        data = Path(tmp) / "body"
        data.write_bytes(body)
        lines = [
            'wrk.method = "POST"',
            f'local f = io.open("{data}", "rb"); wrk.body = f:read("*a"); f:close()',
        ]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
        script = Path(tmp) / "post.lua"
        script.write_text("\n".join(lines) + "\n")
        argv = [shutil.which("wrk") or "wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s"]
        argv += ["--timeout", "60s"]  # as the Python client: a slow answer is not an error
        argv += ["--latency", "-s", str(script), url + path]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    stats: dict[str, float] = {"p50": float("nan"), "p99": float("nan")}
    total = elapsed = errors = 0.0
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("50%", "99%"):
            stats["p50" if words[0] == "50%" else "p99"] = _wrk_ms(words[1])
        elif "requests in" in line:  # "12345 requests in 5.00s, 1.2MB read"
            total = float(words[0])
            elapsed = _wrk_ms(words[3].rstrip(",")) / 1000
        elif line.startswith("Non-2xx"):
            errors += float(words[-1])
        elif line.lstrip().startswith("Socket errors"):
            errors += sum(float(w.rstrip(",")) for w in words[3::2])
    stats["rps"] = (total - errors) / elapsed if elapsed else float("nan")
    stats["errors"] = errors
    return stats


def oip_json(X: np.ndarray, datatype: str = "FP64") -> tuple[bytes, dict]:
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": datatype,
                "data": X.ravel().tolist(),
            }
        ]
    }
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def oip_binary(X: np.ndarray) -> tuple[bytes, dict]:
    raw = np.ascontiguousarray(X, dtype="<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return head + raw, headers


def mlflow_json(X: np.ndarray) -> tuple[bytes, dict]:
    return json.dumps({"inputs": X.tolist()}).encode(), {"Content-Type": "application/json"}


def build(root: Path, big_mb: int, torch_mb: int) -> dict[str, Any]:
    """Train the models once; save them in an amber store and as pickles for the peers."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier

    from amber.store import Store

    X, y = load_iris(return_X_y=True)
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(X, y)
    forest = RandomForestClassifier(n_estimators=200, random_state=0).fit(X, y)
    # A large MLP: fit small, then give it big layers of the right shapes.
    n = int((big_mb * 2**20 / 8) ** 0.5)  # one n x n float64 layer holds the bytes
    big = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    Xb = np.random.default_rng(0).standard_normal((32, n))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big.fit(Xb, np.arange(32) % 2)
    rng = np.random.default_rng(1)
    big.coefs_ = [rng.standard_normal((n, n)) * 0.01, rng.standard_normal((n, 1)) * 0.01]
    big.intercepts_ = [np.zeros(n), np.zeros(1)]
    big.hidden_layer_sizes = (n,)
    out = {"X": X, "Xb": Xb[:1], "n": n}
    store = root / "store"
    with Store(store) as s:
        s.save(mlp, "iris-mlp", input_example=X[:2])
        s.save(forest, "forest", input_example=X[:2])
        s.save(big, "big", input_example=Xb[:2])
        if torch_mb:
            import torch
            from torch import nn

            w = int((torch_mb * 2**20 / 4 / 3) ** 0.5)
            net = nn.Sequential(
                nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w)
            ).eval()
            s.save(net, "torch-mlp", input_example=torch.zeros(2, w))
            out["w"] = w
            torch.save(net.state_dict(), root / "torch-mlp.pt")  # MLflow rebuilds the same net
    out["store"] = store
    for name, model, example in (
        ("iris-mlp", mlp, X[:2]),
        ("forest", forest, X[:2]),
        ("big", big, Xb[:2]),
    ):
        pk = root / f"{name}.pkl"
        pk.write_bytes(pickle.dumps(model, protocol=5))
        np.save(root / f"{name}-example.npy", example)
        out[f"{name}.pkl"] = pk
    return out


def mlflow_models(root: Path, built: dict[str, Any]) -> dict[str, Path] | str:
    if not Path(MLFLOW_PYTHON).exists():
        return f"missing: no MLflow at {MLFLOW_PYTHON} (set MLFLOW_PYTHON)"
    dirs = {}
    for name in ("iris-mlp", "forest", "big"):
        target = root / f"mlflow-{name}"
        subprocess.run(
            [
                MLFLOW_PYTHON,
                "-c",
                SAVE_MLFLOW,
                str(built[f"{name}.pkl"]),
                str(target),
                str(root / f"{name}-example.npy"),
            ],
            check=True,
            capture_output=True,
            env=_peer_env(MLFLOW_PYTHON),
        )
        dirs[name] = target
    if "w" in built:
        target = root / "mlflow-torch-mlp"
        done = subprocess.run(
            [
                *(MLFLOW_PYTHON, "-c", SAVE_MLFLOW_TORCH),
                *(str(root / "torch-mlp.pt"), str(target), str(built["w"])),
            ],
            capture_output=True,
            env=_peer_env(MLFLOW_PYTHON),
        )
        if done.returncode == 0:  # MLflow's venv may have no torch: the row says so
            dirs["torch-mlp"] = target
    return dirs


def variants(name: str) -> list[tuple[str, tuple[str, ...]]]:
    """amber's extra configurations per model: adaptive batching, and for the forest its
    own ``predict`` instead of amber's evaluator (the server alone against the peers)."""
    out = [(" --batch", ("--batch", f"{name}=32,2"))]
    if name == "forest":
        out.append((" --no-forest-evaluator", ("--no-forest-evaluator",)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3, help="load runs per server (median)")
    ap.add_argument("--workers", type=int, default=1, help="workers for the throughput runs")
    ap.add_argument("--big-mb", type=int, default=1024, help="size of the cold-start model")
    ap.add_argument("--torch-mb", type=int, default=100, help="size of the binary torch MLP")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk (C, cheap) or Python threads; auto takes wrk when on PATH",
    )
    args = ap.parse_args()
    import shutil

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    drive = load_wrk if client == "wrk" else load
    print(
        "amber serve benchmark; machine:",
        os.cpu_count(),
        "CPUs; load average at start:",
        " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "; client:",
        client,
    )
    with tempfile.TemporaryDirectory(prefix="amber-bench-serve-") as tmp:
        root = Path(tmp)
        built = build(root, args.big_mb, args.torch_mb)
        peers = mlflow_models(root, built)
        if isinstance(peers, str):
            print("MLflow", peers)
        has_mlserver = Path(MLSERVER_BIN).exists()
        has_mlserver_mlflow = has_mlserver and (
            subprocess.run(
                [
                    str(Path(MLSERVER_BIN).with_name("python")),
                    "-c",
                    "import mlserver_mlflow, torch",
                ],
                capture_output=True,
            ).returncode
            == 0
        )
        if not has_mlserver:
            print(f"MLServer missing: no {MLSERVER_BIN} (set MLSERVER_BIN)")
        X = built["X"]
        rows: list[tuple[str, str, dict]] = []

        def measure(
            label: str,
            who: str,
            proc: Proc,
            path: str,
            body: bytes,
            headers: dict,
            clients: int = args.clients,
            seconds: float = args.seconds,
        ) -> None:
            try:
                proc.wait_answer(path, body, headers)
                drive(proc.url, path, body, headers, clients, 1.0)  # warm-up
                runs = [
                    drive(proc.url, path, body, headers, clients, seconds)
                    for _ in range(args.repeat)
                ]
            finally:
                proc.stop()
            med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
            med["errors"] = sum(r["errors"] for r in runs)
            rows.append((label, who, med))
            print(
                f"  {label:42s} {who:8s} {med['rps']:8.0f} req/s  p50 {med['p50']:7.2f} ms  "
                f"p99 {med['p99']:7.2f} ms  errors {med['errors']}",
                flush=True,
            )

        if not args.skip_throughput:
            print(
                f"\nThroughput: {args.clients} clients, {args.seconds:g} s x {args.repeat} "
                f"(median), {args.workers} worker(s)"
            )
            for name, rows_n in (("iris-mlp", 1), ("forest", 1)):
                xs = X[:rows_n]
                measure(
                    f"{name} JSON ({rows_n} row)",
                    "amber",
                    amber_server(built["store"], name, args.workers),
                    "/v2/models/" + name + "/infer",
                    *oip_json(xs),
                )
                if has_mlserver:
                    measure(
                        f"{name} JSON ({rows_n} row)",
                        "mlserver",
                        mlserver_server(root, name, built[f"{name}.pkl"], args.workers),
                        "/v2/models/" + name + "/infer",
                        *oip_json(xs),
                    )
                measure(
                    f"{name} /invocations",
                    "amber",
                    amber_server(built["store"], name, args.workers),
                    "/invocations",
                    *mlflow_json(xs),
                )
                for variant, flags in variants(name):
                    measure(
                        f"{name} /invocations{variant}",
                        "amber",
                        amber_server(built["store"], name, args.workers, *flags),
                        "/invocations",
                        *mlflow_json(xs),
                    )
                if not isinstance(peers, str):
                    measure(
                        f"{name} /invocations",
                        "mlflow",
                        mlflow_server(peers[name], args.workers),
                        "/invocations",
                        *mlflow_json(xs),
                    )
            if args.torch_mb:
                xb = np.random.default_rng(0).standard_normal((64, built["w"])).astype(np.float32)
                # Requests of ~4 MB of JSON take MLflow ~0.7 s each: 16 clients would queue
                # past the run's length, so these rows use 4 clients for at least 15 s.
                heavy = (min(args.clients, 4), max(args.seconds, 15.0))
                measure(
                    "torch MLP binary (64 rows)",
                    "amber",
                    amber_server(built["store"], "torch-mlp", args.workers),
                    "/v2/models/torch-mlp/infer",
                    *oip_binary(xb),
                    *heavy,
                )
                # MLflow has no binary tensor protocol: its JSON, and amber's, for the same rows.
                measure(
                    "torch MLP /invocations JSON (64 rows)",
                    "amber",
                    amber_server(built["store"], "torch-mlp", args.workers),
                    "/invocations",
                    *mlflow_json(xb),
                    *heavy,
                )
                if has_mlserver_mlflow and not isinstance(peers, str) and "torch-mlp" in peers:
                    # MLServer's REST path has no binary extension: OIP JSON, FP32.
                    measure(
                        "torch MLP OIP JSON (64 rows)",
                        "mlserver",
                        mlserver_server(
                            root,
                            "torch-mlp",
                            peers["torch-mlp"],
                            args.workers,
                            "mlserver_mlflow.MLflowRuntime",
                        ),
                        "/v2/models/torch-mlp/infer",
                        *oip_json(xb, "FP32"),
                        *heavy,
                    )
                    measure(
                        "torch MLP OIP JSON (64 rows)",
                        "amber",
                        amber_server(built["store"], "torch-mlp", args.workers),
                        "/v2/models/torch-mlp/infer",
                        *oip_json(xb, "FP32"),
                        *heavy,
                    )
                if not isinstance(peers, str) and "torch-mlp" in peers:
                    measure(
                        "torch MLP /invocations JSON (64 rows)",
                        "mlflow",
                        mlflow_server(peers["torch-mlp"], args.workers),
                        "/invocations",
                        *mlflow_json(xb),
                        *heavy,
                    )
                else:
                    print("  torch MLP: MLflow not measured (no torch in its virtual environment)")

        print(f"\nCold start: process start to first answer, MLP of {args.big_mb} MiB")
        big_body = mlflow_json(built["Xb"])
        cold: dict[str, list[float]] = {"amber": [], "mlflow": []}
        for _ in range(args.repeat):
            p = amber_server(built["store"], "big", 1)
            try:
                cold["amber"].append(p.wait_answer("/invocations", *big_body))
            finally:
                p.stop()
            if not isinstance(peers, str):
                p = mlflow_server(peers["big"], 1)
                try:
                    cold["mlflow"].append(p.wait_answer("/invocations", *big_body))
                finally:
                    p.stop()
        for who, times in cold.items():
            if times:
                print(
                    f"  {who:8s} median {statistics.median(times):6.2f} s  "
                    f"runs {[round(t, 2) for t in times]}"
                )
        if cold["mlflow"]:
            print(
                f"  amber / mlflow = "
                f"{statistics.median(cold['amber']) / statistics.median(cold['mlflow']):.2f}"
            )

        if not args.skip_memory:
            print(f"\nMemory: total PSS of all server processes, MLP of {args.big_mb} MiB")
            pss = {}
            configs = [
                ("amber 1 worker", lambda: amber_server(built["store"], "big", 1), 1),
                ("amber 4 workers", lambda: amber_server(built["store"], "big", 4), 4),
            ]
            if not isinstance(peers, str):
                configs.append(("mlflow 4 workers", lambda: mlflow_server(peers["big"], 4), 4))
            for label, start, workers in configs:
                p = start()
                try:
                    p.wait_answer("/invocations", *big_body)
                    # Reach every worker: connections spread over them.
                    for _ in range(8 * workers):
                        import httpx

                        httpx.post(
                            p.url + "/invocations",
                            content=big_body[0],
                            headers=big_body[1],
                            timeout=60,
                        )
                    time.sleep(3)
                    pss[label] = p.pss()
                finally:
                    p.stop()
                print(f"  {label:18s} {pss[label] / 2**20:8.0f} MiB", flush=True)
            print(
                f"  amber 4 workers / 1 worker = "
                f"{pss['amber 4 workers'] / pss['amber 1 worker']:.2f}"
            )
            if "mlflow 4 workers" in pss:
                print(
                    f"  mlflow 4 workers / amber 4 workers = "
                    f"{pss['mlflow 4 workers'] / pss['amber 4 workers']:.2f}"
                )

        print(
            "\nRatios (amber /invocations against mlflow /invocations, same model, same clients);"
            " load average now:",
            " ".join(f"{x:.2f}" for x in os.getloadavg()),
        )
        by = {(label, who): m for label, who, m in rows}
        for peer, peer_label in (
            ("mlflow", "torch MLP /invocations JSON (64 rows)"),
            ("mlserver", "torch MLP OIP JSON (64 rows)"),
        ):
            m = by.get((peer_label, peer))
            for label in ("torch MLP binary (64 rows)", peer_label):
                a = by.get((label, "amber"))
                if a and m and m["rps"] > 0:
                    print(
                        f"  {label:38s} req/s {a['rps'] / m['rps']:.2f}x   "
                        f"p99 {a['p99'] / m['p99']:.2f}x against {peer} JSON (lower is better)"
                    )
        for name in ("iris-mlp", "forest"):
            a = by.get((f"{name} JSON (1 row)", "amber"))
            m = by.get((f"{name} JSON (1 row)", "mlserver"))
            if a and m:
                print(
                    f"  {name + ' v2 infer':18s} req/s {a['rps'] / m['rps']:.2f}x   "
                    f"p99 {a['p99'] / m['p99']:.2f}x against MLServer (lower is better)"
                )
            m = by.get((f"{name} /invocations", "mlflow"))
            for variant in ("", *(v for v, _ in variants(name))):
                a = by.get((f"{name} /invocations{variant}", "amber"))
                if a and m:
                    print(
                        f"  {name + variant:32s} req/s {a['rps'] / m['rps']:.2f}x   "
                        f"p99 {a['p99'] / m['p99']:.2f}x (lower is better)"
                    )


if __name__ == "__main__":
    main()
