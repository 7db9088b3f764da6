"""Shared printing helpers: one-line errors and exit codes for amber's exceptions."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from amber.errors import AmberError, CorruptFileError

EXIT_OK = 0
EXIT_FAILED = 1  # the file is an amber file but damaged, or the operation failed
EXIT_NOT_AMBER = 2  # not an amber file, unreadable, or an unsupported version

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(exc: AmberError, code: int | None = None) -> NoReturn:
    """Print ``exc`` as one line and exit with ``code``, by default the one that matches
    its class for commands that read a file."""
    from rich.markup import escape

    if code is None:
        code = EXIT_FAILED if isinstance(exc, CorruptFileError) else EXIT_NOT_AMBER
    # Messages hold paths and user text that may contain brackets: never rich markup.
    stderr.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
    raise typer.Exit(code)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
