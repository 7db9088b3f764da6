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
        ({"store": "gs://bucket/models"}, InvalidArgumentError, "unknown store location scheme"),
        ({"store": "/no/such/store"}, StoreError, "no store at"),
        ({"spec": "nope@production"}, VersionNotFound, "nope"),
        ({"spec": 42}, InvalidArgumentError, "never a pickled object"),
    ],
)
def test_bad_references(store: Store, kwargs: dict[str, Any], error: type, message: str) -> None:
    args = {"spec": "lin", "store": store, "ship": "auto", **kwargs}
    with pytest.raises(error, match=message):
        loading.resolve(args["spec"], args["store"], method="predict", ship=args["ship"])


def test_s3_ref_names_the_store_and_endpoint_never_credentials(
    s3_url: str, s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pickle
    from dataclasses import replace

    from sklearn.linear_model import LinearRegression

    from tests.store.s3_server import ACCESS

    x, _ = models.features(n=50, width=3, seed=7)  # not a model other tests cached
    first = LinearRegression().fit(x, x[:, 0])
    second = LinearRegression().fit(x, -x[:, 1])
    with Store(s3_url) as store:
        store.save(first, "lin", input_example=x[:2])
        store.save(second, "lin", input_example=x[:2])
        store.set_alias("lin@1", "production")
    # The driver is given the URL: auto ships by store for a remote one.
    ref, prepared, shipped = loading.resolve("lin@production", s3_url, method="predict")
    assert shipped is None and ref.file is None
    np.testing.assert_array_equal(prepared.call(x), first.predict(x))  # the driver's copy
    assert (ref.version, ref.store, ref.endpoint) == ("lin@1", s3_url, s3_server.endpoint)
    wire = pickle.dumps(ref)
    assert ACCESS["secret_access_key"].encode() not in wire
    with Store(s3_url) as store:
        store.set_alias("lin@2", "production")  # moved after the driver resolved
    # An executor: its own cache folder and no endpoint variable; the reference has it.
    monkeypatch.setenv("AMBER_CACHE", str(tmp_path / "executor-cache"))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    ready = loading.cached(ref)
    np.testing.assert_array_equal(ready.call(x), first.predict(x))
    assert any((tmp_path / "executor-cache").rglob("objects/*/*"))  # the verified cache
    forged = replace(ref, content_digest="0" * 64)
    with pytest.raises(StoreError, match="not the version the driver resolved"):
        loading.cached(forged)
    with pytest.raises(InvalidArgumentError, match="applies to s3:// stores"):
        loading.open_store(tmp_path, endpoint=s3_server.endpoint)


def test_s3_store_errors_are_amber_errors(s3_server: Any, s3_url: str) -> None:
    bucket = s3_url.split("/")[2]
    with pytest.raises(VersionNotFound):
        loading.resolve("nope", s3_url, method="predict")
    with pytest.raises(StoreError):
        loading.resolve("lin", f"s3://{bucket}-missing/store", method="predict")
