"""Bad input: malformed names and specs, missing versions, and corrupt or hostile files
and bundles to import."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.container.digest import hasher
from amber.container.reader import ContainerReader
from amber.container.writer import write
from amber.errors import AmberError, InvalidArgumentError, VersionNotFound
from amber.store import Store
from amber.store.objects import PACK_MIN_BYTES

NAME = "churn"
LONG = "x" * 10_000

# (text, what a helpful message says about it)
BAD_SPECS = [
    ("churn@", "ends with '@'"),
    ("@7", "no model name"),
    ("churn@-1", "start at 1"),
    ("churn@0", "start at 1"),
    ("churn@007", "leading zeros"),
    ("../x", "letters"),
    ("a/b", "letters"),
    ("", "no model name"),
    (LONG, "the limit is 128"),
    ("modèle", "ASCII"),
    ("name with space", "spaces"),
    ("churn@prod/x", "letters"),
    ("churn@modèle", "ASCII"),
]
BAD_NAMES = [
    ("churn@", "letters"),
    ("@7", "letters"),
    ("churn@-1", "letters"),
    ("churn@0", "letters"),
    ("churn@007", "letters"),
    ("../x", "letters"),
    ("a/b", "letters"),
    ("", "empty"),
    (LONG, "the limit is 128"),
    ("modèle", "ASCII"),
    ("name with space", "spaces"),
    ("..", "letters"),
    ("-x", "starting with a letter or digit"),
    ("x.", "letters"),
]
BAD_ALIASES = [
    *BAD_NAMES,
    ("7", "version number"),
    ("latest", "maintained by the store"),
]


def ids(cases: list[tuple[str, str]]) -> list[str]:
    return [text if len(text) < 30 else f"{len(text)} chars" for text, _ in cases]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store") as s:
        s.save({"a": np.arange(3)}, NAME)
        s.save({"a": np.arange(4)}, NAME)
        s.set_alias(f"{NAME}@2", "production")
        s.save({"b": 1}, "fraud")
        yield s


def files_under(root: Path, *folders: str) -> list[str]:
    out = []
    for folder in folders:
        for base, _, names in os.walk(root / folder):
            out += [os.path.relpath(os.path.join(base, n), root) for n in names]
    return sorted(out)


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a refused call must leave as it was: storage, the index, the files."""
    root = Path(store.backend.root)  # type: ignore[attr-defined]
    names = store.ledger.names()
    return {
        "numbers": {n: store.ledger.numbers(n) for n in names},
        "aliases": {n: store.ledger.aliases(n) for n in names},
        "index": store.index.query("SELECT name, version FROM versions ORDER BY name, version"),
        "index_aliases": store.index.query("SELECT * FROM aliases ORDER BY name, alias"),
        "objects": files_under(root, "objects"),
        "records": files_under(root, "versions", "refs", "tags"),
        "tmp": files_under(root, "tmp"),
    }


def assert_helpful(exc: BaseException, text: str, hint: str) -> None:
    message = str(exc)
    assert hint in message, message
    assert len(message) < 400, "the message echoes a huge input"
    if text and len(text) <= 60:  # it names the input, or the part of it that is wrong
        assert text in message or text.partition("@")[2] in message, message


# -- malformed names and specs ---------------------------------------------------------------


@pytest.mark.parametrize(("spec", "hint"), BAD_SPECS, ids=ids(BAD_SPECS))
def test_malformed_specs_are_refused(store: Store, spec: str, hint: str) -> None:
    before = snapshot(store)
    calls: dict[str, Callable[[], Any]] = {
        "load": lambda: store.load(spec),
        "get": lambda: store.get(spec),
        "set_alias": lambda: store.set_alias(spec, "staging"),
        "delete": lambda: store.delete(spec),
        "export": lambda: store.export(spec, store.backend.root / "x.amber"),  # type: ignore[attr-defined]
        "diff": lambda: store.diff(spec, f"{NAME}@1"),
        "save parent": lambda: store.save({"c": 1}, NAME, parent=spec),
    }
    all_refused(store, before, calls, spec, hint)


@pytest.mark.parametrize(("name", "hint"), BAD_NAMES, ids=ids(BAD_NAMES))
def test_malformed_names_are_refused(store: Store, name: str, hint: str) -> None:
    before = snapshot(store)
    calls: dict[str, Callable[[], Any]] = {
        "save": lambda: store.save({"c": 1}, name),
        "versions": lambda: store.versions(name),
        "aliases": lambda: store.aliases(name),
        "remove_alias": lambda: store.remove_alias(name, "production"),
        "export_all": lambda: store.export_all(name, store.backend.root / "x.amber"),  # type: ignore[attr-defined]
    }
    all_refused(store, before, calls, name, hint)


def all_refused(
    store: Store, before: Any, calls: dict[str, Callable[[], Any]], text: str, hint: str
) -> None:
    """Every call raises a helpful InvalidArgumentError, and the store is unchanged."""
    for what, call in calls.items():
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert_helpful(info.value, text, hint), what
    assert snapshot(store) == before


@pytest.mark.parametrize(("alias", "hint"), BAD_ALIASES, ids=ids(BAD_ALIASES))
def test_malformed_aliases_are_refused(store: Store, alias: str, hint: str) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidArgumentError) as info:
        store.set_alias(f"{NAME}@1", alias)
    assert_helpful(info.value, alias, hint)
    with pytest.raises(InvalidArgumentError):
        store.remove_alias(NAME, alias)
    assert snapshot(store) == before


def test_delete_needs_one_version(store: Store) -> None:
    for spec in (NAME, f"{NAME}@production", f"{NAME}@latest"):
        with pytest.raises(InvalidArgumentError, match=f"like '{NAME}@3'"):
            store.delete(spec)
    assert store.ledger.numbers(NAME) == [1, 2]


NON_STRINGS = [None, 7, b"churn", ["churn"]]


@pytest.mark.parametrize("bad", NON_STRINGS, ids=repr)
def test_non_string_names_are_refused(store: Store, bad: Any) -> None:
    for call in (store.versions, store.aliases, lambda n: store.save({"c": 1}, n)):
        with pytest.raises(InvalidArgumentError, match="must be a string"):
            call(bad)


@pytest.mark.parametrize("bad", NON_STRINGS, ids=repr)
def test_non_string_specs_are_refused(store: Store, bad: Any) -> None:
    for call in (store.load, store.get, lambda s: store.set_alias(s, "staging")):
        with pytest.raises(InvalidArgumentError, match="written 'name'"):
            call(bad)


# -- missing versions and aliases ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("chrun", "did you mean churn"),
        ("churn2", "did you mean churn"),
        ("frod@1", "did you mean fraud"),
        ("zzz", "the store has 2 models"),
        ("churn@9", "it has versions 1, 2"),
        ("churn@prod", "did you mean production"),
        ("churn@staging", "its aliases are: production"),
        ("fraud@production", "its aliases are: none"),
    ],
)
def test_missing_versions_name_the_closest(store: Store, spec: str, says: str) -> None:
    for call in (store.load, store.get, lambda s: store.set_alias(s, "staging")):
        with pytest.raises(VersionNotFound) as info:
            call(spec)
        assert says in str(info.value), str(info.value)


def test_a_deleted_version_says_so(store: Store) -> None:
    store.delete(f"{NAME}@1")
    with pytest.raises(VersionNotFound, match=r"churn@1 was deleted; it has versions 2\b"):
        store.load(f"{NAME}@1")
    with pytest.raises(VersionNotFound, match=r"no model named 'x' .*the store is empty"):
        Store(Path(store.backend.root) / "empty").load("x")  # type: ignore[attr-defined]


# -- hostile imports -------------------------------------------------------------------------


def blake3_hex(data: bytes) -> str:
    h = hasher(len(data))
    h.update(data)
    return h.hexdigest()


def contents(path: Path) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The manifest (without the container's own keys) and tensors of an .amber file."""
    with ContainerReader(path) as reader:
        manifest = {k: v for k, v in reader.manifest.items() if k not in ("tensors", "data_digest")}
        items = [(name, np.array(reader.array(name))) for name in reader.entries]
    return manifest, items


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Path]:
    """A bundle of a two-version model (one object of its own, packs) and one file."""
    with Store(tmp_path / "source") as source:
        big = np.linspace(0, 1, PACK_MIN_BYTES // 8 + 32)
        source.save({"big": big, "a": np.arange(3)}, NAME, metrics={"acc": 0.5})
        source.save({"big": big, "a": np.arange(4)}, NAME, tags={"team": "x"})
        source.set_alias(f"{NAME}@2", "production")
        return {
            "bundle": source.export_all(NAME, tmp_path / "churn.bundle"),
            "file": source.export(f"{NAME}@2", tmp_path / "churn.amber"),
        }


def damaged_copies(path: Path, tmp_path: Path) -> list[Path]:
    data = path.read_bytes()
    out = []
    for i, offset in enumerate((7, len(data) // 3, len(data) // 2, len(data) - 9)):
        flipped = bytearray(data)
        flipped[offset] ^= 0x01
        out.append(tmp_path / f"flipped-{i}-{path.name}")
        out[-1].write_bytes(bytes(flipped))
    for i, size in enumerate((0, 20, len(data) // 2, len(data) - 1)):
        out.append(tmp_path / f"truncated-{i}-{path.name}")
        out[-1].write_bytes(data[:size])
    return out


def refused(store: Store, do: Callable[[], Any]) -> AmberError:
    before = snapshot(store)
    with pytest.raises(AmberError) as info:
        do()
    assert snapshot(store) == before  # same versions, aliases, index, object files
    return info.value


def test_the_untouched_exports_import(store: Store, exported: dict[str, Path]) -> None:
    imported = store.import_bundle(exported["bundle"])
    assert [v.version for v in imported] == [3, 4]
    assert store.import_file(exported["file"]).version == 5
    assert store.check().ok


def test_corrupt_bundles_and_files_are_refused(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    for copy in damaged_copies(exported["bundle"], tmp_path):
        refused(store, lambda copy=copy: store.import_bundle(copy))
    for copy in damaged_copies(exported["file"], tmp_path):
        refused(store, lambda copy=copy: store.import_file(copy))
        refused(store, lambda copy=copy: store.import_file(copy, name="other"))


def edited_bundle(source: Path, target: Path, edit: Callable[[dict, list], Any]) -> Path:
    manifest, items = contents(source)
    edit(manifest["amber_bundle"], items)
    write(target, items, manifest)
    return target


def test_a_record_pointing_to_a_missing_object(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    def edit(bundle: dict, items: list) -> None:
        bundle["versions"][1]["pack"] = blake3_hex(b"nothing")

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    assert "is missing from it" in str(refused(store, lambda: store.import_bundle(path)))

    def drop(bundle: dict, items: list) -> None:
        items.pop()  # an object the records need

    path = edited_bundle(exported["bundle"], tmp_path / "h2.bundle", drop)
    assert "is missing from it" in str(refused(store, lambda: store.import_bundle(path)))


def test_an_object_whose_bytes_do_not_match_its_name(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    def edit(bundle: dict, items: list) -> None:
        name, array = items[0]
        tampered = array.copy()
        tampered[len(tampered) // 2] ^= 0xFF
        items[0] = (name, tampered)

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    assert "does not match its name" in str(refused(store, lambda: store.import_bundle(path)))


@pytest.mark.parametrize("where", ["root", "state_dict"])
def test_a_graph_with_an_unknown_node_kind(
    store: Store, exported: dict[str, Path], tmp_path: Path, where: str
) -> None:
    def edit(bundle: dict, items: list) -> None:
        bundle["versions"][1]["manifest"][where] = {"k": "os.system", "v": "rm -rf /"}

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    assert "unknown node kind" in str(refused(store, lambda: store.import_bundle(path)))
    # The same in a single exported file.
    manifest, items = contents(exported["file"])
    manifest[where] = {"k": "dict", "v": {"x": {"k": "evil"}}}
    write(tmp_path / "h.amber", items, manifest)
    error = refused(store, lambda: store.import_file(tmp_path / "h.amber"))
    assert "unknown node kind" in str(error)


def test_a_record_of_another_model(store: Store, exported: dict[str, Path], tmp_path: Path) -> None:
    def edit(bundle: dict, items: list) -> None:
        bundle["versions"][0]["name"] = "fraud"

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    assert "another model" in str(refused(store, lambda: store.import_bundle(path)))
    refused(store, lambda: store.import_bundle(path, name="fraud"))

    def deleted(bundle: dict, items: list) -> None:
        bundle["versions"][0] = {**bundle["versions"][0], "deleted": True}

    path = edited_bundle(exported["bundle"], tmp_path / "h2.bundle", deleted)
    refused(store, lambda: store.import_bundle(path))


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(format=99),
        lambda b: b.update(versions=[]),
        lambda b: b.update(versions="all"),
        lambda b: b.update(name="../evil"),
        lambda b: b["versions"].append(["not", "a", "record"]),
        lambda b: b["versions"][0].update(format="something else"),
        lambda b: b["versions"][0].update(tensors={"a": 1}),
        lambda b: b["versions"][0].update(metrics=[1, 2]),
        lambda b: b["versions"][0]["tensors"][0].update(digest="blake3:zz"),
    ],
    ids=[
        "format",
        "no-versions",
        "versions-not-list",
        "hostile-name",
        "record-not-object",
        "record-format",
        "tensors-not-list",
        "metrics-not-object",
        "bad-digest",
    ],
)
def test_malformed_bundles(
    store: Store, exported: dict[str, Path], tmp_path: Path, edit: Callable[[dict], Any]
) -> None:
    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", lambda b, items: edit(b))
    refused(store, lambda: store.import_bundle(path))


def test_an_ordinary_file_is_not_a_bundle(store: Store, exported: dict[str, Path]) -> None:
    error = refused(store, lambda: store.import_bundle(exported["file"]))
    assert "not an amber bundle" in str(error)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda s: s.update(name="../evil"), "letters"),
        (lambda s: s.update(name=None), "give the model name"),
        (lambda s: s.update(metrics=[0.9]), "metrics must be"),
        (lambda s: s.update(tags="x"), "tags must be"),
        (lambda s: s.update(metrics={"acc": "high"}), "must be a number"),
        (lambda s: s.update(tags={"a": 1}), "tags must be"),
        (lambda s: s.update(created_at={"x": 1}), "'created_at' is not a time"),
        (lambda s: s.update(message=["x"]), "'message' must be text"),
        (lambda s: s.update(creator=5), "'creator' must be text"),
    ],
    ids=[
        "hostile-name",
        "no-name",
        "metrics-type",
        "tags-type",
        "metric-value",
        "tag-value",
        "created-at",
        "message",
        "creator",
    ],
)
def test_hostile_store_history_in_a_file(
    store: Store, exported: dict[str, Path], tmp_path: Path, edit: Callable, says: str
) -> None:
    manifest, items = contents(exported["file"])
    edit(manifest["store"])
    write(tmp_path / "h.amber", items, manifest)
    assert says in str(refused(store, lambda: store.import_file(tmp_path / "h.amber")))


def test_a_file_without_an_object_graph(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "raw.amber", [("a", np.arange(3))], {"metadata": {}})
    error = refused(store, lambda: store.import_file(tmp_path / "raw.amber", name="raw"))
    assert "no amber object graph" in str(error)


def test_a_pack_that_is_not_a_container(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    garbage = b"not an amber container" * 8

    def edit(bundle: dict, items: list) -> None:
        bundle["versions"][1]["pack"] = blake3_hex(garbage)
        items.append((blake3_hex(garbage), np.frombuffer(garbage, dtype=np.uint8)))

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    refused(store, lambda: store.import_bundle(path))


def test_a_tensor_entry_that_does_not_fit_its_object(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    def edit(bundle: dict, items: list) -> None:
        for record in bundle["versions"]:
            for tensor in record["tensors"]:
                if tensor["name"] == "big":
                    tensor.update(shape=[4], nbytes=32)

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    refused(store, lambda: store.import_bundle(path))


def test_a_record_with_a_version_that_is_not_a_number(
    store: Store, exported: dict[str, Path], tmp_path: Path
) -> None:
    def edit(bundle: dict, items: list) -> None:
        bundle["versions"][1]["version"] = "2"

    path = edited_bundle(exported["bundle"], tmp_path / "h.bundle", edit)
    refused(store, lambda: store.import_bundle(path))


def test_a_huge_planted_record_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amber.errors import StoreError
    from amber.store import ledger

    monkeypatch.setattr(ledger, "MAX_RECORD", 10_000)
    root = tmp_path / "store"
    with Store(root) as store:
        store.save({"w": 1}, NAME)
    (root / "versions" / NAME / "2").write_bytes(b"{" + b" " * 1_000_000 + b"}")
    with Store(root) as store:
        read_range = store.backend.read_range
        sizes: list[int] = []

        def counted(key: str, offset: int, length: int) -> Any:
            data = read_range(key, offset, length)
            sizes.append(len(data or b""))
            return data

        store.backend.read_range = counted  # type: ignore[method-assign]
        with pytest.raises(StoreError, match=rf"record of {NAME}@2 .* larger than 10000 bytes"):
            store.load(f"{NAME}@2")
        assert max(sizes) <= 10_001
        assert store.load(f"{NAME}@1") == {"w": 1}
