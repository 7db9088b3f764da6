"""The per-client index of an S3 store: incremental refresh from the bucket."""

from __future__ import annotations

from typing import Any

import numpy as np

from amber.store import Store


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
