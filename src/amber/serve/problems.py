"""The errors a request can cause, each with its HTTP status."""

from __future__ import annotations

from amber.errors import AmberError, InvalidArgumentError


class RequestError(InvalidArgumentError):
    """A request the server refuses: answered with ``status`` and a JSON ``{"error": ...}``
    that names what was wrong and what was expected."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ModelError(AmberError):
    """The model itself raised while answering a valid request (HTTP 500 with its message)."""
