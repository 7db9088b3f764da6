"""``python -m benchmarks.batch``: batch prediction throughput, amber against its peers.

1. ``amber predict`` over a CSV of ROWS x 20 float features (HistGradientBoosting and a
   random forest), against a hand-written pandas loop with the pickled model
   (``pd.read_csv`` chunks + ``model.predict`` + ``to_csv``). Each run is a fresh process;
   rows/s (load + read + predict + write) and peak RSS, medians of ``--repeat`` runs.
2. Spark (``local[2]``), ROWS rows from Parquet, the forest: ``amber.spark.predict``
   (``mapInArrow``) against a naive ``pandas_udf`` that unpickles a broadcast model per
   batch, and MLflow's ``spark_udf`` when a peer venv with mlflow and pyspark exists
   (``$AMBER_PEER_MLFLOW_SPARK`` or /work/peers/mlflow-spark; reported missing otherwise).
   Cold = the first job (executors start Python workers and load the model); warm = median
   of the next ones. Memory: the largest RSS and PSS (shared pages split between
   processes) of a Python worker during the warm jobs.
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
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import user_environment

FEATURES = 20
ROOT = Path(__file__).resolve().parents[1]
PEER = Path(os.environ.get("AMBER_PEER_MLFLOW_SPARK", "/work/peers/mlflow-spark"))


def _models() -> dict[str, Any]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    x, y = make_classification(20_000, FEATURES, random_state=0)
    return {
        "hgb": HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x, y),
        "forest": RandomForestClassifier(
            n_estimators=50, max_depth=12, n_jobs=1, random_state=0
        ).fit(x, y),
    }


def _data(rows: int) -> Any:
    return np.random.default_rng(1).normal(size=(rows, FEATURES))


# -- 1. files ----------------------------------------------------------------------------

# Both children import pandas and pyarrow before the clock starts; the model's own imports
# (scikit-learn) are inside the timing for both. Peak memory: VmHWM (reset by exec).
_PEAK = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"

_PANDAS_LOOP = """
import pickle, sys, time
import pandas as pd, pyarrow
start = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
first = True
for chunk in pd.read_csv(sys.argv[2], chunksize=65536):
    out = pd.DataFrame({"prediction": model.predict(chunk.to_numpy())})
    out.to_csv(sys.argv[3], mode="w" if first else "a", header=first, index=False)
    first = False
print(time.perf_counter() - start, PEAK)
""".replace("PEAK", _PEAK)

# The command itself (``amber predict NAME CSV -o OUT --store S -q``), run in this process
# after the same imports as the loop: its own imports (typer, rich) are inside the timing.
_AMBER_CLI = """
import sys, time
import pandas as pd, pyarrow
start = time.perf_counter()
from amber.cli.main import build, modules_for
argv = ["predict", sys.argv[1], sys.argv[2], "-o", sys.argv[3], "--store", sys.argv[4], "-q"]
build(modules_for(["amber", "predict"]))(argv, standalone_mode=False)
print(time.perf_counter() - start, PEAK)
""".replace("PEAK", _PEAK)


def _child(code: str, *args: str) -> tuple[float, float]:
    # As a user's machine has it: .pyc files written once, not every source recompiled.
    env = {**user_environment(), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=3600
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    seconds, rss_kb = out.stdout.split()
    return float(seconds), float(rss_kb) / 1024


def files(rows: int, repeat: int, work: Path) -> None:
    import pandas as pd

    from amber.store import Store

    models = _models()
    x = _data(rows)
    csv = work / "input.csv"
    pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)]).to_csv(csv, index=False)
    store_path = work / "store"
    print(
        f"\n1. amber predict vs a pandas loop: {rows:,} rows x {FEATURES} features "
        f"({csv.stat().st_size / 1e6:.0f} MB CSV), medians of {repeat} fresh processes"
    )
    print(f"  {'model':<8}{'runner':<14}{'rows/s':>12}{'ratio':>8}{'peak RSS MB':>13}")
    with Store(store_path) as store:
        for name, model in models.items():
            store.save(model, name, input_example=x[:2])  # fitted on arrays: 20 features
    for name, model in models.items():
        pkl = work / f"{name}.pkl"
        pkl.write_bytes(pickle.dumps(model, protocol=5))
        runs = {"pandas loop": [], "amber predict": []}
        for _ in range(repeat):
            runs["pandas loop"].append(
                _child(_PANDAS_LOOP, str(pkl), str(csv), str(work / "p.csv"))
            )
            runs["amber predict"].append(
                _child(_AMBER_CLI, name, str(csv), str(work / "a.csv"), str(store_path))
            )
        expected = pd.read_csv(work / "p.csv")["prediction"].to_numpy()
        got = pd.read_csv(work / "a.csv")["prediction"].to_numpy()
        if not np.array_equal(expected, got):
            raise AssertionError(f"{name}: amber predict and the pandas loop disagree")
        base = rows / statistics.median(s for s, _ in runs["pandas loop"])
        for runner, samples in runs.items():
            rate = rows / statistics.median(s for s, _ in samples)
            rss = statistics.median(m for _, m in samples)
            print(f"  {name:<8}{runner:<14}{rate:>12,.0f}{rate / base:>7.2f}x{rss:>13,.0f}")
        print(f"  (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")


# -- 2. Spark ----------------------------------------------------------------------------


class WorkerMemory:
    """Samples the RSS and PSS of Spark's Python workers (processes running pyspark's
    daemon or worker module) every 0.1 s while a job runs, from ``/proc`` (so it needs
    nothing installed: the MLflow peer's environment runs it too). Both stay None where
    ``/proc`` has no ``smaps_rollup`` (not Linux)."""

    def __init__(self) -> None:
        self.rss: float | None = None
        self.pss: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _workers() -> list[str]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\x00", b" ")
            except OSError:
                continue
            if b"pyspark.daemon" in cmd or b"pyspark.worker" in cmd:
                found.append(entry)
        return found

    def _run(self) -> None:
        if not os.path.exists("/proc/self/smaps_rollup"):
            return
        while not self._stop.wait(0.1):
            for pid in self._workers():
                try:
                    with open(f"/proc/{pid}/smaps_rollup") as f:
                        fields = dict(line.split(":", 1) for line in f if ":" in line)
                except (OSError, ValueError):
                    continue  # the worker ended between the two reads
                rss = int(fields["Rss"].split()[0]) / 1024
                pss = int(fields["Pss"].split()[0]) / 1024
                self.rss = max(self.rss or 0.0, rss)
                self.pss = max(self.pss or 0.0, pss)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _session() -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = str(ROOT / "src")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _time_jobs(build: Any, repeat: int) -> dict[str, float]:
    """Cold (first) and warm (median of the rest) seconds of ``build().write.format("noop")``,
    and the workers' peak memory during the warm runs."""
    start = time.perf_counter()
    build().write.format("noop").mode("overwrite").save()
    cold = time.perf_counter() - start
    samples = []
    with WorkerMemory() as memory:
        for _ in range(max(repeat, 1)):
            start = time.perf_counter()
            build().write.format("noop").mode("overwrite").save()
            samples.append(time.perf_counter() - start)
    return {"cold": cold, "warm": statistics.median(samples), "rss": memory.rss, "pss": memory.pss}


_MLFLOW = textwrap.dedent("""
    import json, os, pickle, statistics, sys, time
    os.environ["PYSPARK_PYTHON"] = sys.executable
    import mlflow.pyfunc, mlflow.sklearn
    from pyspark.sql import SparkSession
    sys.path.insert(0, sys.argv[4])
    from batch_memory import WorkerMemory
    model = pickle.load(open(sys.argv[1], "rb"))
    # The classic MLflow model directory: the estimator pickled (cloudpickle).
    mlflow.sklearn.save_model(model, sys.argv[3], serialization_format="cloudpickle")
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(sys.argv[2])
    udf = mlflow.pyfunc.spark_udf(spark, sys.argv[3], result_type="double", env_manager="local")
    def run():
        df.withColumn("prediction", udf(*df.columns)).write.format("noop").mode("overwrite").save()
    # The JVM warmed by the same no-model jobs the amber session runs first.
    import numpy as np, pyarrow as pa
    def no_model(batches):
        for batch in batches:
            yield batch.append_column("prediction", pa.array(np.zeros(batch.num_rows)))
    from pyspark.sql.types import DoubleType, StructField, StructType
    with_prediction = StructType([*df.schema.fields, StructField("prediction", DoubleType())])
    for _ in range(1 + int(sys.argv[5])):
        df.mapInArrow(no_model, with_prediction).write.format("noop").mode("overwrite").save()
    start = time.perf_counter(); run(); cold = time.perf_counter() - start
    samples = []
    with WorkerMemory() as memory:
        for _ in range(int(sys.argv[5])):
            start = time.perf_counter(); run(); samples.append(time.perf_counter() - start)
    print(json.dumps({"cold": cold, "warm": statistics.median(samples), "rss": memory.rss,
                      "pss": memory.pss}))
    spark.stop()
""")


def _mlflow(pkl: Path, data: Path, work: Path, repeat: int) -> dict[str, float] | str:
    python = PEER / "bin" / "python"
    if not python.exists():
        return f"missing: no peer venv at {PEER} (set AMBER_PEER_MLFLOW_SPARK)"
    helper = work / "helper"
    helper.mkdir(exist_ok=True)
    # The sampler, without amber: the peer venv does not have it.
    source = Path(__file__).read_text()
    start, end = source.index("class WorkerMemory"), source.index("def _session")
    (helper / "batch_memory.py").write_text(
        "from __future__ import annotations\n\nimport os\nimport threading\n\n" + source[start:end]
    )
    out = subprocess.run(
        [
            str(python),
            "-c",
            _MLFLOW,
            str(pkl),
            str(data),
            str(work / "mlflow-model"),
            str(helper),
            str(max(repeat, 1)),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "PYTHONPATH": ""},
    )
    if out.returncode != 0:
        return "failed: " + " ".join(out.stderr.strip().splitlines()[-1:])[:300]
    return json.loads(out.stdout.strip().splitlines()[-1])


def spark(rows: int, repeat: int, work: Path, only_peer: bool = False) -> None:
    import pandas as pd

    import amber.spark
    from amber.store import Store

    model = _models()["forest"]
    cols = [f"f{i}" for i in range(FEATURES)]
    data = work / "input.parquet"
    pd.DataFrame(_data(rows), columns=cols).to_parquet(data, row_group_size=100_000)
    pkl = work / "forest.pkl"
    pkl.write_bytes(pickle.dumps(model, protocol=5))
    with Store(work / "spark-store") as store:
        store.save(model, "forest", input_example=_data(2))
    results: dict[str, Any] = {}
    if only_peer:
        results["mlflow spark_udf"] = _mlflow(pkl, data, work, repeat)
        print(json.dumps(results["mlflow spark_udf"]))
        return
    session = _session()
    try:
        df = session.read.parquet(str(data))
        # The bounds of any mapInArrow runner on this cluster: the round trip with no model
        # (Spark's own cost), and the model already in the task's closure, unpickled once
        # per task with no store, cache or check (the most a loader can give back).
        import pyarrow as pa
        from pyspark.sql import types as T

        with_prediction = T.StructType(
            [*df.schema.fields, T.StructField("prediction", T.DoubleType())]
        )

        def no_model(batches: Any) -> Any:
            for batch in batches:
                yield batch.append_column("prediction", pa.array(np.zeros(batch.num_rows)))

        blob = pkl.read_bytes()

        def model_in_closure(batches: Any) -> Any:
            fitted = pickle.loads(blob)
            for batch in batches:
                x = np.column_stack([column.to_numpy() for column in batch.columns])
                yield batch.append_column("prediction", pa.array(fitted.predict(x), pa.float64()))

        # First, so that every runner after it meets a JVM whose code paths for this scan
        # are already compiled (the MLflow session runs the same job first; see _MLFLOW).
        results["bound: no model"] = _time_jobs(
            lambda: df.mapInArrow(no_model, with_prediction), repeat
        )
        with Store(work / "spark-store") as store:
            scored = amber.spark.predict(df, "forest@1", store=store, features=cols)
        results["amber.spark.predict"] = _time_jobs(lambda: scored, repeat)
        # The same model as a scalar Arrow UDF (amber.spark.udf): only the feature columns
        # go to Python and only the prediction comes back (mapInArrow returns every column).
        with Store(work / "spark-store") as store:
            scalar = amber.spark.udf(session, "forest_udf", "forest@1", store=store)
        results["amber.spark.udf column"] = _time_jobs(
            lambda: df.withColumn("prediction", scalar(*cols)), repeat
        )
        results["bound: model in closure"] = _time_jobs(
            lambda: df.mapInArrow(model_in_closure, with_prediction), repeat
        )
        broadcast = session.sparkContext.broadcast(pkl.read_bytes())
        from pyspark.sql.functions import PandasUDFType, pandas_udf, struct

        def unpickle_and_predict(frame: Any) -> Any:
            fitted = pickle.loads(broadcast.value)  # what many jobs do: once per batch
            return pd.Series(fitted.predict(frame.to_numpy()).astype(float))

        with warnings.catch_warnings():  # the explicit UDF type (hints are strings here)
            warnings.simplefilter("ignore")
            naive = pandas_udf(unpickle_and_predict, "double", PandasUDFType.SCALAR)

        results["naive pandas_udf"] = _time_jobs(
            lambda: df.withColumn("prediction", naive(struct(*cols))), repeat
        )
    finally:
        session.stop()
    results["mlflow spark_udf"] = _mlflow(pkl, data, work, repeat)
    print(
        f"\n2. Spark local[2], {rows:,} rows x {FEATURES} features, random forest "
        f"(50 trees); warm = median of {repeat} jobs"
    )
    print(
        f"  {'runner':<25}{'warm rows/s':>12}{'vs mlflow':>10}{'vs naive':>10}"
        f"{'cold s':>8}{'start-up s':>11}{'worker RSS/PSS MB':>19}"
    )
    base_mlflow = results["mlflow spark_udf"]
    base_naive = results["naive pandas_udf"]
    for name, r in results.items():
        if isinstance(r, str):
            print(f"  {name:<25}{r}")
            continue
        rate = rows / r["warm"]
        vs_m = (
            f"{rate / (rows / base_mlflow['warm']):9.2f}x"
            if isinstance(base_mlflow, dict)
            else "      n/a"
        )
        vs_n = f"{rate / (rows / base_naive['warm']):9.2f}x"
        print(
            f"  {name:<25}{rate:>12,.0f}{vs_m:>10}{vs_n:>10}{r['cold']:>8.1f}"
            f"{r['cold'] - r['warm']:>11.1f}{_memory(r)}"
        )


def _memory(r: dict[str, Any]) -> str:
    if r.get("rss") is None:
        return f"{'n/a':>10}"
    return f"{r['rss']:>10,.0f}/{r['pss']:<8,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument(
        "--only", choices=["files", "spark", "mlflow"], help="run one part (mlflow: the peer)"
    )
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"batch prediction (rows={args.rows:,}, repeat={args.repeat}, cores={os.cpu_count()}, "
        f"load average {load})"
    )
    with tempfile.TemporaryDirectory(prefix="amber-bench-batch-") as tmp:
        if args.only in (None, "files"):
            files(args.rows, args.repeat, Path(tmp))
        if args.only in (None, "spark", "mlflow"):
            spark(args.rows, args.repeat, Path(tmp), only_peer=args.only == "mlflow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
