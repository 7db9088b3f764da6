"""Operations that should feel instant: inspect, verify --quick (API and CLI), import amber."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.timing import Timing, now, quiet_gc, user_environment


def api_runs(repeat: int) -> int:
    """In-process calls per figure: 20 at the default --repeat 5 (they take milliseconds)."""
    return max(5, 4 * repeat)


def subprocess_runs(repeat: int) -> int:
    """Fresh interpreters per figure: 10 at the default --repeat 5."""
    return 2 * repeat


IMPORTS = {
    "python -c pass": "pass",
    "python -c 'import amber'": "import amber",
    # What a first amber.load pays on top: the lazily imported api module (numpy comes later).
    "python -c 'import amber; amber.load'": "import amber; amber.load",
}


def api_calls(path: Path, runs: int) -> dict[str, Timing]:
    """In-process amber.inspect and amber.verify(quick=True), after one warm-up call each."""
    import amber

    calls = {
        "amber.inspect": lambda: amber.inspect(path),
        "amber.verify(quick=True)": lambda: amber.verify(path, quick=True),
    }
    results: dict[str, Timing] = {}
    for label, call in calls.items():
        call()
        timing = Timing()
        for _ in range(runs):
            with quiet_gc():
                t0 = now()
                call()
                timing.samples.append(now() - t0)
        results[label] = timing
    return results


def _time_subprocess(argv: list[str]) -> float:
    t0 = now()
    subprocess.run(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        env=user_environment(),
    )
    return now() - t0


def cli_script() -> Path | None:
    """The ``amber`` console script of this interpreter's environment, else one on PATH."""
    candidate = Path(sys.executable).with_name("amber")
    if candidate.is_file():
        return candidate
    found = shutil.which("amber")
    return Path(found) if found else None


def cli_calls(path: Path, runs: int) -> dict[str, Timing | str]:
    """``amber inspect FILE`` and ``amber verify --quick FILE`` as subprocesses.

    A command that is missing or fails is reported with the reason instead of a timing
    (the CLI may be absent or unfinished).
    """
    commands = {
        "amber inspect FILE": ["inspect"],
        "amber verify --quick FILE": ["verify", "--quick"],
    }
    script = cli_script()
    if script is None:
        reason = "not available (no 'amber' console script next to the interpreter or on PATH)"
        return dict.fromkeys(commands, reason)
    results: dict[str, Timing | str] = {}
    for label, args in commands.items():
        argv = [str(script), *args, str(path)]
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if probe.returncode != 0:
            last = (probe.stderr.strip() or probe.stdout.strip() or "no output").splitlines()[-1]
            results[label] = f"not available (exit status {probe.returncode}: {last[:120]})"
            continue
        results[label] = Timing(samples=[_time_subprocess(argv) for _ in range(runs)])
    return results


def import_overhead(runs: int) -> dict[str, Timing]:
    """Fresh interpreters running each snippet; runs are interleaved so drift hits all alike."""
    argvs = {label: [sys.executable, "-c", code] for label, code in IMPORTS.items()}
    for argv in argvs.values():
        _time_subprocess(argv)  # warm: .pyc files and shared libraries in the page cache
    results = {label: Timing() for label in argvs}
    for _ in range(runs):
        for label, argv in argvs.items():
            results[label].samples.append(_time_subprocess(argv))
    return results
