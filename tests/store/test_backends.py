"""One conformance suite for every storage backend: what the store relies on."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from amber.errors import InvalidArgumentError, StoreError
from amber.store import Backend, LocalBackend, MemoryBackend
from tests.store.helpers import CTX, join_all
from tests.store.s3_server import S3Server


@pytest.fixture(params=["local", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return LocalBackend(tmp_path / "store")
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return server.backend(server.create_bucket())
    return MemoryBackend()


def _s3_type() -> type:
    try:
        from amber.store.s3 import S3Backend
    except ImportError:  # pragma: no cover
        return type(None)
    return S3Backend


def age(backend: Backend, key: str, seconds: float) -> float:
    """Set the modification time of ``key`` to ``seconds`` ago; returns it."""
    then = time.time() - seconds
    if isinstance(backend, LocalBackend):
        path = backend.local_path(key)
        assert path is not None
        os.utime(path, (then, then))
    else:
        assert isinstance(backend, MemoryBackend) or type(backend).__name__ == "S3Backend"
        backend.set_mtime(key, then)  # type: ignore[attr-defined]
    return then


def scratch_file(backend: Backend, tmp_path: Path, content: bytes) -> Path:
    make = getattr(backend, "temporary_file", None)
    path = make() if make is not None else tmp_path / f"scratch-{os.urandom(4).hex()}"
    path.write_bytes(content)
    return path


# -- get, read_range, put_if_absent -------------------------------------------------------


def test_missing_keys(backend: Backend) -> None:
    assert backend.get("a/b") is None
    assert backend.read_range("a/b", 0, 10) is None
    assert backend.stat("a/b") is None
    assert backend.delete("a/b") is False
    assert backend.touch("a/b") is False
    assert backend.delete_if_older("a/b", time.time() + 100) is None
    assert list(backend.list("a/")) == []


def test_put_bytes(backend: Backend) -> None:
    assert backend.put_if_absent("objects/ab/abc", b"hello") is True
    assert backend.get("objects/ab/abc") == b"hello"
    stat = backend.stat("objects/ab/abc")
    assert stat is not None and stat.size == 5
    assert abs(stat.mtime - time.time()) < 60


def test_put_empty_blob(backend: Backend) -> None:
    assert backend.put_if_absent("empty", b"") is True
    assert backend.get("empty") == b""  # an empty blob, not a missing one
    assert backend.put_if_absent("empty-stream", iter([])) is True
    assert backend.get("empty-stream") == b""
    assert backend.stat("empty") is not None


def test_put_iterable_of_buffers(backend: Backend) -> None:
    numbers = np.arange(1000, dtype=np.int32)
    chunks = [
        memoryview(b"head"),
        memoryview(numbers),  # a typed buffer: its bytes, not its items
        b"tail",
        memoryview(bytearray(b"x" * 3)),
    ]
    expected = b"head" + numbers.tobytes() + b"tail" + b"xxx"
    assert backend.put_if_absent("k", (c for c in chunks)) is True
    assert backend.get("k") == expected


def test_put_a_file(backend: Backend, tmp_path: Path) -> None:
    content = os.urandom(5000)
    assert backend.put_if_absent("from/file", scratch_file(backend, tmp_path, content))
    assert backend.get("from/file") == content
    # Losing the race with a file: the existing blob stays.
    assert not backend.put_if_absent("from/file", scratch_file(backend, tmp_path, b"other"))
    assert backend.get("from/file") == content


def test_put_is_create_only(backend: Backend) -> None:
    assert backend.put_if_absent("k", b"first") is True
    assert backend.put_if_absent("k", b"second") is False
    assert backend.put_if_absent("k", [memoryview(b"third")]) is False
    assert backend.get("k") == b"first"


def test_read_range(backend: Backend) -> None:
    data = bytes(range(256)) * 4
    backend.put_if_absent("r", data)
    assert backend.read_range("r", 0, 10) == data[:10]
    assert backend.read_range("r", 100, 50) == data[100:150]
    assert backend.read_range("r", 1000, 100) == data[1000:]  # fewer at the end
    assert backend.read_range("r", 5000, 10) == b""
    assert backend.read_range("r", 0, 0) == b""


def test_readers_never_see_a_partly_written_blob(backend: Backend) -> None:
    chunk = b"z" * 4096
    expected = chunk * 20

    def slow() -> Iterator[bytes]:
        for _ in range(20):
            time.sleep(0.002)
            yield chunk

    seen: set[int] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            blob = backend.get("slow")
            seen.add(-1 if blob is None else len(blob))
            if blob is not None:
                assert blob == expected

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert backend.put_if_absent("slow", slow())
    finally:
        time.sleep(0.01)
        done.set()
        thread.join()
    assert seen <= {-1, len(expected)}
    assert len(expected) in seen


# -- create-only under races ------------------------------------------------------------


def run_together(*functions: Callable[[], object]) -> list[object]:
    """Run the functions in threads started at once; their results, in order."""
    barrier = threading.Barrier(len(functions))
    results: list[object] = [None] * len(functions)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = functions[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_put_if_absent_race_threads(backend: Backend) -> None:
    workers, rounds = 8, 10
    for r in range(rounds):
        key = f"race/{r}"
        created = run_together(
            *(
                functools.partial(backend.put_if_absent, key, f"writer {w}".encode() * 100)
                for w in range(workers)
            )
        )
        results = list(enumerate(created))
        winners = [w for w, created in results if created]
        assert len(results) == workers
        assert len(winners) == 1, f"round {r}: {len(winners)} writers created {key}"
        assert backend.get(key) == f"writer {winners[0]}".encode() * 100


def _put_in_process(root: str, worker: int, rounds: int, barrier, queue) -> None:
    backend = LocalBackend(root)
    for r in range(rounds):
        barrier.wait()
        queue.put((r, worker, backend.put_if_absent(f"race/{r}", f"w{worker}".encode() * 500)))


def test_put_if_absent_race_processes(tmp_path: Path) -> None:
    workers, rounds = 6, 8
    root = tmp_path / "store"
    LocalBackend(root)
    barrier, queue = CTX.Barrier(workers), CTX.Queue()
    processes = [
        CTX.Process(target=_put_in_process, args=(str(root), w, rounds, barrier, queue))
        for w in range(workers)
    ]
    for p in processes:
        p.start()
    results = [queue.get(timeout=60) for _ in range(workers * rounds)]
    join_all(processes)
    backend = LocalBackend(root)
    for r in range(rounds):
        winners = [w for rr, w, created in results if rr == r and created]
        assert len(winners) == 1, f"round {r}: {len(winners)} processes created the key"
        assert backend.get(f"race/{r}") == f"w{winners[0]}".encode() * 500
    assert os.listdir(root / "tmp") == []  # losers cleaned up their temporaries


# -- compare-and-swap -------------------------------------------------------------------


def test_compare_and_swap(backend: Backend) -> None:
    assert backend.compare_and_swap("ref", None, b"v1") is True  # create
    assert backend.compare_and_swap("ref", None, b"again") is False  # exists already
    assert backend.get("ref") == b"v1"
    assert backend.compare_and_swap("ref", b"v1", b"v2") is True  # swap
    assert backend.compare_and_swap("ref", b"v1", b"v3") is False  # stale expected
    assert backend.get("ref") == b"v2"
    assert backend.compare_and_swap("ref", b"v1", None) is False  # stale delete
    assert backend.get("ref") == b"v2"
    assert backend.compare_and_swap("ref", b"v2", None) is True  # delete
    assert backend.get("ref") is None
    assert backend.compare_and_swap("ref", b"v2", b"v3") is False  # gone: not expected
    assert backend.get("ref") is None
    assert backend.compare_and_swap("ref", None, b"") is True  # an empty document
    assert backend.get("ref") == b""
    assert backend.compare_and_swap("ref", None, b"x") is False  # b"" is not absent


def test_compare_and_swap_absent_to_absent(backend: Backend) -> None:
    assert backend.compare_and_swap("nothing", None, None) is True
    assert backend.get("nothing") is None


def _cas_increment(backend: Backend, key: str, times: int) -> int:
    """Increment the counter at ``key`` ``times`` times; returns the number of retries."""
    retries = 0
    for _ in range(times):
        while True:
            current = backend.get(key)
            value = int(current) if current is not None else 0
            if backend.compare_and_swap(key, current, str(value + 1).encode()):
                break
            retries += 1
    return retries


def test_compare_and_swap_counter_threads(backend: Backend) -> None:
    workers, increments = 4, 40 if not isinstance(backend, _s3_type()) else 15
    retries = run_together(
        *(functools.partial(_cas_increment, backend, "counter", increments) for _ in range(workers))
    )
    assert len(retries) == workers
    assert backend.get("counter") == str(workers * increments).encode()


def _cas_in_process(root: str, increments: int, barrier, queue) -> None:
    backend = LocalBackend(root)
    barrier.wait()
    queue.put(_cas_increment(backend, "counter", increments))


def test_compare_and_swap_counter_processes(tmp_path: Path) -> None:
    workers, increments = 4, 25
    root = tmp_path / "store"
    LocalBackend(root)
    barrier, queue = CTX.Barrier(workers), CTX.Queue()
    processes = [
        CTX.Process(target=_cas_in_process, args=(str(root), increments, barrier, queue))
        for _ in range(workers)
    ]
    for p in processes:
        p.start()
    [queue.get(timeout=60) for _ in range(workers)]
    join_all(processes)
    assert LocalBackend(root).get("counter") == str(workers * increments).encode()


# -- list, delete, stat, touch, delete_if_older ----------------------------------------------


def test_list_by_prefix(backend: Backend) -> None:
    keys = ["a/b/c", "a/bc", "ab", "a/b/d/e", "b/a", "objects/00/0011", "objects/01/0122"]
    for key in keys:
        backend.put_if_absent(key, key.encode())
    backend.compare_and_swap("refs/m/prod", None, b"1")  # CAS documents are listed too
    keys.append("refs/m/prod")
    assert sorted(backend.list()) == sorted(keys)
    assert sorted(backend.list("")) == sorted(keys)
    assert sorted(backend.list("a/")) == ["a/b/c", "a/b/d/e", "a/bc"]
    assert sorted(backend.list("a/b")) == ["a/b/c", "a/b/d/e", "a/bc"]
    assert sorted(backend.list("a/b/")) == ["a/b/c", "a/b/d/e"]
    assert sorted(backend.list("a")) == ["a/b/c", "a/b/d/e", "a/bc", "ab"]
    assert sorted(backend.list("objects/")) == ["objects/00/0011", "objects/01/0122"]
    assert sorted(backend.list("objects/01")) == ["objects/01/0122"]
    assert list(backend.list("zzz/")) == []
    assert list(backend.list("a/bcd")) == []


def test_delete(backend: Backend) -> None:
    backend.put_if_absent("d/k", b"x")
    assert backend.delete("d/k") is True
    assert backend.get("d/k") is None
    assert backend.stat("d/k") is None
    assert backend.delete("d/k") is False
    assert list(backend.list("d/")) == []
    assert backend.put_if_absent("d/k", b"y") is True  # the key is free again
    assert backend.get("d/k") == b"y"


def test_stat_and_touch(backend: Backend) -> None:
    backend.put_if_absent("t", b"12345")
    then = age(backend, "t", 1000)
    stat = backend.stat("t")
    assert stat is not None and stat.size == 5 and abs(stat.mtime - then) < 1
    assert backend.touch("t") is True
    stat = backend.stat("t")
    assert stat is not None and stat.mtime > then + 900
    assert backend.get("t") == b"12345"  # touch changes no content


def test_delete_if_older(backend: Backend) -> None:
    backend.put_if_absent("young", b"abc")
    backend.put_if_absent("old", b"abcdef")
    age(backend, "old", 1000)
    limit = time.time() - 500
    assert backend.delete_if_older("young", limit) is None  # kept
    assert backend.get("young") == b"abc"
    assert backend.delete_if_older("old", limit) == 6  # the size freed
    assert backend.get("old") is None
    assert backend.delete_if_older("old", limit) is None  # absent
    # A touch rescues an old blob.
    backend.put_if_absent("rescued", b"x")
    age(backend, "rescued", 1000)
    assert backend.touch("rescued")
    assert backend.delete_if_older("rescued", limit) is None
    assert backend.get("rescued") == b"x"


def test_delete_if_older_is_atomic_with_touch(backend: Backend) -> None:
    """A touch that reports success means the blob survives a concurrent collection whose
    limit predates the touch; a collection that wins makes the touch report failure."""
    outcomes = {"kept": 0, "deleted": 0}
    rounds = 150 if not isinstance(backend, _s3_type()) else 50  # S3: ~10 requests a round
    for i in range(rounds):
        key = f"objects/race/{i}"
        backend.put_if_absent(key, b"payload")
        age(backend, key, 1000)
        limit = time.time() - 500
        touched, freed = run_together(
            functools.partial(backend.touch, key),
            functools.partial(backend.delete_if_older, key, limit),
        )
        result = {"touched": touched, "freed": freed}
        exists = backend.get(key) is not None
        if result["touched"]:
            assert exists and result["freed"] is None, f"iteration {i}: touched blob deleted"
            outcomes["kept"] += 1
        else:
            assert not exists and result["freed"] == len(b"payload"), f"iteration {i}"
            outcomes["deleted"] += 1
    assert sum(outcomes.values()) == rounds


# -- keys ------------------------------------------------------------------------------------

BAD_KEYS = [
    "",
    "/a",
    "a/",
    "a//b",
    "..",
    "../x",
    "a/../b",
    "./a",
    "a/.",
    "a b",
    "a\\b",
    "modèle",
    "a\x00b",
    "a\nb",
    "a\n",
    "a:b",
    5,
    None,
    b"bytes",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_are_refused(backend: Backend, key: object) -> None:
    calls = {
        "get": lambda k: backend.get(k),
        "read_range": lambda k: backend.read_range(k, 0, 1),
        "put_if_absent": lambda k: backend.put_if_absent(k, b"x"),
        "put_stream": lambda k: backend.put_if_absent(k, [memoryview(b"x")]),
        "compare_and_swap": lambda k: backend.compare_and_swap(k, None, b"x"),
        "delete": lambda k: backend.delete(k),
        "stat": lambda k: backend.stat(k),
        "touch": lambda k: backend.touch(k),
        "delete_if_older": lambda k: backend.delete_if_older(k, time.time()),
    }
    for call in calls.values():  # a failure's traceback shows the operation's lambda
        with pytest.raises(InvalidArgumentError, match="invalid storage key"):
            call(key)
    assert list(backend.list()) == []


@pytest.mark.parametrize("key", ["tmp/x", "locks/a.lock", "cache/index.sqlite"])
def test_local_backend_refuses_its_reserved_folders(tmp_path: Path, key: str) -> None:
    backend = LocalBackend(tmp_path / "store")
    with pytest.raises(StoreError, match="reserved"):
        backend.put_if_absent(key, b"x")
    with pytest.raises(StoreError, match="reserved"):
        backend.get(key)
