"""The gadget fuzzer's driver: draw cases, load and use each in a forked child under a
tripwire, report what the file made happen (a script; ``test_gadget_fuzz.py`` and
``make fuzz`` run it in a fresh interpreter).

    python tests/graph/_gadget_child.py OUT_DIR [--synth N] [--mutate N] [--seconds S]
        [--seed SEED] [--minimize K] [--parallel P] [--corpus FILE]
    python tests/graph/_gadget_child.py OUT_DIR --replay EARLIER/report.json

The driver fits the models of ``gadgets.base_models``, saves them with amber, builds the
universe file, then uses every benign model once (so that what a valid use imports is
part of the baseline). Cases are drawn with hypothesis (``derandomize`` unless ``--seed``)
and each runs in its own forked child, which:

1. writes the case to ``case.amber`` in a fresh sandbox directory (its working directory)
   and imports it and its benign counterpart into a memory store (unarmed: that reads the
   manifest but builds nothing);
2. arms the tripwire: an audit hook that records, and refuses before they happen, file
   writes and deletions (``open`` in a write mode, ``os.remove``/``rename``/``rmdir``/
   ``truncate``/``mkdir``/``chmod``/``symlink``..., ``shutil.*``), processes
   (``subprocess.Popen``, ``os.system``/``exec*``/``spawn*``/``posix_spawn``/``fork``/
   ``kill``; and ``os.fork``, ``os.posix_spawn[p]``, ``_posixsubprocess.fork_exec``
   replaced by record-and-refuse stand-ins, since joblib's process launch raises no audit
   event), sockets and other network events; and records code compiled or executed from
   something other than a file (``exec``/``compile``), ``pickle.find_class``, new native
   libraries (``ctypes.dlopen``) and environment changes (joblib's memmapping folders are
   recorded but let through, so that the worker launch that follows is seen too);
3. ``amber.load``s the case: an ``AmberError`` is a refusal (fine; the child stops);
4. uses the object as a user would, each step under its own time limit: ``predict``,
   ``predict_proba``, ``predict_log_proba``, ``decision_function``, ``transform``,
   ``inverse_transform``, ``score_samples``, ``score``, ``get_params``, ``repr``,
   ``_repr_html_``; torch modules ``eval()``, ``model(x)``, ``state_dict()``,
   ``parameters()``; any other callable ``obj(X)``; the members of a dict; then
   ``Store.diff`` between the benign and the hostile version. Exceptions are fine;
5. disarms and compares: modules imported from outside the trusted packages, files of the
   sandbox added, removed or changed.

The parent records how each child ended (a signal, or an exit without its report: a
crash, e.g. libgomp exiting; past its time: a hang) and which step was running (the child
writes it to a file as it goes). Every case with a recorded event, untrusted import,
sandbox change, crash or hang is a finding. Findings are grouped by signature; with
``--minimize K`` the first K groups are reduced (planted gadgets reverted, then parts of
what remains replaced by null) while the finding still reproduces. ``OUT_DIR/report.json``
and ``OUT_DIR/report.txt`` hold the result, ``OUT_DIR/cases.json`` one line per case.
``--corpus`` adds the gadgets of ``gadget_corpus.json`` (found before, replanted in today's
models); ``--replay`` re-runs the groups of an earlier report and says which still
reproduce. Controls run first: every benign model loaded and used trips nothing, and a
child that writes, deletes, starts a process (each way), opens a socket, imports, compiles,
crashes or hangs is seen.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# -- the tripwire ----------------------------------------------------------------------------

WRITE_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.truncate",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.link",
        "os.symlink",
        "os.utime",
        "os.chflags",
        "os.lchflags",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.chown",
        "shutil.make_archive",
        "shutil.unpack_archive",
    }
)
PROCESS_EVENTS = frozenset(
    {
        "os.system",
        "subprocess.Popen",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "pty.spawn",
    }
)
PROCESS_PREFIXES = ("os.exec", "os.spawn")
NETWORK_EVENTS = frozenset(
    {"urllib.Request", "webbrowser.open", "http.client.connect", "http.client.send"}
)
NETWORK_PREFIXES = (
    "socket.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
)
ENV_EVENTS = frozenset({"os.putenv", "os.unsetenv"})
# Standard-library code generators: compile and run source they write themselves
# (namedtuple, dataclass), or only parse (ast.parse makes no code object).
CODE_GENERATORS = tuple(
    os.path.join(os.path.dirname(os.__file__), name)
    for name in ("collections/__init__.py:", "dataclasses.py:", "ast.py:")
)
TYPING = os.path.join(os.path.dirname(os.__file__), "typing.py:")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Top-level packages a use may import (beyond the standard library).
TRUSTED_PACKAGES = frozenset(
    {"numpy", "scipy", "sklearn", "torch", "joblib", "threadpoolctl", "amber", "tests"}
)

_STATE: dict[str, Any] = {
    "armed": False,
    "busy": False,
    "phase": "",
    "events": [],
    "allowed_dirs": (),
    "libs": frozenset(),
}


class Refused(RuntimeError):
    """Raised in place of an action the tripwire stops."""


class OpTimeout(BaseException):
    """A use step ran past its time (raised by SIGALRM)."""


def _short(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _set_phase(name: str) -> None:
    """The step now running, also written where the parent finds it if the child dies (a
    descriptor opened before arming: writing to it raises no audit event)."""
    _STATE["phase"] = name
    fd = _STATE.get("phase_fd")
    if fd is not None:
        os.pwrite(fd, name.encode("utf-8", "replace")[:500].ljust(512), 0)


def _record(category: str, event: str, detail: str) -> None:
    _STATE["events"].append(
        {"phase": _STATE["phase"], "category": category, "event": event, "detail": detail}
    )


def _allowed_path(path: Any) -> bool:
    if isinstance(path, int):
        return False
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    if real == os.devnull:
        return True
    return any(real == d or real.startswith(d + os.sep) for d in _STATE["allowed_dirs"])


def _joblib_scratch(path: Any) -> bool:
    """joblib's memmapping folders: recorded but let through, so that what joblib does
    next (start worker processes) is seen too."""
    try:
        return "joblib_memmapping_folder_" in os.fsdecode(path)
    except Exception:
        return False


def _writes(args: tuple[Any, ...]) -> bool:
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _caller() -> str:
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _is_name(source: Any) -> bool:
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    return isinstance(text, str) and all(p.isidentifier() for p in text.strip().split("."))


def _library_file(filename: Any) -> bool:
    return isinstance(filename, str) and os.path.isfile(filename)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _STATE["armed"] or _STATE["busy"]:
        return
    _STATE["busy"] = True
    try:
        _judge(event, args)
    finally:
        _STATE["busy"] = False


def _judge(event: str, args: tuple[Any, ...]) -> None:
    first = args[0] if args else None
    if event == "open":
        if _writes(args) and not _allowed_path(first):
            _record("file-write", event, f"{_short(first)} mode={args[1]!r} flags={args[2]!r}")
            if not _joblib_scratch(first):
                raise Refused(f"tripwire: open {first!r} for writing refused")
        return
    if event in WRITE_EVENTS:
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        if paths and all(_allowed_path(p) for p in paths):
            return
        _record("file-write", event, _short(args))
        if not (paths and all(_joblib_scratch(p) for p in paths)):
            raise Refused(f"tripwire: {event} refused")
    if event in PROCESS_EVENTS or event.startswith(PROCESS_PREFIXES):
        _record("process", event, _short(args))
        raise Refused(f"tripwire: {event} refused")
    if event in NETWORK_EVENTS or event.startswith(NETWORK_PREFIXES):
        _record("network", event, _short(args))
        raise Refused(f"tripwire: {event} refused")
    if event in ENV_EVENTS:  # recorded, not refused: joblib sets variables before a launch
        _record("environment", event, _short(args))
        return
    if event == "compile":
        filename = args[1] if len(args) > 1 else None
        caller = _caller()
        if _library_file(filename) or caller.startswith(CODE_GENERATORS):
            return
        if caller.startswith(TYPING) and _is_name(first):
            return  # typing.ForwardRef("str"): a name lookup, not code
        _record("code", event, f"{_short(first, 300)} filename={filename!r} from {caller}")
        return
    if event == "exec":
        filename = getattr(first, "co_filename", None)
        caller = _caller()
        if _library_file(filename) or caller.startswith(CODE_GENERATORS):
            return
        if caller.startswith(TYPING) and all(c is None for c in first.co_consts):
            return
        _record("code", event, f"code from {filename!r} run by {caller}")
        return
    if event in ("pickle.find_class", "cpython.run_command", "cpython.run_file"):
        _record("code", event, _short(args))
        return
    if event == "ctypes.dlopen":
        name = os.fsdecode(first) if isinstance(first, (str, bytes)) else first
        if name is not None and not any(name in lib for lib in _STATE["libs"]):
            _record("native-library", event, _short(first))
        return


def _process_stand_in(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        _record("process", name, _short(args[:2]))
        raise Refused(f"tripwire: {name} refused")

    return refuse


def _patch_processes() -> None:
    """Record-and-refuse stand-ins for the ways to start a process that raise no audit
    event of their own (joblib/loky calls _posixsubprocess.fork_exec directly)."""
    import _posixsubprocess

    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            setattr(os, name, _process_stand_in(f"os.{name}"))
    _posixsubprocess.fork_exec = _process_stand_in("_posixsubprocess.fork_exec")


def _loaded_libraries() -> frozenset[str]:
    try:
        with open("/proc/self/maps") as f:
            return frozenset(line.split()[-1] for line in f if "/" in line)
    except OSError:
        return frozenset()


def _snapshot(directory: str) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.blake2b(f.read(), digest_size=8).hexdigest()
            else:
                out[rel] = "dir" if os.path.isdir(path) else "other"
    return out


def _untrusted_modules(names: set[str]) -> list[str]:
    stdlib = sys.stdlib_module_names
    return sorted(
        n
        for n in names
        if n.split(".")[0] not in TRUSTED_PACKAGES and n.split(".")[0] not in stdlib
    )


# -- using a loaded object ---------------------------------------------------------------------

SK_OPS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "inverse_transform",
    "score_samples",
    "score",
)


def _inputs(obj: Any, given: Any) -> tuple[Any, Any]:
    import numpy as np

    if given is not None:
        return given
    width = getattr(obj, "n_features_in_", 3)
    width = width if type(width) is int and 0 < width <= 64 else 3
    X = np.random.RandomState(0).rand(6, width) + 0.1
    return X, np.array([0, 1] * 3)


def _torch_inputs(module: Any, given: Any) -> list[Any]:
    import torch

    if given is not None:
        return [given]
    out = []
    for attr in ("in_features", "input_size", "d_model", "embed_dim", "normalized_shape"):
        value = getattr(module, attr, None)
        if type(value) is tuple and value and type(value[0]) is int:
            value = value[0]
        if type(value) is int and 0 < value <= 256:
            out.append(torch.rand(2, value))
            out.append(torch.rand(2, 3, value))
    if getattr(module, "num_embeddings", None):
        out.append(torch.tensor([[0, 1]]))
    return [*out, torch.rand(2, 3)]


def _ops(obj: Any, given: tuple[Any, Any] | None, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, thunk) for every use of ``obj`` a user could make (looking at ``obj`` runs
    its code too: a failure there leaves only ``repr``)."""
    _set_phase(prefix + "inspect")
    try:
        return _all_ops(obj, given, prefix)
    except Exception:
        return [(prefix + "repr", lambda: repr(obj))]


def _all_ops(obj: Any, given: tuple[Any, Any] | None, prefix: str) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = [(prefix + "repr", lambda: repr(obj))]
    try:
        import torch

        is_module = isinstance(obj, torch.nn.Module)
    except Exception:
        is_module = False
    if is_module:
        torch_given = given[0] if given is not None else None
        ops.append((prefix + "eval", lambda: obj.eval()))
        for i, x in enumerate(_torch_inputs(obj, torch_given)[:3]):
            ops.append((prefix + f"__call__#{i}", lambda x=x: obj(x)))
        ops.append((prefix + "state_dict", lambda: obj.state_dict()))
        ops.append((prefix + "parameters", lambda: list(obj.parameters())))
        return ops
    if isinstance(obj, dict):
        for key in list(obj)[:4]:
            ops += _ops(obj[key], None, f"{prefix}[{_short(key, 40)}].")
        return ops
    if isinstance(obj, type):
        return ops
    X, y = _inputs(obj, given)
    looks_sklearn = callable(getattr(type(obj), "get_params", None))
    if looks_sklearn:
        transformed: list[Any] = []

        def step(name: str) -> Callable[[], Any]:
            def run() -> Any:
                method = getattr(obj, name)
                if name == "score":
                    return method(X, y)
                if name == "inverse_transform":
                    return method(transformed[0] if transformed else X)
                out = method(X)
                if name == "transform":
                    transformed.append(out)
                return out

            return run

        for name in SK_OPS:
            ops.append((prefix + name, step(name)))
        ops.append((prefix + "get_params", lambda: obj.get_params(deep=True)))
        ops.append((prefix + "_repr_html_", lambda: obj._repr_html_()))
    elif callable(obj):
        ops.append((prefix + "__call__", lambda: obj(X)))
    return ops


def _run_op(name: str, thunk: Callable[[], Any], seconds: float) -> str:
    _set_phase(name)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        thunk()
        return "ok"
    except OpTimeout:
        _record("hang", name, f"still running after {seconds} s")
        return "timeout"
    except Exception as exc:
        return f"{type(exc).__name__}: {_short(str(exc), 160)}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _alarm(signum: int, frame: Any) -> None:
    raise OpTimeout()


# -- one case in a child -------------------------------------------------------------------------


def run_case(case: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """In the child: load and use ``case`` under the tripwire; what happened."""
    import shutil
    import tempfile

    import amber
    from amber.errors import AmberError
    from amber.store import MemoryBackend, Store

    sandbox = tempfile.mkdtemp(prefix="amber-gadget-")
    os.chdir(sandbox)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    Path(sandbox, "case.amber").write_bytes(case["data"])
    Path(sandbox, "benign.amber").write_bytes(case["benign"])
    report: dict[str, Any] = {"load": None, "ops": {}, "store": None}
    store = None
    if case.get("store", True):
        try:
            store = Store(backend=MemoryBackend())
            store.import_file(Path(sandbox, "benign.amber"), name="m")
            store.import_file(Path(sandbox, "case.amber"), name="m")
        except AmberError as exc:
            report["store"] = f"not imported: {type(exc).__name__}"
            store = None
    scratch = getattr(getattr(store, "_scratch", None), "name", None)
    allowed = [os.path.realpath(scratch)] if scratch else []
    _STATE["allowed_dirs"] = tuple(allowed)
    _STATE["libs"] = _loaded_libraries()
    before_files = _snapshot(sandbox)
    before_modules = set(sys.modules)
    _patch_processes()
    signal.signal(signal.SIGALRM, _alarm)
    seconds = ctx["op_seconds"]
    control = case.get("control")
    _STATE["events"] = []
    _STATE["armed"] = True
    try:
        if control is not None:
            report["load"] = "control"
            report["ops"]["control"] = _run_op("control", CONTROLS[control], seconds)
        else:
            _set_phase("load")
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                obj = amber.load("case.amber")
                report["load"] = "ok"
            except OpTimeout:
                _record("hang", "load", f"still running after {seconds} s")
                report["load"] = "timeout"
            except AmberError as exc:
                report["load"] = f"refused: {type(exc).__name__}: {_short(str(exc), 300)}"
            except Exception as exc:
                report["load"] = f"error: {type(exc).__name__}: {_short(str(exc), 300)}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if report["load"] == "ok":
                given = ctx["inputs"].get(case.get("base"))
                for name, thunk in _ops(obj, given):
                    report["ops"][name] = _run_op(name, thunk, seconds)
                if store is not None:
                    report["store"] = _run_op(
                        "Store.diff", lambda: str(store.diff("m@1", "m@2")), seconds
                    )
    finally:
        _STATE["armed"] = False
    report["events"] = _STATE["events"]
    report["new_modules"] = _untrusted_modules(set(sys.modules) - before_modules)
    after_files = _snapshot(sandbox)
    report["sandbox"] = sorted(
        f"{'added' if k not in before_files else 'removed' if k not in after_files else 'changed'}"
        f" {k}"
        for k in before_files.keys() | after_files.keys()
        if before_files.get(k) != after_files.get(k)
    )
    os.chdir("/")
    shutil.rmtree(sandbox, ignore_errors=True)
    return report


# Harness controls: each must be seen (proves the tripwire watches what it claims to).
def _control_import() -> Any:
    for name in ("iniconfig", "pluggy", "packaging", "_pytest", "pygments", "attr"):
        if name not in sys.modules:
            try:
                return __import__(name)
            except ImportError:
                continue
    raise RuntimeError("no untrusted package left to import")


def _control_loky() -> Any:
    from joblib.externals.loky.backend.fork_exec import fork_exec

    return fork_exec([sys.executable, "-c", "pass"], keep_fds=[])


def _control_multiprocessing(method: str) -> Callable[[], Any]:
    def start() -> Any:
        import multiprocessing

        process = multiprocessing.get_context(method).Process(target=abs, args=(1,))
        process.start()
        process.join()

    return start


def _control_socket() -> Any:
    import socket

    socket.socket().close()


def _control_subprocess() -> Any:
    import subprocess

    subprocess.run(["true"], check=False)


def _control_crash() -> Any:
    import faulthandler

    faulthandler._sigsegv()


CONTROLS: dict[str, Callable[[], Any]] = {
    "file-write": lambda: Path("pwned.txt").write_text("x"),
    "file-unlink": lambda: os.unlink("benign.amber"),
    "file-mkdir": lambda: os.mkdir("made"),
    "process-loky": _control_loky,
    "process-fork": _control_multiprocessing("fork"),
    "process-spawn": _control_multiprocessing("spawn"),
    "process-subprocess": _control_subprocess,
    "process-posix-spawn": lambda: os.posix_spawn("/bin/true", ["true"], {}),
    "network": _control_socket,
    "import": _control_import,
    "code": lambda: exec("1 + 1"),
    "crash": _control_crash,
    "hang": lambda: time.sleep(10_000),
}
# control -> the category its report must show
CONTROL_EXPECTS = {
    "file-write": "file-write",
    "file-unlink": "file-write",
    "file-mkdir": "file-write",
    "process-loky": "process",
    "process-fork": "process",
    "process-spawn": "process",
    "process-subprocess": "process",
    "process-posix-spawn": "process",
    "network": "network",
    "import": "import",
    "code": "code",
    "crash": "crash",
    "hang": "hang",
}


# -- forking -----------------------------------------------------------------------------------


def run_children(
    jobs: list[tuple[dict[str, Any], float]], ctx: dict[str, Any], parallel: int, tmp: str
) -> list[dict[str, Any]]:
    """Run each (case, timeout) in a forked child, ``parallel`` at a time; each result
    gains "exit": how the child ended."""
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    running: dict[int, tuple[int, float, float]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            index = pending.pop(0)
            case, timeout = jobs[index]
            out_path = os.path.join(tmp, f"result-{index}.json")
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.setpgid(0, 0)
                    _STATE["phase_fd"] = os.open(out_path + ".phase", os.O_WRONLY | os.O_CREAT)
                    result = run_case(case, ctx)
                except BaseException:
                    import traceback

                    result, code = {"probe_error": traceback.format_exc()}, 3
                try:
                    with open(out_path + ".tmp", "w") as f:
                        json.dump(result, f)
                    os.replace(out_path + ".tmp", out_path)
                finally:
                    os._exit(code)
            running[pid] = (index, time.monotonic(), timeout)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (index, started, timeout) in list(running.items()):
                if now > started + timeout:
                    _kill(child)
                    del running[child]
                    results[index] = {"exit": {"timed_out": True, "seconds": timeout}}
                    phase_path = os.path.join(tmp, f"result-{index}.json.phase")
                    if os.path.exists(phase_path):
                        with open(phase_path, "rb") as f:
                            results[index]["last_phase"] = (
                                f.read().decode("utf-8", "replace").strip()
                            )
                        os.unlink(phase_path)
            time.sleep(0.003)
            continue
        if pid not in running:
            continue
        index, started, _ = running.pop(pid)
        out_path = os.path.join(tmp, f"result-{index}.json")
        result: dict[str, Any] = {}
        if os.path.exists(out_path):
            with open(out_path) as f:
                result = json.load(f)
            os.unlink(out_path)
        if os.path.exists(out_path + ".phase"):
            with open(out_path + ".phase", "rb") as f:
                result["last_phase"] = f.read().decode("utf-8", "replace").strip()
            os.unlink(out_path + ".phase")
        result["exit"] = {
            "timed_out": False,
            "seconds": round(time.monotonic() - started, 3),
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        }
        results[index] = result
    return [r or {} for r in results]


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# -- judging ---------------------------------------------------------------------------------


def problems(result: dict[str, Any]) -> list[dict[str, str]]:
    """What a child's result shows a file made happen (empty: nothing)."""
    out = [dict(e) for e in result.get("events", [])]
    for name in result.get("new_modules", []):
        out.append({"phase": "?", "category": "import", "event": "import", "detail": name})
    for change in result.get("sandbox", []):
        out.append({"phase": "?", "category": "file-write", "event": "sandbox", "detail": change})
    exit_ = result.get("exit", {})
    last = result.get("last_phase") or "?"
    if exit_.get("timed_out"):
        out.append({"phase": last, "category": "hang", "event": "timeout", "detail": str(exit_)})
    elif exit_.get("signal"):
        out.append(
            {"phase": last, "category": "crash", "event": "signal", "detail": str(exit_["signal"])}
        )
    elif exit_.get("code") not in (0, 3) or ("load" not in result and "probe_error" not in result):
        # the child left without its report: os._exit/abort from compiled code (libgomp
        # exits when it cannot create threads)
        out.append(
            {"phase": last, "category": "crash", "event": "exit", "detail": f"exit code {exit_}"}
        )
    if "probe_error" in result:
        out.append(
            {"phase": "?", "category": "harness", "event": "error", "detail": result["probe_error"]}
        )
    return out


def signature(case: dict[str, Any], found: list[dict[str, str]]) -> str:
    """Groups findings: the first problem's category and event, where it happened, and
    (mutate) the attribute the first gadget was planted at."""
    first = found[0]
    event = first["event"]
    if event in ("import", "sandbox"):
        event = first["detail"].split(".")[0].split(" ")[0]
    where = case.get("base", "synth")
    if case.get("corpus"):
        where = f"corpus:{case['corpus']}"
    planted = case.get("planted") or []
    if planted:
        where += ":" + str(planted[0]["path"][-1])
    phase = first["phase"].split("#")[0]
    return f"{first['category']}|{event}|{phase}|{where}"


# -- the driver ----------------------------------------------------------------------------


class Driver:
    def __init__(self, out_dir: Path, parallel: int, op_seconds: float, case_seconds: float):
        import tempfile

        import numpy as np

        from tests.graph import gadgets

        self.out_dir = out_dir
        self.parallel = parallel
        self.case_seconds = case_seconds
        self.tmp = tempfile.mkdtemp(prefix="amber-gadget-driver-")
        started = time.monotonic()
        self.bases = gadgets.base_models(Path(self.tmp))
        self.universe, self.universe_data = gadgets.build_universe(Path(self.tmp), self.bases)
        inputs: dict[str, Any] = {}
        for name, base in self.bases.items():
            if name.startswith("torch"):
                inputs[name] = (base.X, None)
            else:
                inputs[name] = (np.asarray(base.X), np.asarray(base.y))
        self.ctx = {"op_seconds": op_seconds, "inputs": inputs}
        self._warm()
        self.setup_seconds = round(time.monotonic() - started, 1)

    def _warm(self) -> None:
        """Use every benign model once here, so what valid use imports is in the baseline."""
        import warnings

        import amber
        from amber.store import MemoryBackend, Store

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in self.bases:
                path = Path(self.tmp, f"{name}.amber")
                try:
                    obj = amber.load(path)
                except Exception:
                    continue  # the allowlist may refuse a benign model: the controls say so
                for _, thunk in _ops(obj, self.ctx["inputs"][name]):
                    try:
                        thunk()
                    except Exception:
                        pass
            store = Store(backend=MemoryBackend())
            base = Path(self.tmp, "logistic.amber")
            store.import_file(base, name="m")
            store.import_file(base, name="m")
            try:
                str(store.diff("m@1", "m@2"))
            except Exception:
                pass
            store.close()
        import gc

        gc.collect()

    # -- cases

    def file_of(self, case: dict[str, Any]) -> dict[str, Any]:
        from tests.graph import gadgets

        if case["mode"] == "synth":
            data = gadgets.with_root(self.universe_data, case["root"])
            benign = self.bases["logistic"].data
        else:
            base = self.bases[case["base"]]
            data = gadgets.with_root(base.data, case["root"])
            benign = base.data
        return {**case, "data": data, "benign": benign}

    def run(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        jobs = [(self.file_of(c), self.case_seconds) for c in cases]
        return run_children(jobs, self.ctx, self.parallel, self.tmp)

    def controls(self) -> dict[str, Any]:
        """Negative controls (every benign model: no finding) and positive ones (every
        tripwire category is seen)."""
        out: dict[str, Any] = {"negative": {}, "positive": {}, "ok": True}
        benign = [
            {"mode": "mutate", "base": name, "root": base.root, "planted": []}
            for name, base in self.bases.items()
        ]
        for case, result in zip(benign, self.run(benign), strict=True):
            found = problems(result)
            out["negative"][case["base"]] = {"load": result.get("load"), "problems": found}
            if found:
                out["ok"] = False
        positive = [
            {
                "mode": "mutate",
                "base": "logistic",
                "root": self.bases["logistic"].root,
                "control": name,
            }
            for name in CONTROLS
        ]
        jobs = [
            (self.file_of(c), 6.0 if c["control"] == "hang" else self.case_seconds)
            for c in positive
        ]
        saved = self.ctx["op_seconds"]
        self.ctx["op_seconds"] = 1e6  # the hang control must hang the child, not the step
        try:
            results = run_children(jobs, self.ctx, self.parallel, self.tmp)
        finally:
            self.ctx["op_seconds"] = saved
        for case, result in zip(positive, results, strict=True):
            categories = sorted({p["category"] for p in problems(result)})
            seen = CONTROL_EXPECTS[case["control"]] in categories
            out["positive"][case["control"]] = {"seen": seen, "categories": categories}
            out["ok"] = out["ok"] and seen
        return out

    # -- minimizing

    def reproduces(self, case: dict[str, Any], category: str) -> bool:
        result = self.run([case])[0]
        return any(p["category"] == category for p in problems(result))

    def minimize(self, case: dict[str, Any], category: str, budget: int) -> dict[str, Any]:
        """Revert planted gadgets, then null parts of what remains, while the finding stays."""
        from tests.graph import gadgets

        tries = [0]

        def attempt(candidate: dict[str, Any]) -> bool:
            if tries[0] >= budget:
                return False
            tries[0] += 1
            return self.reproduces(candidate, category)

        if case["mode"] == "mutate":
            base_root = self.bases[case["base"]].root
            for plant in list(case["planted"]):
                rest = [p for p in case["planted"] if p is not plant]
                root = _replant(base_root, rest)
                if root is not None and attempt({**case, "root": root, "planted": rest}):
                    case = {**case, "root": root, "planted": rest}
            for i, plant in enumerate(case["planted"]):
                gadget = plant["gadget"]
                for path in _reducible(gadget):
                    try:
                        smaller = gadgets.set_at(gadget, path, None)
                    except (KeyError, IndexError, TypeError):
                        continue  # inside a part already nulled
                    planted = [
                        *case["planted"][:i],
                        {**plant, "gadget": smaller},
                        *case["planted"][i + 1 :],
                    ]
                    root = _replant(base_root, planted)
                    if root is not None and attempt({**case, "root": root, "planted": planted}):
                        case, gadget = {**case, "root": root, "planted": planted}, smaller
                        plant = planted[i]
        else:
            root = case["root"]
            for path in _reducible(root):
                try:
                    smaller = gadgets.set_at(root, path, None)
                except (KeyError, IndexError, TypeError):
                    continue  # inside a part already nulled
                if attempt({**case, "root": smaller}):
                    root = smaller
            case = {**case, "root": root}
        return {**case, "minimize_tries": tries[0]}


def _replant(base_root: Any, planted: list[dict[str, Any]]) -> Any:
    from tests.graph import gadgets

    root = base_root
    for plant in planted:
        path = tuple(plant["path"])
        try:
            if len(path) >= 2 and path[-2] == "dictitems":
                node = copy.deepcopy(gadgets.get_at(root, path[:-2]))
                node["dictitems"].append(plant["gadget"])
                root = gadgets.set_at(root, path[:-2], node)
            else:
                root = gadgets.set_at(root, path, plant["gadget"])
        except (KeyError, IndexError, TypeError):
            return None
    return gadgets.repair(root, gadgets.declarations(base_root))


def _reducible(node: Any) -> list[tuple]:
    """Paths of values worth nulling, outermost first: object state entries, dict values,
    list items, partial arguments."""
    from tests.graph import gadgets

    out = []
    for path, value in gadgets.walk(node):
        if not path or not isinstance(value, (dict, str, int, float)) or isinstance(value, bool):
            continue
        parent_key = path[-2] if len(path) >= 2 else None
        if parent_key in ("v", "args", "dictitems") or path[-1] == "state":
            out.append(path)
    return out


def corpus(path: Path, bases: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases of a corpus file: gadgets found before, replanted in today's models."""
    from tests.graph import gadgets

    out = []
    for entry in json.loads(path.read_text()):
        case = {"corpus": entry["name"], "mode": entry["mode"]}
        if entry["mode"] == "synth":
            case["root"] = entry["root"]
        else:
            base = bases[entry["base"]].root
            root = _replant(base, entry["planted"])
            if root is None:
                raise ValueError(f"corpus entry {entry['name']} no longer fits {entry['base']}")
            planted = [
                {**p, "at": gadgets.describe_path(root, tuple(p["path"]))} for p in entry["planted"]
            ]
            case.update(base=entry["base"], root=root, planted=planted)
        out.append(case)
    return out


def generate(kind: str, count: int, universe: Any, bases: Any, seed: int | None) -> list[Any]:
    """``count`` cases drawn with hypothesis (derandomized unless ``seed``)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.graph import gadgets

    if count <= 0:
        return []
    roots = {name: {"root": b.root, "tensors": b.tensors} for name, b in bases.items()}
    strategy = (
        gadgets.synth_case(universe) if kind == "synth" else gadgets.mutate_case(universe, roots)
    )
    drawn: list[Any] = []
    seen: set[str] = set()

    @settings(
        max_examples=count,
        derandomize=seed is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate,),
    )
    @given(strategy)
    def collect(case: Any) -> None:
        key = json.dumps(case, sort_keys=True)
        if key not in seen:
            seen.add(key)
            drawn.append(case)

    if seed is not None:
        collect = hypothesis_seed(seed)(collect)
    collect()
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--synth", type=int, default=50)
    parser.add_argument("--mutate", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=0, help="keep drawing batches this long")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--minimize", type=int, default=0, help="reduce the first K groups")
    parser.add_argument("--parallel", type=int, default=max(2, min(8, os.cpu_count() or 2)))
    parser.add_argument("--op-seconds", type=float, default=20.0)
    parser.add_argument("--case-seconds", type=float, default=90.0)
    parser.add_argument(
        "--replay", default=None, help="re-run the findings of an earlier report.json instead"
    )
    parser.add_argument(
        "--corpus", default=None, help="gadgets found before (gadget_corpus.json): run them too"
    )
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    driver = Driver(out_dir, args.parallel, args.op_seconds, args.case_seconds)
    sys.addaudithook(_hook)  # armed only in children, around the load and the uses
    if args.replay:
        replay(driver, Path(args.replay), out_dir)
    controls = driver.controls()
    counts = {"corpus": 0, "synth": 0, "mutate": 0, "refused": 0, "loaded": 0, "load_errors": 0}
    findings: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    outcomes: dict[str, int] = {}
    samples: dict[str, str] = {}
    log: list[dict[str, Any]] = []
    batch = 0
    while True:
        seed = None if args.seed is None else args.seed + batch
        cases = corpus(Path(args.corpus), driver.bases) if args.corpus and batch == 0 else []
        cases += generate("synth", args.synth, driver.universe, driver.bases, seed)
        cases += generate("mutate", args.mutate, driver.universe, driver.bases, seed)
        for case, result in zip(cases, driver.run(cases), strict=True):
            counts["corpus" if case.get("corpus") else case["mode"]] += 1
            load = result.get("load") or ""
            counts["refused"] += load.startswith("refused")
            counts["loaded"] += load == "ok"
            outcome = re.sub(r"[0-9]+", "N", load.split(" at ")[0].split("<")[0])[:90]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            samples.setdefault(outcome, load)
            if load.startswith("error"):
                counts["load_errors"] += 1
                notes.append({"case": case, "load": load})
            found = problems(result)
            log.append(
                {
                    "mode": case["mode"],
                    "base": case.get("base"),
                    "at": [p["at"] for p in case.get("planted", [])],
                    "load": load[:80],
                    "problems": sorted({p["category"] for p in found}),
                }
            )
            if found:
                findings.append(
                    {
                        "signature": signature(case, found),
                        "case": case,
                        "problems": found,
                        "load": load,
                        "ops": result.get("ops"),
                        "store": result.get("store"),
                        "batch": batch,
                    }
                )
        batch += 1
        if args.seed is None or time.monotonic() - started > args.seconds:
            break
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        groups.setdefault(finding["signature"], []).append(finding)
    report = {
        "controls": controls,
        "counts": counts,
        "seconds": round(time.monotonic() - started, 1),
        "setup_seconds": driver.setup_seconds,
        "findings": findings,
        "groups": {s: len(m) for s, m in groups.items()},
        "minimized": {},
        "notes": notes,
        "outcomes": dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        "outcome_samples": samples,
    }
    write_report(out_dir, report)
    (out_dir / "cases.json").write_text(json.dumps(log, indent=0))
    for signature_, members in list(groups.items())[: args.minimize]:
        smallest = min(members, key=lambda f: len(json.dumps(f["case"]["root"])))
        category = smallest["problems"][0]["category"]
        case = driver.minimize(copy.deepcopy(smallest["case"]), category, budget=40)
        result = driver.run([case])[0]
        report["minimized"][signature_] = {
            "case": case,
            "problems": problems(result),
            "ops": result.get("ops"),
            "load": result.get("load"),
        }
        write_report(out_dir, report)
    print(render(report, limit=25))
    sys.stdout.flush()
    os._exit(0 if controls["ok"] and not findings else 1)


def replay(driver: Driver, earlier: Path, out_dir: Path) -> None:
    """Re-run each group of an earlier report (its reduced case, else its first) here:
    which findings still reproduce."""
    from tests.graph import gadgets

    report = json.loads(earlier.read_text())
    cases = {}
    for finding in report["findings"]:
        signature_ = finding["signature"]
        chosen = report.get("minimized", {}).get(signature_) or finding
        cases.setdefault(signature_, chosen["case"])
    results = driver.run(list(cases.values()))
    out, lines = {}, []
    for (signature_, case), result in zip(cases.items(), results, strict=True):
        found = problems(result)
        out[signature_] = {"reproduces": bool(found), "load": result.get("load"), "problems": found}
        lines.append(f"{'STILL' if found else 'gone '} {signature_}")
        lines.append(f"      load: {str(result.get('load'))[:300]}")
        for plant in case.get("planted", []):
            lines.append(f"      planted at {plant['at']}: {gadgets.short(plant['gadget'], 400)}")
        if case["mode"] == "synth":
            lines.append(f"      graph: {gadgets.short(case['root'], 400)}")
        lines += [
            f"      -> [{p['phase']}] {p['category']}: {p['detail'][:200]}" for p in found[:3]
        ]
    (out_dir / "replay.json").write_text(json.dumps(out, indent=1))
    (out_dir / "replay.txt").write_text("\n".join(lines))
    print("\n".join(lines))
    sys.stdout.flush()
    os._exit(1 if any(v["reproduces"] for v in out.values()) else 0)


def root_causes(report: dict[str, Any]) -> dict[str, set[str]]:
    """Reduced groups merged by what remains of them: the category, where each remaining
    gadget sits, and (synth) the classes and functions of the reduced graph."""
    causes: dict[str, set[str]] = {}
    for signature_, reduced in report.get("minimized", {}).items():
        case, found = reduced["case"], reduced["problems"]
        if not found:
            continue
        if case["mode"] == "mutate":
            where = "+".join(sorted(f"{case['base']}.{p['path'][-1]}" for p in case["planted"]))
        else:
            names = sorted(
                {
                    str(v.get("type") or v.get("name")).split(":")[-1]
                    for _, v in _walk_nodes(case["root"])
                    if v.get("k") in ("object", "func")
                }
            )
            where = "synth:" + "+".join(names)
        causes.setdefault(f"{found[0]['category']} <- {where}", set()).add(signature_)
    return causes


def _walk_nodes(root: Any) -> list[tuple[tuple, dict[str, Any]]]:
    from tests.graph import gadgets

    return [(p, v) for p, v in gadgets.walk(root) if isinstance(v, dict) and "k" in v]


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "report.txt").write_text(render(report))


def render(report: dict[str, Any], limit: int | None = None) -> str:
    from tests.graph import gadgets

    lines = [
        f"gadget fuzz: {report['counts']} in {report['seconds']} s "
        f"(setup {report['setup_seconds']} s)"
    ]
    controls = report["controls"]
    bad_negative = {k: v for k, v in controls["negative"].items() if v["problems"]}
    missed = [k for k, v in controls["positive"].items() if not v["seen"]]
    lines.append(
        f"controls: {'ok' if controls['ok'] else 'FAILED'}"
        + (f"; benign models with findings: {sorted(bad_negative)}" if bad_negative else "")
        + (f"; tripwire missed: {missed}" if missed else "")
    )
    refused_benign = [
        k for k, v in controls["negative"].items() if not str(v["load"]).startswith("ok")
    ]
    if refused_benign:
        lines.append(f"note: benign models not loaded: {refused_benign}")
    lines.append(f"{len(report['findings'])} findings in {len(report['groups'])} groups")
    causes = root_causes(report)
    if causes:
        lines.append(f"{len(causes)} distinct causes (groups merged by their reduced gadget):")
        lines += [f"  - {cause}: {', '.join(sorted(groups))}" for cause, groups in causes.items()]
    for shown, (signature_, count) in enumerate(report["groups"].items()):
        if limit is not None and shown >= limit:
            lines.append(f"... {len(report['groups']) - shown} more groups in report.txt")
            break
        example = report["minimized"].get(signature_) or next(
            f for f in report["findings"] if f["signature"] == signature_
        )
        case = example["case"]
        lines.append("")
        lines.append(f"== {signature_}  ({count} cases)")
        if case["mode"] == "mutate":
            lines.append(f"   base model: {case['base']}")
            for plant in case["planted"]:
                lines.append(f"   planted at {plant['at']}: {gadgets.short(plant['gadget'], 700)}")
        else:
            lines.append(f"   graph: {gadgets.short(case['root'], 1200)}")
        for problem in example["problems"][:4]:
            lines.append(
                f"   -> [{problem['phase']}] {problem['category']}: {problem['event']} "
                f"{problem['detail'][:300]}"
            )
        failing_ops = {k: v for k, v in (example.get("ops") or {}).items() if v != "ok"}
        if failing_ops:
            lines.append(f"   (use steps that raised: {gadgets.short(failing_ops, 300)})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
