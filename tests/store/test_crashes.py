"""Writers killed with SIGKILL: storage stays consistent, nothing half-saved is visible,
and gc reclaims what the dead writers left behind."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import amber.store.local as local_module
from amber.store import Store
from tests.store.helpers import (
    CTX,
    indexed_numbers,
    object_keys,
    payload,
    referenced_keys,
    same_payload,
    stored_numbers,
    temporaries,
)

NAME = "crashy"
SEED = 20261122


def _kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _saving_child(root: str, side: str, round_: int, count: int) -> None:
    """Save ``count`` versions; after each save returns, append it to ``side`` (fsynced)."""
    store = Store(root)
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for seq in range(count):
        version = store.save(payload(round_, seq), NAME)
        os.write(fd, f"{version.version} {round_} {seq}\n".encode())
        os.fsync(fd)
    os.close(fd)


def _reported(side: Path) -> list[tuple[int, int, int]]:
    if not side.exists():
        return []
    out = []
    for line in side.read_text().splitlines():
        version, round_, seq = map(int, line.split())
        out.append((version, round_, seq))
    return out


@pytest.mark.slow
def test_random_kills_during_saves(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    root = tmp_path / "store"
    side = tmp_path / "saved.txt"
    Store(root).close()
    rounds, attempts = 5, 150
    kills = []
    for round_ in range(rounds):
        before = len(_reported(side))
        target = before + rng.randint(20, 35)  # saves to let through before the kill
        delay = rng.uniform(0, 0.03)  # then a random point inside a later save
        child = CTX.Process(target=_saving_child, args=(str(root), str(side), round_, attempts))
        child.start()
        deadline = time.monotonic() + 60
        while len(_reported(side)) < target and child.is_alive():
            assert time.monotonic() < deadline, "the child saves too slowly"
            time.sleep(0.002)
        time.sleep(delay)
        child.kill()  # SIGKILL
        child.join()
        assert child.exitcode == -signal.SIGKILL, f"round {round_}: child ended by itself"
        kills.append((target - before, round(delay, 4)))

    reported = _reported(side)
    assert len(reported) >= 100, f"only {len(reported)} saves before the kills {kills}"
    with Store(root) as store:
        report = store.check()
        assert not report.damaged, str(report)
        assert not report.problems, str(report)
        if report.index_drift:  # a writer died between its commit and its index update
            assert store.check(repair=True).repaired
            assert store.check().ok
        numbers = stored_numbers(store, NAME)
        # Numbers are allocated by the commit itself: no gaps, no half versions.
        assert numbers == list(range(1, len(numbers) + 1))
        assert indexed_numbers(store, NAME) == numbers
        saved = {version: (round_, seq) for version, round_, seq in reported}
        assert len(saved) == len(reported)  # no number handed out twice
        assert set(saved) <= set(numbers)
        # At most one save per kill committed without being reported.
        assert len(set(numbers) - set(saved)) <= rounds
        for version in numbers:
            loaded = store.load(f"{NAME}@{version}")
            if version in saved:
                assert same_payload(loaded, payload(*saved[version])), f"{NAME}@{version}"
            else:  # committed just before the kill: still complete
                assert same_payload(loaded, payload(loaded["worker"], loaded["seq"]))
        gc = store.gc(grace=0)
        assert object_keys(store) == referenced_keys(store)
        assert temporaries(root) == []
        assert store.check().ok, gc
        for version in numbers:  # gc took nothing a version needs
            store.load(f"{NAME}@{version}")


def _die_at(root: str, where: str) -> None:
    """Save once with a SIGKILL at ``where``."""
    store = Store(root)
    if where == "before-commit":  # every object written, the record not yet
        put = store.backend.put_if_absent

        def put_or_die(key: str, data: Any) -> bool:
            if key.startswith("versions/"):
                _kill_myself()
            return put(key, data)

        store.backend.put_if_absent = put_or_die  # type: ignore[method-assign]
    elif where == "mid-temporary":  # a temporary file written but not yet in place
        real_fsync = os.fsync

        class DyingOs:
            def __getattr__(self, attribute: str) -> Any:
                return getattr(os, attribute)

            @staticmethod
            def fsync(fd: int) -> None:
                real_fsync(fd)
                _kill_myself()

        local_module.os = DyingOs()  # type: ignore[assignment]
        import amber.container.atomic as atomic_module

        atomic_module.os = DyingOs()  # type: ignore[assignment]
    elif where == "before-index":  # the record committed, the index not updated
        transaction = store.index.transaction

        def die() -> Any:
            _kill_myself()
            return transaction()

        store.index.transaction = die  # type: ignore[method-assign]
    store.save(payload(7, 7), NAME)
    raise AssertionError("unreachable: the save should have killed the process")


def _run_dying_child(root: Path, where: str) -> None:
    child = CTX.Process(target=_die_at, args=(str(root), where))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL


@pytest.fixture
def store_with_one_version(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with Store(root) as store:
        store.save(payload(1, 1), NAME)
    return root


def test_kill_between_objects_and_commit_leaves_orphans_gc_reclaims(
    store_with_one_version: Path,
) -> None:
    root = store_with_one_version
    with Store(root) as store:
        before = object_keys(store)
    _run_dying_child(root, "before-commit")
    with Store(root) as store:
        assert stored_numbers(store, NAME) == [1]  # no half version
        assert [v.version for v in store.versions(NAME)] == [1]
        assert same_payload(store.load(NAME), payload(1, 1))
        orphans = object_keys(store) - referenced_keys(store)
        assert orphans and object_keys(store) - before == orphans
        assert store.check().ok
        report = store.gc(grace=0)
        assert report.objects_removed == len(orphans)
        assert object_keys(store) == before == referenced_keys(store)
        assert same_payload(store.load(NAME), payload(1, 1))


def test_kill_while_writing_a_temporary_leaves_a_file_gc_reclaims(
    store_with_one_version: Path,
) -> None:
    root = store_with_one_version
    _run_dying_child(root, "mid-temporary")
    assert temporaries(root), "the dead writer left no temporary file"
    with Store(root) as store:
        assert stored_numbers(store, NAME) == [1]
        assert store.check().ok
        assert store.gc().temporaries_removed == 0  # default grace: might be a live writer
        report = store.gc(grace=0)
        assert report.temporaries_removed >= 1
        assert temporaries(root) == []
        assert object_keys(store) == referenced_keys(store)
        assert same_payload(store.load(NAME), payload(1, 1))


def test_kill_between_commit_and_index_update(store_with_one_version: Path) -> None:
    root = store_with_one_version
    _run_dying_child(root, "before-index")
    with Store(root) as store:
        assert stored_numbers(store, NAME) == [1, 2]  # committed: storage is the truth
        assert same_payload(store.load(NAME), payload(7, 7))
        assert indexed_numbers(store, NAME) == [1]
        report = store.check()
        assert not report.damaged and not report.problems
        assert report.index_drift and not report.ok
        assert store.check(repair=True).repaired
        assert store.check().ok
        assert [v.version for v in store.versions(NAME)] == [1, 2]
