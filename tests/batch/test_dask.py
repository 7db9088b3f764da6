"""amber.dask on a real local Dask scheduler (threads, two workers; synchronous where the
test needs one process): predictions equal the model's own, one version per graph even
when the alias moves, the model loaded once per process from the store (a folder or
s3://), schema mismatches refused before anything is computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.batch import loading
from amber.errors import InvalidArgumentError, VersionNotFound
from amber.store import Store
from tests.batch import models

pytest.importorskip("pyarrow", reason="amber.dask needs pyarrow (pip install 'amber[dask]')")
dd = pytest.importorskip(
    "dask.dataframe", reason="amber.dask needs dask (pip install 'amber[dask]')"
)

import dask  # noqa: E402

import amber.dask  # noqa: E402

THREADS = {"scheduler": "threads", "num_workers": 2}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    handle = Store(tmp_path / "store")
    yield handle
    handle.close()


def test_pipeline_on_mixed_columns_matches_predict(store: Store) -> None:
    frame, target = models.customers(n=240, seed=21)
    pipe = models.pipeline(frame, target)
    store.save(pipe, "churn", input_example=frame.head())
    data = frame.assign(id=np.arange(len(frame)))
    ddf = dd.from_pandas(data, npartitions=4)
    before = loading.loaded_count()
    out = amber.dask.predict(ddf, "churn", store=store, batch_size=25)
    assert list(out.columns) == [*data.columns, "prediction"]
    got = out.compute(**THREADS).sort_values("id")
    assert got["prediction"].tolist() == pipe.predict(frame).tolist()
    assert got["plan"].tolist() == frame["plan"].tolist()  # carried through
    assert loading.loaded_count() == before + 1  # one load for four partitions, two threads

    proba = amber.dask.predict(ddf, "churn", store=store, method="predict_proba", output_col="p")
    assert [c for c in proba.columns if c.startswith("p_")] == ["p_0", "p_1"]
    got = proba.compute(**THREADS).sort_values("id")
    np.testing.assert_array_equal(got[["p_0", "p_1"]].to_numpy(), pipe.predict_proba(frame))


def test_array_model_by_position_with_features(store: Store) -> None:
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    x, _ = models.features(width=4, seed=23)
    forest = RandomForestRegressor(n_estimators=6, random_state=0).fit(x, x[:, 0] - x[:, 3])
    store.save(forest, "forest", input_example=x[:2])
    cols = ["a", "b", "c", "d"]
    data = pd.DataFrame(x, columns=cols).assign(id=np.arange(len(x)))
    out = amber.dask.predict(
        dd.from_pandas(data, npartitions=3), "forest", store=store, features=cols
    )
    got = out.compute(scheduler="sync").sort_values("id")
    np.testing.assert_array_equal(got["prediction"].to_numpy(), forest.predict(x))


def test_s3_store_keeps_the_resolved_version(s3_url: str) -> None:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    x, _ = models.features(n=120, width=3, seed=25)
    first = LinearRegression().fit(x, x[:, 0])
    second = LinearRegression().fit(x, -x[:, 1])
    with Store(s3_url) as remote:
        v1 = remote.save(first, "lin", input_example=x[:2])
        v2 = remote.save(second, "lin", input_example=x[:2])
        remote.set_alias(v1.spec, "production")
    data = pd.DataFrame(x, columns=["a", "b", "c"]).assign(id=np.arange(len(x)))
    ddf = dd.from_pandas(data, npartitions=3)
    out = amber.dask.predict(ddf, "lin@production", store=s3_url, features=["a", "b", "c"])
    with Store(s3_url) as remote:
        remote.set_alias(v2.spec, "production")  # after the graph was built, before it runs
    got = out.compute(**THREADS).sort_values("id")
    np.testing.assert_allclose(got["prediction"].to_numpy(), first.predict(x))
    later = amber.dask.predict(ddf, "lin@production", store=s3_url, features=["a", "b", "c"])
    got = later.compute(**THREADS).sort_values("id")
    np.testing.assert_allclose(got["prediction"].to_numpy(), second.predict(x))


def test_mismatches_are_refused_before_anything_runs(store: Store) -> None:
    frame, target = models.customers(n=60, seed=27)
    store.save(models.pipeline(frame, target), "churn", input_example=frame.head())
    ddf = dd.from_pandas(frame, npartitions=2)
    ran: list[Any] = []

    def callback(*args: Any) -> None:
        ran.append(args)

    with dask.callbacks.Callback(start=callback):
        with pytest.raises(InvalidArgumentError, match=r"'plan'.*missing"):
            amber.dask.predict(ddf.drop(columns="plan"), "churn", store=store)
        with pytest.raises(InvalidArgumentError, match="'income' is text"):
            amber.dask.predict(ddf.assign(income=ddf["plan"]), "churn", store=store)
        with pytest.raises(InvalidArgumentError, match="already has a column"):
            amber.dask.predict(ddf, "churn", store=store, output_col="plan")
        with pytest.raises(InvalidArgumentError, match="never a pickled"):
            amber.dask.predict(ddf, models.pipeline(frame, target), store=store)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="expected a dask DataFrame"):
            amber.dask.predict(frame, "churn", store=store)
        with pytest.raises(InvalidArgumentError, match="batch_size"):
            amber.dask.predict(ddf, "churn", store=store, batch_size=0)
        with pytest.raises(VersionNotFound):
            amber.dask.predict(ddf, "churn@production", store=store)
    assert ran == []  # nothing was computed


def test_a_store_workers_cannot_open_is_refused(tmp_path: Path) -> None:
    from amber.store import MemoryBackend

    frame, target = models.customers(n=30, seed=29)
    with Store(backend=MemoryBackend()) as memory:
        memory.save(models.pipeline(frame, target), "churn", input_example=frame.head())
        with pytest.raises(InvalidArgumentError, match="by URL or path"):
            amber.dask.predict(dd.from_pandas(frame, npartitions=1), "churn", store=memory)


def test_object_damaged_after_resolving_fails_with_amber_error(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from amber.errors import CorruptFileError

    x, _ = models.features(n=80, width=3, seed=31)
    root = tmp_path / "store"
    with Store(root) as local:
        local.save(LinearRegression().fit(x, x[:, 2]), "lin", input_example=x[:2])
        ddf = dd.from_pandas(pd.DataFrame(x, columns=["a", "b", "c"]), npartitions=2)
        out = amber.dask.predict(ddf, "lin", store=local, features=["a", "b", "c"])
    largest = max(
        (p for p in (root / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x40
    largest.chmod(0o644)
    largest.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        out.compute(scheduler="sync")
