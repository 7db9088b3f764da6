"""Conformance corpus: valid files of every released format version keep loading as
recorded, and every crafted invalid file is refused, through every public entry point,
with the right error class and a message that says what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import amber
from tests.corpus import samples
from tests.corpus.build import (
    Case,
    base_file,
    cases,
    manifest_bytes,
    with_manifest,
    write_corpus,
)
from tests.corpus.probe import ENTRY_POINTS, read_every_way

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES = cases()


# -- valid files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_valid_fixture_loads_as_recorded(name: str) -> None:
    path = samples.VALID_DIR / f"{name}.amber"
    recorded = samples.expected(name)
    if name not in samples.LOSSY:
        assert samples.identical(samples.SAMPLES[name](), recorded), "sidecar out of date"
    for options in ({}, {"verify": "lazy"}, {"mmap": False}, {"writable": True}):
        assert samples.identical(amber.load(path, **options), recorded), options
    info = amber.verify(path)
    assert info.format_version == samples.VERSIONS[name]
    assert amber.inspect(path).tensors == info.tensors


def test_valid_fixture_keeps_fortran_order_and_sharing() -> None:
    weights = amber.load(samples.VALID_DIR / "weights.amber")
    assert weights["fc.weight"].flags.f_contiguous
    assert not weights["fc.weight"].flags.c_contiguous
    nested = amber.load(samples.VALID_DIR / "nested.amber")
    assert nested["shared"][0] is nested["shared"][1]


def test_corpus_base_file_is_valid_every_way(tmp_path: Path) -> None:
    path = tmp_path / "base.amber"
    path.write_bytes(base_file())
    assert read_every_way(path) == dict.fromkeys(ENTRY_POINTS)


def test_resealing_the_same_manifest_gives_the_same_file() -> None:
    base = base_file()
    assert with_manifest(base, manifest_bytes(base)) == base


# -- invalid files ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_invalid_file_is_refused(case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"{case.name}.amber"
    path.write_bytes(case.data)
    outcomes = read_every_way(path)
    for entry_point, (_, checks) in ENTRY_POINTS.items():
        error = outcomes[entry_point]
        if case.check not in checks:
            assert error is None, f"{entry_point} does not perform {case.check} checks: {error!r}"
            continue
        assert type(error) is case.error, f"{entry_point} raised {error!r}"
        assert case.fragment in str(error), f"{entry_point}: {error}"


def test_hostile_files_import_no_new_module(tmp_path: Path) -> None:
    """Refusing a file imports nothing that loading the valid fixtures did not import."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tests.corpus.probe import read_every_way\n"
        "for path in sorted(Path(sys.argv[1]).glob('*.amber')):\n"
        "    assert not any(read_every_way(path).values()), path\n"
        "before = set(sys.modules)\n"
        "for path in sorted(Path(sys.argv[2]).glob('*.amber')):\n"
        "    read_every_way(path)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(samples.VALID_DIR), str(corpus)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
