"""Running the app with uvicorn, in one process or several workers.

Workers are separate processes started by uvicorn; each opens the store and loads the
models itself. Loads are memory maps of the store's verified files, so the weights'
pages are shared through the page cache: one copy per machine, whatever the worker count.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from amber.errors import InvalidArgumentError

CONFIG_ENV = "AMBER_SERVE_CONFIG"


def _logging(level: str) -> None:
    log = logging.getLogger("amber.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


def from_environment() -> Any:
    """The app factory each worker calls (settings from ``$AMBER_SERVE_CONFIG``)."""
    from amber.serve.asgi import app

    config = json.loads(os.environ[CONFIG_ENV])
    _logging(config.pop("log_level", "info"))
    batching = {k: tuple(v) for k, v in (config.pop("batching", None) or {}).items()}
    return app(config.pop("models"), batching=batching, **config)


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
    config = {
        "models": [models] if isinstance(models, str) else list(models),
        "store": None if store is None else os.fspath(store),
        "log_level": log_level,
        **options,
    }
    os.environ[CONFIG_ENV] = json.dumps(config)
    uvicorn.run("amber.serve.server:from_environment", factory=True, workers=workers, **common)
