"""The benchmark harness runs at a tiny size, prints its tables and amber's rows, and names
every peer it skips with the reason. Timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
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
