"""`amber predict` and ``amber.predict`` with stored Keras and ONNX models: .npy, CSV and
Parquet inputs, predictions equal to the framework's own; mismatched inputs are refused
with one line naming the input, and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend the dev environment has
pytest.importorskip("keras", reason="the Keras models need keras (amber[keras])")
pytest.importorskip("onnxruntime", reason="the ONNX models need onnxruntime (amber[onnx])")
pa = pytest.importorskip("pyarrow", reason="amber predict needs pyarrow")
pd = pytest.importorskip("pandas", reason="the CSV fixtures are written with pandas")

import pyarrow.parquet as pq  # noqa: E402

from amber.cli import output  # noqa: E402
from amber.cli.main import app  # noqa: E402
from tests.serve.keras_onnx_models import fill, onnx_run  # noqa: E402


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.stderr, "_width", 300)
    monkeypatch.delenv("AMBER_STORE", raising=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("keras-onnx-batch")
    models = fill(root / "store")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    np.save(root / "x.npy", x)
    pd.DataFrame(x, columns=["f0", "f1", "f2", "f3"]).to_csv(root / "x.csv", index=False)
    people = pd.DataFrame(
        {"age": rng.uniform(20, 70, 300).astype(np.float32), "income": rng.normal(size=300)}
    )
    people.to_parquet(root / "people.parquet")
    mixed = pd.DataFrame({"a": rng.normal(size=300).astype(np.float32), "b": np.arange(300)})
    mixed.to_csv(root / "mixed.csv", index=False)
    return {"root": root, "models": models, "x": x, "people": people, "mixed": mixed}


def cli(setup: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(app, ["predict", *args, "--store", str(setup["root"] / "store")])


def predicted(setup: dict[str, Any], spec: str, source: str, **kw: Any) -> np.ndarray:
    out = setup["root"] / f"{spec}-{source}.parquet"
    result = cli(setup, spec, str(setup["root"] / source), "-o", str(out), "--batch-size", "64")
    assert result.exit_code == 0, result.stderr
    table = pq.read_table(out)
    return np.column_stack([table.column(n).to_numpy() for n in table.column_names])


def test_keras_sequential_npy_and_csv(setup: dict[str, Any]) -> None:
    want = setup["models"]["seq"].predict(setup["x"], verbose=0)
    np.testing.assert_allclose(predicted(setup, "seq", "x.npy"), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(predicted(setup, "seq", "x.csv"), want, rtol=1e-6, atol=1e-7)


def test_onnx_npy_and_named_columns(setup: dict[str, Any]) -> None:
    (want,) = onnx_run(setup["models"]["lin"], {"x": setup["x"]})
    np.testing.assert_array_equal(predicted(setup, "lin", "x.npy"), want)
    mixed = setup["mixed"]
    feeds = {"a": mixed[["a"]].to_numpy(), "b": mixed[["b"]].to_numpy().astype(np.int64)}
    (want,) = onnx_run(setup["models"]["mix"], feeds)
    np.testing.assert_array_equal(predicted(setup, "mix", "mixed.csv"), want)


def test_python_api_with_a_model_in_hand(setup: dict[str, Any]) -> None:
    import amber

    got = amber.predict(setup["models"]["lin"], setup["x"], batch_size=50)
    np.testing.assert_array_equal(got, onnx_run(setup["models"]["lin"], {"x": setup["x"]})[0])
    got = amber.predict("seq@1", setup["x"], store=setup["root"] / "store")
    want = setup["models"]["seq"].predict(setup["x"], verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def error(setup: dict[str, Any], *args: str) -> str:
    result = cli(setup, *args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    return result.stderr


def test_mismatches_name_the_input_and_write_nothing(setup: dict[str, Any], tmp_path: Path) -> None:
    root = setup["root"]
    out = tmp_path / "out.parquet"
    np.save(tmp_path / "narrow.npy", setup["x"][:, :3])
    assert "4 features" in error(setup, "lin", str(tmp_path / "narrow.npy"), "-o", str(out))
    setup["mixed"].drop(columns="b").to_csv(tmp_path / "no-b.csv", index=False)
    assert "'b'" in error(setup, "mix", str(tmp_path / "no-b.csv"), "-o", str(out))
    setup["mixed"].assign(b=setup["mixed"]["a"]).to_csv(tmp_path / "float-b.csv", index=False)
    assert "'b'" in error(setup, "mix", str(tmp_path / "float-b.csv"), "-o", str(out))
    assert "named columns" in error(setup, "mix", str(root / "x.npy"), "-o", str(out))
    # Two named outputs: batch prediction writes one column set, so it says so.
    message = error(setup, "two", str(root / "people.parquet"), "-o", str(out))
    assert "score" in message and "probs" in message
    assert not out.exists()
