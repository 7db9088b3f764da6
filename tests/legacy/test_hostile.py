"""The hostile corpus (``hostile_corpus.py``): every file is REFUSED by ``amber scan`` and
by ``amber convert``, under an audit-hook tripwire in a fresh process, with nothing
imported, run or written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.legacy import hostile_corpus

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    return hostile_corpus.build(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def results(corpus: list[tuple[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("tripwire") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.legacy.hostile_child", str(corpus[0][1].parent), str(out)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_corpus_is_large_and_covers_every_container(corpus: list[tuple[str, Path]]) -> None:
    assert len(corpus) >= 60
    suffixes = {path.suffix for _, path in corpus}
    assert suffixes == {".pkl", ".joblib", ".pt", ".npy", ".npz"}


def test_the_tripwire_sees_and_stops_what_a_payload_does(results: dict) -> None:
    assert results["control:system"]["outcome"] == "tripwire: os.system refused"
    assert results["control:import"]["outcome"] == "tripwire: import refused"
    assert "this" not in sys.modules


@pytest.mark.parametrize("name", list(hostile_corpus.cases()))
def test_hostile_file_is_refused_with_nothing_run(name: str, results: dict) -> None:
    file = next(key for key in results if key.rsplit(".", 1)[0] == name and ":" not in key)
    record = results[file]
    assert record["verdict"] == "REFUSED", record
    assert isinstance(record["convert"], list) and "AmberError" in record["convert"], record
    assert record["events"] == [], record["events"]
    assert record["new_modules"] == [], record["new_modules"]
    assert not record["written"]
    assert "0x7f" not in record["message"] and "Traceback" not in record["message"]


def test_cli_scan_refuses_the_whole_corpus(corpus: list[tuple[str, Path]]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "amber.cli.main", "scan", "--json", *(str(p) for _, p in corpus)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    assert len(reports) == len(corpus)
    assert {r["verdict"] for r in reports} == {"REFUSED"}
    assert all(r["reason"] for r in reports)
