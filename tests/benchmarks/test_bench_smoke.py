"""The benchmark harness runs at a tiny size, prints its tables and amber's rows, and names
every peer it skips with the reason. Timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEADINGS = ("Machine limits", "Save", "Load", "Inspect / verify --quick", "Targets")
AMBER_ROWS = (
    "amber.save (durable)",
    "amber.load verify=full",
    "amber.load verify=lazy",
    "amber.load verify=off",
    "amber.open lazy, per tensor",
    "amber.inspect",
    "amber.verify(quick=True)",
    "python -c 'import amber'",
)


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    argv = [sys.executable, "-m", "benchmarks", "--size-mb", "4", "--repeat", "1"]
    argv += ["--data-dir", str(tmp_path / "data"), *args]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # The harness cleans up after itself.
    assert list((tmp_path / "data").iterdir()) == []
    return result.stdout


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def test_harness_prints_tables_and_amber_rows(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--json", str(tmp_path / "results.json"))
    for heading in HEADINGS:
        assert f"\n{heading}" in out
    for row in AMBER_ROWS:
        assert f"  {row} " in out
    assert "PASS" in out or "FAIL" in out
    skips = [line for line in out.splitlines() if line.lstrip().startswith("skipped ")]
    for module in ("torch", "safetensors"):
        if not _installed(module):
            assert any(module in line and "cannot be imported" in line for line in skips)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "amber.save (durable)" in results["saves"]
    assert results["loads"]["amber.load verify=full"]["ready"]["samples_s"]
    verdicts = {t["goal"]: t["status"] for t in results["targets"]}
    assert set(verdicts.values()) <= {"PASS", "FAIL", "N/A"}
    # Targets that need only amber and the machine always get a verdict.
    for goal, status in verdicts.items():
        if "safetensors" not in goal and "torch" not in goal and "FILE" not in goal:
            assert status != "N/A", goal


def test_missing_peers_are_skipped_with_the_reason(tmp_path: Path) -> None:
    # Stubs that fail to import stand in for torch and safetensors whether or not they are
    # installed, so this checks the skip path in every environment.
    stubs = tmp_path / "stubs"
    for name in ("torch", "safetensors"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    paths = [str(stubs), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    only = "amber,safetensors-numpy,safetensors-torch,torch"
    out = _bench(tmp_path, "--only", only, "--no-prefault", env=env)
    for label in ("safetensors.numpy", "safetensors.torch", "torch.save"):
        assert f"skipped {label} / " in out
    assert "cannot be imported (ImportError: hidden by the test)" in out
    assert "  amber.load verify=full " in out
    assert "N/A" in out


def _module(module: str, *args: str) -> str:
    argv = [sys.executable, "-m", module, *args]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_torch_benchmark_runs(tmp_path: Path) -> None:
    out = _module("benchmarks.torch_models", "--size-mb", "4", "--repeat", "1")
    for row in ("amber.save (durable)", "amber.load (verify=off)", "amber.load(into=model)"):
        assert f"  {row}" in out
    assert "targets" in out and ("PASS" in out or "FAIL" in out)


def test_store_benchmark_runs(tmp_path: Path) -> None:
    out = _module(
        "benchmarks.store",
        *("--size-mb", "4", "--versions", "3", "--repeat", "1", "--listing-versions", "200"),
        *("--data-dir", str(tmp_path)),
    )
    assert "amber store (tensors)" in out and "fixed    64 KiB chunks" in out
    assert "store.load(name)" in out and "store.versions(one model)" in out
    assert list(tmp_path.iterdir()) == []


def test_boosters_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.boosters", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("xgboost (10 trees)", "lightgbm (10 trees)", "targets"):
        assert heading in result.stdout
    for row in ("native", "amber", "pickle"):
        assert f"  {row} " in result.stdout


def test_compression_benchmark_prints_its_tables(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.compression", "--size-mb", "4", "--repeat", "1"]
    result = subprocess.run(
        [*argv, "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ("amber codec auto", "amber.save/load int8", "joblib compress=3", "bfloat16 ("):
        assert row in result.stdout, row
    assert "ratio >= 1.15:" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the scratch folder is removed


def test_loads_report_prints_every_table_and_target() -> None:
    # The report of `python -m benchmarks.loads` (a full run takes minutes: the figures
    # here are made up, only the tables and verdicts are checked).
    from benchmarks.loads import _ratios, allocator, report

    results = {
        "load average": "1.00 1.00 1.00",
        "sklearn": {
            "iris MLP": {
                "warm amber ms": 1.2,
                "warm pickle ms": 1.0,
                "cold amber ms": 3.0,
                "cold pickle ms": 1.0,
            }
        },
        "boosters": {"XGBoost (200 trees)": {"amber ms": 12.0, "native ms": 10.0}},
        "fresh process": {"python -c pass": 20.0, "pickle": 300.0, "amber": 340.0},
        "cli": {"python -c pass": 20.0, "amber --help": 150.0, "amber inspect FILE": 110.0},
        "verified": {"amber ms": 130.0, "blake3 ms": 100.0, "bytes": 2**30},
    }
    _ratios(results)
    before = json.loads(json.dumps(results))
    before["sklearn ratios"]["iris MLP"]["warm"] = 2.5
    text = "\n".join(report(results, before))
    assert "PASS  iris MLP, warm: 1.20x pickle" in text
    assert "FAIL  iris MLP, cold: 3.00x pickle" in text
    assert "(2.50)" in text  # the earlier run's figure next to this one's
    assert "PASS  XGBoost (200 trees): 1.20x native" in text
    assert "PASS  fresh process: +40.0 ms" in text
    assert "FAIL  amber --help: 150 ms" in text and "PASS  amber inspect FILE: 110 ms" in text
    assert "PASS  verified load: 1.30x blake3" in text
    with allocator("cold") as fixed:
        assert fixed in (True, False)  # False only where glibc's mallopt is missing


def test_loads_phases_table_gives_each_part_as_a_multiple_of_the_peer() -> None:
    from benchmarks.loads import phases_report

    results = {
        "sklearn phases": {
            "grid search": {"pickle": 0.5, "open": 1.0, "verified open": 1.5, "amber": 2.0}
        },
        "booster phases": {"XGBoost (200 trees)": {"native": 2.0, "checks": 12.0, "amber": 16.0}},
    }
    text = "\n".join(phases_report(results))
    assert "grid search" in text and "open 1.00 (2.00x)" in text
    assert "verified open 1.50 (3.00x)" in text and "amber 2.00 (4.00x)" in text
    assert "checks 12.00 (6.00x)" in text and "multiple of native's whole load" in text
    assert phases_report({}) == []  # no --phases: no table


def test_spark_worker_memory_sampler_reads_proc_without_psutil() -> None:
    """The sampler finds a process whose command line names pyspark's worker module and
    reads its memory from /proc (the MLflow peer's environment has no psutil)."""
    import time

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.batch import WorkerMemory
    finally:
        sys.path.remove(str(ROOT))
    if not os.path.exists("/proc/self/smaps_rollup"):
        assert WorkerMemory().rss is None  # reported as n/a, never as 0
        return
    code = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    worker = subprocess.Popen([sys.executable, "-c", code, "pyspark.worker"])
    try:
        with WorkerMemory() as memory:
            deadline = time.monotonic() + 20
            while (memory.rss or 0) < 64 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert memory.rss is not None and memory.rss >= 64
        assert memory.pss is not None and 0 < memory.pss <= memory.rss
    finally:
        worker.kill()
        worker.wait()


def test_s3_store_benchmark_runs() -> None:
    """Against a moto server it starts itself; every figure row is printed, the durable
    peer (get + fsync) included."""
    if not (_installed("moto") and _installed("obstore")):
        import pytest

        pytest.skip("moto and obstore are test dependencies (pip install -e .[test])")
    before = set(Path(tempfile.gettempdir()).glob("amber-bench-s3-*"))
    out = _module("benchmarks.store_s3", "--mb", "16", "--repeat", "1", "--versions", "10")
    assert set(Path(tempfile.gettempdir()).glob("amber-bench-s3-*")) == before  # cleaned up
    for row in ("push (Store.push)", "pull (Store.pull)", "get + fsync", "warm load (cached)"):
        assert row in out, out
    assert "versions: warm" in out, out
