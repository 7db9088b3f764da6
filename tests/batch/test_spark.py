"""amber.spark on a real local Spark (``local[2]``, loopback only): predictions equal the
model's own on the same rows, one version per job, amber's errors surfaced, schema checked on
the driver before any task. One Spark session for the module; every job is bounded in time."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.errors import CorruptFileError, InvalidArgumentError
from amber.store import Store
from tests.batch import models
from tests.store.s3_server import ACCESS

pytest.importorskip("pyarrow", reason="amber.spark needs pyarrow (pip install 'amber[spark]')")
pytest.importorskip("pyspark", reason="amber.spark needs pyspark (pip install 'amber[spark]')")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("pyspark needs a Java runtime (17 or 21): none on PATH", allow_module_level=True)

import amber.spark

# pyspark 4.3 warns on pandas 3 for its pandas paths; amber.spark uses Arrow batches only.
pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)
JOB_SECONDS = 180  # a job still running after this is cancelled and the test fails
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def executor_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The executors' AMBER_CACHE (a node's verified object cache for s3:// stores)."""
    return tmp_path_factory.mktemp("executor-cache")


@pytest.fixture(scope="module")
def spark(executor_cache: Path) -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # Python workers import amber from this checkout, as the test process does.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = SRC + (os.pathsep + path if path else "")
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("amber-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.python.worker.reuse", "true")
        # How executors of an s3:// store authenticate: their own environment (on a
        # cluster: instance roles, or secrets the cluster manager injects). The endpoint
        # travels with the model reference; credentials never do.
        .config("spark.executorEnv.AWS_ACCESS_KEY_ID", ACCESS["access_key_id"])
        .config("spark.executorEnv.AWS_SECRET_ACCESS_KEY", ACCESS["secret_access_key"])
        .config("spark.executorEnv.AWS_REGION", "us-east-1")
        .config("spark.executorEnv.AMBER_CACHE", str(executor_cache))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def bounded(spark: Any, action: Any) -> Any:
    """Run ``action()`` (a Spark action) and cancel its jobs if it outlives JOB_SECONDS."""
    sc = spark.sparkContext
    group = f"amber-test-{threading.get_ident()}"
    sc.setJobGroup(group, "amber test", interruptOnCancel=True)
    timer = threading.Timer(JOB_SECONDS, sc.cancelJobGroup, args=(group,))
    timer.start()
    try:
        return action()
    finally:
        timer.cancel()
        sc.setJobGroup(None, None)  # type: ignore[arg-type]


def _job_count(spark: Any) -> int:
    # Every job Spark has run in this application, through the JVM's status store.
    jsc = spark.sparkContext._jsc  # the JVM handle; read-only here
    return int(jsc.sc().statusStore().jobsList(None).size())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    handle = Store(tmp_path_factory.mktemp("spark-store") / "store")
    yield handle
    handle.close()


def sorted_rows(df: Any, key: str) -> list[Any]:
    return sorted(df.collect(), key=lambda r: r[key])


def test_pipeline_on_mixed_columns_matches_predict(spark: Any, store: Store) -> None:
    frame, target = models.customers()
    pipe = models.pipeline(frame, target)
    store.save(pipe, "churn", input_example=frame.head())
    data = frame.assign(id=np.arange(len(frame)))
    df = spark.createDataFrame(data).repartition(3)
    out = amber.spark.predict(df, "churn", store=store, batch_size=64)
    assert out.columns == [*df.columns, "prediction"]
    rows = bounded(spark, lambda: sorted_rows(out, "id"))
    assert [r["prediction"] for r in rows] == pipe.predict(frame).tolist()
    assert [r["plan"] for r in rows] == frame["plan"].tolist()  # carried through

    proba = amber.spark.predict(df, "churn", store=store, method="predict_proba", output_col="p")
    rows = bounded(spark, lambda: sorted_rows(proba, "id"))
    np.testing.assert_array_equal(np.array([r["p"] for r in rows]), pipe.predict_proba(frame))


def test_forest_by_store_path_matches_predict(spark: Any, store: Store) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x, _ = models.features()
    y = x[:, 0] * 2 + x[:, 2]
    forest = RandomForestRegressor(n_estimators=12, random_state=0).fit(x, y)
    store.save(forest, "forest", input_example=x[:4])
    cols = [f"x{i}" for i in range(x.shape[1])]
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(x)], ["id", *cols])
    # ship="store": executors open the (shared) store folder and load by version + digest.
    out = amber.spark.predict(df, "forest", store=store, features=cols, ship="store")
    rows = bounded(spark, lambda: sorted_rows(out, "id"))
    np.testing.assert_array_equal(np.array([r["prediction"] for r in rows]), forest.predict(x))


def test_xgboost_matches_predict(spark: Any, store: Store) -> None:
    xgboost = pytest.importorskip("xgboost", reason="the XGBoost case needs xgboost")
    x, y = models.features(width=5)
    booster = xgboost.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(x, y)
    store.save(booster, "xgb", input_example=x[:4])
    cols = [f"f{i}" for i in range(5)]
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(x)], ["id", *cols])
    out = amber.spark.predict(df, "xgb", store=store, features=cols, method="predict_proba")
    rows = bounded(spark, lambda: sorted_rows(out, "id"))
    np.testing.assert_allclose(
        np.array([r["prediction"] for r in rows]), booster.predict_proba(x), rtol=0, atol=1e-7
    )


def test_torch_module_matches_forward(spark: Any, store: Store) -> None:
    torch = pytest.importorskip("torch", reason="the torch case needs torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    store.save(net, "net", input_example=torch.from_numpy(x[:2]))
    cols = ["a", "b", "c", "d"]
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(x)], ["id", *cols])
    out = amber.spark.predict(df, "net", store=store, features=cols, output_col="score")
    rows = bounded(spark, lambda: sorted_rows(out, "id"))
    with torch.inference_mode():
        expected = net(torch.from_numpy(x))[:, 0].numpy()
    np.testing.assert_array_equal(np.array([r["score"] for r in rows], dtype=np.float32), expected)


def test_alias_moved_during_job_keeps_the_resolved_version(spark: Any, store: Store) -> None:
    from sklearn.linear_model import LinearRegression

    x, _ = models.features(width=3)
    first = LinearRegression().fit(x, x[:, 0])
    second = LinearRegression().fit(x, -x[:, 1])
    v1 = store.save(first, "moving", input_example=x[:2])
    v2 = store.save(second, "moving", input_example=x[:2])
    store.set_alias(v1.spec, "production")
    cols = ["a", "b", "c"]
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(x)], ["id", *cols])
    by_file = amber.spark.predict(df, "moving@production", store=store, features=cols)
    by_store = amber.spark.predict(
        df, "moving@production", store=store, features=cols, ship="store", output_col="p"
    )
    store.set_alias(v2.spec, "production")  # after the driver resolved, before tasks run
    for out, col in ((by_file, "prediction"), (by_store, "p")):
        rows = bounded(spark, lambda out=out: sorted_rows(out, "id"))
        np.testing.assert_allclose([r[col] for r in rows], first.predict(x))
    later = amber.spark.predict(df, "moving@production", store=store, features=cols)
    rows = bounded(spark, lambda: sorted_rows(later, "id"))
    np.testing.assert_allclose([r["prediction"] for r in rows], second.predict(x))


def test_s3_store_matches_predict_and_keeps_the_resolved_version(
    spark: Any, s3_url: str, executor_cache: Path
) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x, _ = models.features(width=4, seed=11)
    first = RandomForestRegressor(n_estimators=8, random_state=0).fit(x, x[:, 0])
    second = RandomForestRegressor(n_estimators=8, random_state=0).fit(x, -x[:, 1])
    with Store(s3_url) as remote:
        v1 = remote.save(first, "remote", input_example=x[:2])
        v2 = remote.save(second, "remote", input_example=x[:2])
        remote.set_alias(v1.spec, "production")
    cols = ["a", "b", "c", "d"]
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(x)], ["id", *cols])
    # A store URL: the driver resolves it; executors open the bucket themselves.
    out = amber.spark.predict(df.repartition(3), "remote@production", store=s3_url, features=cols)
    with Store(s3_url) as remote:
        remote.set_alias(v2.spec, "production")  # moved after resolving, before any task
    rows = bounded(spark, lambda: sorted_rows(out, "id"))
    np.testing.assert_array_equal([r["prediction"] for r in rows], first.predict(x))
    # The executors loaded through the node's verified object cache, not a shipped file.
    cached = {p.name for p in executor_cache.rglob("objects/*/*")}
    with Store(s3_url) as remote:
        stored = {key.rsplit("/", 1)[1] for key in remote.backend.list("objects/")}
    assert cached and cached <= stored, (cached, stored)
    later = amber.spark.predict(df, "remote@production", store=s3_url, features=cols)
    rows = bounded(spark, lambda: sorted_rows(later, "id"))
    np.testing.assert_array_equal([r["prediction"] for r in rows], second.predict(x))


def _largest_object(root: Path) -> Path:
    objects = [p for p in (root / "objects").rglob("*") if p.is_file()]
    return max(objects, key=lambda p: p.stat().st_size)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_corrupt_object_fails_with_amber_error(spark: Any, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, _ = models.features(n=100, width=3)
    root = tmp_path / "store"
    with Store(root) as local:
        local.save(LinearRegression().fit(x, x[:, 0]), "lin", input_example=x[:2])
        cols = ["a", "b", "c"]
        df = spark.createDataFrame([tuple(map(float, r)) for r in x], cols)
        # Damaged after the driver checked it: the executors find it and the job fails
        # with amber's error, raised again on the driver by amber.spark.errors().
        out = amber.spark.predict(df, "lin", store=local, features=cols, ship="store")
        _flip(_largest_object(root))
        with (
            pytest.raises(CorruptFileError, match="Spark job failed") as caught,
            amber.spark.errors(),
        ):
            bounded(spark, out.collect)
        assert "Traceback" not in str(caught.value) and "java" not in str(caught.value)
        # Damaged before: the driver refuses before submitting anything.
        before = _job_count(spark)
        with pytest.raises(CorruptFileError):
            amber.spark.predict(df, "lin", store=local, features=cols)
        assert _job_count(spark) == before


def test_schema_mismatch_refused_on_driver_before_any_task(spark: Any, store: Store) -> None:
    frame, target = models.customers(n=60)
    if "churn" not in {m.name for m in store.models()}:
        store.save(models.pipeline(frame, target), "churn", input_example=frame.head())
    df = spark.createDataFrame(frame)
    before = _job_count(spark)
    with pytest.raises(InvalidArgumentError, match=r"'plan'.*missing"):
        amber.spark.predict(df.drop("plan"), "churn", store=store)
    with pytest.raises(InvalidArgumentError, match="'income' is text"):
        amber.spark.predict(df.withColumn("income", df["plan"]), "churn", store=store)
    with pytest.raises(InvalidArgumentError, match="'age' is double"):
        amber.spark.predict(df.withColumn("age", df["income"]), "churn", store=store)
    with pytest.raises(InvalidArgumentError, match="already has a column"):
        amber.spark.predict(df, "churn", store=store, output_col="plan")
    with pytest.raises(InvalidArgumentError, match="never a pickled"):
        amber.spark.predict(df, models.pipeline(frame, target), store=store)  # type: ignore[arg-type]
    assert _job_count(spark) == before


def test_sql_udf_matches_predict(spark: Any, store: Store) -> None:
    frame, target = models.customers(n=120, seed=5)
    pipe = models.pipeline(frame, target)
    store.save(pipe, "churn_sql", input_example=frame.head())
    spark.createDataFrame(frame.assign(id=np.arange(len(frame)))).createOrReplaceTempView(
        "customers"
    )
    amber.spark.udf(spark, "churn", "churn_sql", store=store)
    rows = bounded(
        spark,
        lambda: spark.sql("SELECT id, churn(age, income, plan) AS p FROM customers").collect(),
    )
    rows.sort(key=lambda r: r["id"])
    assert [r["p"] for r in rows] == pipe.predict(frame).tolist()
    with pytest.raises(InvalidArgumentError, match="SQL function name"):
        amber.spark.udf(spark, "drop table", "churn_sql", store=store)
