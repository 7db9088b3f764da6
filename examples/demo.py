"""The main job, end to end: save numpy weights, inspect, verify, load, check, and show
that damage is caught. Run with `make demo`."""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
