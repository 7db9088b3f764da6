"""The executor loading path without Spark: one version resolved on the driver, loaded once
per process, the shipped file and the store version checked against the driver's digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.batch import loading
from amber.errors import CorruptFileError, InvalidArgumentError, StoreError, VersionNotFound
from amber.store import Store
from tests.batch import models

pytest.importorskip("pyarrow", reason="batch prediction needs pyarrow")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from sklearn.linear_model import LinearRegression

    x, _ = models.features(n=50, width=3)
    handle = Store(tmp_path / "store")
    handle.save(LinearRegression().fit(x, x[:, 0]), "lin", input_example=x[:2])
    handle.set_alias("lin@1", "production")
    yield handle
    handle.close()


def test_file_ref_loads_once_per_process(store: Store, tmp_path: Path) -> None:
    ref, prepared, shipped = loading.resolve(
        "lin@production", store, method="predict", workdir=tmp_path
    )
    assert ref.version == "lin@1" and ref.file == shipped.name and ref.store is None
    assert ref.content_digest == store.get("lin@1").content_digest
    first = loading.cached(ref, lambda name: tmp_path / name)
    again = loading.cached(ref, lambda name: tmp_path / name)
    assert first is again
    x = np.ones((2, 3))
    assert np.array_equal(first.call(x), prepared.call(x))


def test_shipped_file_that_differs_is_refused(store: Store, tmp_path: Path) -> None:
    ref, _, shipped = loading.resolve("lin", store, method="predict", workdir=tmp_path)
    data = bytearray(shipped.read_bytes())
    data[-200] ^= 1
    shipped.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="differs from the driver's"):
        loading.cached(ref, lambda name: tmp_path / name)
    with pytest.raises(StoreError, match="not on this node"):
        loading.cached(ref, lambda name: tmp_path / "elsewhere" / name)


def test_store_ref_checks_the_content_digest(store: Store, tmp_path: Path) -> None:
    from dataclasses import replace

    ref, _, shipped = loading.resolve("lin", store, method="predict", ship="store")
    assert shipped is None and ref.store == str((tmp_path / "store").resolve())
    assert loading.cached(ref).model is not None
    forged = replace(ref, content_digest="0" * 64, method="score")
    with pytest.raises(StoreError, match="not the version the driver resolved"):
        loading.cached(forged)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ship": "pickle"}, InvalidArgumentError, "ship must be one of"),
        ({"store": "s3://bucket/models"}, InvalidArgumentError, "local store folders only"),
        ({"store": "/no/such/store"}, StoreError, "no store at"),
        ({"spec": "nope@production"}, VersionNotFound, "nope"),
        ({"spec": 42}, InvalidArgumentError, "never a pickled object"),
    ],
)
def test_bad_references(store: Store, kwargs: dict[str, Any], error: type, message: str) -> None:
    args = {"spec": "lin", "store": store, "ship": "auto", **kwargs}
    with pytest.raises(error, match=message):
        loading.resolve(args["spec"], args["store"], method="predict", ship=args["ship"])
