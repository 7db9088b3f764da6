"""Streaming proof: `amber predict` on a CSV larger than the memory limit imposed on its
process. The limit is shown to bind: reading the same file whole under it fails."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amber.store import Store

pa = pytest.importorskip("pyarrow", reason="amber predict needs pyarrow")
if not sys.platform.startswith("linux"):
    pytest.skip("RLIMIT_DATA bounds heap and anonymous maps on Linux only", allow_module_level=True)

LIMIT = 384 << 20  # data segment (heap + private mappings) allowed to the child process
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (LIMIT, LIMIT))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        # One thread each: fewer per-thread buffers in the fixed start-up cost.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ARROW_DEFAULT_MEMORY_POOL": "system",
        "MALLOC_ARENA_MAX": "2",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_predict_streams_a_csv_larger_than_its_memory_limit(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(50, 4))
    model = LinearRegression().fit(x, x @ [1.0, -2.0, 0.5, 3.0])
    with Store(tmp_path / "store") as store:
        store.save(model, "lin", input_example=x[:2])
    rows = [
        f"{i * 7919 % 100003}.{i:09d},{i % 977}.{i * 31 % 1000:09d},"
        f"-{i % 59}.{i * 17 % 1000:09d},{i % 7}.{i * 13 % 1000:09d}\n"
        for i in range(50_000)
    ]
    block = "".join(rows).encode()
    path = tmp_path / "big.csv"
    copies = (LIMIT + (32 << 20)) // len(block) + 1
    with open(path, "wb") as f:
        f.write(b"a,b,c,d\n")
        for _ in range(copies):
            f.write(block)
    assert path.stat().st_size > LIMIT + (32 << 20)

    whole = _run(["-c", f"import pandas; pandas.read_csv({str(path)!r})"], tmp_path)
    assert whole.returncode != 0, "the limit does not bind: the whole file fits under it"

    out = tmp_path / "pred.parquet"
    args = ["-m", "amber.cli.main", "predict", "lin", "big.csv", "--store", "store"]
    done = _run([*args, "-o", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    import pyarrow.parquet as pq

    result = pq.ParquetFile(out)
    assert result.metadata.num_rows == copies * len(rows)
    first = next(result.iter_batches(batch_size=len(rows))).column("prediction").to_numpy()
    values = np.array([[float(v) for v in r.split(",")] for r in rows])
    np.testing.assert_allclose(first, model.predict(values), rtol=1e-12)
