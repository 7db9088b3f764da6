"""Dask: ``predict`` maps a stored model over a Dask DataFrame's partitions
(``map_partitions``) on the loading path of ``amber.batch.loading``: the spec is resolved
once, here, to one immutable version; the partitions' schema is checked against its
signature before any task is built; each worker process opens the store itself (a folder
every worker can read, or ``s3://``), checks the version's content digest and keeps the
model for its later partitions. The model is never pickled into the graph."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from amber.batch import calling, columns, loading
from amber.errors import InvalidArgumentError, MissingDependencyError

SAMPLE_ROWS = 8


def _dask_dataframe() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError:
        raise MissingDependencyError(
            "amber.dask needs dask's DataFrame: pip install 'amber[dask]'"
        ) from None
    return dd


def _output_names(pred: Any, output_col: str) -> list[str]:
    """``output_col`` for one value per row, ``output_col_0``... for several (as
    ``amber predict`` names them)."""
    if pred.ndim == 2 and pred.shape[1] != 1:
        return [f"{output_col}_{i}" for i in range(pred.shape[1])]
    return [output_col]


def _columns_of(pred: Any, names: list[str]) -> list[Any]:
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim == 1:
        return [pred]
    return [pred[:, i] for i in range(pred.shape[1])]


def _declared(ref: loading.ModelRef) -> Any:
    """An empty prediction shaped by the signature's outputs (``predict`` only), or None."""
    import numpy as np

    outputs = (ref.signature or {}).get("outputs") if ref.method == "predict" else None
    if not (isinstance(outputs, dict) and outputs.get("dtype") and outputs.get("shape")):
        return None
    shape = outputs["shape"]
    try:
        dtype = np.dtype(str(outputs["dtype"]))
    except TypeError:
        dtype = np.dtype(object)
    if len(shape) == 1:
        return np.empty(0, dtype=dtype)
    if len(shape) == 2 and isinstance(shape[1], int):
        return np.empty((0, shape[1]), dtype=dtype)
    return None


class _Score:
    """The partition function: plain data only (the reference, column names, dtypes), so
    that what Dask sends to its workers holds no model."""

    def __init__(
        self,
        ref: loading.ModelRef,
        features: list[str],
        outputs: list[tuple[str, Any]],
        batch_size: int,
    ) -> None:
        self.ref = ref
        self.features = features
        self.outputs = outputs
        self.batch_size = batch_size

    def __call__(self, part: Any) -> Any:
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        ready = loading.cached(self.ref)
        table = pa.Table.from_pandas(part[self.features], preserve_index=False)
        found = columns.check(ready.plan, table.schema)
        answers = [
            calling.run(ready.call, columns.model_input(ready.plan, batch, found), batch.num_rows)
            for batch in table.to_batches(max_chunksize=self.batch_size)
            if batch.num_rows
        ]
        if not answers:
            return part.assign(
                **{name: pd.Series([], index=part.index, dtype=d) for name, d in self.outputs}
            )
        pred = np.concatenate(answers)
        values = _columns_of(pred, _output_names(pred, "_"))
        if len(values) != len(self.outputs):
            raise InvalidArgumentError(
                f"{self.ref.version} answered {len(values)} values per row on this partition, "
                f"{len(self.outputs)} on the driver's sample"
            )
        return part.assign(
            **{
                name: pd.Series(column, index=part.index).astype(dtype)
                for (name, dtype), column in zip(self.outputs, values, strict=True)
            }
        )


def predict(
    ddf: Any,
    spec: str,
    *,
    store: Any = None,
    method: str = "predict",
    output_col: str = "prediction",
    features: Iterable[str] | None = None,
    batch_size: int = 10_000,
    trusted: Iterable[Any] | None = None,
) -> Any:
    """``ddf`` with the model's predictions as one more column (``output_col``; 2-D answers
    such as ``predict_proba`` give ``output_col_0``, ``output_col_1``...), computed lazily
    partition by partition with ``map_partitions``.

    ``spec`` is resolved once, now, to one immutable version (an alias moved before the
    graph runs changes nothing). ``store`` is a ``Store``, a folder or an ``s3://`` URL,
    and must be reachable from every Dask worker. The columns the model takes are checked
    against the version's signature before anything is computed; ``features`` names them,
    in order, for a model without column names; other columns are carried through.
    """
    dd = _dask_dataframe()
    if not isinstance(ddf, dd.DataFrame):
        raise InvalidArgumentError(f"expected a dask DataFrame, not a {type(ddf).__name__}")
    if not isinstance(output_col, str) or not output_col:
        raise InvalidArgumentError("output_col needs a name")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    if any(not isinstance(c, str) for c in ddf.columns):
        raise InvalidArgumentError("the DataFrame's column names must be strings")
    ref, prepared, _ = loading.resolve(spec, store, method=method, ship="store", trusted=trusted)
    plan = prepared.plan
    present = list(ddf.columns)
    if features is not None:
        chosen = [str(c) for c in features]
        missing = [c for c in chosen if c not in present]
        if missing:
            raise InvalidArgumentError(f"feature column {missing[0]!r} is not in the DataFrame")
        if plan.columns and chosen != plan.names:
            raise InvalidArgumentError(
                f"{ref.version} takes the columns {plan.names} by name; do not pass features="
            )
    else:
        chosen = plan.names if plan.columns else present
    keep = [c for c in present if c not in set(chosen)]
    import pyarrow as pa
    from dask.dataframe.utils import meta_nonempty

    schema = pa.Schema.from_pandas(meta_nonempty(ddf._meta), preserve_index=False)
    feats = columns.check(plan, schema, keep)  # names and types, before any task

    pred = _declared(ref)
    if pred is None:  # the model's answer on a few real rows says what it gives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # fewer rows than asked for
            head = ddf[feats].head(SAMPLE_ROWS, npartitions=1)
        if len(head):
            batch = pa.Table.from_pandas(head, preserve_index=False).combine_chunks()
            sample = batch.to_batches()[0]
            pred = calling.run(prepared.call, columns.model_input(plan, sample, feats), len(head))
        else:  # an empty first partition: one float column (answers are cast to it)
            import numpy as np

            pred = np.empty(0)
    names = _output_names(pred, output_col)
    clash = [n for n in names if n in present]
    if clash:
        raise InvalidArgumentError(f"the DataFrame already has a column {clash[0]!r}")
    import pandas as pd

    outputs = [
        (name, pd.Series(column[:0]).dtype)
        for name, column in zip(names, _columns_of(pred, names), strict=True)
    ]
    meta = ddf._meta.assign(
        **{name: pd.Series([], index=ddf._meta.index, dtype=d) for name, d in outputs}
    )
    return ddf.map_partitions(_Score(ref, feats, outputs, batch_size), meta=meta)
