"""Load hostile .amber files in forked children under an audit-hook tripwire (a script).

    python -P tests/graph/_tripwire.py SPEC.json OUT_DIR

``test_hostile.py`` runs this in a fresh interpreter. The process imports only the standard
library and amber, then establishes the baseline of a valid load: it loads and inspects the
benign file of each "warm" group (plain data, or a saved scikit-learn/scipy model) once to
import what such a load needs, and a second time with the tripwire armed, which records the
files a valid load opens (the file itself, the package metadata the environment check
reads). Then ``amber.inspect`` and ``amber.load`` of every case each run in their own
forked child of that warmed process, so that no step can hide another's imports: the child
arms the tripwire, runs the step on the case's file and writes what happened to
``OUT_DIR/<key>.<step>.json``: the exception (its classes and message), the modules that
appeared in ``sys.modules`` and the audit events recorded. A child that crashes or runs
past its timeout is reported as such (``OUT_DIR/<key>.<step>.status.json``).

The tripwire (``sys.addaudithook``) records the events of ``WATCHED`` while armed, and
refuses (raises in) those of ``BLOCKED``, so a payload that slipped through still cannot
start a process, load a library or open a socket. ``controls`` proves that every watched
event is actually seen.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

WATCHED = frozenset(
    {
        "os.system",
        "subprocess.Popen",
        "exec",
        "compile",
        "import",
        "open",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
        "pickle.find_class",
        "marshal.loads",
        "marshal.load",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.truncate",
        "shutil.rmtree",
        "urllib.Request",
        "webbrowser.open",
    }
)
WATCHED_PREFIXES = ("ctypes.", "os.exec", "os.spawn", "socket.")
# Of the watched events, those that are also stopped (raised in the hook), so a payload that
# slipped through still cannot act: everything but the events a normal load itself causes.
BLOCKED = WATCHED - {"exec", "compile", "import", "open", "marshal.loads", "marshal.load"}
BLOCKED_PREFIXES = WATCHED_PREFIXES

_ARMED = [False]
_EVENTS: list[tuple[str, tuple[Any, ...]]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    # Only list and tuple operations here: they raise no audit events of their own.
    if not _ARMED[0]:
        return
    if event in WATCHED or event.startswith(WATCHED_PREFIXES):
        _EVENTS.append((event, args))
        if event in BLOCKED or event.startswith(BLOCKED_PREFIXES):
            raise RuntimeError(f"tripwire: {event} refused")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text[:300]


def _real(path: Any) -> str | None:
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.path.realpath(os.fsdecode(path))
    return None  # a file descriptor or something stranger: never allowed


def _render(events: list[tuple[str, tuple[Any, ...]]], allowed: set[str]) -> list[str]:
    """The recorded events, minus opens of the allowed paths, as short strings."""
    out = []
    for event, args in events:
        if event == "open" and args and _real(args[0]) in allowed:
            continue
        out.append(f"{event} {_short(args[0]) if args else ''}".strip())
    return out


def _error(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    return {
        "types": [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__],
        "message": str(exc)[:20_000],
    }


def armed(call: Callable[[], Any], allowed: set[str]) -> tuple[Any, dict[str, Any]]:
    """Run ``call`` with the tripwire armed: (its value, what happened)."""
    before = set(sys.modules)
    del _EVENTS[:]
    value, error = None, None
    _ARMED[0] = True
    try:
        value = call()
    except BaseException as exc:
        error = exc
    finally:
        _ARMED[0] = False
    events = list(_EVENTS)
    del _EVENTS[:]
    report = {
        "error": _error(error),
        "new_modules": sorted(set(sys.modules) - before),
        "events": _render(events, allowed),
        "returned": None if error else type(value).__name__,
    }
    return value, report


# -- warm groups and cases ---------------------------------------------------------------------


def warm(path: str, allowed: set[str]) -> dict[str, Any]:
    """Import what a valid load of ``path`` needs; record the files such a load opens."""
    import amber
    from amber.adapters import sklearn as sklearn_adapter

    # amber's own scikit-learn table is read the first time a file names a scikit-learn
    # class (a hostile file may be the first): reading it is not the file's doing.
    allowed.add(_real(str(sklearn_adapter.TABLE)))
    amber.load(path)
    amber.inspect(path)
    del _EVENTS[:]
    _ARMED[0] = True
    try:
        amber.load(path)
        amber.inspect(path)
    finally:
        _ARMED[0] = False
    events = list(_EVENTS)
    del _EVENTS[:]
    opened = {_real(args[0]) for event, args in events if event == "open" and args}
    allowed |= {p for p in opened if p is not None and p != _real(path)}
    # Second pass, now with the allowlist: a valid load must leave no trace at all.
    _, report = armed(lambda: (amber.load(path), amber.inspect(path)), allowed | {_real(path)})
    report["allowed_opens"] = sorted(allowed)
    return report


def run_step(case: dict[str, Any], step: str, allowed: set[str]) -> dict[str, Any]:
    """``amber.inspect`` or ``amber.load`` of the case's file, under the tripwire."""
    import amber

    path = case["path"]

    def inspect() -> dict[str, Any]:
        info = amber.inspect(path)
        return {"untrusted": list(info.untrusted_types), "graph_error": info.graph_error}

    if step == "inspect":
        info, report = armed(inspect, allowed | {_real(path)})
        report["info"] = info
        return report
    _, report = armed(
        lambda: amber.load(path, trusted=case.get("trusted")), allowed | {_real(path)}
    )
    return report


# -- positive controls: each must be seen by the tripwire -------------------------------------


def _unimported_stdlib_module() -> str:
    for name in ("colorsys", "graphlib", "sched", "netrc", "wave"):
        if name not in sys.modules:
            return name
    raise RuntimeError("no unimported stdlib module left for the import control")


def _control(name: str) -> Callable[[], Any]:
    """Prepare (unarmed) and return the action of control ``name``."""
    if name == "os.system":
        return lambda: os.system("true")
    if name == "subprocess.Popen":
        import subprocess

        return lambda: subprocess.run(["true"], check=False)
    if name == "os.exec":
        return lambda: os.execv("/bin/true", ["true"])
    if name == "os.spawn":
        return lambda: os.spawnv(os.P_WAIT, "/bin/true", ["true"])
    if name == "os.posix_spawn":
        return lambda: os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    if name == "exec":
        return lambda: exec("1 + 1")
    if name == "compile":
        return lambda: compile("1 + 1", "<hostile>", "eval")
    if name == "import":
        module = _unimported_stdlib_module()
        return lambda: __import__(module)
    if name == "open":
        return lambda: open(__file__, "rb").close()
    if name == "ctypes":
        import ctypes

        return lambda: ctypes.CDLL(None)
    if name == "socket":
        import socket

        return lambda: socket.socket().close()
    if name == "pickle.find_class":
        import collections
        import pickle

        payload = pickle.dumps(collections.OrderedDict(a=1))
        return lambda: pickle.loads(payload)
    if name == "marshal.loads":
        import marshal

        payload = marshal.dumps(1)
        return lambda: marshal.loads(payload)
    raise ValueError(f"unknown control {name!r}")


def run_control(name: str, allowed: set[str]) -> dict[str, Any]:
    action = _control(name)
    _, report = armed(action, allowed)
    return report


# -- forking -----------------------------------------------------------------------------------


def _write(path: str, data: Any) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def run_jobs(jobs: list[tuple[str, Callable[[], Any], float]], out_dir: str, parallel: int) -> None:
    """Run each (key, function, timeout) in a forked child, ``parallel`` at a time.

    The child writes the function's result to OUT_DIR/key.json; this process writes how
    the child ended (exit code, signal, timeout) to OUT_DIR/key.status.json.
    """
    pending = list(jobs)
    running: dict[int, tuple[str, float, float]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            key, function, timeout = pending.pop(0)
            pid = os.fork()
            if pid == 0:  # the child
                code = 0
                try:
                    result = function()
                except BaseException:
                    import traceback

                    result, code = {"probe_error": traceback.format_exc()}, 3
                try:
                    _write(os.path.join(out_dir, key + ".json"), result)
                finally:
                    os._exit(code)
            running[pid] = (key, time.monotonic(), timeout)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (key, started, timeout) in list(running.items()):
                if now > started + timeout:
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    _write(os.path.join(out_dir, key + ".status.json"), {"timed_out": True})
            time.sleep(0.002)
            continue
        key, started, _ = running.pop(pid)
        _write(
            os.path.join(out_dir, key + ".status.json"),
            {
                "timed_out": False,
                "seconds": round(time.monotonic() - started, 3),
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            },
        )


def run_group(
    group: str,
    cases: list[dict[str, Any]],
    spec: dict[str, Any],
    allowed: set[str],
    out_dir: str,
    parallel: int,
) -> None:
    """Warm this process for ``group`` (unless plain), then run each step of each case."""
    here = set(allowed)
    if group != "plain":
        _write(os.path.join(out_dir, f"warm-{group}.json"), warm(spec["benign"][group], here))
    jobs = [
        (f"{c['key']}.{step}", lambda c=c, step=step: run_step(c, step, here), c["timeout"])
        for c in cases
        for step in ("inspect", "load")
    ]
    run_jobs(jobs, out_dir, parallel)


def main() -> None:
    spec_path, out_dir = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    import amber.api  # noqa: F401  (the baseline includes amber itself)

    sys.addaudithook(_hook)
    parallel = max(2, min(8, os.cpu_count() or 2))
    groups: dict[str, list[dict[str, Any]]] = {}
    for case in spec["cases"]:
        groups.setdefault(case["warm"], []).append(case)

    allowed: set[str] = set()
    _write(os.path.join(out_dir, "warm-plain.json"), warm(spec["benign"]["plain"], allowed))
    for group, cases in groups.items():
        if group == "plain":
            run_group(group, cases, spec, allowed, out_dir, parallel)
        else:  # warm a forked copy, so the plain baseline stays as it is

            def warmed(group: str = group, cases: list[dict[str, Any]] = cases) -> None:
                run_group(group, cases, spec, allowed, out_dir, parallel)

            run_jobs([(f"group-{group}", warmed, 240.0)], out_dir, 1)
    controls = [
        (f"control-{name}", lambda name=name: run_control(name, set(allowed)), 30.0)
        for name in spec.get("controls", [])
    ]
    run_jobs(controls, out_dir, parallel)


if __name__ == "__main__":
    main()
