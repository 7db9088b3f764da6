"""Several worker processes on one listening socket, forked from a parent that has
imported the models' frameworks but loaded nothing.

Why fork, not uvicorn's spawned workers: importing torch alone leaves ~140 MiB of private
memory in every process that does it (relocated library data). Forked after that import,
the workers share those pages with the parent copy-on-write; each then loads the models
itself, and the loads are memory maps of the store's verified files, shared through the
page cache. So weights and framework cost one copy per machine. The parent hashes and
loads nothing before forking (no thread pool exists yet), and restarts a worker that dies.
Needs ``os.fork`` (Linux, macOS).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
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
