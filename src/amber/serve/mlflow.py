"""MLflow-compatible scoring payloads (``POST /invocations``): ``dataframe_split``,
``dataframe_records``, ``instances`` and ``inputs`` in JSON, or CSV with a header row."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from amber.serve import jsoncodec
from amber.serve.arrays import json_array
from amber.serve.models import TENSOR_INPUT
from amber.serve.problems import RequestError

if TYPE_CHECKING:
    from amber.serve.models import ServedModel

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_ROWS = 1 << 22


def _columns(names: list[str], rows: list[Any], model: ServedModel) -> dict[str, Any]:
    """Named column arrays from rows of values (a tensor model gets one 2-D input)."""
    if model.kind != "dataframe":
        return {TENSOR_INPUT: json_array(rows, "dataframe data")}
    out = {}
    for j, name in enumerate(names):
        try:
            values = [row[j] for row in rows]
        except (IndexError, TypeError, KeyError):
            raise RequestError(
                f"every row must have {len(names)} values (one per column); check 'data'"
            ) from None
        out[name] = json_array(values, f"input {name!r}")
    return out


def columns_from_rows(value: Any, model: ServedModel) -> dict[str, Any]:
    """Inputs from a list of records (``[{col: v}]``), a list of rows, or ``{col: [v]}``."""
    if isinstance(value, dict):
        return {str(k): json_array(v, f"input {str(k)[:64]!r}") for k, v in value.items()}
    if not isinstance(value, list):
        raise RequestError("expected a list of rows or records, or an object of columns")
    if value and all(isinstance(r, dict) for r in value):
        names = list(value[0])
        for i, r in enumerate(value):
            if list(r) != names and set(r) != set(names):
                raise RequestError(f"record {i} has different keys than record 0")
        rows = [[r[n] for n in names] for r in value]
        if model.kind == "tensors":  # records of named tensors: one array per name
            return {str(n)[:256]: json_array([r[n] for r in value], f"input {n!r}") for n in names}
        if model.kind != "dataframe":
            return {TENSOR_INPUT: json_array(rows, "records")}
        return _columns(names, rows, model)
    if model.kind == "dataframe":
        return _columns([n for n, _ in model.columns], value, model)
    return {TENSOR_INPUT: json_array(value, "instances")}


def _split(value: Any, model: ServedModel) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise RequestError("dataframe_split must be an object with 'columns' and 'data'")
    names = value.get("columns")
    if names is None:
        names = [n for n, _ in model.columns]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError("dataframe_split 'columns' must be a list of strings")
    if len(value["data"]) > MAX_ROWS:
        raise RequestError(f"more than {MAX_ROWS} rows", 413)
    return _columns(names, value["data"], model)


def _csv_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _csv(body: bytes, model: ServedModel) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the CSV body is not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise RequestError(f"the CSV body is malformed ({str(exc)[:80]})") from None
    if len(rows) < 2:
        raise RequestError("the CSV body needs a header row and at least one row of values")
    header, data = rows[0], [r for r in rows[1:] if r]
    if any(len(r) != len(header) for r in data):
        raise RequestError(f"every CSV row must have {len(header)} values, like the header")
    values = [[_csv_value(c) for c in r] for r in data]
    return _columns(header, values, model)


def parse(body: bytes, content_type: str, model: ServedModel) -> tuple[dict[str, Any], dict]:
    """Named input arrays and the request's ``params`` from an /invocations body."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/csv":
        return _csv(body, model), {}
    if kind != "application/json":
        raise RequestError(
            f"unsupported content type {kind[:60]!r}; send application/json or text/csv", 415
        )
    try:
        doc = jsoncodec.loads(body)
    except RecursionError:
        raise RequestError("the request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict):
        raise RequestError(f"the request body must be a JSON object with one of {', '.join(KEYS)}")
    given = [k for k in KEYS if k in doc]
    if len(given) != 1:
        raise RequestError(
            f"the request must have exactly one of {', '.join(KEYS)}; got "
            f"{', '.join(given) or 'none'}"
        )
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise RequestError("'params' must be an object")
    key = given[0]
    if key == "dataframe_split":
        return _split(doc[key], model), params
    return columns_from_rows(doc[key], model), params


def respond(outputs: list[tuple[str, Any]]) -> bytes:
    """``{"predictions": ...}`` as MLflow's scoring server answers."""

    def plain(arr: Any) -> Any:
        if arr.dtype.kind == "O":
            return [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.tolist()
            ]
        return arr.tolist()

    if len(outputs) == 1:
        predictions: Any = plain(outputs[0][1])
    else:
        predictions = {name: plain(arr) for name, arr in outputs}
    finite = jsoncodec.all_finite(arr for _, arr in outputs)
    return jsoncodec.dumps({"predictions": predictions}, finite)
