"""Several worker processes on one listening socket, forked from a parent that has
imported the models' frameworks but loaded nothing.

Why fork, not uvicorn's spawned workers: importing torch alone leaves ~140 MiB of private
memory in every process that does it (relocated library data). Forked after that import,
the workers share those pages with the parent copy-on-write; each then loads the models
itself, and the loads are memory maps of the store's verified files, shared through the
page cache. So weights and framework cost one copy per machine. The parent hashes and
loads nothing before forking (no thread pool exists yet), and restarts a worker that dies.
Needs ``os.fork`` (Linux, macOS).

An ``s3://`` store's client (obstore) cannot cross a fork: its runtime's threads are not
copied into the child. The parent of workers serving such a store therefore never opens it:
``preload_isolated`` checks the store and loads each version once in a spawned process
(which also fills the node's verified object cache, so the workers do not each download the
objects), and the parent only imports the modules that load needed. Each worker opens its
own client after the fork.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import socket
import sys
import time
from typing import Any

from amber.errors import AmberError, InvalidArgumentError

log = logging.getLogger("amber.serve")
# Distribution names recorded in a version's environment -> the module to import first.
FRAMEWORKS = {
    "torch": "torch",
    "scikit-learn": "sklearn",
    "sklearn": "sklearn",
    "scipy": "scipy",
    "pandas": "pandas",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}
FAST_CRASH = 10.0  # a worker dying this soon after its start, twice in a row, stops all


def preload(store_path: Any, specs: list[str]) -> list[str]:
    """Import what the served versions need before forking, so the workers share it.

    The frameworks each version was saved with are imported; a version without torch is
    also loaded once with ``verify="off"`` and dropped, which imports exactly the classes
    its graph names (after the usual trust audit) without hashing or computing anything.
    torch models are not built here: torch's thread pools must not exist before a fork.
    """
    from amber.serve.follow import ServeSpec
    from amber.store import Store

    modules = ["numpy", "amber.api", "amber.serve.asgi"]
    with Store(store_path) as store:
        for text in specs:
            spec = ServeSpec.parse(text)
            packages = (store.get(spec.store_spec).environment or {}).get("packages") or {}
            modules += [FRAMEWORKS[p] for p in packages if p in FRAMEWORKS]
            if "torch" not in packages:
                try:
                    store.load(spec.store_spec, verify="off")
                except Exception:  # the worker's own load reports it properly
                    pass
    done = []
    for name in dict.fromkeys(modules):
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:  # the worker's load will say what is missing
            pass
    return done


# Top-level packages whose modules a spawned preload may name for the parent to import.
SHAREABLE = frozenset({*FRAMEWORKS.values(), "numpy", "joblib", "threadpoolctl"})
PRELOAD_TIMEOUT = 900.0  # seconds for the spawned check (it may download a large model)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def is_remote(store_path: Any) -> bool:
    """Whether the store (a path, a URL, or None for ``$AMBER_STORE``) is a URL other than
    ``file://``: a client of its own that must be opened after forking."""
    location = store_path if store_path is not None else os.environ.get("AMBER_STORE", "")
    match = _SCHEME.match(str(location))
    return match is not None and match.group(1).lower() != "file"


def _inspect(store_path: Any, specs: list[str]) -> tuple[Any, ...]:
    """In a spawned process: resolve every spec, load each version once (filling the
    object cache), and name the modules the workers will need. Errors come back as
    (class name, message) so that the parent raises the same amber error."""
    from amber.serve.follow import ServeSpec
    from amber.store import Store

    before = set(sys.modules)
    modules: list[str] = []
    try:
        with Store(store_path) as store:
            for text in specs:
                spec = ServeSpec.parse(text)
                packages = (store.get(spec.store_spec).environment or {}).get("packages") or {}
                modules += [FRAMEWORKS[p] for p in packages if p in FRAMEWORKS]
                if "torch" not in packages:
                    try:
                        store.load(spec.store_spec, verify="off")
                    except Exception:  # the worker's own load reports it properly
                        pass
    except AmberError as exc:
        return ("error", type(exc).__name__, str(exc))
    loaded = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in SHAREABLE)
    return ("ok", modules + loaded)


def preload_isolated(store_path: Any, specs: list[str]) -> list[str]:
    """``preload`` for a remote store, whose client must not exist in the parent of forked
    workers: the store is opened in a spawned process, and only imports happen here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import amber.errors as amber_errors

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcome = pool.submit(_inspect, store_path, list(specs)).result(PRELOAD_TIMEOUT)
    if outcome[0] == "error":
        cls = getattr(amber_errors, outcome[1], None)
        if not (isinstance(cls, type) and issubclass(cls, AmberError)):
            cls = AmberError
        raise cls(outcome[2])
    done = []
    for name in dict.fromkeys(["numpy", "amber.api", "amber.serve.asgi", *outcome[1]]):
        if name.split(".")[0] not in SHAREABLE and not name.startswith("amber."):
            continue
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass
    return done


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidArgumentError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(sock: socket.socket, build: Any, uvicorn_options: dict[str, Any]) -> None:
    """The child: build the app (loads the models), serve until told to stop."""
    import uvicorn

    code = 0
    try:
        config = uvicorn.Config(build(), **uvicorn_options)
        uvicorn.Server(config).run(sockets=[sock])
    except BaseException as exc:  # anything: the parent sees the exit code
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            log.error("worker %d failed: %s: %s", os.getpid(), type(exc).__name__, exc)
            code = 1
    finally:
        os._exit(code)


def serve_forked(
    build: Any, host: str, port: int, workers: int, uvicorn_options: dict[str, Any]
) -> None:
    """Fork ``workers`` children serving ``build()`` on one socket; supervise until a
    SIGINT or SIGTERM, which is passed on to them (each finishes its requests)."""
    sock = _listen(host, port)
    children: dict[int, float] = {}
    stopping = False
    quick_deaths = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _worker(sock, build, uvicorn_options)
        children[pid] = time.monotonic()

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(workers):
            spawn()
        log.info("serving on %s:%d with %d workers", host, port, workers)
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < FAST_CRASH else 0
            if quick_deaths >= 2:
                log.error("workers keep failing at start (exit %d); stopping", code)
                stop(signal.SIGTERM, None)
                raise AmberError("workers failed to start; see the log above") from None
            log.warning("worker %d exited with %d; starting another", pid, code)
            spawn()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        sock.close()
