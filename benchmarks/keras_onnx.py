"""``python -m benchmarks.keras_onnx``: Keras and ONNX models of ``--size-mb`` (default 100)
saved and loaded by amber against the frameworks' own formats.

Keras (torch backend): ``amber.save`` (durable: fsync, atomic rename) against
``model.save("m.keras")`` followed by an fsync, and ``amber.load`` (full verification: every
tensor digest, the configuration audit) against ``keras.saving.load_model``.
ONNX: ``amber.save`` against ``onnx.save`` + fsync, ``amber.load`` against ``onnx.load``, and
``amber.onnx_session`` (verified, initializers from memory) against ``onnx.load`` followed
by ``onnxruntime.InferenceSession`` of the model (and of the path, for reference).

Every figure is the median of ``--repeat`` runs on a warm page cache, with its ratio to the
framework's own figure measured in the same run. Targets (issue 17): Keras load no slower
than ``load_model`` and save no slower than ``model.save`` + fsync; ONNX load + session
within 1.1x of ``onnx.load`` + session.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import amber
from benchmarks.report import ratio_to
from benchmarks.timing import fresh, fsync_path, median_ms, remove

os.environ.setdefault("KERAS_BACKEND", "torch")
ONNX_SESSION_TARGET = 1.1


def keras_model(size_mb: float) -> tuple[Any, np.ndarray]:
    import keras

    keras.utils.set_random_seed(0)
    width = max(16, int((size_mb * (1 << 20) / 4 / 3) ** 0.5))
    model = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(width),
        ]
    )
    return model, np.random.default_rng(0).standard_normal((4, width)).astype("float32")


def onnx_model(size_mb: float, folder: Path) -> tuple[Any, np.ndarray]:
    import onnx
    import torch

    torch.manual_seed(0)
    width = max(16, int((size_mb * (1 << 20) / 4 / 3) ** 0.5))
    net = torch.nn.Sequential(
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
    ).eval()
    path = folder / "export.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, width),), str(path), dynamo=False, input_names=["x"])
    model = onnx.load(str(path))
    remove(path)
    return model, np.random.default_rng(0).standard_normal((1, width)).astype("float32")


def timed_pair(
    name: str,
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    repeat: int,
    rows: list[tuple[str, float, float]],
) -> float:
    ours()  # warm the page cache and lazy imports
    theirs()
    mine, base = median_ms(ours, repeat), median_ms(theirs, repeat)
    rows.append((name, mine, base))
    return mine / base


def bench_keras(size_mb: float, folder: Path, repeat: int, rows: list) -> dict[str, float]:
    import keras

    model, x = keras_model(size_mb)
    ours, theirs = folder / "m.amber", folder / "m.keras"

    def save_amber() -> None:
        fresh(ours)
        amber.save(model, ours)

    def save_keras() -> None:
        fresh(theirs)
        model.save(theirs)
        fsync_path(theirs)

    ratios = {"keras save": timed_pair("keras save", save_amber, save_keras, repeat, rows)}
    ratios["keras load"] = timed_pair(
        "keras load",
        lambda: amber.load(ours),
        lambda: keras.saving.load_model(theirs),
        repeat,
        rows,
    )
    expected = model.predict(x, verbose=0)
    for loaded in (amber.load(ours), keras.saving.load_model(theirs)):
        if not np.array_equal(loaded.predict(x, verbose=0), expected):
            raise AssertionError("Keras predictions differ after loading")
    rows.append(("keras file bytes", ours.stat().st_size, theirs.stat().st_size))
    remove(ours)
    remove(theirs)
    return ratios


def bench_onnx(size_mb: float, folder: Path, repeat: int, rows: list) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    model, x = onnx_model(size_mb, folder)
    ours, theirs = folder / "m.amber", folder / "m.onnx"
    cpu = ["CPUExecutionProvider"]

    def save_amber() -> None:
        fresh(ours)
        amber.save(model, ours)

    def save_onnx() -> None:
        fresh(theirs)
        onnx.save(model, str(theirs))
        fsync_path(theirs)

    def onnx_session() -> Any:
        return ort.InferenceSession(onnx.load(str(theirs)).SerializeToString(), providers=cpu)

    ratios = {"onnx save": timed_pair("onnx save", save_amber, save_onnx, repeat, rows)}
    ratios["onnx load"] = timed_pair(
        "onnx load (ModelProto)",
        lambda: amber.load(ours),
        lambda: onnx.load(str(theirs)),
        repeat,
        rows,
    )
    ratios["onnx session"] = timed_pair(
        "onnx load + session", lambda: amber.onnx_session(ours), onnx_session, repeat, rows
    )
    timed_pair(
        "  (session from the path)",
        lambda: amber.onnx_session(ours),
        lambda: ort.InferenceSession(str(theirs), providers=cpu),
        repeat,
        rows,
    )
    expected = onnx_session().run(None, {"x": x})[0]
    if not np.array_equal(amber.onnx_session(ours).run(None, {"x": x})[0], expected):
        raise AssertionError("ONNX outputs differ after loading")
    rows.append(("onnx file bytes", ours.stat().st_size, theirs.stat().st_size))
    remove(ours)
    remove(theirs)
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_onnx")
    parser.add_argument("--size-mb", type=float, default=100.0, help="weights per model")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--quick", action="store_true", help="4 MB, 1 run (smoke test)")
    args = parser.parse_args(argv)
    size, repeat = (4.0, 1) if args.quick else (args.size_mb, args.repeat)
    rows: list[tuple[str, float, float]] = []
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as tmp:
        for name, bench in (("keras", bench_keras), ("onnx", bench_onnx)):
            try:
                ratios |= bench(size, Path(tmp), repeat, rows)
            except ImportError as exc:
                print(f"{name}: skipped, not installed ({exc.name})")
    print(f"keras and onnx: ~{size:g} MB of weights, medians of {repeat} runs")
    print(f"  {'figure':<28}{'amber':>12}{'framework':>12}{'ratio':>8}")
    for name, mine, base in rows:
        unit = "" if "bytes" in name else " ms"
        print(f"  {name:<28}{mine:>10.1f}{unit:<2}{base:>10.1f}{unit:<2}{ratio_to(mine, base):>8}")
    print("\ntargets")
    for key, limit in (
        ("keras load", 1.0),
        ("keras save", 1.0),
        ("onnx session", ONNX_SESSION_TARGET),
    ):
        if key in ratios:
            verdict = "PASS" if ratios[key] <= limit else "FAIL"
            print(f"  {verdict}  {key}: {ratios[key]:.2f}x (target <= {limit}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
