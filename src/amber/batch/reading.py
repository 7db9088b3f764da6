"""Input files streamed as Arrow record batches: CSV, Parquet, Arrow IPC/Feather, .npy.

Each source reads a bounded number of rows at a time, so inputs larger than memory stream
through. A source is opened in two steps: ``schema()`` (the header, the first block for a
CSV) is checked against the model before ``batches()`` reads any row.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amber.errors import FormatError, InvalidArgumentError, ReadError

FORMATS = ("csv", "parquet", "arrow", "npy")
_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".npy": "npy",
}


def format_of(path: Path, given: str | None = None) -> str:
    """The format named by ``given`` or by the file's suffix."""
    fmt = given or _SUFFIXES.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise InvalidArgumentError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"use one of {', '.join(sorted(_SUFFIXES))} or say --format {'/'.join(FORMATS)}"
        )
    return fmt


def _read_error(path: Path, exc: Exception, what: str) -> FormatError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FormatError(f"{path}: not a readable {what} file ({text})")


class Source:
    """One input file. ``rows`` is known for Parquet, Arrow and .npy; ``fraction()`` tells
    how much of the file was read (for a progress estimate)."""

    def __init__(self, path: str | os.PathLike[str], fmt: str | None = None) -> None:
        self.path = Path(path)
        self.format = format_of(self.path, fmt)
        if not self.path.is_file():
            raise ReadError(f"{self.path}: no such file")
        self.size = self.path.stat().st_size
        self.rows: int | None = None
        self._file: Any = None
        self._schema: Any = None
        self._array: Any = None
        self._open()

    # -- opening ----------------------------------------------------------------------
    def _open(self) -> None:
        import pyarrow as pa

        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._file = pq.ParquetFile(self.path, memory_map=True)
                self._schema = self._file.schema_arrow
                self.rows = self._file.metadata.num_rows
            elif self.format == "arrow":
                self._file = _open_ipc(self.path)
                self._schema = self._file.schema
                self.rows = sum(
                    self._file.get_batch(i).num_rows for i in range(self._file.num_record_batches)
                )
            elif self.format == "npy":
                import numpy as np

                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
                if self._array.ndim != 2:
                    raise InvalidArgumentError(
                        f"{self.path}: a {self._array.ndim}-D array; batch prediction reads "
                        "2-D arrays (rows x features)"
                    )
                self.rows = int(self._array.shape[0])
            else:
                import pyarrow.csv as pcsv

                reader = pcsv.open_csv(self.path)
                self._schema = reader.schema
                reader.close()
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, OSError, EOFError) as exc:
            if isinstance(exc, InvalidArgumentError):
                raise
            raise _read_error(self.path, exc, self.format) from None

    def schema(self) -> Any:
        """The Arrow schema (None for .npy)."""
        return self._schema

    @property
    def array(self) -> Any:
        """The memory-mapped array of a .npy input."""
        return self._array

    def fraction(self) -> float | None:
        """How far reading has gone, 0..1, for a CSV (by bytes); None when unknown."""
        if self.format != "csv" or self._file is None or self.size == 0:
            return None
        try:
            return min(1.0, self._file.tell() / self.size)
        except (OSError, ValueError):
            return None

    # -- reading ----------------------------------------------------------------------
    def batches(self, batch_size: int, types: dict[str, Any] | None = None) -> Iterator[Any]:
        """Record batches of at most about ``batch_size`` rows (numpy slices for .npy).
        ``types`` fixes CSV column types, so that a later block cannot be read otherwise
        than the first."""
        import pyarrow as pa

        try:
            if self.format == "npy":
                for start in range(0, self.rows or 0, batch_size):
                    yield self._array[start : start + batch_size]
            elif self.format == "parquet":
                yield from self._file.iter_batches(batch_size=batch_size)
            elif self.format == "arrow":
                for i in range(self._file.num_record_batches):
                    batch = self._file.get_batch(i)
                    for start in range(0, batch.num_rows, batch_size):
                        yield batch.slice(start, batch_size)
            else:
                yield from self._csv_batches(batch_size, types or {})
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise _read_error(self.path, exc, self.format) from None

    def _csv_batches(self, batch_size: int, types: dict[str, Any]) -> Iterator[Any]:
        import pyarrow.csv as pcsv

        # Small blocks (1 MiB for the default batch): memory stays flat whatever the file's
        # size (measured: larger blocks fragment the heap by tens of MiB).
        block = min(16 << 20, max(1 << 20, batch_size * 16))
        self._file = open(self.path, "rb")  # noqa: SIM115 (closed below, tell() is read)
        try:
            reader = pcsv.open_csv(
                self._file,
                read_options=pcsv.ReadOptions(block_size=block, use_threads=False),
                convert_options=pcsv.ConvertOptions(column_types=types),
            )
            yield from rebatch(reader, batch_size)
        finally:
            self._file.close()

    def close(self) -> None:
        if self.format == "parquet" and self._file is not None:
            self._file.close()
        self._file = None
        self._array = None


def rebatch(batches: Iterator[Any], batch_size: int) -> Iterator[Any]:
    """Record batches of exactly ``batch_size`` rows (the last one shorter) from batches of
    any size: small blocks are joined (models pay a fixed cost per call), large ones split.
    At most one batch's worth of rows is held."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < batch_size:
            continue
        joined = pa.Table.from_batches(pending).combine_chunks()
        start = 0
        while held - start >= batch_size:
            yield joined.slice(start, batch_size).to_batches()[0]
            start += batch_size
        rest = joined.slice(start)
        pending = rest.to_batches() if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _open_ipc(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    source = pa.memory_map(str(path), "r")
    try:
        return ipc.open_file(source)
    except pa.ArrowInvalid:
        # An IPC stream (not the random-access file format): read it into a table.
        source = pa.memory_map(str(path), "r")
        table = ipc.open_stream(source).read_all()
        return _TableFile(table)


class _TableFile:
    """The random-access file interface over a table read from an IPC stream."""

    def __init__(self, table: Any) -> None:
        self._batches = table.to_batches()
        self.schema = table.schema
        self.num_record_batches = len(self._batches)

    def get_batch(self, i: int) -> Any:
        return self._batches[i]
