"""Calling a loaded model on one batch, and shaping its answer into output columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amber.batch.columns import is_torch_module
from amber.errors import AmberError, InvalidArgumentError


def method_of(model: Any, method: str) -> Callable[[Any], Any]:
    """The bound prediction method ``method`` of ``model`` (for a torch module, ``predict``
    and ``forward`` call the module under ``torch.inference_mode``)."""
    if not isinstance(method, str) or not method.isidentifier() or method.startswith("_"):
        raise InvalidArgumentError(f"method must be a public method name, not {method!r}")
    if method.startswith(_NOT_PREDICTION):
        raise InvalidArgumentError(
            f"{method!r} changes the model; give a prediction method (predict, predict_proba, "
            "decision_function, transform...)"
        )
    from amber.adapters.predictors import predictor

    model = predictor(model)  # a Keras or ONNX model answers through a predictor
    if is_torch_module(model) and method in ("predict", "forward"):
        return _torch_call(model)
    func = getattr(model, method, None)
    if not callable(func):
        known = [
            m
            for m in (
                "predict",
                "predict_proba",
                "predict_log_proba",
                "decision_function",
                "transform",
                "score_samples",
            )
            if callable(getattr(model, m, None))
        ]
        raise InvalidArgumentError(
            f"the model ({type(model).__name__}) has no method {method!r}; "
            f"it has: {', '.join(known) or 'none of the usual ones'}"
        )
    return func


# Methods that train or reconfigure a model, never run by batch prediction.
_NOT_PREDICTION = ("fit", "partial_fit", "set_", "train", "load_", "save")


def _torch_call(module: Any) -> Callable[[Any], Any]:
    import torch

    module.eval()

    def call(x: Any) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    return call


def to_numpy(result: Any) -> Any:
    """A model's answer as a numpy array (torch tensors and pandas objects included)."""
    import numpy as np

    if isinstance(result, dict):  # a Keras or ONNX model with several named outputs
        raise InvalidArgumentError(
            f"the model answers {len(result)} named outputs ({', '.join(map(str, result))}); "
            "batch prediction writes one: serve the model, or save one with a single output"
        )
    if type(result).__module__.startswith("torch"):
        result = result.detach().cpu().numpy()
    elif hasattr(result, "to_numpy"):
        result = result.to_numpy()
    out = np.asarray(result)
    if out.ndim == 0 or out.ndim > 2:
        raise InvalidArgumentError(
            f"the model answered an array of shape {out.shape}; batch prediction writes one "
            "value or one row of values per input row"
        )
    return out


def run(call: Callable[[Any], Any], x: Any, rows: int) -> Any:
    """``call(x)`` checked to give one answer per row; an exception of the model's becomes
    an AmberError that names it (the job stops there)."""
    try:
        answer = call(x)
    except AmberError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise AmberError(
            f"the model failed on a batch of {rows} rows: {type(exc).__name__}: {text}"
        ) from None
    out = to_numpy(answer)
    if out.shape[0] != rows:
        raise InvalidArgumentError(f"the model answered {out.shape[0]} rows for a batch of {rows}")
    return out


def output_columns(pred: Any, name: str) -> list[tuple[str, Any]]:
    """Arrow arrays for a prediction: one column ``name`` for 1-D answers, ``name_0``,
    ``name_1``... for 2-D ones (a column of a single value is kept as ``name``)."""
    import pyarrow as pa

    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim == 1:
        return [(name, _arrow(pa, pred))]
    return [(f"{name}_{i}", _arrow(pa, pred[:, i])) for i in range(pred.shape[1])]


def _arrow(pa: Any, values: Any) -> Any:
    if values.dtype.kind == "O":
        return pa.array(values.tolist())
    return pa.array(values)
