"""Several processes using one local store at once: saves, alias moves, loads and gc."""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.errors import AliasConflict
from amber.store import Store
from tests.store.helpers import (
    age_objects,
    context_for,
    indexed_numbers,
    join_all,
    object_keys,
    payload,
    referenced_keys,
    same_payload,
    scaled,
    stored_numbers,
)

NAME = "churn"


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where the store under test lives: a local folder, or a prefix of a bucket on a real
    S3 server (moto, loopback) that forked children reach through AWS_* variables."""
    if request.param == "s3":
        return request.getfixturevalue("s3_url")
    return tmp_path / "store"


def _report_errors(queue: Any, tag: object) -> contextlib.AbstractContextManager[None]:
    """In a child: send any exception back to the parent before dying."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except BaseException:
            queue.put(("error", tag, traceback.format_exc()))
            raise

    return guard()


def _collect(queue: Any, count: int) -> list[tuple]:
    messages = [queue.get(timeout=120) for _ in range(count)]
    errors = [m for m in messages if m[0] == "error"]
    assert not errors, "\n".join(str(m[2]) for m in errors)
    return messages


# -- concurrent saves ----------------------------------------------------------------------


def _saver(root: str, worker: int, count: int, barrier: Any, queue: Any) -> None:
    with _report_errors(queue, worker):
        store = Store(root)  # opened before the start: see test_reindex_racing_a_save
        barrier.wait()
        saved = []
        for seq in range(count):
            version = store.save(payload(worker, seq), NAME, metrics={"seq": seq})
            saved.append((version.version, worker, seq))
        store.close()
        queue.put(("ok", worker, saved))


@pytest.mark.slow
def test_concurrent_saves_get_distinct_numbers(location: Any) -> None:
    workers, per_worker = 8, 25
    per_worker = scaled(location, per_worker, 4)  # 8 x 25 on S3: `make s3-stress`
    root = location
    Store(root).close()
    ctx = context_for(root)
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    processes = [
        ctx.Process(target=_saver, args=(str(root), w, per_worker, barrier, queue))
        for w in range(workers)
    ]
    for p in processes:
        p.start()
    messages = _collect(queue, workers)
    join_all(processes)

    saved = [entry for m in messages for entry in m[2]]
    numbers = sorted(version for version, _, _ in saved)
    assert numbers == list(range(1, workers * per_worker + 1))
    for _, worker, entries in messages:  # each writer's versions increase
        assert [v for v, _, _ in entries] == sorted(v for v, _, _ in entries), worker
    with Store(root) as store:
        assert stored_numbers(store, NAME) == numbers
        assert [v.version for v in store.versions(NAME)] == numbers
        for version, worker, seq in saved:
            loaded = store.load(f"{NAME}@{version}")
            assert same_payload(loaded, payload(worker, seq)), f"{NAME}@{version}"
        report = store.check()
        assert report.ok, str(report)
        assert store.aliases(NAME)["latest"] == workers * per_worker


# -- concurrent alias moves ----------------------------------------------------------------

ALIAS_KEY = f"refs/{NAME}/production"


def _mover(root: str, worker: int, targets: list[int], barrier: Any, queue: Any) -> None:
    with _report_errors(queue, worker):
        store = Store(root)
        swaps: list[tuple[bytes | None, bytes | None]] = []
        real = store.backend.compare_and_swap

        def logged(key: str, expected: bytes | None, new: bytes | None) -> bool:
            done = real(key, expected, new)
            if done and key == ALIAS_KEY:
                swaps.append((expected, new))
            return done

        store.backend.compare_and_swap = logged  # type: ignore[method-assign]
        barrier.wait()
        succeeded, conflicts, others = [], 0, []
        for i, target in enumerate(targets):
            try:
                moved = store.set_alias(f"{NAME}@{target}", "production", force=i % 3 == 2)
            except AliasConflict:
                conflicts += 1
            except Exception as exc:
                others.append(repr(exc))
            else:
                # (its `aliases` are read after the swap: another move may show there)
                assert moved.version == target
                succeeded.append(target)
        store.close()
        queue.put(("ok", worker, (succeeded, conflicts, others, swaps)))


@pytest.mark.slow
def test_concurrent_alias_moves_never_lose_an_update(location: Any) -> None:
    workers, moves = 4, scaled(location, 12, 5)
    root = location
    with Store(root) as store:
        for i in range(workers * moves):
            store.save({"i": i}, NAME)
    ctx = context_for(root)
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    # Each move targets its own version, so every ref document is unique.
    targets = [[w * moves + i + 1 for i in range(moves)] for w in range(workers)]
    processes = [
        ctx.Process(target=_mover, args=(str(root), w, targets[w], barrier, queue))
        for w in range(workers)
    ]
    for p in processes:
        p.start()
    messages = _collect(queue, workers)
    join_all(processes)

    swaps: list[tuple[bytes | None, bytes | None]] = []
    successes = 0
    for _, worker, (succeeded, conflicts, others, logged) in messages:
        assert others == [], f"worker {worker}: errors other than AliasConflict: {others}"
        assert len(succeeded) + conflicts == moves
        assert len(logged) == len(succeeded)  # one successful swap per successful call
        successes += len(succeeded)
        swaps += logged
    assert successes >= 1
    # The successful moves form one chain: no two started from the same document.
    after: dict[bytes | None, bytes] = {}
    for expected, new in swaps:
        assert expected not in after, "two successful moves started from the same alias"
        assert new is not None
        after[expected] = new
    chain: list[bytes] = []
    current: bytes | None = None
    while current in after:
        current = after[current]
        chain.append(current)
    assert len(chain) == successes, "the moves do not form a single chain"
    docs = [json.loads(doc) for doc in chain]
    previous = None
    for doc in docs:
        assert doc["previous"] == previous  # the ref document's own `previous` chain
        previous = doc["version"]
    assert [d["moved_at"] for d in docs] == sorted(d["moved_at"] for d in docs)
    with Store(root) as store:
        assert store.backend.get(ALIAS_KEY) == chain[-1]
        assert store.aliases(NAME)["production"] == docs[-1]["version"]
        assert store.get(f"{NAME}@production").version == docs[-1]["version"]
        report = store.check(repair=True)  # index drift, if any, is repaired
        assert not report.damaged and not report.problems, str(report)
        assert store.check().ok
        aliased = [v.version for v in store.versions(NAME) if "production" in v.aliases]
        assert aliased == [docs[-1]["version"]]


def _reordered_moves(tmp_path: Path) -> Store:
    """Two moves whose index updates land in the opposite order of their storage swaps:
    ``first`` swaps to @2, then (before it updates the index) ``second`` moves to @3."""
    root = tmp_path / "store"
    first, second = Store(root), Store(root)
    for i in range(3):
        first.save({"i": i}, NAME)
    transaction = first.index.transaction

    @contextlib.contextmanager
    def late() -> Iterator[Any]:
        second.set_alias(f"{NAME}@3", "production")  # index and all
        with transaction() as db:
            yield db

    first.index.transaction = late  # type: ignore[method-assign]
    first.set_alias(f"{NAME}@2", "production")
    return first


def test_reordered_alias_moves_storage_keeps_the_last(tmp_path: Path) -> None:
    store = _reordered_moves(tmp_path)
    assert store.aliases(NAME)["production"] == 3
    assert store.get(f"{NAME}@production").version == 3
    assert json.loads(store.backend.get(ALIAS_KEY) or b"{}")["previous"] == 2


def test_reordered_alias_moves_index_keeps_the_last(tmp_path: Path) -> None:
    store = _reordered_moves(tmp_path)
    assert [v.aliases for v in store.versions(NAME)] == [(), (), ("production",)]
    assert store.check().ok


# -- loads while saving --------------------------------------------------------------------


def _writer(root: str, worker: int, count: int, queue: Any) -> None:
    with _report_errors(queue, worker):
        store = Store(root)
        for seq in range(count):
            store.save(payload(worker, seq), "live")
        queue.put(("ok", worker, count))


def _reader(root: str, stop: Any, queue: Any) -> None:
    with _report_errors(queue, "reader"):
        store = Store(root)
        loads, bad, versions = 0, [], set()
        while not stop.is_set() or loads < 5:
            try:
                value = store.load("live")
                expected = payload(value["worker"], value["seq"])
                if not same_payload(value, expected):
                    bad.append(f"incomplete payload {value!r}")
                versions.add((value["worker"], value["seq"]))
            except Exception as exc:
                bad.append(repr(exc))
            loads += 1
        queue.put(("ok", "reader", (loads, bad, len(versions))))


@pytest.mark.slow
def test_readers_never_see_a_partial_version(location: Any) -> None:
    root = location
    with Store(root) as store:
        store.save(payload(99, 0), "live")
    ctx = context_for(root)
    queue, stop = ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_reader, args=(str(root), stop, queue)) for _ in range(2)]
    per_writer = scaled(location, 20, 6)
    writers = [
        ctx.Process(target=_writer, args=(str(root), w, per_writer, queue)) for w in range(2)
    ]
    for p in readers + writers:
        p.start()
    done = _collect(queue, len(writers))
    stop.set()
    results = _collect(queue, len(readers))
    join_all(readers + writers)
    assert all(m[1] in (0, 1) for m in done)
    for _, _, (loads, bad, distinct) in results:
        assert bad == [], bad[:5]
        assert loads >= 5 and distinct >= 1
    with Store(root) as store:
        assert stored_numbers(store, "live") == list(range(1, 2 * per_writer + 2))


# -- gc while saving -----------------------------------------------------------------------


def _collector(root: str, stop: Any, queue: Any) -> None:
    with _report_errors(queue, "gc"):
        store = Store(root)
        runs, removed = 0, 0
        while not stop.is_set() or runs < 3:
            removed += store.gc().objects_removed  # the default grace period
            runs += 1
        queue.put(("ok", "gc", (runs, removed)))


def _resaver(root: str, worker: int, seqs: list[int], queue: Any) -> None:
    with _report_errors(queue, worker):
        store = Store(root)
        saved = []
        for seq in seqs:
            # The same content as a deleted version: its (old) objects are reused.
            saved.append((store.save(payload(0, seq), "g").version, 0, seq))
            saved.append((store.save(payload(worker + 1, seq), "g").version, worker + 1, seq))
        queue.put(("ok", worker, saved))


@pytest.mark.slow
def test_gc_running_with_writers_never_breaks_a_version(location: Any) -> None:
    root = location
    count = scaled(location, 24, 10)
    with Store(root) as store:
        for seq in range(count):
            store.save(payload(0, seq), "g")
        for seq in range(count):
            store.delete(f"g@{seq + 1}")
    age_objects(root, 7200)  # every object is now old and unreferenced: gc takes them
    ctx = context_for(root)
    queue, stop = ctx.Queue(), ctx.Event()
    collector = ctx.Process(target=_collector, args=(str(root), stop, queue))
    writers = [
        ctx.Process(target=_resaver, args=(str(root), w, list(range(w, count, 2)), queue))
        for w in range(2)
    ]
    collector.start()
    for p in writers:
        p.start()
    saved = [entry for m in _collect(queue, len(writers)) for entry in m[2]]
    stop.set()
    (_, _, (runs, _removed)), *_ = _collect(queue, 1)
    join_all([collector, *writers])
    assert runs >= 3
    with Store(root) as store:
        report = store.check()
        assert not report.damaged and not report.problems, str(report)
        for version, worker, seq in saved:
            assert same_payload(store.load(f"g@{version}"), payload(worker, seq))
        assert referenced_keys(store) <= object_keys(store)


def test_gc_between_writing_objects_and_committing_a_save(tmp_path: Path) -> None:
    """The save's commit refreshes its objects and writes again any a gc took."""
    store = Store(tmp_path / "store")
    commit = store.ledger.commit

    def collect_first(*args: Any, **kwargs: Any) -> Any:
        assert store.gc(grace=0).objects_removed >= 1  # takes the new, unreferenced pack
        return commit(*args, **kwargs)

    store.ledger.commit = collect_first  # type: ignore[method-assign]
    version = store.save(payload(1, 1), "g")
    assert same_payload(store.load(version.spec), payload(1, 1))
    assert store.check().ok


def test_gc_between_writing_objects_and_committing_an_import(tmp_path: Path) -> None:
    source = Store(tmp_path / "source")
    source.save(payload(1, 1), "g")
    bundle = source.export_all("g", tmp_path / "g.bundle")
    root = tmp_path / "store"
    store = Store(root)
    store.save(payload(1, 1), "g")  # the same objects...
    store.delete("g@1")  # ...now unreferenced...
    age_objects(root, 7200)  # ...and older than gc's grace period
    commit = store.ledger.commit

    def collect_first(*args: Any, **kwargs: Any) -> Any:
        store.gc()  # another process's gc, with the default grace period
        return commit(*args, **kwargs)

    store.ledger.commit = collect_first  # type: ignore[method-assign]
    [imported] = store.import_bundle(bundle)
    assert same_payload(store.load(imported.spec), payload(1, 1))


# -- the index under concurrency -----------------------------------------------------------


def test_reindex_racing_a_save(tmp_path: Path) -> None:
    root = tmp_path / "store"
    writer = Store(root)
    writer.save({"i": 1}, NAME)
    store = Store(root)
    transaction = store.index.transaction
    raced = []

    @contextlib.contextmanager
    def racing() -> Iterator[Any]:
        if not raced:
            raced.append(writer.save({"i": 2}, NAME))  # another process commits now
        with transaction() as db:
            yield db

    store.index.transaction = racing  # type: ignore[method-assign]
    store.reindex()
    assert raced
    assert indexed_numbers(store, NAME) == [1, 2]
