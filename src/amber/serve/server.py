"""Running the app with uvicorn, in one process or several workers.

Several workers are forked from one parent (``workers.py``); each opens the store and loads
the models itself. Loads are memory maps of the store's verified files, so the weights'
pages are shared through the page cache: one copy per machine, whatever the worker count.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from amber.errors import InvalidArgumentError


def _logging(level: str) -> None:
    log = logging.getLogger("amber.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())
    # Access lines are JSON objects, one per line, on stderr (--no-access-log turns them off).
    access = logging.getLogger("amber.serve.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
    access.setLevel(logging.INFO)


def run(
    models: str | list[str],
    *,
    store: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve ``models`` until interrupted (see ``amber.serve.asgi.app`` for ``options``)."""
    import uvicorn

    if type(workers) is not int or workers < 1:
        raise InvalidArgumentError(f"workers must be a positive integer, got {workers!r}")
    _logging(log_level)
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # amber writes its own structured access log
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        from amber.serve.asgi import app

        uvicorn.run(app(models, store=store, **options), **common)
        return
    from functools import partial

    from amber.serve.asgi import app
    from amber.serve.workers import is_remote, preload, preload_isolated, serve_forked

    specs = [models] if isinstance(models, str) else list(models)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise InvalidArgumentError(
            "several workers need the store's location (a folder or URL), not an open "
            "Store: each worker opens its own"
        )
    store_path = None if store is None else os.fspath(store)
    if is_remote(store_path):
        preload_isolated(store_path, specs)  # this process never opens the store
    else:
        preload(store_path, specs)
    build = partial(app, specs, store=store_path, **options)
    uvicorn_options = {k: v for k, v in common.items() if k not in ("host", "port")}
    serve_forked(build, host, port, workers, uvicorn_options)
