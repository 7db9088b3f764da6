"""``python -m benchmarks.scanners``: amber scan against picklescan, fickling and modelscan on
the same hostile corpus (``tests/legacy/hostile_corpus.py``) and a few benign files.

Each peer runs in its own virtual environment (never amber's): ``$AMBER_PEER_<NAME>`` names
its python, else ``/work/peers/<name>/bin/python``. A peer that is not installed is reported
as missing, never guessed. For every file a tool says one of:

* ``flagged``: it reports a problem (amber: REFUSED or NEEDS TRUST, i.e. not SAFE TO CONVERT);
* ``clean``: it reports nothing (a miss on a hostile file, correct on a benign one);
* ``error``: it failed or skipped the file without a verdict.

Timing: the whole corpus scanned ``--repeats`` times inside one process per tool (startup
excluded), median reported, and each tool's time as a ratio to amber's in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("picklescan", "fickling", "modelscan")

# One driver per peer, run with the peer's own python: argv[1] is a JSON list of paths,
# argv[2] the repeat count; prints {"version", "verdicts": {path: verdict}, "seconds": [...]}.
_DRIVER_HEAD = """
import json, sys, time, importlib.metadata as md
paths = json.loads(sys.argv[1]); repeats = int(sys.argv[2])
def run_all():
    out = {}
    for p in paths:
        try:
            out[p] = judge(p)
        except Exception as exc:
            out[p] = "error"
    return out
"""
_DRIVER_TAIL = """
times = []
for _ in range(repeats):
    start = time.perf_counter(); verdicts = run_all(); times.append(time.perf_counter() - start)
print(json.dumps({"version": md.version(NAME), "verdicts": verdicts, "seconds": times}))
"""
DRIVERS = {
    "picklescan": """
NAME = "picklescan"
from picklescan.scanner import scan_file_path
def judge(p):
    r = scan_file_path(p)
    if r.issues_count or r.infected_files:
        return "flagged"
    return "error" if r.scan_err else "clean"
""",
    "fickling": """
NAME = "fickling"
import fickling
def judge(p):
    return "clean" if fickling.is_likely_safe(p) else "flagged"
""",
    "modelscan": """
NAME = "modelscan"
import logging
logging.disable(logging.CRITICAL)
from modelscan.modelscan import ModelScan
def judge(p):
    r = ModelScan().scan(p)
    if r["summary"]["total_issues"]:
        return "flagged"
    if r["errors"] or r["summary"]["skipped"]["total_skipped"]:
        return "error"
    return "clean"
""",
}


def peer_python(name: str) -> Path | None:
    """The python of the peer's own environment, or None when it is not installed."""
    configured = os.environ.get(f"AMBER_PEER_{name.upper()}")
    candidate = Path(configured) if configured else Path(f"/work/peers/{name}/bin/python")
    return candidate if candidate.exists() else None


def run_peer(name: str, paths: list[Path], repeats: int) -> dict[str, Any] | None:
    python = peer_python(name)
    if python is None:
        return None
    code = _DRIVER_HEAD + DRIVERS[name] + _DRIVER_TAIL
    proc = subprocess.run(
        [str(python), "-c", code, json.dumps([str(p) for p in paths]), str(repeats)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"version": "?", "verdicts": {}, "seconds": [], "failed": proc.stderr[-500:]}
    return json.loads(lines[-1])


def run_amber(paths: list[Path], repeats: int) -> dict[str, Any]:
    from amber._version import __version__
    from amber.legacy.scan import SAFE, scan_file

    scan_file(paths[0])  # imports done once, as the peers' are before their loop
    times, verdicts = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        verdicts = {str(p): "clean" if scan_file(p).verdict == SAFE else "flagged" for p in paths}
        times.append(time.perf_counter() - start)
    return {"version": __version__, "verdicts": verdicts, "seconds": times}


def benign_files(directory: Path) -> list[Path]:
    """Ordinary model files every scanner should pass."""
    import joblib
    import numpy as np
    import torch
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    out = []
    path = directory / "benign-logreg.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=300).fit(X, y), protocol=4))
    out.append(path)
    path = directory / "benign-forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), path)
    out.append(path)
    path = directory / "benign-state-dict.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path)
    out.append(path)
    path = directory / "benign-array.npy"
    np.save(path, np.arange(10.0))
    out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.legacy import hostile_corpus

    with tempfile.TemporaryDirectory(prefix="amber-scanners-") as tmp:
        directory = Path(tmp)
        built = hostile_corpus.build(directory / "hostile")
        hostile = [p for _, p in built]
        payloads = {str(p) for name, p in built if name not in hostile_corpus.NO_PAYLOAD}
        (directory / "benign").mkdir()
        benign = benign_files(directory / "benign")
        paths = hostile + benign
        print(f"corpus: {len(hostile)} hostile files, {len(benign)} benign", file=sys.stderr)
        results: dict[str, Any] = {"amber": run_amber(paths, args.repeats)}
        for name in PEERS:
            print(f"running {name}...", file=sys.stderr)
            results[name] = run_peer(name, paths, args.repeats)
    base = statistics.median(results["amber"]["seconds"])
    print(
        f"Scanners on {len(hostile)} hostile and {len(benign)} benign files "
        f"(median of {args.repeats} passes; machine possibly shared):\n"
    )
    header = (
        f"{'tool':<12}{'version':<10}{'hostile flagged':>16}{'missed':>8}{'errors':>8}"
        f"{'payloads missed':>17}{'benign flagged':>16}{'time':>10}{'x amber':>9}"
    )
    print(header)
    for name, result in results.items():
        if result is None:
            print(f"{name:<12}missing (not installed in /work/peers/{name} or $AMBER_PEER_*)")
            continue
        if "failed" in result:
            print(f"{name:<12}failed to run: {result['failed']!r}")
            continue
        verdicts = result["verdicts"]
        hostile_counts = Counter(verdicts.get(str(p), "error") for p in hostile)
        benign_counts = Counter(verdicts.get(str(p), "error") for p in benign)
        payload_missed = sum(verdicts.get(p) == "clean" for p in payloads)
        seconds = statistics.median(result["seconds"])
        print(
            f"{name:<12}{result['version']:<10}{hostile_counts['flagged']:>16}"
            f"{hostile_counts['clean']:>8}{hostile_counts['error']:>8}"
            f"{payload_missed:>13}/{len(payloads)}"
            f"{benign_counts['flagged']:>14}/{len(benign)}{seconds:>9.2f}s"
            f"{seconds / base:>8.1f}x"
        )
    missed = {
        name: sorted(Path(p).name for p in map(str, hostile) if r["verdicts"].get(p) == "clean")
        for name, r in results.items()
        if r is not None and "failed" not in r
    }
    print(
        "\nmissed: hostile files reported clean; payloads missed: those of them that would "
        "run, import or open something under one pickle.load/torch.load/joblib.load "
        "(tests/legacy/hostile_corpus.py: NO_PAYLOAD lists the others)."
    )
    print("\nHostile files reported clean (misses):")
    for name, files in missed.items():
        print(f"  {name}: {', '.join(files) if files else 'none'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "missed": missed}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
