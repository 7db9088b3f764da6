"""`amber` entry point: version, help, and one-line errors with the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import amber

AMBER = Path(sys.executable).with_name("amber")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # no wrapping, so assertions see whole lines
    return subprocess.run([str(AMBER), *args], capture_output=True, text=True, env=env)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.amber"
    amber.save(
        {"layer.weight": np.ones((4, 3), np.float32), "layer.bias": np.zeros(3), "n": 1},
        path,
        metadata={"owner": "team-a"},
    )
    return path


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"amber {amber.__version__}"


def test_inspect_table(model: Path) -> None:
    result = run("inspect", str(model))
    assert result.returncode == 0, result.stderr
    for fragment in ("layer.weight", "float32", "(4, 3)", "layer.bias", "team-a", "format", "1.0"):
        assert fragment in result.stdout


def test_inspect_json_is_machine_readable(model: Path) -> None:
    result = run("inspect", "--json", str(model))
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["tensor_count"] == 2
    assert {t["name"] for t in data["tensors"]} == {"layer.weight", "layer.bias"}
    assert data["metadata"] == {"owner": "team-a"}
    assert data["format_version"] == "1.0"


def test_inspect_limits_rows_unless_all(tmp_path: Path) -> None:
    path = tmp_path / "many.amber"
    amber.save({f"t{i}": np.ones(1) for i in range(60)}, path)
    assert "10 more tensors" in run("inspect", str(path)).stdout
    assert "t59" in run("inspect", "--all", str(path)).stdout


def test_verify_ok_and_quick(model: Path) -> None:
    full = run("verify", str(model))
    assert full.returncode == 0 and "2 tensor digests" in full.stdout
    quick = run("verify", "--quick", str(model))
    assert quick.returncode == 0 and "manifest digest" in quick.stdout


def test_verify_names_the_damaged_tensor_with_exit_1(model: Path) -> None:
    with amber.open(model, verify="off") as f:
        offset = f._reader.entries["layer.bias"].offset
    raw = bytearray(model.read_bytes())
    raw[offset] ^= 0x80
    model.write_bytes(bytes(raw))
    result = run("verify", str(model))
    assert result.returncode == 1
    assert "'layer.bias'" in result.stderr and "corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert run("verify", "--quick", str(model)).returncode == 0  # payloads not checked


@pytest.mark.parametrize("content", ["empty", "text", "header-only", "old-version"])
def test_not_amber_is_exit_2_with_one_line(tmp_path: Path, model: Path, content: str) -> None:
    header = model.read_bytes()[:64]
    path = tmp_path / "x.amber"
    path.write_bytes(
        {
            "empty": b"",
            "text": b"not an amber file at all" * 10,
            "header-only": header + bytes(200),  # an amber header, then no trailer: damaged
            "old-version": b"\x89AMBER\r\n" + bytes(200),  # format 0.0: unsupported
        }[content]
    )
    for command in (["verify"], ["verify", "--quick"], ["inspect"]):
        result = run(*command, str(path))
        assert result.returncode in (1, 2), (command, result)
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr
    assert run("verify", str(path)).returncode == (1 if content == "header-only" else 2)


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run("inspect", str(tmp_path / "absent.amber"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_truncated_file_is_exit_1(model: Path) -> None:
    model.write_bytes(model.read_bytes()[:-10])
    result = run("verify", str(model))
    assert result.returncode == 1
    assert "truncated" in result.stderr


def test_inspect_shows_the_object_tree_and_marks_untrusted(tmp_path: Path) -> None:
    from tests.graph.user_models import NeuralNetwork

    path = tmp_path / "net.amber"
    amber.save({"net": NeuralNetwork(), "scale": np.float64}, path)
    result = run("inspect", str(path))
    assert result.returncode == 0, result.stderr
    marked = [line for line in result.stdout.splitlines() if "(untrusted)" in line]
    assert len(marked) == 1
    assert "'net': tests.graph.user_models.NeuralNetwork" in marked[0]
    assert ".weights: dict" in result.stdout
    assert "'hidden': ndarray float64 (4, 3)" in result.stdout
    assert "class numpy.float64" in result.stdout
    assert "load with amber.load(path, trusted=" in result.stdout
    data = json.loads(run("inspect", "--json", str(path)).stdout)
    assert data["untrusted_types"] == ["tests.graph.user_models.NeuralNetwork"]
