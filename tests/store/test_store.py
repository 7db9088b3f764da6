"""The store's API: versions, lineage, aliases, tags, search, dedup, export/import, diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import amber
from amber.errors import (
    AliasConflict,
    FormatError,
    InvalidArgumentError,
    StoreError,
    VersionNotFound,
)
from amber.store import MemoryBackend, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store") as s:
        yield s


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    return load_iris(return_X_y=True)


def fitted(iris: tuple, c: float = 1.0) -> LogisticRegression:
    X, y = iris
    return LogisticRegression(C=c, max_iter=500).fit(X, y)


def object_files(store: Store) -> list[str]:
    return sorted(store.backend.list("objects/"))


def test_versions_are_numbered_and_load_back(store: Store, iris: tuple) -> None:
    X, _ = iris
    models = [fitted(iris, c) for c in (1.0, 0.5, 0.1)]
    saved = [store.save(m, "churn", metrics={"c": m.C}) for m in models]
    assert [v.version for v in saved] == [1, 2, 3]
    assert [v.parent for v in saved] == [None, "churn@1", "churn@2"]
    for version, model in zip(saved, models, strict=True):
        loaded = store.load(version.spec)
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert store.load("churn").C == 0.1  # latest
    assert store.load("churn@latest").C == 0.1
    assert [v.version for v in store.versions("churn")] == [1, 2, 3]


def test_record_fields(store: Store, iris: tuple) -> None:
    X, _ = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = LogisticRegression(max_iter=500).fit(frame, iris[1])
    v = store.save(
        model,
        "churn",
        metadata={"dataset": "iris"},
        metrics={"accuracy": np.float64(0.97), "n": 150},
        tags={"team": "growth"},
        message="first",
        input_example=frame.head(3),
    )
    got = store.get("churn@1")
    assert got == v
    assert got.metadata == {"dataset": "iris"}
    assert got.metrics == {"accuracy": 0.97, "n": 150}
    assert got.tags == {"team": "growth"}
    assert got.message == "first"
    assert got.creator and got.created_at.endswith("+00:00")
    assert got.content_digest.startswith("blake3:")
    assert got.environment["packages"]["scikit-learn"]
    assert got.signature["inputs"] == {
        "type": "dataframe",
        "columns": [{"name": c, "dtype": "float64"} for c in "abcd"],
    }
    assert got.signature["outputs"] == {"type": "ndarray", "dtype": "int64", "shape": [None]}


def test_parent_can_be_chosen(store: Store) -> None:
    store.save({"x": 1}, "a")
    store.save({"x": 2}, "a")
    other = store.save({"x": 3}, "b", parent="a@1")
    assert other.parent == "a@1"
    assert store.save({"x": 4}, "a", parent=None).parent is None
    with pytest.raises(VersionNotFound):
        store.save({"x": 5}, "a", parent="a@99")
    assert [v.version for v in store.versions("a")] == [1, 2, 3]


def test_same_content_same_digest_and_dedup(store: Store) -> None:
    big = np.random.default_rng(0).standard_normal((512, 512))  # 2 MiB: its own object
    small = np.arange(10.0)
    a = store.save({"w": big, "b": small}, "m")
    b = store.save({"w": big, "b": small}, "m")
    assert a.content_digest == b.content_digest
    files = object_files(store)
    assert len(files) == 2  # one weight object, one pack
    c = store.save({"w": big, "b": small + 1}, "m")
    assert c.content_digest != a.content_digest
    assert len(object_files(store)) == 3  # the weight is shared, a new pack
    assert store.load("m@3")["b"][0] == 1.0
    assert store.load("m@1")["b"][0] == 0.0


def test_loads_are_zero_copy_views_of_the_store(store: Store) -> None:
    weight = np.random.default_rng(0).standard_normal((512, 512))
    store.save({"w": weight}, "m")
    out = store.load("m")["w"]
    np.testing.assert_array_equal(out, weight)
    base = out.base
    while (
        base is not None
        and not hasattr(base, "madvise")
        and getattr(base, "base", None) is not None
    ):
        base = base.base
    assert type(base).__name__ == "mmap"
    out[0, 0] = 99.0  # copy-on-write: the store is unchanged
    assert store.load("m")["w"][0, 0] == weight[0, 0]
    assert store.load("m", mmap=False)["w"].base is not None


def test_aliases_move_by_compare_and_swap(store: Store) -> None:
    for i in range(3):
        store.save({"i": i}, "m")
    store.set_alias("m@1", "production")
    assert store.load("m@production") == {"i": 0}
    store.set_alias("m@2", "production", expected=1)
    with pytest.raises(AliasConflict, match="points to 2; expected it to point to 1"):
        store.set_alias("m@3", "production", expected=1)
    assert store.get("m@production").version == 2
    store.set_alias("m@3", "production", expected=1, force=True)
    assert store.aliases("m") == {"production": 3, "latest": 3}
    assert store.get("m@3").aliases == ("production",)
    with pytest.raises(AliasConflict):
        store.set_alias("m@1", "staging", expected=2)
    store.remove_alias("m", "production")
    with pytest.raises(VersionNotFound, match="no alias 'production'"):
        store.load("m@production")
    for bad in ("latest", "7", "a/b", ""):
        with pytest.raises(InvalidArgumentError):
            store.set_alias("m@1", bad)


def test_tags_are_editable_versions_are_not(store: Store) -> None:
    v = store.save({"x": 1}, "m", tags={"stage": "dev"})
    store.set_tags("m@1", {"stage": "prod", "owner": "ana"})
    assert store.get("m@1").tags == {"stage": "prod", "owner": "ana"}
    store.set_tags("m@1", {}, remove=["owner"])
    assert store.get("m@1").tags == {"stage": "prod"}
    assert store.get("m@1").content_digest == v.content_digest
    assert store.search(tags={"stage": "prod"})[0].spec == "m@1"
    key = "versions/m/1"
    assert not store.backend.put_if_absent(key, b"{}")  # records are create-only


def test_delete_keeps_the_number_and_gc_frees_the_data(store: Store) -> None:
    big = np.ones((512, 512))
    store.save({"w": big}, "m")
    store.save({"w": big * 2}, "m")
    store.set_alias("m@1", "production")
    with pytest.raises(StoreError, match="aliased as production"):
        store.delete("m@1")
    store.delete("m@1", force=True)
    with pytest.raises(VersionNotFound, match="was deleted"):
        store.load("m@1")
    assert [v.version for v in store.versions("m")] == [2]
    assert store.save({"w": big}, "m").version == 3  # 1 is never reused
    store.delete("m@3")
    report = store.gc(grace=0)
    assert report.objects_removed == 1 and report.bytes_freed == big.nbytes
    assert store.check().ok
    with pytest.raises(InvalidArgumentError, match="one version"):
        store.delete("m")


def test_gc_keeps_recent_objects_by_default(store: Store) -> None:
    store.save({"w": np.ones((512, 512))}, "m")
    store.delete("m@1")
    assert store.gc().objects_removed == 0  # younger than the grace period
    assert store.gc(grace=0, dry_run=True).objects_removed == 1
    assert store.gc(grace=0).objects_removed == 1


def test_models_and_search(store: Store) -> None:
    for i in range(3):
        store.save({"i": i}, "churn", metrics={"accuracy": 0.8 + i / 10})
    store.save({"i": 0}, "churn-eu", metrics={"accuracy": 0.95})
    store.save({"i": 0}, "fraud")
    store.set_alias("churn@2", "production")
    summary = {m.name: m for m in store.models()}
    assert summary["churn"].latest == 3 and summary["churn"].versions == 3
    assert summary["churn"].aliases == {"production": 2}
    specs = [v.spec for v in store.search(metrics=["accuracy>=0.9"])]
    assert specs == ["churn@2", "churn@3", "churn-eu@1"]
    assert [v.spec for v in store.search("churn*", metrics=["accuracy<0.85"])] == ["churn@1"]
    assert [v.spec for v in store.search("fraud")] == ["fraud@1"]
    assert store.search(after="2999-01-01") == []
    assert len(store.search(before="2999-01-01")) == 5
    with pytest.raises(InvalidArgumentError, match=r"accuracy>=0\.9"):
        store.search(metrics=["accuracy is high"])


def test_missing_names_suggest_close_ones(store: Store) -> None:
    store.save({"x": 1}, "churn")
    with pytest.raises(VersionNotFound, match="did you mean churn"):
        store.load("chrun")
    with pytest.raises(VersionNotFound, match="churn@9 does not exist; it has versions 1"):
        store.load("churn@9")
    store.set_alias("churn@1", "production")
    with pytest.raises(VersionNotFound, match="did you mean production"):
        store.load("churn@prodution")
    with pytest.raises(VersionNotFound, match="empty"):
        Store(backend=MemoryBackend()).load("x")


def test_export_and_import_keep_history(store: Store, tmp_path: Path, iris: tuple) -> None:
    X, _ = iris
    store.save(fitted(iris), "churn", metrics={"acc": 0.9}, message="base")
    store.save(fitted(iris, 0.5), "churn", metrics={"acc": 0.95}, tags={"k": "v"})
    store.set_alias("churn@2", "production")
    path = store.export("churn@production", tmp_path / "churn-2.amber")
    model = amber.load(path)  # a standalone file
    assert np.array_equal(model.predict(X), store.load("churn@2").predict(X))
    with amber.open(path) as f:
        history = f._reader.manifest["store"]
    assert history["version"] == 2 and history["parent"] == "churn@1"
    assert history["metrics"] == {"acc": 0.95} and history["tags"] == {"k": "v"}
    other = Store(tmp_path / "other")
    imported = other.import_file(path)
    assert imported.spec == "churn@1"
    assert imported.metrics == {"acc": 0.95} and imported.tags == {"k": "v"}
    assert imported.created_at == history["created_at"]
    assert imported.parent is None  # churn@1 here is not the version it came from
    assert (imported.imported_from, imported.imported_parent) == ("churn@2", "churn@1")
    assert imported.content_digest == store.get("churn@2").content_digest
    renamed = other.import_file(path, name="churn-copy")
    assert renamed.spec == "churn-copy@1"
    plain = tmp_path / "plain.amber"
    amber.save({"x": 1}, plain)
    with pytest.raises(InvalidArgumentError, match="give the model name"):
        other.import_file(plain)
    assert other.import_file(plain, name="plain").spec == "plain@1"


def test_bundles_carry_the_whole_history(store: Store, tmp_path: Path) -> None:
    shared = np.random.default_rng(0).standard_normal((512, 512))
    for i in range(3):
        store.save({"w": shared, "i": i}, "m", metrics={"i": i})
    store.set_alias("m@2", "production")
    bundle = store.export_all("m", tmp_path / "m.bundle")
    assert bundle.stat().st_size < 1.2 * shared.nbytes  # shared weight stored once
    other = Store(backend=MemoryBackend())
    other.save({"first": True}, "n")
    versions = other.import_bundle(bundle, name="n")
    assert [v.spec for v in versions] == ["n@2", "n@3", "n@4"]
    assert [v.parent for v in versions] == [None, "n@2", "n@3"]
    assert other.get("n@production").version == 3
    assert other.load("n@4")["i"] == 2
    with pytest.raises(FormatError, match="not an amber bundle"):
        other.import_bundle(store.export("m@1", tmp_path / "one.amber"))


def test_diff_and_compare(store: Store, iris: tuple) -> None:
    X, y = iris
    store.save(fitted(iris, 1.0), "churn", metrics={"acc": 0.97}, input_example=X[:2])
    store.save(fitted(iris, 0.01), "churn", metrics={"acc": 0.9}, input_example=X[:2])
    d = store.diff("churn@1", "churn@2")
    assert d.metrics == {"acc": (0.97, 0.9)}
    assert d.params == {"C": (1.0, 0.01)}
    assert d.signature_compatible and not d.same_content
    changed = {t.name: t for t in d.tensors}
    assert changed["coef_"].change == "changed" and changed["coef_"].max_abs_diff > 0
    assert "C: 1.0 -> 0.01" in str(d)
    json.dumps(d.to_dict())
    same = store.diff("churn@1", "churn@1")
    assert same.same_content and not same.tensors
    table = store.compare(["churn@1", "churn@2"], X, y, metrics=["accuracy", "log_loss"])
    assert [r["version"] for r in table.rows] == ["churn@1", "churn@2"]
    assert table.best("accuracy") == "churn@1"
    assert table.best("log_loss", higher_is_better=False) == "churn@1"
    assert "accuracy" in str(table)
    with pytest.raises(InvalidArgumentError, match="unknown metric"):
        store.compare(["churn@1"], X, y, metrics=["speed"])


def test_torch_models_in_the_store(store: Store) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 512), nn.ReLU(), nn.Linear(512, 2))
    store.save(model, "net")
    fresh = nn.Sequential(nn.Linear(4, 512), nn.ReLU(), nn.Linear(512, 2))
    store.load("net", into=fresh)
    assert torch.equal(fresh[0].weight, model[0].weight)
    part = store.load("net", keys=["0.weight"])
    assert list(part) == ["0.weight"]
    whole = store.load("net")
    assert torch.equal(whole[2].weight, model[2].weight)


def test_a_memory_store_works_the_same(iris: tuple) -> None:
    X, _ = iris
    with Store(backend=MemoryBackend()) as s:
        s.save(fitted(iris), "m", metrics={"acc": 1.0})
        s.save({"w": np.ones((600, 600))}, "w")
        assert np.array_equal(s.load("m").predict(X), fitted(iris).predict(X))
        assert s.load("w")["w"].sum() == 360000
        assert s.check().ok
        assert [m.name for m in s.models()] == ["m", "w"]


def test_store_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBER_STORE", str(tmp_path / "env-store"))
    with Store() as s:
        s.save({"x": 1}, "m")
    assert (tmp_path / "env-store" / "versions" / "m" / "1").exists()
    monkeypatch.delenv("AMBER_STORE")
    monkeypatch.chdir(tmp_path)
    with Store() as s:
        s.save({"x": 1}, "m")
    assert (tmp_path / ".amber" / "versions" / "m" / "1").exists()
    assert os.path.isfile(tmp_path / ".amber" / "cache" / "index.sqlite")


def test_bundle_parents_outside_the_bundle_are_not_claimed(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        store.save({"w": np.arange(10.0) + i}, "m")
    store.delete("m@1")
    bundle = store.export_all("m", tmp_path / "m.bundle")
    other = Store(backend=MemoryBackend())
    other.save({"unrelated": True}, "m")
    imported = other.import_bundle(bundle)
    assert [(v.spec, v.parent, v.imported_parent) for v in imported] == [
        ("m@2", None, "m@1"),
        ("m@3", "m@2", None),
    ]


def test_damaged_tags_and_aliases_are_store_errors(store: Store) -> None:
    store.save({"x": 1}, "m")
    store.backend.compare_and_swap("tags/m/1", None, b"[1,2")
    with pytest.raises(StoreError, match="tags of m@1 are damaged"):
        store.get("m@1")
    assert store.set_tags("m@1", {"ok": "yes"}).tags == {"ok": "yes"}  # repaired by setting
    store.backend.compare_and_swap("refs/m/prod", None, b'{"version": "x"}')
    with pytest.raises(StoreError, match="alias m@prod is damaged"):
        store.load("m@prod")


def test_diff_sees_imaginary_parts(store: Store) -> None:
    store.save({"z": np.ones(5, complex)}, "c")
    store.save({"z": np.ones(5, complex) + 1j}, "c")
    assert store.diff("c@1", "c@2").tensors[0].max_abs_diff == 1.0


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = Store(backend=MemoryBackend())
    s.save({"w": np.ones((300, 300))}, "m")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.load("m")


def test_names_differing_only_by_case_are_refused(store: Store) -> None:
    store.save({"x": 1}, "churn")
    with pytest.raises(InvalidArgumentError, match="only by case"):
        store.save({"x": 2}, "Churn")
    assert store.save({"x": 3}, "churn").version == 2


def test_inspect_shows_the_history_of_an_exported_version(store: Store, tmp_path: Path) -> None:
    store.save({"w": np.arange(3.0)}, "m", metrics={"acc": 0.5}, message="first")
    path = store.export("m@1", tmp_path / "m.amber")
    info = amber.inspect(path)
    assert info.extra["store"]["metrics"] == {"acc": 0.5}
    assert info.to_dict()["store"]["version"] == 1
    assert amber.inspect(store.export("m", tmp_path / "again.amber")).extra["store"]["name"] == "m"
