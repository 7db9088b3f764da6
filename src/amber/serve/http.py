"""Small HTTP helpers shared by the routes: bounded body reads and JSON error responses."""

from __future__ import annotations

import asyncio
import json
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


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
