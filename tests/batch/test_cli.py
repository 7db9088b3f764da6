"""`amber predict SPEC INPUT`: every input format, id columns, CSV and Parquet output,
one-line errors with exit codes (2 bad input, 1 failure), nothing half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from amber.cli import output
from amber.cli.main import app
from amber.store import Store
from tests.batch import models

pa = pytest.importorskip("pyarrow", reason="amber predict needs pyarrow")
pd = pytest.importorskip("pandas", reason="the CSV fixtures are written with pandas")
import pyarrow.feather as feather  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.stderr, "_width", 300)
    monkeypatch.delenv("AMBER_STORE", raising=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    root = tmp_path_factory.mktemp("cli")
    frame, target = models.customers(n=400)
    pipe = models.pipeline(frame, target)
    x, _ = models.features(n=400, width=4)
    hgb = HistGradientBoostingRegressor(max_iter=20).fit(x, x[:, 0] - x[:, 3])
    with Store(root / "store") as store:
        store.save(pipe, "churn", input_example=frame.head())
        store.save(hgb, "hgb", input_example=x[:2])
    data = frame.assign(id=[f"c{i}" for i in range(len(frame))])
    data.to_csv(root / "customers.csv", index=False)
    data.to_parquet(root / "customers.parquet")
    feather.write_feather(pa.Table.from_pandas(data, preserve_index=False), root / "c.feather")
    np.save(root / "x.npy", x)
    return {"root": root, "frame": frame, "pipe": pipe, "x": x, "hgb": hgb}


def cli(setup: dict[str, Any], *args: str) -> Any:
    store = str(setup["root"] / "store")
    return CliRunner().invoke(app, ["predict", *args, "--store", store])


def error(setup: dict[str, Any], code: int, *args: str) -> str:
    result = cli(setup, *args)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("name", ["customers.csv", "customers.parquet", "c.feather"])
def test_every_table_format_with_an_id_column(setup: dict[str, Any], name: str) -> None:
    root = setup["root"]
    out = root / f"{name}.out.parquet"
    result = cli(setup, "churn@1", str(root / name), "-o", str(out), "--id", "id")
    assert result.exit_code == 0, result.stderr
    assert "400 rows predicted with churn@1" in result.stdout and "rows/s" in result.stdout
    table = pq.read_table(out)
    assert table.column_names == ["id", "prediction"]
    assert table.column("id").to_pylist()[:2] == ["c0", "c1"]
    assert table.column("prediction").to_pylist() == setup["pipe"].predict(setup["frame"]).tolist()


def test_npy_to_csv_with_probabilities_and_small_batches(setup: dict[str, Any]) -> None:
    root = setup["root"]
    out = root / "hgb.csv"
    result = cli(setup, "hgb", str(root / "x.npy"), "-o", str(out), "--batch-size", "33", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    got = pd.read_csv(out)["prediction"].to_numpy()
    np.testing.assert_allclose(got, setup["hgb"].predict(setup["x"]), rtol=1e-15)
    out = root / "proba.parquet"
    result = cli(
        setup,
        "churn",
        str(root / "customers.csv"),
        "-o",
        str(out),
        "--id",
        "id",
        "--method",
        "predict_proba",
        "--output-col",
        "p",
    )
    assert result.exit_code == 0, result.stderr
    table = pq.read_table(out)
    assert table.column_names == ["id", "p_0", "p_1"]
    np.testing.assert_array_equal(
        table.column("p_1").to_numpy(), setup["pipe"].predict_proba(setup["frame"])[:, 1]
    )


def test_predict_from_an_s3_store(setup: dict[str, Any], s3_url: str, tmp_path: Path) -> None:
    with Store(s3_url) as remote:
        remote.save(setup["pipe"], "churn", input_example=setup["frame"].head())
        remote.set_alias("churn@1", "production")
    out = tmp_path / "remote.parquet"
    args = ["predict", "churn@production", str(setup["root"] / "customers.csv"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--id", "id", "--store", s3_url])
    assert result.exit_code == 0, result.stderr
    assert "400 rows predicted with churn@1" in result.stdout
    table = pq.read_table(out)
    assert table.column("prediction").to_pylist() == setup["pipe"].predict(setup["frame"]).tolist()
    # An unknown model in the bucket: one line, exit 2, nothing written.
    result = CliRunner().invoke(
        app, ["predict", "nope", str(setup["root"] / "x.npy"), "--store", s3_url]
    )
    assert result.exit_code == 2, result.stderr
    assert "nope" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (setup["root"] / "x.predictions.parquet").exists()


def test_default_output_name(setup: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "in.npy"
    np.save(src, setup["x"][:5])
    assert cli(setup, "hgb", str(src)).exit_code == 0
    assert pq.read_table(tmp_path / "in.predictions.parquet").num_rows == 5


def test_signature_mismatch_names_the_column_and_writes_nothing(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    src = tmp_path / "bad.csv"
    setup["frame"].drop(columns="income").to_csv(src, index=False)
    assert "'income'" in error(setup, 2, "churn", str(src), "-o", str(out))
    setup["frame"].assign(income="high").to_csv(src, index=False)
    assert "column 'income' is text" in error(setup, 2, "churn", str(src), "-o", str(out))
    assert "'id'" in error(setup, 2, "churn", str(setup["root"] / "customers.csv"), "-o", str(out))
    assert "'nope'" in error(setup, 2, "churn", str(src), "-o", str(out), "--id", "nope")
    assert "takes named columns" in error(
        setup, 2, "churn", str(setup["root"] / "x.npy"), "-o", str(out)
    )
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.parquet"]


def test_bad_value_late_in_a_csv_leaves_no_output(setup: dict[str, Any], tmp_path: Path) -> None:
    # The first blocks read fine; a value far down cannot be read as the column's type.
    frame = pd.concat([setup["frame"]] * 200, ignore_index=True)
    frame["income"] = frame["income"].astype(object)
    frame.loc[len(frame) - 3, "income"] = "oops"
    src = tmp_path / "late.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "late.parquet"
    message = error(setup, 2, "churn", str(src), "-o", str(out), "--batch-size", "1000")
    assert "late.csv" in message and "oops" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.csv"]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"PAR1\x00\x01garbage", "t.parquet", "not a readable parquet file"),
        (b"ARROW1\x00\x00garbage", "t.arrow", "not a readable arrow file"),
        (b"\x93NUMPY\x01\x00garbage", "t.npy", "not a readable npy file"),
        (b"", "t.csv", "not a readable csv file"),
        (b"a,b\n1,2\n", "t.txt", "cannot tell the format"),
    ],
)
def test_malformed_and_truncated_inputs(
    setup: dict[str, Any], tmp_path: Path, content: bytes, name: str, message: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    assert message in error(setup, 2, "hgb", str(src), "-o", str(tmp_path / "o.parquet"))


def test_truncated_parquet(setup: dict[str, Any], tmp_path: Path) -> None:
    data = (setup["root"] / "customers.parquet").read_bytes()
    src = tmp_path / "cut.parquet"
    src.write_bytes(data[: len(data) // 2])
    assert "not a readable parquet" in error(
        setup, 2, "churn", str(src), "-o", str(tmp_path / "o.csv")
    )


def test_object_npy_is_refused_without_unpickling(setup: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "obj.npy"
    np.save(src, np.array([[object()]], dtype=object), allow_pickle=True)
    assert "not a readable npy file" in error(
        setup, 2, "hgb", str(src), "-o", str(tmp_path / "o.csv")
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("nope", "x.npy"), 2, "nope"),
        (("hgb@7", "x.npy"), 2, "hgb"),
        (("hgb", "missing.csv"), 2, "no such file"),
        (("hgb", "x.npy", "-o", "out.txt"), 2, ".parquet or .csv"),
        (("hgb", "x.npy", "-o", "no/such/dir/o.csv"), 1, "does not exist"),
        (("hgb", "x.npy", "--method", "fit"), 2, "changes the model"),
        (("hgb", "x.npy", "--method", "_private"), 2, "public method name"),
        (("hgb", "x.npy", "--format", "xls"), 2, "format"),
    ],
)
def test_bad_arguments(
    setup: dict[str, Any], args: tuple[str, ...], code: int, message: str
) -> None:
    root = setup["root"]
    args = tuple(str(root / a) if a in ("x.npy", "missing.csv") else a for a in args)
    if "-o" in args:
        i = args.index("-o") + 1
        args = (*args[:i], str(root / args[i]), *args[i + 1 :])
    assert message in error(setup, code, *args)


def test_damaged_store_object_exits_1(tmp_path: Path, setup: dict[str, Any]) -> None:
    from sklearn.linear_model import LinearRegression

    x = setup["x"]
    with Store(tmp_path / "store") as store:
        store.save(LinearRegression().fit(x, x[:, 0]), "lin", input_example=x[:2])
    objects = [p for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()]
    victim = max(objects, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "lin",
            str(setup["root"] / "x.npy"),
            "-o",
            str(tmp_path / "o.csv"),
            "--store",
            str(tmp_path / "store"),
        ],
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: ") and "digest" in result.stderr.lower()
    assert not (tmp_path / "o.csv").exists()


def test_model_failure_is_one_line_and_leaves_no_output(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    # Empty text cells read as missing: the pipeline's scaler refuses NaN mid-job.
    src = tmp_path / "nan.csv"
    setup["frame"].assign(income="n/a").to_csv(src, index=False)
    message = error(setup, 1, "churn", str(src), "-o", str(tmp_path / "o.parquet"))
    assert "the model failed on a batch of 400 rows: ValueError" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.csv"]
