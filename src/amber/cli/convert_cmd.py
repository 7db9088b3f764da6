"""`amber convert IN OUT`: convert model files to and from amber (safetensors, ONNX, Keras,
and pickle-family files read without running them)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from amber.cli.output import EXIT_FAILED, EXIT_NOT_AMBER, fail, human_bytes, line, safe, stdout
from amber.errors import AmberError, FormatError, InvalidArgumentError, ReadError


class Framework(str, Enum):
    numpy = "numpy"
    torch = "torch"


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)


def _fail(exc: AmberError) -> NoReturn:
    # 2 for a usage error or an input that cannot be read as a supported format (as for
    # inspect/verify); 1 when it was read but the conversion failed: damaged input, content
    # that does not convert, an existing output, a failed write.
    usage = (FormatError, ReadError, InvalidArgumentError)
    fail(exc, EXIT_NOT_AMBER if isinstance(exc, usage) else EXIT_FAILED)


def convert(
    src: Path = typer.Argument(
        ...,
        help="The input file (format told by its content): .amber, .safetensors, .onnx, "
        ".keras, or a pickle, joblib, torch.save, .npy or .npz file (read without running it).",
    ),
    dst: Path = typer.Argument(
        ...,
        help="The output file; its suffix chooses the format: .amber, .safetensors, .onnx "
        "or .keras.",
    ),
    framework: Framework = typer.Option(
        Framework.numpy, "--framework", help="Tensor type stored in an .amber output."
    ),
    force: bool = typer.Option(False, "--force", help="Replace DST if it exists."),
    trusted: list[str] = typer.Option(
        [], "--trusted", help="A class you reviewed, for pickle inputs (dotted); repeatable."
    ),
) -> None:
    """Convert SRC into DST. To amber: from safetensors, ONNX, .keras (config audited, never
    Keras's loader) and pickle/joblib/torch.save/numpy files (nothing in SRC is run; every
    name is audited; see `amber scan`). From amber: to safetensors (a flat dict of names to
    tensors), ONNX (a stored ModelProto) or .keras (a stored Keras model).

    Exit 0 on success, 1 when SRC was read but could not be converted (damaged, content that
    does not convert, DST exists without --force, write failed), 2 when SRC is not a file of
    a format amber reads or for a usage error (DST suffix, a pair that does not convert).
    """
    from amber.interop import convert as run_convert

    start = time.perf_counter()
    try:
        result = run_convert(
            src, dst, framework=framework.value, force=force, trusted=trusted or None
        )
    except AmberError as exc:
        _fail(exc)
    elapsed = time.perf_counter() - start
    stdout.print(
        line(
            safe("ok", "green"),
            f" {src} ({result.src_format}) -> {dst} ({result.dst_format}): "
            f"{result.tensor_count} tensors ({human_bytes(result.tensor_bytes)}) "
            f"in {elapsed * 1000:.0f} ms",
        )
    )
