"""Input/output signatures inferred from an example input."""

from __future__ import annotations

from typing import Any


def describe(value: Any) -> dict[str, Any] | None:
    """Columns and dtypes of a DataFrame, dtype and shape of an array or tensor (the first
    dimension, the batch, left open as None); None for anything else."""
    columns = getattr(value, "columns", None)
    dtypes = getattr(value, "dtypes", None)
    if columns is not None and dtypes is not None:
        return {
            "type": "dataframe",
            "columns": [
                {"name": str(c), "dtype": str(t)} for c, t in zip(columns, dtypes, strict=True)
            ],
        }
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        kind = "tensor" if type(value).__module__.startswith("torch") else "ndarray"
        return {
            "type": kind,
            "dtype": str(dtype).removeprefix("torch."),
            "shape": [None, *[int(n) for n in tuple(shape)[1:]]],
        }
    return None


def declared(model: Any) -> dict[str, Any] | None:
    """The signature a model declares itself (Keras inputs, an ONNX graph's inputs and
    outputs: names, dtypes, shapes); None for models that do not."""
    from amber.adapters.predictors import signature_of

    return signature_of(model)


def infer(model: Any, example: Any) -> dict[str, Any]:
    """The signature of ``model`` for inputs like ``example``: the input's description and,
    when the model has ``predict``, the description of its output on the example."""
    out: dict[str, Any] = {"inputs": describe(example)}
    predict = getattr(model, "predict", None)
    if callable(predict):
        try:
            out["outputs"] = describe(predict(example))
        except Exception as exc:  # the example may not suit predict; keep the input part
            out["outputs"] = None
            out["outputs_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def compatible(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[bool, list[str]]:
    """Whether inputs valid for signature ``a`` are valid for ``b``; the differences."""
    if a is None or b is None:  # unknown: nothing to hold against the change
        return True, [] if a == b else ["only one version has a signature"]
    notes = []
    ia, ib = a.get("inputs") or {}, b.get("inputs") or {}
    if ia.get("type") != ib.get("type"):
        notes.append(f"input type {ia.get('type')} -> {ib.get('type')}")
    if ia.get("type") == "dataframe":
        ca = {c["name"]: c["dtype"] for c in ia.get("columns", [])}
        cb = {c["name"]: c["dtype"] for c in ib.get("columns", [])}
        for col in sorted(ca.keys() - cb.keys()):
            notes.append(f"column {col!r} no longer used")
        for col in sorted(cb.keys() - ca.keys()):
            notes.append(f"new required column {col!r}")
        for col in sorted(ca.keys() & cb.keys()):
            if ca[col] != cb[col]:
                notes.append(f"column {col!r}: {ca[col]} -> {cb[col]}")
    elif ia.get("type") == "tensors":
        ta = {t.get("name"): t for t in ia.get("tensors", [])}
        tb = {t.get("name"): t for t in ib.get("tensors", [])}
        for name in sorted(ta.keys() - tb.keys()):
            notes.append(f"input {name!r} no longer used")
        for name in sorted(tb.keys() - ta.keys()):
            notes.append(f"new required input {name!r}")
        for name in sorted(ta.keys() & tb.keys()):
            for key in ("dtype", "shape"):
                if ta[name].get(key) != tb[name].get(key):
                    notes.append(f"input {name!r} {key} {ta[name].get(key)} -> {tb[name].get(key)}")
    else:
        for key in ("dtype", "shape"):
            if ia.get(key) != ib.get(key):
                notes.append(f"input {key} {ia.get(key)} -> {ib.get(key)}")
    breaking = [n for n in notes if not n.endswith("no longer used")]
    oa, ob = a.get("outputs"), b.get("outputs")
    if oa != ob:
        notes.append(f"outputs {oa} -> {ob}")
    return not breaking, notes
