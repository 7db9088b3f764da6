"""The main job, end to end: save numpy weights, inspect, verify, load, check, and show
that damage is caught; then train a few models, keep their versions in a fresh local model
store, promote one to production, diff and compare versions, reload production and predict,
and show the history. Run with `make demo`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import amber
from amber.errors import CorruptFileError

OUT = Path("demo-output")


def train_tiny_network(rng: np.random.Generator) -> dict[str, object]:
    """A two-layer network fitted to XOR-like data with plain numpy gradient descent."""
    x = rng.standard_normal((256, 2)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1]) > 0).astype(np.float32)[:, None]
    w1 = rng.standard_normal((2, 16)).astype(np.float32) * 0.5
    b1 = np.zeros(16, np.float32)
    w2 = rng.standard_normal((16, 1)).astype(np.float32) * 0.5
    b2 = np.zeros(1, np.float32)
    for _ in range(500):
        h = np.tanh(x @ w1 + b1)
        p = 1 / (1 + np.exp(-(h @ w2 + b2)))
        grad_out = (p - y) / len(x)
        grad_h = (grad_out @ w2.T) * (1 - h**2)
        w2 -= 2.0 * h.T @ grad_out
        b2 -= 2.0 * grad_out.sum(0)
        w1 -= 2.0 * x.T @ grad_h
        b1 -= 2.0 * grad_h.sum(0)
    accuracy = float(((p > 0.5) == y).mean())
    return {
        "hidden": {"weight": w1, "bias": b1},
        "output": {"weight": w2, "bias": b2},
        "activation": "tanh",
        "accuracy": accuracy,
        "probe": x[:8],
    }


def predict(weights: dict, x: np.ndarray) -> np.ndarray:
    h = np.tanh(x @ weights["hidden"]["weight"] + weights["hidden"]["bias"])
    return 1 / (1 + np.exp(-(h @ weights["output"]["weight"] + weights["output"]["bias"])))


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    rng = np.random.default_rng(0)

    seed = {"hidden": [0.1, 0.2, 0.3], "output": [0.4, 0.5, 0.6]}
    amber.save(seed, OUT / "seed.amber")
    assert amber.load(OUT / "seed.amber") == seed
    print("seed example round-trips exactly:", amber.load(OUT / "seed.amber"))

    weights = train_tiny_network(rng)
    path = OUT / "tiny-net.amber"
    saved = amber.save(weights, path, metadata={"task": "xor", "epochs": 500})
    print(f"\nsaved {path} ({saved.size} bytes, {len(saved.tensors)} tensors)")

    print("\n$ amber inspect", path)
    subprocess.run([sys.executable, "-m", "amber.cli.main", "inspect", str(path)], check=True)
    print("\n$ amber verify", path)
    subprocess.run([sys.executable, "-m", "amber.cli.main", "verify", str(path)], check=True)

    loaded = amber.load(path)
    checks = {
        "every tensor digest verified": True,  # load() verifies by default, or raises
        "arrays bitwise equal": all(
            np.array_equal(loaded[layer][p], weights[layer][p])
            for layer in ("hidden", "output")
            for p in ("weight", "bias")
        ),
        "arrays are views of the file (zero-copy)": not loaded["hidden"]["weight"].flags.owndata,
        "predictions identical": np.array_equal(
            predict(loaded, loaded["probe"]), predict(weights, weights["probe"])
        ),
        "metadata returned": amber.inspect(path).metadata == {"task": "xor", "epochs": 500},
    }
    print(f"\nloaded back; training accuracy was {loaded['accuracy']:.3f}")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")

    damaged = OUT / "tiny-net-damaged.amber"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01  # one flipped bit inside the first tensor payload
    damaged.write_bytes(bytes(raw))
    try:
        amber.load(damaged)
        caught = False
    except CorruptFileError as exc:
        caught = True
        print(f"\na flipped bit is caught on load:\n  {exc}")
    checks["a flipped bit is caught"] = caught
    checks.update(scikit_learn_model())
    checks.update(model_store())
    checks.update(serve_production())
    checks.update(batch_prediction())
    if not all(checks.values()):
        sys.exit("demo FAILED")
    print("\ndemo OK")


def scikit_learn_model() -> dict[str, bool]:
    """The iris MLP: save, inspect the object tree, load, predict, keep training."""
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(
        hidden_layer_sizes=(10,), max_iter=1000, alpha=1e-4, solver="sgd", random_state=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    path = OUT / "iris-mlp.amber"
    amber.save(clf, path, metadata={"dataset": "iris"})
    print(f"\n$ amber inspect {path} --depth 2")
    subprocess.run(
        [sys.executable, "-m", "amber.cli.main", "inspect", str(path), "--depth", "2"], check=True
    )
    loaded = amber.load(path)
    accuracy = float((loaded.predict(X) == y).mean())
    print(f"\nreloaded MLPClassifier: accuracy {accuracy:.3f} on iris")
    results = {
        "scikit-learn predict_proba identical after reload": np.array_equal(
            loaded.predict_proba(X), clf.predict_proba(X)
        ),
    }
    loaded.partial_fit(X, y)
    clf.partial_fit(X, y)
    results["training continues bit-identically after reload"] = all(
        np.array_equal(a, b) for a, b in zip(loaded.coefs_, clf.coefs_, strict=True)
    )
    for name, ok in results.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return results


def model_store() -> dict[str, bool]:
    """Several versions of two models in a fresh local store: metrics, production alias,
    diff, compare, reload production, history."""
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from amber.store import Store

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    store = Store(OUT / "store")
    print(f"\nmodel store at {OUT / 'store'}")
    for hidden, iterations in ((4, 200), (10, 1000), (32, 2000)):
        clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=iterations, random_state=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_train, y_train)
        v = store.save(
            clf,
            "iris-mlp",
            metrics={"accuracy": clf.score(X_test, y_test)},
            tags={"hidden": str(hidden)},
            message=f"MLP with {hidden} hidden units",
            input_example=X_test[:5],
        )
        print(f"  saved {v.spec}: accuracy {v.metrics['accuracy']:.3f}")
    for trees in (10, 100):
        forest = RandomForestClassifier(n_estimators=trees, random_state=0).fit(X_train, y_train)
        v = store.save(forest, "iris-forest", metrics={"accuracy": forest.score(X_test, y_test)})
        print(f"  saved {v.spec}: accuracy {v.metrics['accuracy']:.3f}")

    table = store.compare(["iris-mlp@1", "iris-mlp@2", "iris-mlp@3"], X_test, y_test)
    print("\ncompare on the held-out data:")
    print("  " + str(table).replace("\n", "\n  "))
    best = table.best("accuracy")
    store.set_alias(best, "production")
    print(f"\nproduction -> {best}")
    print("\ndiff iris-mlp@1 iris-mlp@2:")
    print("  " + str(store.diff("iris-mlp@1", "iris-mlp@2")).replace("\n", "\n  "))

    production = store.load("iris-mlp@production")
    predictions = production.predict(X_test[:5])
    print(f"\nproduction predicts {predictions.tolist()} for the first 5 test rows")
    cli = [sys.executable, "-m", "amber.cli.main"]
    for command in (["versions", "iris-mlp"], ["ls"]):
        print(f"\n$ amber {' '.join(command)} --store {OUT / 'store'}")
        wide = {**os.environ, "COLUMNS": "150"}  # a pipe has no width; rich would use 80
        subprocess.run([*cli, *command, "--store", str(OUT / "store")], check=True, env=wide)
    results = {
        "store: versions numbered 1..3 with lineage": [v.parent for v in store.versions("iris-mlp")]
        == [None, "iris-mlp@1", "iris-mlp@2"],
        "store: production reloads and predicts like the saved model": np.array_equal(
            predictions, store.load(best).predict(X_test[:5])
        ),
        "store: every object and record checks out": store.check().ok,
    }
    store.close()
    for name, ok in results.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return results


def serve_production() -> dict[str, bool]:
    """`amber serve iris-mlp@production` in a subprocess on 127.0.0.1, called once over HTTP
    (MLflow-style /invocations), then stopped."""
    import json
    import socket
    import time
    import urllib.request

    from sklearn.datasets import load_iris

    from amber.store import Store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = ["serve", "iris-mlp@production", "--store", str(OUT / "store"), "--port", str(port)]
    print(f"\n$ amber {' '.join(command)}")
    server = subprocess.Popen(
        [sys.executable, "-m", "amber.cli.main", *command, "--log-level", "warning"]
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        rows = load_iris().data[:3].tolist()
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"instances": rows}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
            version = r.headers["x-amber-model-version"]
        print(f"$ curl -d '{{\"instances\": [...3 rows]}}' {url}/invocations\n{answer}")
    finally:
        server.terminate()
        server.wait(30)
    with Store(OUT / "store") as store:
        production = store.get("iris-mlp@production")
        expected = store.load("iris-mlp@production").predict(np.array(rows)).tolist()
    results = {
        "serve: production answers over HTTP like the loaded model": answer
        == {"predictions": expected},
        "serve: the answer names the production version": version == str(production.version),
    }
    for name, ok in results.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return results


def batch_prediction() -> dict[str, bool]:
    """`amber predict`: the production MLP over a CSV, streamed, written to Parquet."""
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris

    from amber.store import Store

    X, _ = load_iris(return_X_y=True)
    csv = OUT / "flowers.csv"
    csv.write_text(
        "id,a,b,c,d\n" + "".join(f"{i},{','.join(map(str, row))}\n" for i, row in enumerate(X))
    )
    out = OUT / "flowers-scored.parquet"
    command = ["predict", "iris-mlp@production", str(csv), "--id", "id", "-o", str(out)]
    print(f"\n$ amber {' '.join(command)} --store {OUT / 'store'}")
    cli = [sys.executable, "-m", "amber.cli.main", *command, "--store", str(OUT / "store")]
    subprocess.run(cli, check=True)
    with Store(OUT / "store") as store:
        expected = store.load("iris-mlp@production").predict(X)
    scored = pq.read_table(out)
    results = {
        "batch: amber predict equals the model's predict on every row": np.array_equal(
            scored.column("prediction").to_numpy(), expected
        ),
        "batch: the id column is kept": scored.column("id").to_pylist() == list(range(len(X))),
    }
    for name, ok in results.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return results


if __name__ == "__main__":
    main()
