"""`amber verify FILE`: check a file's integrity without loading a model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from amber.cli.output import fail, human_bytes, line, safe, stdout
from amber.errors import AmberError


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    file: Path = typer.Argument(..., help="The .amber file."),
    quick: bool = typer.Option(
        False, "--quick", help="Check the structure and the manifest digest only."
    ),
) -> None:
    """Check every digest of FILE without loading it.

    Exit 0 when intact, 1 when damaged (the bad tensor is named), 2 when FILE is not a
    readable amber file.
    """
    import amber

    start = time.perf_counter()
    try:
        info = amber.verify(file, quick=quick)
    except AmberError as exc:
        fail(exc)
    elapsed = time.perf_counter() - start
    what = (
        "structure and manifest digest"
        if quick
        else (
            f"structure, manifest digest and {len(info.tensors)} tensor digests "
            f"({human_bytes(info.tensor_bytes)})"
        )
    )
    stdout.print(line(safe("ok", "green"), f" {file}: {what} verified in {elapsed * 1000:.0f} ms"))
