"""`amber compress SPEC|FILE --try ... --eval DATA`: what each way of shrinking a model
costs, in one table (amber.compression_report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from amber.cli.output import echo_json, fail, safe, stdout
from amber.cli.store_common import STORE_OPTION, open_store
from amber.errors import AmberError, InvalidArgumentError


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def compress(
    source: str = typer.Argument(..., help="An .amber file, or a version in the store."),
    tries: str = typer.Option(
        "zstd,fp16,int8,int4,prune:0.5",
        "--try",
        help="Comma-separated options: raw, zstd, zstd-bytegroup, int8, int4, fp16, bf16, "
        "prune:FRACTION; join parts with '+' (prune:0.5+int8+zstd).",
    ),
    data: Path | None = typer.Option(
        None,
        "--eval",
        help="Evaluation data: an .npz or .amber file holding arrays X and y (y optional).",
    ),
    store: str = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Save SOURCE's model with each option, load it back, and print size, ratio, save and
    load time, and the metric on --eval data against the original."""
    import amber

    try:
        model = _load(source, store)
        X, y = _evaluation_data(data) if data is not None else (None, None)
        options = [t.strip() for t in tries.split(",") if t.strip()]
        report = amber.compression_report(model, X, y, tries=options)
    except AmberError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        echo_json(report.to_dict())
        return
    for row in str(report).splitlines():  # option names and figures: escaped text
        stdout.print(safe(row), soft_wrap=True)


def _load(source: str, store: str | None) -> Any:
    import amber

    if Path(source).is_file():
        return amber.load(source)
    return open_store(store).load(source)


def _evaluation_data(path: Path) -> tuple[Any, Any]:
    """X and y from an .npz (no pickles) or an .amber file holding a dict."""
    import amber

    if path.suffix == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as f:
                found = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(f"--eval {path}: not a readable .npz file ({exc})") from None
    else:
        found = amber.load(path)
    if not isinstance(found, dict) or "X" not in found:
        raise InvalidArgumentError(f"--eval {path}: the data must hold an array named X (and y)")
    return found["X"], found.get("y")
