"""The outer ASGI layer: the optional bearer token and one structured access-log line per
request."""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from amber.serve.http import error_body

access = logging.getLogger("amber.serve.access")
# Probes answer without the token (orchestrators call them without credentials); they
# reveal nothing about the models.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})


class Guard:
    """Wraps the app: refuses requests without the token (401), logs every request."""

    def __init__(self, app: Any, *, token: str | None, access_log: bool) -> None:
        self.app = app
        self.state = app.state
        self._token = f"Bearer {token}".encode() if token else None
        self._log = access_log

    def _authorized(self, scope: dict[str, Any]) -> bool:
        if self._token is None or scope["path"] in OPEN_PATHS:
            return True
        given = b""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                given = value
        return hmac.compare_digest(given, self._token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "version": None}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key == b"x-amber-model-version":
                        seen["version"] = value.decode("latin-1")
            await send(message)

        try:
            if self._authorized(scope):
                await self.app(scope, receive, watch)
            else:
                body = error_body("missing or wrong bearer token (Authorization: Bearer TOKEN)")
                await watch(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            if self._log:
                client = scope.get("client") or ("", 0)
                access.info(
                    json.dumps(
                        {
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "client": client[0],
                            "method": scope.get("method"),
                            "path": scope.get("path", "")[:200],
                            "status": seen["status"],
                            "ms": round((time.perf_counter() - start) * 1000, 3),
                            "model_version": seen["version"],
                        }
                    )
                )
