"""``python -m benchmarks.loads``: load speed against pickle and the native loaders (issue 14).

One command, every figure a ratio against a peer measured in the same process:

- scikit-learn loads (200-tree random forest, histogram gradient boosting, the iris MLP, a
  20-step pipeline, a grid search): ``amber.load`` against ``pickle.load`` of the open
  file, interleaved, in two allocator states. **warm**: freed memory stays with the process
  and the next load reuses it (what a loop of loads sees once glibc's thresholds have grown);
  **cold**: every block of 128 KiB or more is fresh memory from the kernel, faulted in page
  by page (what the first load of a process sees). Pickle's figure moves most between them.
- XGBoost and LightGBM (``--boosters``): ``amber.load`` against ``Booster(model_file=...)``.
- a fresh process that imports, loads the iris MLP and predicts, amber against pickle;
- ``amber --help``, ``amber inspect FILE`` and ``amber ls`` as processes;
- ``--size-mb N``: a verified load of N MiB of float32 arrays against BLAKE3 (all threads)
  of the same bytes in memory.
- ``--phases``: where each load's time goes, against the peer in the same run. For the
  scikit-learn models: opening the file with its structure checks (header, trailer,
  manifest digest, JSON parse, every tensor entry), then the same with every payload
  hashed (``verify="full"``), before anything is built; for the boosters: amber's checks of
  the model bytes alone. These are the parts no decoder change removes while every check
  stays.

``--json PATH`` writes the figures; ``--compare BEFORE.json`` adds a column with the figures
of an earlier run (another checkout: ``PYTHONPATH=/path/to/other/src python -m
benchmarks.loads --json before.json``). The machine's load average is printed with each
table: on a shared machine only the ratios of one run mean something.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import amber
from benchmarks.timing import quiet_gc, user_environment

# glibc mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_COLD = 128 << 10  # glibc's initial thresholds: what a fresh process starts with
_WARM = 32 << 20  # the largest mmap threshold glibc's dynamic adjustment reaches (64-bit)


@contextlib.contextmanager
def allocator(state: str) -> Iterator[bool]:
    """Fix glibc's thresholds for ``state`` ("warm" or "cold"); yields False where mallopt
    is not available (then both states are the allocator's default)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        yield False
        return
    size = _WARM if state == "warm" else _COLD
    ok = bool(mallopt(_M_MMAP_THRESHOLD, size)) and bool(mallopt(_M_TRIM_THRESHOLD, size))
    try:
        yield ok
    finally:
        mallopt(_M_MMAP_THRESHOLD, _COLD)
        mallopt(_M_TRIM_THRESHOLD, _COLD)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def sklearn_models(quick: bool) -> dict[str, Any]:
    """The issue's five scikit-learn models, trained once (deterministic)."""
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = make_classification(2000 if quick else 20000, 20, random_state=0)
    Xi, yi = load_iris(return_X_y=True)
    trees = 5 if quick else 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            f"random forest ({trees} trees)": RandomForestClassifier(
                n_estimators=trees, random_state=0, n_jobs=-1
            ).fit(X, y),
            "hist gradient boosting": HistGradientBoostingClassifier(
                max_iter=10 if quick else 200, random_state=0
            ).fit(X, y),
            "iris MLP": MLPClassifier(
                hidden_layer_sizes=(10,), max_iter=50 if quick else 1000, random_state=1
            ).fit(Xi, yi),
            "20-step pipeline": make_pipeline(
                *[StandardScaler() if i % 2 else MinMaxScaler() for i in range(19)],
                LogisticRegression(max_iter=500),
            ).fit(Xi, yi),
            "grid search": GridSearchCV(
                LogisticRegression(max_iter=500), {"C": [0.1, 1.0, 10.0]}
            ).fit(Xi, yi),
        }


# How the runs of one figure are summarized: "median" (the default), or "min" on a machine
# shared with other work (the fastest run is the one least disturbed).
STATISTIC: Callable[[list[float]], float] = statistics.median


def paired(actions: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Milliseconds of each action (``STATISTIC`` of its runs), the actions interleaved run
    by run (so drift on a shared machine hits them alike); each result is dropped before
    the next run."""
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for action in actions.values():
        action()  # lazy imports, page cache
    for _ in range(repeat):
        for name, action in actions.items():
            with quiet_gc():
                start = time.perf_counter()
                result = action()
                samples[name].append(time.perf_counter() - start)
            del result
    return {name: STATISTIC(values) * 1e3 for name, values in samples.items()}


def _pickle_load(path: Path) -> Any:
    # What a user writes: pickle.load of the open file. (An earlier version timed
    # ``pickle.loads(path.read_bytes())``, whose 44 MB read buffer is fresh memory every
    # time: 20-25 ms that pickle.load never spends, which made the forest look 1.1x.)
    with path.open("rb") as f:
        return pickle.load(f)


def sklearn_loads(folder: Path, repeat: int, quick: bool) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for name, model in sklearn_models(quick).items():
        path = folder / "model.amber"
        amber.save(model, path)
        raw = folder / "model.pkl"
        raw.write_bytes(pickle.dumps(model, protocol=5))
        row: dict[str, float] = {}
        for state in ("warm", "cold"):
            with allocator(state):
                times = paired(
                    {
                        "amber": lambda path=path: amber.load(path),
                        "pickle": lambda raw=raw: _pickle_load(raw),
                    },
                    repeat,
                )
            row[f"{state} amber ms"], row[f"{state} pickle ms"] = times["amber"], times["pickle"]
        rows[name] = row
    return rows


def sklearn_phases(folder: Path, repeat: int, quick: bool) -> dict[str, dict[str, float]]:
    """Milliseconds of pickle, of opening the file (structure checks only), of opening it
    verified (every payload hashed) and of the whole load, interleaved (warm allocator)."""
    from amber.container import ContainerReader

    def opened(path: Path, verify: Any) -> None:
        ContainerReader(path, verify=verify).close()

    rows: dict[str, dict[str, float]] = {}
    for name, model in sklearn_models(quick).items():
        path, raw = folder / "phases.amber", folder / "phases.pkl"
        amber.save(model, path)
        raw.write_bytes(pickle.dumps(model, protocol=5))
        with allocator("warm"):
            rows[name] = paired(
                {
                    "pickle": lambda raw=raw: _pickle_load(raw),
                    "open": lambda path=path: opened(path, "off"),
                    "verified open": lambda path=path: opened(path, "full"),
                    "amber": lambda path=path: amber.load(path),
                },
                repeat,
            )
    return rows


def boosters(quick: bool) -> Iterator[tuple[str, Any, Any]]:
    """(row name, library module, trained booster) for XGBoost and LightGBM, each trained
    once on the same data when it is installed."""
    X = np.random.default_rng(0).standard_normal((2000, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    trees = 10 if quick else 200
    try:
        import xgboost as xgb
    except ImportError:
        print("xgboost: not installed, skipped", file=sys.stderr)
    else:
        booster = xgb.train({"max_depth": 6}, xgb.DMatrix(X, label=y), trees)
        yield f"XGBoost ({trees} trees)", xgb, booster
    try:
        import lightgbm as lgb
    except ImportError:
        print("lightgbm: not installed, skipped", file=sys.stderr)
    else:
        params = {"verbose": -1, "num_leaves": 31}
        booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=trees)
        yield f"LightGBM ({trees} trees)", lgb, booster


def booster_phases(folder: Path, repeat: int, quick: bool) -> dict[str, dict[str, float]]:
    """Milliseconds of the native loader, of amber's checks of the model bytes alone (which
    run before the native loader sees them) and of the whole amber load."""
    rows: dict[str, dict[str, float]] = {}
    for name, library, booster in boosters(quick):
        path = folder / "phases-booster.amber"
        amber.save(booster, path)
        if library.__name__ == "xgboost":
            from amber.adapters.xgboost import check_model, parse_ubjson

            raw = bytes(booster.save_raw("ubj"))
            actions = {
                "native": lambda raw=raw, make=library.Booster: make().load_model(bytearray(raw)),
                "parse": lambda raw=raw: parse_ubjson(raw),
                "checks": lambda raw=raw: check_model(raw),
            }
        else:
            from amber.adapters.lightgbm import check_model_string

            text = booster.model_to_string()
            actions = {
                "native": lambda text=text, make=library.Booster: make(model_str=text),
                "checks": lambda text=text: check_model_string(text),
            }
        actions["amber"] = lambda path=path: amber.load(path)
        rows[name] = paired(actions, repeat)
    return rows


def phases_report(results: dict[str, Any]) -> list[str]:
    """The --phases tables: each part in ms and as a multiple of the peer's whole load."""
    stat = results.get("statistic", "median")
    out = []
    for key, peer in (("sklearn phases", "pickle"), ("booster phases", "native")):
        rows = results.get(key, {})
        if not rows:
            continue
        out.append(f"\nwhere the time goes ({stat} ms; x: multiple of {peer}'s whole load)")
        for name, row in rows.items():
            cells = "  ".join(
                f"{part} {value:.2f} ({value / row[peer]:.2f}x)"
                for part, value in row.items()
                if part != peer
            )
            out.append(f"  {name:<28}{peer} {row[peer]:.2f}  {cells}")
    return out


def booster_loads(folder: Path, repeat: int, quick: bool) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for name, library, booster in boosters(quick):
        native = folder / ("xgb.ubj" if library.__name__ == "xgboost" else "lgb.txt")
        booster.save_model(str(native))
        path = folder / "booster.amber"
        amber.save(booster, path)
        times = paired(
            {
                "amber": lambda path=path: amber.load(path),
                "native": lambda native=native, make=library.Booster: make(model_file=str(native)),
            },
            repeat,
        )
        rows[name] = {"amber ms": times["amber"], "native ms": times["native"]}
    return rows


def processes(
    commands: dict[str, list[str]], repeat: int, cwd: Path | None = None
) -> dict[str, float]:
    """Median wall milliseconds of each command line as a process, interleaved."""
    env = user_environment()
    for argv in commands.values():  # .pyc files, page cache
        subprocess.run(argv, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: STATISTIC(values) for name, values in samples.items()}


def fresh_and_cli(folder: Path, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(10,), max_iter=200, random_state=1).fit(X, y)
    amber.save(mlp, folder / "mlp.amber")
    (folder / "mlp.pkl").write_bytes(pickle.dumps(mlp, protocol=5))
    predict = "; m.predict_proba(np.zeros((1, 4)))"
    py = sys.executable
    pkl, amb = str(folder / "mlp.pkl"), str(folder / "mlp.amber")
    fresh = processes(
        {
            "python -c pass": [py, "-c", "pass"],
            "pickle": [
                py,
                "-c",
                f"import pickle, numpy as np; m = pickle.load(open({pkl!r}, 'rb'))" + predict,
            ],
            "amber": [
                py,
                "-c",
                f"import amber, numpy as np; m = amber.load({amb!r})" + predict,
            ],
        },
        max(repeat, 11),
    )
    store = folder / "store"
    from amber.store import Store

    Store(store).save(mlp, "iris")
    cli = [py, "-m", "amber.cli.main"]
    commands = processes(
        {
            "python -c pass": [py, "-c", "pass"],
            "amber --help": [*cli, "--help"],
            "amber inspect FILE": [*cli, "inspect", str(folder / "mlp.amber")],
            "amber ls": [*cli, "ls", "--store", str(store)],
        },
        max(repeat, 11),
    )
    return fresh, commands


def verified_load(folder: Path, size_mb: int, repeat: int) -> dict[str, float]:
    """A verified load of ``size_mb`` MiB of float32 arrays against BLAKE3 with all threads
    over the same bytes already in memory. ``amber.load`` returns only once every byte has
    been read and hashed (``verify="full"``), so the load alone is what the target compares;
    the same load followed by summing every array is reported beside it, against BLAKE3
    followed by one float32 sum over the same bytes in memory (using the data costs both alike)."""
    from blake3 import blake3

    rng = np.random.default_rng(0)
    count = max(1, size_mb // 16)
    arrays = {f"layer{i}": rng.standard_normal(4 << 20, dtype=np.float32) for i in range(count)}
    path = folder / "weights.amber"
    amber.save(arrays, path)
    del arrays
    data = np.fromfile(path, dtype=np.uint8)

    def hash_all() -> None:
        h = blake3(max_threads=blake3.AUTO)
        h.update(data)
        h.digest()

    in_memory = data[: (data.nbytes // 4) * 4].view(np.float32)

    def hash_and_sum() -> float:
        hash_all()
        with np.errstate(over="ignore"):  # the header's bytes read as floats can overflow
            return float(in_memory.sum())

    def load() -> Any:
        return amber.load(path, verify="full")

    def load_and_sum() -> float:
        return sum(float(a.sum()) for a in amber.load(path, verify="full").values())

    times = paired(
        {"blake3": hash_all, "amber": load, "blake3+sum": hash_and_sum, "amber+sum": load_and_sum},
        repeat,
    )
    return {
        "amber ms": times["amber"],
        "blake3 ms": times["blake3"],
        "amber+sum ms": times["amber+sum"],
        "blake3+sum ms": times["blake3+sum"],
        "bytes": data.nbytes,
    }


def _cell(value: float, before: dict[str, Any] | None, *keys: str) -> str:
    text = f"{value:9.2f}"
    if before is not None:
        found: Any = before
        for key in keys:
            found = found.get(key, {}) if isinstance(found, dict) else {}
        if isinstance(found, (int, float)):
            text += f" ({found:.2f})"
    return text


def report(results: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """Tables; with ``before``, each figure followed by the earlier run's in parentheses."""
    out = [f"load average at the start: {results['load average']}"]
    note = " (earlier run in parentheses)" if before else ""
    out.append(
        f"\nscikit-learn loads, {results.get('statistic', 'median')} ms and ratio to pickle{note}"
    )
    for name, row in results["sklearn"].items():
        for state in ("warm", "cold"):
            ratio = row[f"{state} amber ms"] / row[f"{state} pickle ms"]
            time_cell = _cell(
                row[f"{state} amber ms"], before, "sklearn", name, f"{state} amber ms"
            )
            out.append(
                f"  {name:<28}{state:<5} amber {time_cell}"
                f"  pickle {row[f'{state} pickle ms']:8.2f}  ratio "
                + _cell(ratio, before, "sklearn ratios", name, state)
            )
    for name, row in results.get("boosters", {}).items():
        ratio = row["amber ms"] / row["native ms"]
        out.append(
            f"  {name:<33} amber {_cell(row['amber ms'], before, 'boosters', name, 'amber ms')}"
            f"  native {row['native ms']:8.2f}  ratio "
            + _cell(ratio, before, "booster ratios", name)
        )
    stat = results.get("statistic", "median")
    fresh = results.get("fresh process", {})
    if fresh:
        out.append(f"\nfresh process: import, load the iris MLP, predict ({stat} ms)")
        for name, value in fresh.items():
            out.append(f"  {name:<18}{_cell(value, before, 'fresh process', name)}")
        out.append(f"  amber - pickle: {fresh['amber'] - fresh['pickle']:+.1f} ms")
        out.append(f"\nCLI commands as processes ({stat} ms)")
    for name, value in results.get("cli", {}).items():
        out.append(f"  {name:<22}{_cell(value, before, 'cli', name)}")
    if "verified" in results:
        v = results["verified"]
        out.append(
            f"\nverified load of {v['bytes'] / 2**20:.0f} MiB: amber {v['amber ms']:.1f} ms, "
            f"blake3 (all threads, in memory) {v['blake3 ms']:.1f} ms, ratio "
            + _cell(v["amber ms"] / v["blake3 ms"], before, "verified ratio")
        )
        if "amber+sum ms" in v:
            out.append(
                f"  then summing every array: amber {v['amber+sum ms']:.1f} ms, blake3 + "
                f"a sum over the same bytes {v['blake3+sum ms']:.1f} ms, ratio "
                f"{v['amber+sum ms'] / v['blake3+sum ms']:9.2f}"
            )
    out.append("\ntargets")
    for name, row in results["sklearn"].items():
        for state in ("warm", "cold"):
            ratio = row[f"{state} amber ms"] / row[f"{state} pickle ms"]
            out.append(
                f"  {_verdict(ratio <= 1.3)}  {name}, {state}: {ratio:.2f}x pickle (<= 1.3x)"
            )
    for name, row in results.get("boosters", {}).items():
        ratio = row["amber ms"] / row["native ms"]
        out.append(f"  {_verdict(ratio <= 1.5)}  {name}: {ratio:.2f}x native (<= 1.5x)")
    if fresh:
        gap = fresh["amber"] - fresh["pickle"]
        out.append(f"  {_verdict(gap <= 50)}  fresh process: {gap:+.1f} ms vs pickle (<= +50 ms)")
    for name, value in results.get("cli", {}).items():
        if name.startswith("amber"):
            out.append(f"  {_verdict(value <= 120)}  {name}: {value:.0f} ms (<= 120 ms)")
    if "verified" in results:
        ratio = results["verified"]["amber ms"] / results["verified"]["blake3 ms"]
        out.append(f"  {_verdict(ratio <= 1.3)}  verified load: {ratio:.2f}x blake3 (<= 1.3x)")
    return out


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ratios(results: dict[str, Any]) -> None:
    """Ratios stored next to the times, for ``--compare``."""
    results["sklearn ratios"] = {
        name: {s: row[f"{s} amber ms"] / row[f"{s} pickle ms"] for s in ("warm", "cold")}
        for name, row in results["sklearn"].items()
    }
    results["booster ratios"] = {
        name: row["amber ms"] / row["native ms"]
        for name, row in results.get("boosters", {}).items()
    }
    if "verified" in results:
        v = results["verified"]
        results["verified ratio"] = v["amber ms"] / v["blake3 ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loads")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per figure")
    parser.add_argument("--quick", action="store_true", help="small models, 1 run (smoke test)")
    parser.add_argument("--boosters", action="store_true", help="XGBoost and LightGBM too")
    parser.add_argument("--size-mb", type=int, default=0, help="verified load of N MiB (0: no)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--stat", choices=("median", "min"), default="median", help="summary of the runs"
    )
    parser.add_argument("--no-processes", action="store_true", help="skip fresh process, CLI")
    parser.add_argument(
        "--phases", action="store_true", help="where each load's time goes (opening, checks)"
    )
    parser.add_argument("--compare", type=Path, help="figures of an earlier run (--json)")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    global STATISTIC
    STATISTIC = min if args.stat == "min" else statistics.median
    results: dict[str, Any] = {
        "load average": load_average(),
        "amber": amber.__file__,
        "statistic": args.stat,
    }
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as tmp:
        folder = Path(tmp)
        print("scikit-learn loads...", file=sys.stderr)
        results["sklearn"] = sklearn_loads(folder, repeat, args.quick)
        if args.boosters:
            print("boosters...", file=sys.stderr)
            results["boosters"] = booster_loads(folder, repeat, args.quick)
        if not args.no_processes:
            print("processes...", file=sys.stderr)
            results["fresh process"], results["cli"] = fresh_and_cli(
                folder, 1 if args.quick else repeat
            )
        if args.phases:
            print("phases...", file=sys.stderr)
            results["sklearn phases"] = sklearn_phases(folder, repeat, args.quick)
            if args.boosters:
                results["booster phases"] = booster_phases(folder, repeat, args.quick)
        if args.size_mb:
            print("verified load...", file=sys.stderr)
            results["verified"] = verified_load(folder, args.size_mb, repeat)
    results["load average at the end"] = load_average()
    _ratios(results)
    before = json.loads(args.compare.read_text()) if args.compare else None
    print("\n".join(report(results, before) + phases_report(results)))
    print(f"load average at the end: {results['load average at the end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
