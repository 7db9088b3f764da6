"""Symbolic links planted in a local store (a shared folder, an unpacked archive) never make
amber read, touch, overwrite or delete anything outside it: gc, check, load, save and alias
moves either work on the store's own files or refuse with StoreError, ``check`` names every
link and stray entry, and the file a link points to stays as it was."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.errors import StoreError, StoreIndexWarning
from amber.store import Store
from amber.store.objects import PACK_MIN_BYTES, object_key

NAME = "churn"
BIG = np.arange(PACK_MIN_BYTES // 8 + 8, dtype=np.float64)  # an object of its own
OLD = time.time() - 7200  # older than gc's grace


def age(root: Path) -> None:
    for base, _, files in os.walk(root):
        for name in files:
            os.utime(Path(base) / name, (OLD, OLD), follow_symlinks=False)


def state(folder: Path) -> dict[str, tuple[bytes, float]]:
    """Every file under ``folder`` with its bytes and modification time."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = Path(base) / name
            out[os.path.relpath(path, folder)] = (path.read_bytes(), path.stat().st_mtime)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store, with files a link may point to (old: gc would take
    them if it followed a link)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("victim", "1", "production", "staging", "x.lock"):
        (folder / name).write_bytes(b"precious " + name.encode())
        os.utime(folder / name, (OLD, OLD))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with Store(root) as store:
        store.save({"big": BIG, "small": np.arange(3)}, NAME)
        store.set_alias(f"{NAME}@1", "production")
    return root


def big_object(root: Path) -> Path:
    with Store(root) as store:
        [stored] = [t for t in store.resolve(NAME).tensors if not t.in_pack]
        return root / object_key(stored.entry.digest.removeprefix("blake3:"))


def relink(path: Path, target: Path) -> None:
    """Replace ``path`` (a file or folder of the store) by a link to ``target``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def link_in(folder: Path, name: str, target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(target, folder / name)


# where -> plant(root, outside): the link of each case
PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "tmp-entry": lambda r, o: link_in(r / "tmp", "123-deadbeef", o / "victim"),
    "objects-folder": lambda r, o: relink(r / "objects", o),
    "objects-subfolder": lambda r, o: link_in(r / "objects", "zz", o),
    "objects-entry": lambda r, o: link_in(r / "objects" / "ab", "ab" * 32, o / "victim"),
    "object-replaced": lambda r, o: relink(big_object(r), o / "victim"),
    "versions-folder": lambda r, o: link_in(r / "versions", "evil", o),
    "versions-entry": lambda r, o: link_in(r / "versions" / NAME, "2", o / "1"),
    "versions-model": lambda r, o: relink(r / "versions" / NAME, o),
    "refs-folder": lambda r, o: relink(r / "refs" / NAME, o),
    "refs-entry": lambda r, o: link_in(r / "refs" / NAME, "staging", o / "staging"),
    "tags-entry": lambda r, o: link_in(r / "tags" / NAME, "1", o / "victim"),
}
# Cases where the version itself is out of reach: loading it is refused.
UNREADABLE = {"objects-folder", "object-replaced", "versions-model"}


def attempt(action: Callable[[], Any]) -> str:
    """Run a store operation: 'ok', or the StoreError it refused with (any other
    exception fails the test)."""
    try:
        action()
    except StoreError as exc:
        return f"refused: {exc}"
    return "ok"


@pytest.mark.parametrize("where", sorted(PLANTS))
def test_a_planted_link_is_never_followed(where: str, root: Path, outside: Path) -> None:
    PLANTS[where](root, outside)
    age(root)
    before = state(outside)
    with Store(root) as store:
        outcomes = {
            "gc": attempt(lambda: store.gc(grace=60)),
            "check": attempt(store.check),
            "load": attempt(lambda: store.load(f"{NAME}@1")),
            "save": attempt(lambda: store.save({"big": BIG + 1, "n": 2}, NAME)),
            "alias": attempt(lambda: store.set_alias(f"{NAME}@1", "staging")),
            "tags": attempt(lambda: store.set_tags(f"{NAME}@1", {"team": "x"})),
            "export": attempt(lambda: store.export_all(NAME, outside.parent / "b.bundle")),
        }
        assert state(outside) == before, outcomes  # nothing read into, written or deleted
        if where != "tmp-entry":  # gc removes that link itself: a temporary
            report = store.check()
            assert not report.ok, outcomes
            assert any("symbolic link" in p for p in report.problems), report.problems
        for action in ("gc", "check"):  # they skip the link and say so, never fail
            assert outcomes[action] == "ok", outcomes
        if where == "tmp-entry":
            assert not (root / "tmp" / "123-deadbeef").is_symlink()
            assert store.check().ok
        if where in UNREADABLE:
            assert outcomes["load"].startswith("refused"), outcomes
        else:
            assert np.array_equal(store.load(f"{NAME}@1")["big"], BIG)


@pytest.mark.parametrize("folder", ["tmp", "locks", "cache"])
def test_a_private_folder_that_is_a_link_is_refused_on_open(
    folder: str, root: Path, outside: Path
) -> None:
    before = state(outside)
    relink(root / folder, outside)
    with pytest.raises(StoreError, match=rf"{folder} in .* is a symbolic link"):
        Store(root)
    assert state(outside) == before


def test_gc_does_not_follow_tmp_replaced_while_open(root: Path, outside: Path) -> None:
    """The link appears after the store was opened: gc refuses to clean tmp/."""
    before = state(outside)
    with Store(root) as store:
        relink(root / "tmp", outside)
        with pytest.raises(StoreError, match=r"tmp in .* is a symbolic link"):
            store.gc(grace=0)
    assert state(outside) == before


def test_check_names_foreign_entries(root: Path, tmp_path: Path) -> None:
    (root / "notes.txt").write_text("mine")
    (root / "objects" / "zz").mkdir()
    (root / "objects" / "zz" / "not-a-digest").write_bytes(b"x")
    (root / "versions" / NAME / "007").write_bytes(b"{}")
    (root / "refs" / NAME / "a b").write_bytes(b"{}")  # not even a valid key
    (root / "tmp" / "folder").mkdir()
    os.mkfifo(root / "tags-fifo")
    with Store(root) as store:
        report = store.check()
        text = "\n".join(report.problems)
        for fragment in (
            "notes.txt is a file in the store's root",
            "objects/zz/not-a-digest is not a store object",
            f"versions/{NAME}/007 is not a store object",
            f"refs/{NAME}/a b is not a store entry",
            "tmp/folder is a folder inside amber's own tmp/ folder",
            "tags-fifo in",
        ):
            assert fragment in text, text
        assert not report.ok
        assert np.array_equal(store.load(NAME)["big"], BIG)  # the store still works
        store.gc(grace=0)
    assert (root / "notes.txt").read_text() == "mine"  # gc removes only its own files


@pytest.mark.parametrize("suffix", ["", "-wal", "-journal"])
def test_a_linked_index_file_is_replaced_not_followed(
    suffix: str, root: Path, outside: Path
) -> None:
    before = state(outside)
    index = root / "cache" / f"index.sqlite{suffix}"
    relink(index, outside / "victim")
    with pytest.warns(StoreIndexWarning):
        store = Store(root)
    with store:
        assert np.array_equal(store.load(NAME)["big"], BIG)
        assert [v.version for v in store.versions(NAME)] == [1]
        store.save({"big": BIG, "n": 2}, NAME)
    assert not index.is_symlink()
    assert state(outside) == before
