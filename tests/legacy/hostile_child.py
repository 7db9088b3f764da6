"""Scan and convert every hostile file under an audit-hook tripwire, in a fresh process.

    python -m tests.legacy.hostile_child CORPUS_DIR OUT.json

The process first warms up on a benign pickle, joblib and numpy file (so the imports a
valid conversion needs are done), then, for each file of CORPUS_DIR, arms the tripwire
(``sys.addaudithook``), runs ``amber.legacy.scan.scan_file`` and ``amber.convert`` on it,
and records: the verdict, the exception of the conversion, the audit events seen, and the
modules that appeared in ``sys.modules``. Events that would act (processes, sockets,
libraries, file changes, pickle's find_class, marshal) are also refused in the hook, so a
payload that slipped through could still not act.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

WATCHED_PREFIXES = (
    "os.",
    "subprocess.",
    "socket.",
    "ctypes.",
    "shutil.",
    "urllib.",
    "webbrowser.",
    "pickle.",
    "marshal.",
    "exec",
    "compile",
    "import",
    "open",
    "builtins.input",
    "code.",
    "cpython.run_",
    "_winapi.",
)
_ARMED = [False]
_EVENTS: list[tuple[str, str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _ARMED[0] or not event.startswith(WATCHED_PREFIXES):
        return
    _EVENTS.append((event, repr(args[:2])[:200]))
    if event not in ("open", "os.listdir", "os.scandir"):
        raise RuntimeError(f"tripwire: {event} refused")


def _warm(directory: Path) -> None:
    import joblib
    import numpy as np

    import amber
    from amber.legacy.scan import scan_file

    value = {"a": np.arange(3.0), "b": [1, "x"], "c": np.float64(1.0)}
    (directory / "warm.pkl").write_bytes(pickle.dumps(value, protocol=5))
    joblib.dump(value, directory / "warm.joblib", compress=("zlib", 1))
    np.save(directory / "warm.npy", np.array([1, None], dtype=object))
    np.savez(directory / "warm.npz", x=np.arange(2))  # zip member names: the cp437 codec
    for name in ("warm.pkl", "warm.joblib", "warm.npy", "warm.npz"):
        assert scan_file(directory / name).verdict == "SAFE TO CONVERT"
        amber.convert(directory / name, directory / f"{name}.amber")
    try:
        amber.convert(directory / "warm.pkl", directory / "warm.pkl.amber")  # exists: refused
    except amber.errors.WriteError:
        pass


def main(corpus: str, out: str) -> None:
    import amber
    from amber.legacy.scan import scan_file

    work = Path(tempfile.mkdtemp(prefix="amber-hostile-"))
    _warm(work)
    sys.addaudithook(_hook)
    results: dict[str, Any] = {}
    # Controls: the armed hook sees (and stops) what a payload would do.
    import os

    _ARMED[0] = True
    for name, action in (
        ("system", lambda: os.system(":")),
        ("import", lambda: __import__("this")),
    ):
        try:
            action()
            outcome = "ran"
        except RuntimeError as exc:
            outcome = str(exc)
        results[f"control:{name}"] = {"outcome": outcome, "events": list(_EVENTS)}
        _EVENTS.clear()
    _ARMED[0] = False
    for path in sorted(Path(corpus).iterdir()):
        before = set(sys.modules)
        _EVENTS.clear()
        record: dict[str, Any] = {}
        _ARMED[0] = True
        try:
            report = scan_file(path)
            record["verdict"] = report.verdict
            record["reason"] = report.reason
            try:
                amber.convert(path, work / f"{path.name}.amber")
                record["convert"] = "converted"
            except amber.errors.AmberError as exc:
                record["convert"] = [c.__name__ for c in type(exc).__mro__]
                record["message"] = str(exc)
            except Exception as exc:  # reported: conversions must fail with amber errors
                record["convert"] = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            _ARMED[0] = False
        # Opens allowed: the file itself, and amber's own tables (its committed schemas).
        own = (str(path), str(Path(amber.__file__).parent))
        record["events"] = [
            e for e in _EVENTS if not (e[0] == "open" and any(p in e[1] for p in own))
        ]
        record["new_modules"] = sorted(set(sys.modules) - before)
        record["written"] = (work / f"{path.name}.amber").exists()
        results[path.name] = record
    Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
