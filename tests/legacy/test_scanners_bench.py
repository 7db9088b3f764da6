"""benchmarks/scanners.py runs: amber's column, and a peer that is not installed is reported
missing (never guessed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import scanners
from tests.legacy import hostile_corpus


def test_amber_flags_every_hostile_file(tmp_path: Path) -> None:
    built = hostile_corpus.build(tmp_path, select=lambda name: name.startswith(("os", "ext")))
    result = scanners.run_amber([p for _, p in built], repeats=1)
    assert set(result["verdicts"].values()) == {"flagged"}
    assert len(result["seconds"]) == 1


def test_a_missing_peer_is_reported_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMBER_PEER_PICKLESCAN", str(tmp_path / "nowhere" / "python"))
    assert scanners.peer_python("picklescan") is None
    assert scanners.run_peer("picklescan", [tmp_path / "x.pkl"], 1) is None
