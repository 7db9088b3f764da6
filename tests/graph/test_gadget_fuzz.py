"""Generative gadget fuzzing: a file can make nothing happen when its model is used.

A hostile file may pass the trust audit (every class and function it names is trusted)
and still plant behaviour that runs later, at the user's first ``predict()``,
``transform()``, ``model(x)`` or ``state_dict()``: callables where library code calls an
attribute, ``functools.partial`` with bound ``out=`` arrays, objects of a trusted class
where another type belongs (a ``PosixPath`` among an ensemble's estimators, with a method
name to call on it), instance state shadowing methods, torch hook dicts, ``n_jobs``.

``_gadget_child.py`` draws such files with hypothesis (``gadgets.py``: random graphs over
the trusted universe, and real saved models with gadgets planted in their graphs), loads
each in a forked child under a tripwire, uses it as a user would and reports any file
written or deleted, process started, socket opened, module imported from outside the
trusted packages, code compiled from something other than a file, crash or hang. Refusing
a file at load time (an ``AmberError``) and exceptions at use time are fine.

This bounded, derandomized run is part of the normal suite, with the corpus of every gadget
found so far (``gadget_corpus.json``: minimized, replanted in today's models). ``make fuzz``
runs the same driver for longer with a random seed (``FUZZ_SECONDS``, ``FUZZ_SEED``,
``FUZZ_BATCH``); add what it finds to the corpus.
Sizes here: ``AMBER_GADGET_SYNTH`` and ``AMBER_GADGET_MUTATE`` cases (default 50 and 90).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("_gadget_child.py")
# Every gadget found so far, minimized: replanted in today's models and run each time.
CORPUS = Path(__file__).with_name("gadget_corpus.json")
SYNTH = int(os.environ.get("AMBER_GADGET_SYNTH", "50"))
MUTATE = int(os.environ.get("AMBER_GADGET_MUTATE", "90"))


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """Run the driver once: (report.json, report.txt)."""
    if not hasattr(os, "fork"):
        pytest.skip("the fuzzer forks a child per case (POSIX only)")
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("gadgets")
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            *flags,
            str(DRIVER),
            str(out),
            "--synth",
            str(SYNTH),
            "--mutate",
            str(MUTATE),
            "--corpus",
            str(CORPUS),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=out,
    )
    report = out / "report.json"
    assert report.exists(), f"the fuzzer failed:\n{run.stdout[-5000:]}\n{run.stderr[-5000:]}"
    return json.loads(report.read_text()), (out / "report.txt").read_text()


def test_tripwire_sees_every_action(fuzz: tuple[dict[str, Any], str]) -> None:
    """Positive controls: a child that writes, deletes, starts a process (subprocess,
    fork, spawn, loky's fork_exec), opens a socket, imports a package, runs compiled
    source, crashes or hangs is reported as such."""
    report, _ = fuzz
    missed = {k: v for k, v in report["controls"]["positive"].items() if not v["seen"]}
    assert not missed, f"the tripwire missed: {missed}"


def test_benign_models_trip_nothing(fuzz: tuple[dict[str, Any], str]) -> None:
    """Negative controls: loading and using every unmodified model reports nothing."""
    report, _ = fuzz
    noisy = {k: v["problems"] for k, v in report["controls"]["negative"].items() if v["problems"]}
    assert not noisy, f"benign use tripped the tripwire: {json.dumps(noisy, indent=1)[:4000]}"


def test_benign_models_load(fuzz: tuple[dict[str, Any], str]) -> None:
    """The models the fuzzer plants gadgets in load (else those cases test nothing)."""
    report, _ = fuzz
    refused = {k: v["load"] for k, v in report["controls"]["negative"].items() if v["load"] != "ok"}
    assert not refused, f"benign models not loaded: {json.dumps(refused, indent=1)[:4000]}"


def test_no_gadget_acts(fuzz: tuple[dict[str, Any], str]) -> None:
    """No drawn file makes anything happen: each is refused at load, or used without a
    file written, a process started, a socket opened, an untrusted import, code run from
    data, a crash or a hang."""
    report, text = fuzz
    counts = report["counts"]
    assert counts["corpus"] == len(json.loads(CORPUS.read_text())), counts
    assert counts["synth"] + counts["mutate"] >= (SYNTH + MUTATE) // 2, counts
    assert not report["findings"], text
