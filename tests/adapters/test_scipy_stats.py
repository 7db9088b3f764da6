"""Frozen scipy.stats distributions are rebuilt from a distribution name and numbers only."""

from __future__ import annotations

from pathlib import Path

import pytest
import scipy.stats

import amber
from amber.errors import FormatError
from tests.corpus.build import edit_manifest


@pytest.mark.parametrize(
    "frozen",
    [
        scipy.stats.loguniform(1e-2, 10.0),
        scipy.stats.norm(loc=2, scale=3),
        scipy.stats.randint(1, 5),
    ],
)
def test_frozen_distributions_roundtrip(frozen: object, tmp_path: Path) -> None:
    path = tmp_path / "d.amber"
    amber.save({"d": frozen}, path)
    loaded = amber.load(path)["d"]
    assert type(loaded) is type(frozen)
    assert loaded.dist.name == frozen.dist.name
    assert loaded.args == frozen.args and loaded.kwds == frozen.kwds
    assert loaded.mean() == frozen.mean()


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"name": "os", "args": [], "kwds": {}}, "not a scipy.stats distribution"),
        ({"name": "__builtins__", "args": [], "kwds": {}}, "not a scipy.stats distribution"),
        ({"name": "norm", "args": ["1"], "kwds": {}}, "must be numbers"),
        ({"name": "norm", "args": [], "kwds": {"loc": {"k": "list", "v": [1]}}}, "must be numbers"),
        ({"name": "randint", "args": [1, 5], "kwds": {}}, "does not freeze to"),
    ],
)
def test_hostile_distribution_states_are_refused(state: dict, match: str, tmp_path: Path) -> None:
    path = tmp_path / "d.amber"
    amber.save(scipy.stats.norm(0, 1), path)

    def edit(manifest: dict) -> None:
        manifest["root"]["state"] = {
            "k": "dict",
            "v": {
                **state,
                "args": {"k": "list", "v": state["args"]},
                "kwds": {"k": "dict", "v": state["kwds"]},
            },
        }

    path.write_bytes(edit_manifest(path.read_bytes(), edit))
    with pytest.raises(FormatError, match=match):
        amber.load(path)
