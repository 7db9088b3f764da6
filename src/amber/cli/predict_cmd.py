"""`amber predict SPEC INPUT`: stream a table through a stored model into a predictions file.

Exit codes: 0 done, 1 the prediction failed (a damaged object, the model raised), 2 bad
input (a malformed spec, an unknown model, a column that does not match the signature, an
unreadable input file). The output file appears only when every row is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from amber.cli.output import (
    EXIT_FAILED,
    EXIT_NOT_AMBER,
    fail,
    human_bytes,
    line,
    safe,
    stderr,
    stdout,
)
from amber.cli.store_common import STORE_OPTION, open_store
from amber.errors import (
    AmberError,
    FormatError,
    InvalidArgumentError,
    MissingDependencyError,
    ReadError,
    VersionNotFound,
)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def _default_output(input_path: Path) -> Path:
    return input_path.with_name(f"{input_path.stem}.predictions.parquet")


def predict(
    spec: str = typer.Argument(..., help="NAME, NAME@7, NAME@ALIAS, or an .amber file."),
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="A .csv, .parquet, .arrow/.feather or .npy file."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="A .parquet or .csv file [default: INPUT.predictions.parquet]."
    ),
    store: str | None = STORE_OPTION,
    method: str = typer.Option(
        "predict", "--method", help="predict, predict_proba, decision_function, transform..."
    ),
    batch_size: int = typer.Option(65536, "--batch-size", min=1, help="Rows per model call."),
    ids: list[str] = typer.Option(
        [], "--id", help="A column to copy into the output beside the predictions (repeatable)."
    ),
    output_col: str = typer.Option("prediction", "--output-col", help="The prediction column."),
    input_format: str | None = typer.Option(
        None, "--format", help="csv, parquet, arrow or npy (default: from the suffix)."
    ),
    output_format: str | None = typer.Option(
        None, "--output-format", help="parquet or csv (default: from the suffix)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no summary."),
) -> None:
    """Predict every row of INPUT with a stored model, streaming it in batches.

    Columns are matched to the version's signature by name and type before any row is
    read; a missing, extra or mistyped column is an error naming it (copy id columns to the
    output with --id).
    """
    # This process is amber's: OpenMP threads that sleep when idle instead of spinning, set
    # before any model loads the OpenMP runtime (which reads it once). The next batch is
    # parsed on a helper thread while the model predicts; spinning threads of an OpenMP
    # model (HistGradientBoosting) took the reader's core (500,000 rows: the predict stage
    # 1.25 s spinning, 0.94-1.03 s passive, on 2 cores). An explicit setting is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from amber.batch.predict import predict_file

    out = output if output is not None else _default_output(input_path)
    is_file = spec.endswith(".amber") and Path(spec).is_file()
    handle = None if is_file else open_store(store)
    bar = None if quiet else _Progress()
    try:
        report = predict_file(
            spec,
            input_path,
            out,
            store=handle,
            method=method,
            batch_size=batch_size,
            keep=ids,
            output_col=output_col,
            input_format=input_format,
            output_format=output_format,
            progress=bar.update if bar is not None else None,
        )
    except AmberError as exc:
        fail(exc, _code(exc))
    finally:
        if bar is not None:
            bar.stop()
        if handle is not None:
            handle.close()
    if not quiet:
        rate = report.rows / max(report.seconds, 1e-9)
        size = human_bytes(report.output.stat().st_size)
        stdout.print(
            line(
                safe("ok", "green"),
                f" {report.rows} rows predicted with {report.version} in {report.seconds:.1f} s "
                f"({rate:,.0f} rows/s) -> {report.output} ({size})",
            )
        )


def _code(exc: AmberError) -> int:
    bad_input = (InvalidArgumentError, FormatError, ReadError, VersionNotFound)
    if isinstance(exc, (*bad_input, MissingDependencyError)):
        return EXIT_NOT_AMBER
    return EXIT_FAILED


class _Progress:
    """Rows, rows/s and an ETA on stderr when it is a terminal, refreshed at most 10 times
    a second; nothing on a pipe (the summary line is printed either way)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None

    def update(self, rows: int, total: int | None, fraction: float | None) -> None:
        now = time.perf_counter()
        if not stderr.is_terminal or now - self._last < 0.1:
            return
        self._last = now
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._task = self._bar.add_task("", total=1.0)
            self._bar.start()
        done = rows / total if total else (fraction or 0.0)
        rate = rows / max(now - self._start, 1e-9)
        self._bar.update(self._task, completed=done, description=f"{rows:,} rows {rate:,.0f}/s")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
