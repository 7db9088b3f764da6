"""Writers on an S3 store killed with SIGKILL (a real moto server on loopback): during a
multipart upload, between the objects and the commit, between the commit and the index.
No partial version is ever visible, every reported save loads, gc reclaims the orphans."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

from amber.store import Store
from tests.store.helpers import SPAWN, object_keys, payload, referenced_keys, same_payload

BIG = 3 * (8 << 20) // 4  # float32s: a 24 MiB tensor, three multipart parts


def _big(seed: int) -> dict[str, Any]:
    return {"w": np.full(BIG, seed, dtype=np.float32), "seed": seed}


def _die_at(url: str, where: str) -> None:
    """Save once in a spawned child, SIGKILLed at ``where``."""
    store = Store(url)
    backend = store.backend
    if where == "mid-upload":  # a multipart upload under way: some parts sent
        put = backend.put_if_absent

        def dying_put(key: str, data: Any) -> bool:
            if not key.startswith("objects/") or isinstance(data, bytes):
                return put(key, data)

            def chunks() -> Any:
                sent = 0
                for chunk in data:
                    yield chunk
                    sent += memoryview(chunk).nbytes
                    if sent > (12 << 20):
                        os.kill(os.getpid(), signal.SIGKILL)

            return put(key, chunks())

        backend.put_if_absent = dying_put  # type: ignore[method-assign]
        store.save(_big(1), "m")
    elif where == "before-commit":  # every object uploaded, the record not yet
        put = backend.put_if_absent

        def put_or_die(key: str, data: Any) -> bool:
            if key.startswith("versions/"):
                os.kill(os.getpid(), signal.SIGKILL)
            return put(key, data)

        backend.put_if_absent = put_or_die  # type: ignore[method-assign]
        store.save(payload(7, 7), "m")
    elif where == "before-index":  # committed in the bucket, this client's index behind
        transaction = store.index.transaction

        def die() -> Any:
            os.kill(os.getpid(), signal.SIGKILL)
            return transaction()

        store.index.transaction = die  # type: ignore[method-assign]
        store.save(payload(8, 8), "m")
    raise AssertionError("unreachable: the save should have killed the process")


def _run_dying_child(url: str, where: str) -> None:
    child = SPAWN.Process(target=_die_at, args=(url, where))
    child.start()
    child.join(90)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == -signal.SIGKILL, f"child ended with {child.exitcode}"


@pytest.mark.parametrize("where", ["mid-upload", "before-commit"])
def test_killed_writer_leaves_no_version_and_gc_reclaims(s3_url: str, where: str) -> None:
    with Store(s3_url) as store:
        store.save(payload(1, 1), "m")
        before = object_keys(store)
    _run_dying_child(s3_url, where)
    with Store(s3_url) as store:
        assert [v.version for v in store.versions("m")] == [1]  # nothing half-saved
        if where == "mid-upload":  # the big object's upload never completed
            assert object_keys(store) == before
        else:  # the objects went up, unreferenced
            assert object_keys(store) > before
        assert same_payload(store.load("m"), payload(1, 1))
        for key in object_keys(store):  # every visible object is whole
            assert store.backend.stat(key) is not None
        assert store.check().ok
        store.gc(grace=0)
        assert object_keys(store) == referenced_keys(store)  # the orphans are gone
        store.save(_big(2) if where == "mid-upload" else payload(7, 7), "m")
        assert store.check().ok


def test_killed_between_commit_and_index(s3_url: str) -> None:
    with Store(s3_url) as store:
        store.save(payload(1, 1), "m")
    _run_dying_child(s3_url, "before-index")
    with Store(s3_url) as store:  # this client's index is brought up from the bucket
        assert [v.version for v in store.versions("m")] == [1, 2]
        assert same_payload(store.load("m@2"), payload(8, 8))
        assert store.check().ok
