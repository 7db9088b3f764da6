"""Matching input columns to a model's stored signature, and building the model's input.

A *plan* says what the model takes: a DataFrame of named, typed columns, or a 2-D array
(numpy or torch) of a given width and dtype. ``check`` compares an Arrow schema with the
plan before any row is read, and ``model_input`` turns one Arrow record batch into the
object the model is called with. pyarrow, numpy and pandas are imported on use only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amber.errors import InvalidArgumentError

_TEXT = {"object", "str", "string", "string[python]", "string[pyarrow]", "category"}


def dtype_family(dtype: str) -> str:
    """``float``, ``int``, ``bool``, ``text`` or ``other`` for a numpy/pandas dtype name."""
    name = dtype.lower()
    if name in _TEXT:
        return "text"
    if name.startswith(("float", "double")):
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    if name in ("bool", "boolean"):
        return "bool"
    return "other"


@dataclass(frozen=True)
class Plan:
    """What the model is called with.

    ``kind`` is ``dataframe`` (``columns`` are (name, dtype) pairs, dtype ``""`` when
    unknown), ``ndarray`` or ``tensor`` (``width`` features of ``dtype``; ``columns`` names
    them when the model knows its feature names, else the input's columns are taken in
    order)."""

    kind: str
    columns: tuple[tuple[str, str], ...] = ()
    width: int | None = None
    dtype: str = "float64"

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]


def plan_for(signature: dict[str, Any] | None, model: Any) -> Plan:
    """The plan from a stored signature, else from what the model itself knows."""
    if not signature:
        from amber.adapters.predictors import signature_of

        signature = signature_of(model)  # Keras and ONNX models declare their inputs
    inputs = (signature or {}).get("inputs") if isinstance(signature, dict) else None
    if isinstance(inputs, dict):
        kind = inputs.get("type")
        if kind == "tensors" and isinstance(inputs.get("tensors"), list):
            return _named_plan(inputs["tensors"])
        if kind == "dataframe" and isinstance(inputs.get("columns"), list):
            cols = tuple(
                (str(c.get("name")), str(c.get("dtype", "")))
                for c in inputs["columns"]
                if isinstance(c, dict)
            )
            return Plan("dataframe", cols)
        if kind in ("ndarray", "tensor"):
            shape = inputs.get("shape")
            width = shape[1] if isinstance(shape, list) and len(shape) == 2 else None
            if isinstance(shape, list) and len(shape) != 2:
                raise InvalidArgumentError(
                    f"the model takes {len(shape)}-D input {shape}; batch prediction feeds "
                    "2-D tables (rows x features): call the model yourself for other shapes"
                )
            names = _feature_names(model)
            cols = tuple((n, "") for n in names) if names else ()
            return Plan(kind, cols, width if isinstance(width, int) else None, str(inputs["dtype"]))
    names = _feature_names(model)
    if names and not is_torch_module(model):
        return Plan("dataframe", tuple((n, "") for n in names))
    width = getattr(model, "n_features_in_", None)
    if is_torch_module(model):
        return Plan("tensor", (), None, "float32")
    return Plan("ndarray", (), width if isinstance(width, int) else None, "float64")


def _named_plan(tensors: list[Any]) -> Plan:
    """Several named inputs (Keras, ONNX) read from a table: one column per input, each
    input taking one value per row (shape ``[-1]`` or ``[-1, 1]``)."""
    cols = []
    for t in tensors:
        shape = t.get("shape") if isinstance(t, dict) else None
        if not isinstance(shape, list) or len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
            name = t.get("name") if isinstance(t, dict) else t
            raise InvalidArgumentError(
                f"input {name!r} takes shape {shape}; batch prediction feeds each named input "
                "one column (one value per row): call the model yourself for other shapes"
            )
        cols.append((str(t["name"]), str(t.get("dtype", ""))))
    return Plan("dataframe", tuple(cols))


def is_torch_module(model: Any) -> bool:
    """Whether ``model`` is a torch.nn.Module (without importing torch)."""
    return any(
        f"{c.__module__}.{c.__qualname__}" == "torch.nn.modules.module.Module"
        for c in type(model).__mro__
    )


def _feature_names(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else []


def _arrow_family(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _arrow_family(t.value_type)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    return "other"


# Which input families each expected family accepts (the cast is then exact, or, for
# int -> text, the decimal spelling of the integer).
_ACCEPTS = {
    "float": {"float", "int", "bool", "null"},
    "int": {"int", "bool"},
    "bool": {"bool"},
    "text": {"text", "int", "null"},
}


def _mismatch(name: str, have: Any, want: str) -> InvalidArgumentError:
    if _arrow_family(have) == "text":
        have = "text"
    return InvalidArgumentError(
        f"column {name!r} is {have} in the input but the model expects {want}: "
        "convert it or fix the input file"
    )


def check(plan: Plan, schema: Any, keep: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The input columns the model reads, in the model's order; InvalidArgumentError naming
    a missing column, an extra one (not listed in ``keep``) or one of the wrong type."""
    present = list(schema.names)
    seen: set[str] = set()
    for name in present:
        if name in seen:
            raise InvalidArgumentError(f"column {name!r} appears twice in the input")
        seen.add(name)
    for name in keep:
        if name not in seen:
            raise InvalidArgumentError(
                f"column {name!r} (to keep) is not in the input; it has: {_list(present)}"
            )
    if plan.columns:
        wanted = plan.names
        missing = [n for n in wanted if n not in seen]
        if missing:
            raise InvalidArgumentError(
                f"column {missing[0]!r} that the model needs is missing from the input"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; the input has: {_list(present)}"
            )
        extra = [n for n in present if n not in set(wanted) and n not in keep]
        if extra:
            raise InvalidArgumentError(
                f"column {extra[0]!r} is not an input of the model"
                + (f" (nor {_list(extra[1:])})" if len(extra) > 1 else "")
                + "; name it as an id column to copy it to the output (--id, keep=[...]), "
                "or drop it"
            )
        features = wanted
    else:
        features = [n for n in present if n not in keep]
        if plan.width is not None and len(features) != plan.width:
            raise InvalidArgumentError(
                f"the model takes {plan.width} features; the input has {len(features)} "
                f"columns besides the id columns ({_list(features)})"
            )
    for name in features:
        have = schema.field(name).type
        family = _arrow_family(have)
        want = dict(plan.columns).get(name, "") if plan.kind == "dataframe" else plan.dtype
        want_family = dtype_family(want) if want else ("float" if plan.kind != "dataframe" else "")
        if plan.kind != "dataframe" and want_family not in ("float", "int", "bool"):
            want_family = "float"
        if not want_family or want_family == "other":
            if family == "other":
                raise _mismatch(name, have, "a number, a boolean or text")
            continue
        if family not in _ACCEPTS[want_family]:
            raise _mismatch(name, have, want)
    return features


def _list(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") or "none"


def _column_numpy(name: str, column: Any, want: str) -> Any:
    import numpy as np
    import pyarrow as pa

    family = dtype_family(want) if want else "float"
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if family in ("int", "bool") and column.null_count:
        raise InvalidArgumentError(
            f"column {name!r} has missing values but the model expects {want}: fill them first"
        )
    if family == "float":
        target = np.dtype(want) if want else np.dtype("float64")
        if pa.types.is_null(column.type):
            return np.full(len(column), np.nan, dtype=target)
        if not pa.types.is_floating(column.type):
            column = column.cast(pa.float64())
        return column.to_numpy(zero_copy_only=False).astype(target, copy=False)
    return column.to_numpy(zero_copy_only=False).astype(np.dtype(want), copy=False)


def _column_pandas(name: str, column: Any, want: str) -> Any:
    import pyarrow as pa

    family = dtype_family(want) if want else ""
    if family in ("float", "int", "bool"):
        return _column_numpy(name, column, want)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if family == "text":
        if pa.types.is_integer(column.type):
            column = column.cast(pa.string())
        values = column.to_numpy(zero_copy_only=False)
        if want == "object":
            return values
        import pandas as pd

        return pd.Series(values, dtype="category" if want == "category" else want)
    return column.to_pandas()


def _numeric(dtype: str) -> Any:
    import numpy as np

    return np.dtype(dtype if dtype_family(dtype) in ("float", "int", "bool") else "float64")


def model_input(plan: Plan, batch: Any, features: list[str]) -> Any:
    """The model's input for one Arrow record batch (columns already checked)."""
    if plan.kind == "dataframe":
        import pandas as pd

        wanted = dict(plan.columns)
        data = {
            name: _column_pandas(name, batch.column(name), wanted.get(name, ""))
            for name in features
        }
        frame = pd.DataFrame(data, copy=False)
        frame.index = pd.RangeIndex(len(frame))
        return frame
    import numpy as np

    dtype = np.dtype(
        plan.dtype if dtype_family(plan.dtype) in ("float", "int", "bool") else "float64"
    )
    out = np.empty((batch.num_rows, len(features)), dtype=dtype)
    for i, name in enumerate(features):
        out[:, i] = _column_numpy(name, batch.column(name), str(dtype))
    return out


def array_input(plan: Plan, array: Any) -> Any:
    """The model's input for a 2-D numpy slice (a .npy file or a numpy argument)."""
    import numpy as np

    if plan.kind == "dataframe":
        raise InvalidArgumentError(
            "this model takes named columns; a numpy array has none: give a DataFrame, an "
            "Arrow table or a file with a header"
        )
    if array.ndim != 2:
        raise InvalidArgumentError(f"expected a 2-D array (rows x features), got {array.ndim}-D")
    if plan.width is not None and array.shape[1] != plan.width:
        raise InvalidArgumentError(
            f"the model takes {plan.width} features; the array has {array.shape[1]} columns"
        )
    if array.dtype.kind not in "fiub":
        raise InvalidArgumentError(
            f"the array's dtype {array.dtype} is not numeric; the model expects {plan.dtype}"
        )
    dtype = np.dtype(
        plan.dtype if dtype_family(plan.dtype) in ("float", "int", "bool") else "float64"
    )
    if array.dtype.kind == "f" and dtype.kind in "iub":
        raise InvalidArgumentError(
            f"the array holds {array.dtype} but the model expects {dtype}: convert it first"
        )
    return np.ascontiguousarray(array, dtype=dtype)
