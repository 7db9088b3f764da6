"""Prediction output files written atomically: nothing is visible at the output path until
every row is written (a temporary file in the same folder, fsync, rename)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from amber.errors import InvalidArgumentError, WriteError

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_format(path: Path, given: str | None = None) -> str:
    """``parquet`` or ``csv``, from ``given`` or the output's suffix."""
    fmt = given or OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt not in ("parquet", "csv"):
        raise InvalidArgumentError(
            f"{path}: write predictions to a .parquet or .csv file "
            f"(or say --output-format parquet/csv), not {path.suffix or 'a file without suffix'}"
        )
    return fmt


class Sink:
    """Appends record batches to a temporary file; ``commit()`` publishes it at ``path``,
    ``abort()`` (or an exception inside ``with``) removes it and leaves ``path`` as it was."""

    def __init__(self, path: str | os.PathLike[str], fmt: str | None = None) -> None:
        self.path = Path(path)
        self.format = output_format(self.path, fmt)
        directory = self.path.parent
        if self.path.is_dir():
            raise WriteError(f"{self.path} is a directory: give a file path for the predictions")
        if not directory.is_dir():
            raise WriteError(f"{self.path}: the folder {directory} does not exist")
        self._tmp = directory / f".{self.path.name}.{os.urandom(6).hex()}.amber-tmp"
        try:
            self._file: Any = open(self._tmp, "xb")  # noqa: SIM115 (closed by commit/abort)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self._writer: Any = None
        self.rows = 0

    def write(self, batch: Any) -> None:
        if self._writer is None:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self._file, batch.schema)
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self._file, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def commit(self, empty_schema: Any = None) -> Path:
        """Finish the file and move it into place; ``empty_schema`` is written when no
        batch came (an empty input still gives a file with the output's columns)."""
        try:
            if self._writer is None and empty_schema is not None:
                import pyarrow as pa

                self.write(pa.RecordBatch.from_pylist([], schema=empty_schema))
            if self._writer is not None:
                self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
