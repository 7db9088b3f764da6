"""``amber serve``: stored models over HTTP (Open Inference Protocol v2 and MLflow-style
``/invocations``), following aliases without downtime. Needs ``pip install amber[serve]``.

``app(...)`` builds the ASGI application to embed; ``run(...)`` serves it with uvicorn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "run"]


def app(*args: Any, **kwargs: Any) -> Any:
    """See ``amber.serve.asgi.app``."""
    from amber.serve.deps import require

    require()
    from amber.serve.asgi import app as build

    return build(*args, **kwargs)


def run(*args: Any, **kwargs: Any) -> None:
    """See ``amber.serve.server.run``."""
    from amber.serve.deps import require

    require()
    from amber.serve.server import run as serve

    serve(*args, **kwargs)
