"""The per-client index of an S3 store: incremental refresh from the bucket."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from amber.store import Store, changes
from amber.store.ledger import Ledger


def _reads(store: Store) -> list[str]:
    """The keys of every document the store reads from now on."""
    reads: list[str] = []
    get, read_range = store.backend.get, store.backend.read_range

    def counted(key: str) -> Any:
        reads.append(key)
        return get(key)

    def counted_range(key: str, offset: int, length: int) -> Any:
        reads.append(key)
        return read_range(key, offset, length)

    store.backend.get = counted  # type: ignore[method-assign]
    store.backend.read_range = counted_range  # type: ignore[method-assign]
    return reads


def test_refresh_reads_only_what_changed(s3_url: str) -> None:
    with Store(s3_url) as writer:
        for i in range(12):
            writer.save({"i": np.arange(3) + i}, "m", metrics={"i": i})
        with Store(s3_url) as reader:  # first sync: reads everything
            assert len(reader.versions("m")) == 12
            reads = _reads(reader)
            assert reader.refresh() == 0 and reads == []  # in sync: lists only
            writer.save({"i": np.arange(3)}, "m")
            writer.set_alias("m@3", "production")
            writer.set_tags("m@2", {"stage": "qa"})
            writer.delete("m@1")
            assert reader.refresh() == 4  # m@13, m@2 (its tags), m@1, the alias
            assert {k for k in reads if k.startswith("versions/")} == {
                "versions/m/13",
                "versions/m/2",
                "versions/m/1",
            }
            assert [v.version for v in reader.versions("m")] == list(range(2, 14))
            assert reader.aliases("m")["production"] == 3
            assert reader.get("m@2").tags == {"stage": "qa"}
            assert [v.version for v in reader.search("m", metrics=["i>=10"])] == [11, 12]
            writer.remove_alias("m", "production")
            reader.refresh()
            assert "production" not in reader.aliases("m")


def test_load_never_trusts_a_stale_index(s3_url: str) -> None:
    with Store(s3_url) as a, Store(s3_url) as b:
        a.save({"v": 1}, "m")
        b.refresh()
        a.save({"v": 2}, "m")  # b's index has not seen it
        assert b.load("m") == {"v": 2}
        assert b.get("m@latest").version == 2


# -- the change journal: a warm open costs one request; a dead writer hides nothing --------


def _lists(store: Store) -> list[str]:
    """The prefixes the store lists (with ETags) from now on."""
    prefixes: list[str] = []
    list_etags = store.backend.list_etags  # type: ignore[attr-defined]

    def counted(prefix: str = "") -> Any:
        prefixes.append(prefix)
        return list_etags(prefix)

    store.backend.list_etags = counted  # type: ignore[attr-defined]
    return prefixes


def _die_mid_change(store: Store, action: Any) -> str:
    """What a writer killed after its change, before announcing it, leaves: an open intent
    and the change (made here by a ledger that writes no journal)."""
    intent = changes.OPEN + os.urandom(16).hex()
    assert store.backend.put_if_absent(intent, b'{"started": 0}')
    action(Ledger(store.backend))
    return intent


def _unjournaled_save(store: Store, name: str) -> Any:
    def save(ledger: Ledger) -> None:
        raw = dict(store.resolve(name).raw)
        ledger.commit(name, raw, set(), lambda: None)

    return save


def test_a_warm_open_lists_only_the_journal(s3_url: str) -> None:
    with Store(s3_url) as writer, Store(s3_url) as reader:
        for i in range(3):
            writer.save({"i": i}, "m")
        assert reader.refresh() == 3
        lists, reads = _lists(reader), _reads(reader)
        assert reader.refresh() == 0
        assert lists == ["changes/"] and reads == []  # one LIST request, nothing read
        writer.save({"i": 3}, "m")
        assert reader.refresh() == 1
        assert lists[1:] == ["changes/", "versions/", "refs/", "tags/"]
        assert reads == ["versions/m/4"]  # no tags document listed: none read
        lists.clear()
        assert reader.refresh() == 0 and lists == ["changes/"]
        writer.set_alias("m@2", "production")  # aliases and tags are announced too
        writer.set_tags("m@1", {"stage": "qa"})
        assert reader.refresh() == 2
        assert reader.aliases("m")["production"] == 2
        assert reader.get("m@1").tags == {"stage": "qa"}
        assert not [k for k in writer.backend.list("changes/") if k.startswith(changes.OPEN)]
        assert writer.check().ok  # journal keys are the store's own


def test_a_writer_that_dies_mid_change_hides_nothing(s3_url: str) -> None:
    with Store(s3_url) as writer, Store(s3_url) as reader:
        writer.save({"i": 0}, "m")
        reader.refresh()
        intent = _die_mid_change(writer, _unjournaled_save(writer, "m"))
        assert reader.refresh() == 1  # the open intent makes it list
        assert [v.version for v in reader.versions("m")] == [1, 2]
        _die_mid_change(writer, _unjournaled_save(writer, "m"))
        lists = _lists(reader)
        reader.refresh()
        assert "versions/" in lists  # intents still open: it keeps listing, never settles
        # Past the lease, a reader that listed after seeing the intents removes them...
        for key in list(writer.backend.list(changes.OPEN)):
            writer.backend.set_mtime(key, time.time() - changes.LEASE - 60)  # type: ignore[attr-defined]
        reader.refresh()
        assert intent not in set(writer.backend.list(changes.OPEN))
        # ...then settles at the next open, and a warm open lists only the journal again.
        reader.refresh()
        lists.clear()
        assert reader.refresh() == 0 and lists == ["changes/"]


def test_a_change_begun_before_a_listing_and_made_after_it_is_seen(s3_url: str) -> None:
    with Store(s3_url) as writer, Store(s3_url) as reader:
        writer.save({"i": 0}, "m")
        journal = changes.Journal(writer.backend, "test")
        change = journal.change("versions/m")
        change.__enter__()  # the intent is open...
        reader.refresh()  # ...while the reader lists: it must not settle
        Ledger(writer.backend).commit("m", dict(writer.resolve("m").raw), set(), lambda: None)
        change.__exit__(None, None, None)  # generation replaced, intent deleted
        assert reader.refresh() == 1
        assert [v.version for v in reader.versions("m")] == [1, 2]


def test_a_periodic_full_listing_catches_writers_without_a_journal(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(s3_url) as writer, Store(s3_url) as reader:
        writer.save({"i": 0}, "m")
        reader.refresh()
        _unjournaled_save(writer, "m")(Ledger(writer.backend))  # an older amber's save
        assert reader.refresh() == 0  # trusted the journal...
        monkeypatch.setattr(changes, "RELIST_AFTER", 0.0)
        assert reader.refresh() == 1  # ...until its listing was too old
        assert [v.version for v in reader.versions("m")] == [1, 2]
