"""`amber verify FILE`: check a file's integrity without loading a model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from amber.cli.output import echo_json, fail, human_bytes, line, plural, safe, stdout
from amber.errors import AmberError


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    file: Path = typer.Argument(..., help="The .amber file."),
    quick: bool = typer.Option(
        False, "--quick", help="Check the structure and the manifest digest only."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
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
        fail(exc, as_json=as_json)
    elapsed = time.perf_counter() - start
    if as_json:
        echo_json(
            {
                "ok": True,
                "file": str(file),
                "checked": "manifest" if quick else "all",
                "tensors": len(info.tensors),
                "tensor_bytes": info.tensor_bytes,
                "manifest_digest": info.manifest_digest,
                "seconds": round(elapsed, 6),
            }
        )
        return
    what = (
        "structure and manifest digest"
        if quick
        else (
            f"structure, manifest digest and {plural(len(info.tensors), 'tensor digest')} "
            f"({human_bytes(info.tensor_bytes)})"
        )
    )
    stdout.print(line(safe("ok", "green"), f" {file}: {what} verified in {elapsed * 1000:.0f} ms"))
