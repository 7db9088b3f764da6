"""Shared pieces of the store's reliability tests: small payloads, storage inspection and
child processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from amber.store import Store

# fork: children start in milliseconds and inherit the test's monkeypatching-free state.
CTX = multiprocessing.get_context("fork")
CHILD_TIMEOUT = 120.0
# obstore (s3:// stores) cannot run in a child forked after the parent used it (its async
# runtime's threads are not copied): children of tests on remote stores are spawned.
SPAWN = multiprocessing.get_context("spawn")


def scaled(location: object, full: int, on_s3: int) -> int:
    """A workload size: ``full`` for local stores (and for S3 under ``make s3-stress``,
    AMBER_S3_STRESS=1); ``on_s3`` for S3 in the default suite, where moto answers every
    request from one Python process and the full sizes take minutes on two cores."""
    remote = isinstance(location, str) and "://" in location
    return on_s3 if remote and not os.environ.get("AMBER_S3_STRESS") else full


def context_for(location: object) -> Any:
    """The multiprocessing context for children using the store at ``location``."""
    return SPAWN if isinstance(location, str) and "://" in location else CTX


def payload(worker: int, seq: int) -> dict[str, Any]:
    """A small, distinct model: a dict with the writer's id, a sequence number, an array
    and a checksum of the array (so that a torn read cannot look complete)."""
    array = np.arange(6, dtype=np.int64) * (worker + 1) + seq
    return {"worker": worker, "seq": seq, "a": array, "sum": int(array.sum())}


def same_payload(loaded: Any, expected: dict[str, Any]) -> bool:
    return (
        isinstance(loaded, dict)
        and set(loaded) == set(expected)
        and all(loaded[k] == expected[k] for k in ("worker", "seq", "sum"))
        and isinstance(loaded["a"], np.ndarray)
        and loaded["a"].dtype == expected["a"].dtype
        and np.array_equal(loaded["a"], expected["a"])
        and int(loaded["a"].sum()) == loaded["sum"]
    )


def object_keys(store: Store) -> set[str]:
    return set(store.backend.list("objects/"))


def referenced_keys(store: Store) -> set[str]:
    """Object keys that live versions (in storage, not the index) reference."""
    from amber.store.maintenance import _live_records
    from amber.store.objects import object_key

    out: set[str] = set()
    for record in _live_records(store):
        out |= {object_key(h) for h in record.objects()}
    return out


def temporaries(root: Path) -> list[str]:
    return sorted(os.listdir(root / "tmp"))


def age_objects(root: Path | str, seconds: float) -> None:
    """Pretend every object was written ``seconds`` ago (``root``: a store folder, or the
    URL of a remote store whose backend has ``set_mtime``)."""
    then = time.time() - seconds
    if isinstance(root, str) and "://" in root:
        with Store(root) as store:
            for key in list(store.backend.list("objects/")):
                store.backend.set_mtime(key, then)  # type: ignore[attr-defined]
        return
    for folder, _, files in os.walk(root / "objects"):
        for name in files:
            os.utime(Path(folder) / name, (then, then))


def stored_numbers(store: Store, name: str) -> list[int]:
    """Live version numbers of ``name`` according to storage (tombstones excluded)."""
    out = []
    for number in store.ledger.numbers(name):
        record = store.ledger.record(name, number)
        if record is not None and not record.deleted:
            out.append(number)
    return out


def indexed_numbers(store: Store, name: str) -> list[int]:
    return [
        row[0]
        for row in store.index.query(
            "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,)
        )
    ]


def join_all(processes: list[Any], timeout: float = CHILD_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in processes if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, f"{len(hung)} child processes hung"
    codes = [p.exitcode for p in processes]
    assert all(code == 0 for code in codes), f"child exit codes: {codes}"
