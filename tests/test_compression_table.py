"""amber.compression_report and `amber compress`: every option really saved and loaded,
sizes and metrics measured, bad options refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import amber
from amber.cli.main import app
from amber.compression_table import parse_option
from amber.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def mlp() -> tuple[object, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    model = MLPClassifier((64,), max_iter=100, random_state=0).fit(X[:1200], y[:1200])
    return model, X[1200:], y[1200:]


def test_report_measures_each_option(mlp: tuple[object, np.ndarray, np.ndarray]) -> None:
    model, X, y = mlp
    report = amber.compression_report(model, X, y, tries=["int8", "int4", "prune:0.5+int8"])
    rows = {r.option: r for r in report.rows}
    assert list(rows) == ["raw", "int8", "int4", "prune:0.5+int8"]
    assert report.metric_name == "accuracy"
    assert rows["raw"].metric == pytest.approx(model.score(X, y)) and rows["raw"].change == 0
    assert rows["int8"].size < rows["raw"].size and rows["int8"].ratio > 1
    assert rows["int4"].size < rows["int8"].size
    for row in rows.values():
        assert 0 <= row.metric <= 1 and row.save_s > 0 and row.load_s > 0
    # The int8 figure is what a real save + load gives.
    assert rows["int8"].metric == pytest.approx(amber.quantize(model, "int8").score(X, y))
    table = str(report)
    assert "int4" in table and "accuracy" in table and "ratio" in table
    assert json.loads(json.dumps(report.to_dict()))["rows"][0]["option"] == "raw"


def test_report_for_a_torch_module_gives_the_output_difference() -> None:
    torch = pytest.importorskip("torch", reason="torch is a dev dependency")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    X = torch.randn(50, 32)
    report = amber.compression_report(model, X.numpy(), tries=["fp16", "int8"])
    rows = {r.option: r for r in report.rows}
    assert rows["raw"].max_abs_diff == 0
    assert 0 < rows["fp16"].max_abs_diff < rows["int8"].max_abs_diff < 0.1
    assert "max |diff|" in str(report)


@pytest.mark.parametrize(
    "option", ["", "gzip", "int8+int4", "prune:1.5", "prune:x", "zstd+zstd", "prune:"]
)
def test_bad_options_are_refused(option: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_option(option)


def test_option_grammar() -> None:
    assert parse_option("raw") == {}
    assert parse_option("prune:0.5+int8+zstd") == {
        "prune": 0.5,
        "quantize": "int8",
        "compress": "auto",
    }


def test_cli_compress_a_file_and_a_store_version(
    tmp_path: Path, mlp: tuple[object, np.ndarray, np.ndarray]
) -> None:
    model, X, y = mlp
    amber.save(model, tmp_path / "m.amber")
    np.savez(tmp_path / "eval.npz", X=X, y=y)
    runner = CliRunner()
    args = ["compress", str(tmp_path / "m.amber"), "--try", "int8,fp16"]
    result = runner.invoke(app, [*args, "--eval", str(tmp_path / "eval.npz")])
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and "accuracy" in result.output
    from amber.store import Store

    Store(tmp_path / "store").save(model, "digits")
    amber.save({"X": X, "y": y}, tmp_path / "eval.amber")
    result = runner.invoke(
        app,
        [
            *("compress", "digits", "--store", str(tmp_path / "store")),
            *("--try", "int4", "--json", "--eval", str(tmp_path / "eval.amber")),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [r["option"] for r in json.loads(result.output)["rows"]] == ["raw", "int4"]
    bad = runner.invoke(app, ["compress", str(tmp_path / "m.amber"), "--try", "int9"])
    assert bad.exit_code == 2 and "unknown or repeated compression option" in bad.output
    np.savez(tmp_path / "noX.npz", a=X)
    missing = runner.invoke(app, [*args, "--eval", str(tmp_path / "noX.npz")])
    assert missing.exit_code == 2 and "array named X" in missing.output
