"""Small HTTP helpers shared by the routes: bounded body reads and JSON error responses."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from amber.serve.problems import RequestError


async def read_body(
    receive_stream: Any, content_length: str | None, limit: int, timeout: float
) -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes and with 408 when it
    has not fully arrived ``timeout`` seconds after the request started (a slow client)."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if declared > limit:
            raise RequestError(
                f"the body is {declared} bytes; this server takes at most {limit} (--max-body-mb)",
                413,
            )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chunks: list[bytes] = []
    total = 0
    stream = receive_stream.__aiter__()
    while True:
        left = deadline - loop.time()
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), left)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise RequestError(
                f"the request body did not arrive within {timeout:g} s; send it faster or in "
                "smaller requests",
                408,
            ) from None
        total += len(chunk)
        if total > limit:
            raise RequestError(
                f"the body is over {limit} bytes, the most this server takes (--max-body-mb)",
                413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


class Disconnected(Exception):
    """The client went away before its body arrived (nothing is answered)."""


async def read_asgi_body(
    receive: Any, content_length: bytes | None, limit: int, timeout: float
) -> bytes:
    """``read_body`` on the raw ASGI ``receive``: the same limits (413, 408), one timer for
    the whole body instead of one per chunk."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if declared > limit:
            raise RequestError(
                f"the body is {declared} bytes; this server takes at most {limit} (--max-body-mb)",
                413,
            )
    if sys.version_info < (3, 11):  # no asyncio.timeout: one wait_for per chunk

        async def stream() -> Any:
            while True:
                yield await receive()

        return await read_body(_Bodies(stream()), None, limit, timeout)
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Disconnected
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise RequestError(
                        f"the body is over {limit} bytes, the most this server takes "
                        "(--max-body-mb)",
                        413,
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestError(
            f"the request body did not arrive within {timeout:g} s; send it faster or in "
            "smaller requests",
            408,
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Bodies:
    """ASGI receive messages as the chunk stream ``read_body`` takes (Python 3.10)."""

    def __init__(self, messages: Any) -> None:
        self._messages = messages

    def __aiter__(self) -> Any:
        return self._chunks()

    async def _chunks(self) -> Any:
        async for message in self._messages:
            if message["type"] == "http.disconnect":
                raise Disconnected
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
