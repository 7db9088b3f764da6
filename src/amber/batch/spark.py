"""Spark: ``predict`` (a DataFrame in, the same DataFrame plus a prediction column out, on
``mapInArrow``) and ``udf`` (a SQL function). See ``amber.batch.loading`` for how
executors get the model: a version resolved once on the driver, never a pickle."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from amber.batch import calling, columns, loading
from amber.errors import AmberError, InvalidArgumentError


def _spark_session(df: Any) -> Any:
    session = getattr(df, "sparkSession", None)
    if session is None:
        raise InvalidArgumentError(f"expected a pyspark DataFrame, not a {type(df).__name__}")
    return session


def _arrow_schema(spark_schema: Any) -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(spark_schema)


def _output_type(ref: loading.ModelRef, prepared: loading.Prepared, sample: Any) -> Any:
    """The Spark type of the prediction column: from the signature's outputs for
    ``predict``, else from the model's answer on a few sample rows."""
    from pyspark.sql import types as T

    outputs = (ref.signature or {}).get("outputs") if ref.method == "predict" else None
    if isinstance(outputs, dict) and outputs.get("dtype") and outputs.get("shape"):
        return _spark_type(T, str(outputs["dtype"]), len(outputs["shape"]))
    pred = sample()
    if pred is None:
        return T.DoubleType()
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    return _spark_type(T, str(pred.dtype), pred.ndim)


def _spark_type(T: Any, dtype: str, ndim: int) -> Any:
    if ndim == 2:
        return T.ArrayType(T.DoubleType(), containsNull=False)
    scalar = {
        "float64": T.DoubleType(),
        "float32": T.FloatType(),
        "int64": T.LongType(),
        "int32": T.IntegerType(),
        "int16": T.ShortType(),
        "int8": T.ByteType(),
        "bool": T.BooleanType(),
    }
    if dtype in scalar:
        return scalar[dtype]
    if dtype.startswith(("uint", "int")):
        return T.LongType()
    if dtype.startswith("float"):
        return T.DoubleType()
    return T.StringType()


def _to_arrow(pred: Any, arrow_type: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim == 2:
        flat = pa.array(np.ascontiguousarray(pred, dtype=np.float64).reshape(-1))
        offsets = pa.array(np.arange(0, pred.size + 1, pred.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, flat).cast(arrow_type)
    if pred.dtype.kind == "O" or pred.dtype.kind == "U":
        return pa.array([None if v is None else str(v) for v in pred.tolist()], type=arrow_type)
    return pa.array(pred).cast(arrow_type)


def _locate(name: str) -> str:
    from pyspark import SparkFiles

    return SparkFiles.get(name)


def _marked(exc: AmberError) -> AmberError:
    """The same amber error with its class written into the message, one line, so that the
    driver can raise it again from Spark's wrapper (see ``errors``)."""
    text = " ".join(str(exc).split())
    return type(exc)(f"[amber:{type(exc).__name__}] {text}")


def predict(
    df: Any,
    spec: str,
    *,
    store: Any = None,
    method: str = "predict",
    output_col: str = "prediction",
    features: Iterable[str] | None = None,
    batch_size: int = 10_000,
    ship: str = "auto",
    trusted: Iterable[Any] | None = None,
) -> Any:
    """``df`` with a column ``output_col`` of the model's predictions, computed on the
    executors with ``mapInArrow`` (Arrow batches in and out, no pandas round trip).

    ``spec`` is resolved once, here, to one immutable version (an alias moved during the
    job changes nothing); its signature is checked against ``df``'s schema before anything
    is submitted. The model's columns are fed to it (``features`` names them, in order, for
    a model without column names); every other column is carried through unchanged.
    ``ship``: ``"file"`` sends one verified file with ``SparkContext.addFile``, ``"store"``
    makes executors open the store (it must be reachable from every node), ``"auto"`` picks
    ``store`` for remote stores and ``file`` otherwise.
    """
    session = _spark_session(df)
    if not isinstance(output_col, str) or not output_col:
        raise InvalidArgumentError("output_col needs a name")
    if output_col in df.columns:
        raise InvalidArgumentError(f"the DataFrame already has a column {output_col!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    ref, prepared, shipped = loading.resolve(spec, store, method=method, ship=ship, trusted=trusted)
    schema = _arrow_schema(df.schema)
    plan = prepared.plan
    if features is not None:
        chosen = list(features)
        missing = [c for c in chosen if c not in df.columns]
        if missing:
            raise InvalidArgumentError(f"feature column {missing[0]!r} is not in the DataFrame")
        if plan.columns and chosen != plan.names:
            raise InvalidArgumentError(
                f"{ref.version} takes the columns {plan.names} by name; do not pass features="
            )
    else:
        chosen = plan.names if plan.columns else list(df.columns)
    keep = [c for c in df.columns if c not in set(chosen)]
    feats = columns.check(plan, schema, keep)  # before any task: names and types

    def sample() -> Any:
        table = df.select(*feats).limit(8).toArrow()
        if table.num_rows == 0:
            return None
        batch = table.combine_chunks().to_batches()[0]
        x = columns.model_input(plan, batch, feats)
        return calling.run(prepared.call, x, batch.num_rows)

    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_type

    out_type = _output_type(ref, prepared, sample)
    arrow_type = to_arrow_type(out_type)
    if shipped is not None:
        session.sparkContext.addFile(str(shipped))
    result_schema = T.StructType([*df.schema.fields, T.StructField(output_col, out_type, True)])

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        try:
            ready = loading.cached(ref, _locate)
            for batch in batches:
                for start in range(0, batch.num_rows, batch_size):
                    part = batch.slice(start, batch_size)
                    x = columns.model_input(ready.plan, part, feats)
                    pred = calling.run(ready.call, x, part.num_rows)
                    yield part.append_column(output_col, _to_arrow(pred, arrow_type))
        except AmberError as exc:
            raise _marked(exc) from None

    return df.mapInArrow(score, result_schema)


def udf(
    session: Any,
    name: str,
    spec: str,
    *,
    store: Any = None,
    method: str = "predict",
    ship: str = "auto",
    trusted: Iterable[Any] | None = None,
) -> Any:
    """Register the SQL function ``name`` that predicts with ``spec`` (resolved once, now):
    ``SELECT name(col1, col2, ...) FROM t``, or ``name(*)`` over a table of exactly the
    model's columns. Arguments are taken in the signature's column order (SQL passes no
    names), and each batch is checked for their number and types. Returns the UDF."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise InvalidArgumentError(f"a SQL function name is letters, digits and _, not {name!r}")
    ref, prepared, shipped = loading.resolve(spec, store, method=method, ship=ship, trusted=trusted)
    plan = prepared.plan
    from pyspark.sql import types as T
    from pyspark.sql.functions import ArrowUDFType, arrow_udf
    from pyspark.sql.pandas.types import to_arrow_type

    outputs = (ref.signature or {}).get("outputs") if method == "predict" else None
    if isinstance(outputs, dict) and outputs.get("dtype") and outputs.get("shape"):
        out_type = _spark_type(T, str(outputs["dtype"]), len(outputs["shape"]))
    else:
        out_type = (
            T.ArrayType(T.DoubleType(), containsNull=False)
            if method != "predict"
            else (T.DoubleType())
        )
    arrow_type = to_arrow_type(out_type)
    if shipped is not None:
        session.sparkContext.addFile(str(shipped))
    names = plan.names

    def score(*arrays: Any) -> Any:
        import pyarrow as pa

        try:
            ready = loading.cached(ref, _locate)
            cols = names or [f"f{i}" for i in range(len(arrays))]
            if len(arrays) != len(cols):
                raise InvalidArgumentError(
                    f"{name}() takes {len(cols)} columns ({', '.join(cols)}), got {len(arrays)}"
                )
            batch = pa.RecordBatch.from_arrays(list(arrays), names=cols)
            feats = columns.check(ready.plan, batch.schema)
            x = columns.model_input(ready.plan, batch, feats)
            pred = calling.run(ready.call, x, batch.num_rows)
            return _to_arrow(pred, arrow_type)
        except AmberError as exc:
            raise _marked(exc) from None

    with warnings.catch_warnings():
        # Type hints cannot say "any number of arrays"; the explicit UDF type is intended.
        warnings.filterwarnings("ignore", "It is preferred to specify type hints", UserWarning)
        function = arrow_udf(score, out_type, ArrowUDFType.SCALAR)
    session.udf.register(name, function)
    return function


_MARK = re.compile(r"\[amber:([A-Za-z]+)\] ([^\n]*)")


class errors:
    """Re-raise an amber error that failed a Spark job as that amber error on the driver,
    instead of Spark's wrapper with the executor's traceback inside it.

    ``with amber.spark.errors(): out.write.parquet(path)``
    """

    def __enter__(self) -> errors:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, AmberError):
            return False
        found = _MARK.findall(str(exc))
        if not found:
            return False
        import amber.errors as amber_errors

        cls_name, message = found[-1]
        cls = getattr(amber_errors, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, AmberError)):
            return False
        raise cls(f"Spark job failed: {message}") from None
