"""`amber inspect` and `amber verify` at 80 columns and in pipes: values the user asked for
are never cut (digests whole on one line, hyperparameters listed), errors as JSON with
``--json``, shell completion offered, plural forms right."""

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


def run(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([str(AMBER), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def estimator_file(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(30, 3))
    clf = LogisticRegression(C=0.25, max_iter=321).fit(x, (x[:, 0] > 0).astype(int))
    path = tmp_path / "clf.amber"
    amber.save({"model": clf, "step": 1200, "epoch": 7}, path)
    return path


def test_inspect_at_80_columns_keeps_digest_and_values_whole(estimator_file: Path) -> None:
    result = run("inspect", str(estimator_file))
    assert result.returncode == 0, result.stderr
    digest = amber.inspect(estimator_file).manifest_digest
    assert any(line.split() == ["manifest", digest] for line in result.stdout.splitlines())
    for value in ("C=0.25", "max_iter=321", "step=1200", "epoch=7"):
        assert value in result.stdout, value
    # Only the digest line may pass the edge; everything else folds.
    long = [ln for ln in result.stdout.splitlines() if len(ln.rstrip()) > 80]
    assert all(digest in ln for ln in long), long


def test_inspect_json_has_the_outline_with_hyperparameters(estimator_file: Path) -> None:
    data = json.loads(run("inspect", "--json", str(estimator_file)).stdout)
    outline = data["outline"]
    assert outline["values"] == {"step": 1200, "epoch": 7}
    (model,) = outline["children"]
    assert model["values"]["C"] == 0.25 and model["values"]["max_iter"] == 321


def test_inspect_prints_trusted_line_ready_to_paste(tmp_path: Path) -> None:
    from tests.graph.user_models import NeuralNetwork

    amber.save(NeuralNetwork(), tmp_path / "net.amber")
    out = run("inspect", str(tmp_path / "net.amber"), columns=200).stdout
    assert "amber.load(path, trusted=['tests.graph.user_models.NeuralNetwork'])" in out


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_errors_are_json_on_stderr_in_json_mode(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "model.pkl"
    bad.write_bytes(b"\x80\x04K\x01.")
    result = run(command, "--json", str(bad))
    assert result.returncode == 2 and result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["exit_code"] == 2 and error["type"], error
    assert bad.name in error["message"], error


def test_verify_json(estimator_file: Path) -> None:
    result = run("verify", "--json", str(estimator_file))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["tensors"] == len(amber.inspect(estimator_file).tensors)
    assert data["manifest_digest"] == amber.inspect(estimator_file).manifest_digest


def test_verify_says_one_tensor_digest(tmp_path: Path) -> None:
    amber.save({"w": np.ones(3)}, tmp_path / "one.amber")
    assert "1 tensor digest " in run("verify", str(tmp_path / "one.amber")).stdout


def test_completion_is_offered() -> None:
    result = run("--help", columns=120)
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
