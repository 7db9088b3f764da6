"""``python -m benchmarks.boosters``: 200-tree XGBoost and LightGBM models, amber against the
libraries' own ``save_model``/``load_model`` and pickle.

For each model: file size, save and load time as medians of ``--repeat`` runs on a warm page
cache, each with its ratio to the native format. amber's save is durable (fsync, atomic
rename); the others are timed as is. amber's load includes its checks of the native
payload (the full parse that keeps XGBoost's and LightGBM's parsers away from malformed
input), so the target compares it with the native load: within 1.3x.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import amber
from benchmarks.report import ratio_to
from benchmarks.sklearn_models import Format
from benchmarks.timing import median_ms, remove

LOAD_TARGET = 1.3


def _xgb_native_load(path: Path) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(path)
    return booster


def _lgb_native_load(path: Path) -> Any:
    import lightgbm as lgb

    return lgb.Booster(model_file=path)


def _pickle_formats() -> list[Format]:
    return [
        Format("amber", lambda m, p: amber.save(m, p), amber.load, ".amber"),
        Format(
            "pickle",
            lambda m, p: p.write_bytes(pickle.dumps(m, protocol=5)),
            lambda p: pickle.loads(p.read_bytes()),
            ".pkl",
        ),
    ]


def formats(library: str) -> list[Format]:
    if library == "xgboost":
        native = Format("native", lambda m, p: m.save_model(p), _xgb_native_load, ".ubj")
    else:
        native = Format(
            "native",
            lambda m, p: m.save_model(p, num_iteration=-1),
            _lgb_native_load,
            ".txt",
        )
    return [native, *_pickle_formats()]


def models(trees: int) -> dict[str, tuple[Any, np.ndarray, Callable[[Any, np.ndarray], Any]]]:
    """(booster, rows, predict) per library, trained once (deterministic)."""
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification

    X, y = make_classification(20000, 20, random_state=0)
    xgb_model = xgb.train(
        {"max_depth": 6, "objective": "binary:logistic", "nthread": 2}, xgb.DMatrix(X, y), trees
    )
    lgb_model = lgb.train(
        {"objective": "binary", "num_leaves": 31, "verbose": -1}, lgb.Dataset(X, y), trees
    )
    return {
        "xgboost": (xgb_model, X[:100], lambda m, rows: m.predict(xgb.DMatrix(rows))),
        "lightgbm": (lgb_model, X[:100], lambda m, rows: m.predict(rows)),
    }


def measure(model: Any, rows: np.ndarray, predict: Any, fmt: Format, folder: Path, repeat: int):
    path = folder / f"model{fmt.suffix}"
    row: dict[str, float] = {}
    try:
        row["save_ms"] = median_ms(lambda: fmt.save(model, path), repeat)
        row["size"] = path.stat().st_size
        fmt.load(path)  # warm the page cache and any lazy imports
        row["load_ms"] = median_ms(lambda: fmt.load(path), repeat)
        if not np.array_equal(predict(fmt.load(path), rows), predict(model, rows)):
            raise AssertionError(f"{fmt.name}: predictions differ after loading")
    finally:
        remove(path)
    return row


def report(name: str, rows: dict[str, dict[str, float]]) -> None:
    base = rows["native"]
    print(f"\n{name}")
    print(f"  {'format':<10}{'size':>12}{'':>7}{'save ms':>10}{'':>7}{'load ms':>10}{'':>7}")
    for fmt, row in rows.items():
        print(
            f"  {fmt:<10}{row['size']:>12,}{ratio_to(row['size'], base['size']):>7}"
            f"{row['save_ms']:>10.2f}{ratio_to(row['save_ms'], base['save_ms']):>7}"
            f"{row['load_ms']:>10.2f}{ratio_to(row['load_ms'], base['load_ms']):>7}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boosters")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per figure")
    parser.add_argument("--trees", type=int, default=200, help="boosting rounds per model")
    parser.add_argument("--quick", action="store_true", help="10 trees, 1 run (smoke test)")
    args = parser.parse_args(argv)
    repeat, trees = (1, 10) if args.quick else (args.repeat, args.trees)
    print(f"training {trees}-tree models...", file=sys.stderr)
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as tmp:
        print(f"boosters: {trees} trees, medians of {repeat} runs; ratios against native")
        for library, (model, rows, predict) in models(trees).items():
            results = {
                fmt.name: measure(model, rows, predict, fmt, Path(tmp), repeat)
                for fmt in formats(library)
            }
            report(f"{library} ({trees} trees)", results)
            ratios[library] = results["amber"]["load_ms"] / results["native"]["load_ms"]
    print("\ntargets")
    for library, value in ratios.items():
        verdict = "PASS" if value <= LOAD_TARGET else "FAIL"
        print(f"  {verdict}  {library} load: {value:.2f}x native (target <= {LOAD_TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
