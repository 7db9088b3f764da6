"""``amber.predict``: a model from the store (or in hand) over a table, batch by batch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber.batch import calling, columns
from amber.errors import InvalidArgumentError, MissingDependencyError

DEFAULT_BATCH = 65_536


def need_pyarrow() -> None:
    """MissingDependencyError with the install hint when pyarrow is absent."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "batch prediction reads and writes tables with pyarrow: pip install 'amber[batch]'"
        ) from None


@dataclass(frozen=True)
class Loaded:
    """A model ready to predict: the object, its signature and what it was loaded as."""

    model: Any
    signature: dict[str, Any] | None
    label: str


def load_model(
    spec_or_model: Any,
    *,
    store: Any = None,
    signature: dict[str, Any] | None = None,
    trusted: Iterable[Any] | None = None,
) -> Loaded:
    """Resolve a store spec (``"churn@production"``) once to one version and load it, load
    an ``.amber`` file, or take a model object as it is. A spec's stored signature is used
    unless one is given."""
    if not isinstance(spec_or_model, str):
        return Loaded(spec_or_model, signature, type(spec_or_model).__name__)
    if spec_or_model.endswith(".amber") and Path(spec_or_model).is_file():
        import amber

        # A standalone file (amber save / amber export): the same audited load.
        model = amber.load(spec_or_model, trusted=trusted)
        return Loaded(model, signature, spec_or_model)
    from amber.batch.loading import open_store
    from amber.store.store import Store

    owned = not isinstance(store, Store)
    # A path that is not a store is an error, never a new empty store.
    handle = store if not owned else open_store(store or os.environ.get("AMBER_STORE", ".amber"))
    try:
        version = handle.get(spec_or_model)  # one immutable version, even if an alias moves
        from amber.adapters.predictors import load as load_predictor

        # Keras and ONNX models through a predictor (ONNX: a session over mapped files).
        model = load_predictor(handle, version.spec, trusted=trusted)
    finally:
        if owned:
            handle.close()
    return Loaded(model, signature if signature is not None else version.signature, version.spec)


def _validate_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    return batch_size


def predict(
    spec_or_model: Any,
    data: Any,
    *,
    store: Any = None,
    method: str = "predict",
    batch_size: int = DEFAULT_BATCH,
    signature: dict[str, Any] | None = None,
    trusted: Iterable[Any] | None = None,
) -> Any:
    """Predictions of a model over ``data`` (a pandas DataFrame, a pyarrow Table or
    RecordBatch, or a 2-D numpy array), as one numpy array with a row per input row.

    ``spec_or_model`` is a store spec (``"churn@production"``, resolved once to one
    version; ``store`` is a ``Store``, a store path or None for the default store) or a
    model object. Columns are matched to the stored signature by name and checked for
    type before any row is predicted; the model is called on ``batch_size`` rows at a time.
    """
    _validate_batch_size(batch_size)
    loaded = load_model(spec_or_model, store=store, signature=signature, trusted=trusted)
    plan = columns.plan_for(loaded.signature, loaded.model)
    call = calling.method_of(loaded.model, method)
    import numpy as np

    if isinstance(data, np.ndarray):
        parts = [
            calling.run(call, columns.array_input(plan, data[s : s + batch_size]), n)
            for s in range(0, data.shape[0], batch_size)
            for n in [min(batch_size, data.shape[0] - s)]
        ]
        if not parts:
            columns.array_input(plan, data)  # still checked: wrong width or dtype
    else:
        table = _as_arrow(data)
        features = columns.check(plan, table.schema)
        parts = []
        for batch in table.to_batches(max_chunksize=batch_size):
            if batch.num_rows:
                x = columns.model_input(plan, batch, features)
                parts.append(calling.run(call, x, batch.num_rows))
    if not parts:
        return np.empty((0,))
    return np.concatenate(parts)


def _as_arrow(data: Any) -> Any:
    kind = f"{type(data).__module__}.{type(data).__name__}"
    need_pyarrow()
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if kind.startswith("pandas.") and hasattr(data, "columns"):
        if any(not isinstance(c, str) for c in data.columns):
            raise InvalidArgumentError("DataFrame column names must be strings")
        return pa.Table.from_pandas(data, preserve_index=False)
    raise InvalidArgumentError(
        f"cannot predict over a {type(data).__name__}: give a pandas DataFrame, a pyarrow "
        "Table or RecordBatch, or a 2-D numpy array"
    )


@dataclass(frozen=True)
class Report:
    """What ``predict_file`` did."""

    version: str
    rows: int
    seconds: float
    output: Path


Progress = Callable[[int, int | None, float | None], None]


def predict_file(
    spec_or_model: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    store: Any = None,
    method: str = "predict",
    batch_size: int = DEFAULT_BATCH,
    keep: Iterable[str] = (),
    output_col: str = "prediction",
    input_format: str | None = None,
    output_format: str | None = None,
    trusted: Iterable[Any] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Stream ``input_path`` (CSV, Parquet, Arrow/Feather, .npy) through the model into
    ``output_path`` (Parquet or CSV): the ``keep`` columns, then the prediction columns.
    The signature is checked before any row is read; the output appears only when
    complete."""
    from amber.batch.reading import Source
    from amber.batch.writing import Sink
    from amber.batch.writing import output_format as out_format

    need_pyarrow()
    _validate_batch_size(batch_size)
    keep = list(keep)
    if not isinstance(output_col, str) or not output_col:
        raise InvalidArgumentError("the output column needs a name")
    if output_col in keep:
        raise InvalidArgumentError(f"the output column {output_col!r} is also a kept column")
    out = Path(output_path)
    out_format(out, output_format)  # a bad output name fails before the model is loaded
    source = Source(input_path, input_format)
    try:
        if source.format == "npy" and keep:
            raise InvalidArgumentError("a .npy input has no named columns to keep")
        loaded = load_model(spec_or_model, store=store, trusted=trusted)
        plan = columns.plan_for(loaded.signature, loaded.model)
        call = calling.method_of(loaded.model, method)
        features: list[str] = []
        types: dict[str, Any] = {}
        if source.format == "npy":
            columns.array_input(plan, source.array[:0])
        else:
            features = columns.check(plan, source.schema(), keep)
            types = {name: source.schema().field(name).type for name in features + keep}
        from amber.batch.prefetch import Prefetch

        start = time.perf_counter()
        with (
            Sink(out, output_format) as sink,
            Prefetch(_batches(source, batch_size, types)) as ahead,
        ):
            for batch in ahead:
                rows = batch.shape[0] if source.format == "npy" else batch.num_rows
                if source.format == "npy":
                    x = columns.array_input(plan, batch)
                else:
                    x = columns.model_input(plan, batch, features)
                pred = calling.run(call, x, rows)
                sink.write(_output_batch(batch if keep else None, keep, pred, output_col))
                if progress is not None:
                    progress(sink.rows, source.rows, source.fraction())
            path = sink.commit(_empty_schema(source, keep, output_col))
        return Report(loaded.label, sink.rows, time.perf_counter() - start, path)
    finally:
        source.close()


def _batches(source: Any, batch_size: int, types: dict[str, Any]) -> Iterator[Any]:
    yield from source.batches(batch_size, types)


def _output_batch(batch: Any, keep: list[str], pred: Any, output_col: str) -> Any:
    import pyarrow as pa

    arrays = [batch.column(name) for name in keep] if batch is not None else []
    names = list(keep)
    for name, array in calling.output_columns(pred, output_col):
        names.append(name)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _empty_schema(source: Any, keep: list[str], output_col: str) -> Any:
    import pyarrow as pa

    fields = [source.schema().field(n) for n in keep] if keep else []
    return pa.schema([*fields, pa.field(output_col, pa.float64())])
