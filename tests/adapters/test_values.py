"""Values from the standard library and numpy that fitted objects hold: time zones and
record arrays round-trip; hostile zone keys never become file paths."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import numpy as np
import pytest

import amber
from amber.errors import FormatError
from tests.graph.crafting import find, planted, saved


def test_datetime_with_zoneinfo_round_trips(tmp_path: Any) -> None:
    when = datetime.datetime(2024, 3, 31, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    amber.save({"when": when, "zone": when.tzinfo}, tmp_path / "z.amber")
    loaded = amber.load(tmp_path / "z.amber")
    assert loaded["when"] == when and loaded["when"].utcoffset() == when.utcoffset()
    assert loaded["zone"] is zoneinfo.ZoneInfo("Europe/Paris")  # the cached zone object


@pytest.mark.parametrize(
    "key", ["../../../../etc/passwd", "/etc/localtime", "Europe/../../x", "", "a" * 100, 7]
)
def test_zone_keys_that_are_not_names_are_refused(key: Any, tmp_path: Any) -> None:
    data = saved(zoneinfo.ZoneInfo("UTC"), tmp_path)

    def edit(root: dict) -> None:
        find(root, "zoneinfo:ZoneInfo")["state"] = key

    with pytest.raises(FormatError, match="time zone"):
        amber.load(planted(data, edit, tmp_path))


def test_unknown_zone_is_a_format_error(tmp_path: Any) -> None:
    data = saved(zoneinfo.ZoneInfo("UTC"), tmp_path)

    def edit(root: dict) -> None:
        find(root, "zoneinfo:ZoneInfo")["state"] = "Mars/Olympus_Mons"

    with pytest.raises(FormatError, match="not known on this machine"):
        amber.load(planted(data, edit, tmp_path))


def test_zone_from_a_file_is_refused_at_save(tmp_path: Any) -> None:
    path = zoneinfo.TZPATH[0] + "/UTC" if zoneinfo.TZPATH else None
    if path is None:
        pytest.skip("no system time zone database on this machine")
    with open(path, "rb") as f:
        zone = zoneinfo.ZoneInfo.from_file(f)
    with pytest.raises(amber.errors.SerializationError, match="ZoneInfo made from a file"):
        amber.save(zone, tmp_path / "z.amber")


def test_record_array_round_trips(tmp_path: Any) -> None:
    records = np.rec.array(
        [(1, 2.0, b"x"), (3, 4.5, b"y")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S1")]
    )
    amber.save(records, tmp_path / "r.amber")
    loaded = amber.load(tmp_path / "r.amber")
    assert type(loaded) is np.recarray
    assert loaded.dtype == records.dtype and np.array_equal(loaded.a, records.a)
    assert loaded.tolist() == records.tolist()


def test_record_array_without_fields_is_refused(tmp_path: Any) -> None:
    data = saved(np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), tmp_path)

    def edit(root: dict) -> None:
        node = find(root, "numpy.rec:recarray")
        node["state"] = {"k": "list", "v": [1, 2]}

    with pytest.raises(FormatError, match="named fields"):
        amber.load(planted(data, edit, tmp_path))
