"""One loaded model version: its inputs and outputs (from the stored signature), the method
that answers, input checks against the signature, and the call itself."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from amber.serve.arrays import cast, check_finite
from amber.serve.datatypes import datatype_of
from amber.serve.problems import ModelError, RequestError

# Methods a request may pick (``parameters.method``) when the model has them.
METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "forward",
)
TENSOR_INPUT = "input"
T = TypeVar("T")
# A handled request (parse, check, call, encode) this fast on average may run on the event
# loop itself: a trip to a worker thread and back costs more than such a call (about
# 70-90 us measured with the iris MLP), and one process serves one call at a time anyway.
QUICK_SECONDS = 0.002
STRING_DTYPES = ("object", "str", "string", "category")


def is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def default_method(model: Any) -> str:
    """``forward`` for a torch module, else ``predict``, else ``transform``."""
    if is_torch_module(model):
        return "forward"
    for name in ("predict", "transform"):
        if callable(getattr(model, name, None)):
            return name
    raise RequestError(
        f"a {type(model).__name__} has no predict or transform method to serve; save a model "
        "that has one",
        500,
    )


def _signature_dtype(dtype: str) -> Any:
    import numpy as np

    if dtype in STRING_DTYPES or dtype.startswith(("str", "string")):
        return np.dtype(object)
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(object)


def _to_numpy(value: Any, where: str) -> Any:
    import numpy as np

    if is_torch_module(value):
        raise ModelError(f"{where} returned a module, not a tensor")
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "toarray"):  # scipy sparse
        return value.toarray()
    if hasattr(value, "to_numpy"):  # pandas
        return value.to_numpy()
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in arr.reshape(-1)):
        raise ModelError(f"{where} returned values that are neither numbers nor strings")
    return arr


class ServedModel:
    """A loaded version ready to answer; immutable once built (swaps replace the object)."""

    def __init__(
        self,
        name: str,
        version: int,
        model: Any,
        signature: dict[str, Any] | None,
        method: str | None = None,
        example: Any = None,
        forest_evaluator: bool = True,
    ) -> None:
        from amber.adapters.forest_evaluator import ForestEvaluator
        from amber.adapters.predictors import input_specs, predictor, signature_of

        model = predictor(model)  # Keras and ONNX models answer through a predictor
        self.name = name
        self.version = version
        self.model = model
        self.signature = signature or signature_of(model) or {}
        self.torch = is_torch_module(model)
        self.method = method or default_method(model)
        self.methods = [
            m
            for m in METHODS
            if (m == "forward" and self.torch)
            or (m != "forward" and callable(getattr(model, m, None)))
        ]
        if self.method not in self.methods:
            raise RequestError(
                f"{name}@{version} ({type(model).__name__}) has no method {self.method!r}; it "
                f"has: {', '.join(self.methods) or 'none'}"
            )
        self.example = example
        # Forests answer a few rows ~40x faster through amber's own walk, bitwise equal to
        # scikit-learn's (checked when built); other models and inputs go to the model.
        self.fast = ForestEvaluator.build(model) if forest_evaluator and not self.torch else None
        self.evaluator = "amber-forest" if self.fast is not None else "model"
        self.cost: float | None = None  # moving average of timed() calls, seconds
        self.allow_nan = self._allow_nan()
        inputs = self.signature.get("inputs") or {}
        self.kind = inputs.get("type")  # ndarray, tensor, dataframe or None
        self.columns: list[tuple[str, Any]] = [
            (c["name"], _signature_dtype(c["dtype"])) for c in inputs.get("columns", [])
        ]
        self.dtype = _signature_dtype(inputs["dtype"]) if "dtype" in inputs else None
        self.shape: list[int | None] | None = inputs.get("shape")
        # Named input tensors (Keras, ONNX): (name, dtype, shape or None).
        self.tensors: list[tuple[str, Any, list[int | None] | None]] = [
            (str(t["name"]), _signature_dtype(str(t["dtype"])), t.get("shape"))
            for t in input_specs(self.signature)
            if "name" in t
        ]
        self.input_name = self.tensors[0][0] if len(self.tensors) == 1 else TENSOR_INPUT
        self.batchable = self.kind == "dataframe" or (
            all(s is not None and len(s) >= 1 and s[0] is None for _, _, s in self.tensors)
            if self.kind == "tensors"
            else self.shape is not None and len(self.shape) >= 1 and self.shape[0] is None
        )
        self.output_meta: list[dict[str, Any]] = self._declared_outputs()

    def _allow_nan(self) -> bool:
        if self.torch:
            return True
        tags = getattr(self.model, "__sklearn_tags__", None)
        try:
            return bool(tags().input_tags.allow_nan) if callable(tags) else False
        except Exception:  # a model without usable tags: be strict
            return False

    def _declared_outputs(self) -> list[dict[str, Any]]:
        out = self.signature.get("outputs")
        if self.method == "predict" and isinstance(out, dict) and "dtype" in out:
            shape = [-1 if n is None else n for n in out.get("shape", [None])]
            return [{"name": "predict", "datatype": datatype_of(out["dtype"]), "shape": shape}]
        return []

    # -- metadata --------------------------------------------------------------------------

    def input_meta(self) -> list[dict[str, Any]]:
        if self.kind == "dataframe":
            return [{"name": n, "datatype": datatype_of(d), "shape": [-1]} for n, d in self.columns]
        if self.kind == "tensors":
            return [
                {
                    "name": n,
                    "datatype": datatype_of(d),
                    "shape": [-1 if m is None else m for m in s],
                }
                for n, d, s in self.tensors
                if s is not None
            ]
        if self.dtype is not None and self.shape is not None:
            shape = [-1 if n is None else n for n in self.shape]
            return [{"name": self.input_name, "datatype": datatype_of(self.dtype), "shape": shape}]
        return []

    # -- inputs ----------------------------------------------------------------------------

    def prepare(self, inputs: dict[str, Any]) -> Any:
        """The model's input from named arrays, checked against the signature."""
        if self.kind == "dataframe":
            return self._frame(inputs)
        if self.kind == "tensors":
            return self._named(inputs)
        if len(inputs) != 1:
            names = ", ".join(repr(n) for n in inputs)
            raise RequestError(
                f"this model takes one input {TENSOR_INPUT!r}; got {len(inputs)}: {names}"
            )
        ((name, arr),) = inputs.items()
        if self.kind is not None and name not in (TENSOR_INPUT, self.input_name):
            raise RequestError(f"unknown input {name!r}; this model's input is {self.input_name!r}")
        where = f"input {name!r}"
        if self.shape is not None:
            self._check_shape(arr, self.shape, where)
        if self.dtype is not None:
            arr = cast(arr, self.dtype, where)
        elif arr.dtype.kind == "U":
            arr = arr.astype(object)
        if not self.allow_nan:
            check_finite(arr, where)
        if self.torch:
            return self._tensor(arr, where)
        return arr

    @staticmethod
    def _check_shape(arr: Any, shape: list[int | None], where: str) -> None:
        want = ["-1" if n is None else str(n) for n in shape]
        ok = len(arr.shape) == len(shape) and all(
            n is None or n == m for n, m in zip(shape, arr.shape, strict=True)
        )
        if not ok:
            raise RequestError(
                f"{where}: shape {list(arr.shape)} does not match the model's "
                f"[{', '.join(want)}] (-1: any size)"
            )

    def _named(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Several named tensors, each checked for shape and type, all with one row count."""
        want = [n for n, _, _ in self.tensors]
        missing = [n for n in want if n not in inputs]
        extra = [n for n in inputs if n not in want]
        if missing or extra:
            parts = [f"missing input {n!r}" for n in missing]
            parts += [f"unknown input {n!r}" for n in extra]
            raise RequestError(f"{'; '.join(parts)}; this model's inputs are: {', '.join(want)}")
        out, rows = {}, None
        for name, dtype, shape in self.tensors:
            arr, where = inputs[name], f"input {name!r}"
            if shape is not None:
                self._check_shape(arr, shape, where)
            if self.batchable and rows is not None and arr.shape[0] != rows:
                raise RequestError(f"{where}: {arr.shape[0]} rows; other inputs have {rows}")
            rows = arr.shape[0] if arr.ndim else rows
            arr = cast(arr, dtype, where)
            if not self.allow_nan:
                check_finite(arr, where)
            out[name] = arr
        return out

    def _tensor(self, arr: Any, where: str) -> Any:
        import numpy as np
        import torch

        if arr.dtype.kind not in "biuf":
            raise RequestError(f"{where}: a torch model takes numbers, got {arr.dtype.name}")
        return torch.from_numpy(np.ascontiguousarray(arr))

    def _frame(self, inputs: dict[str, Any]) -> Any:
        want = [n for n, _ in self.columns]
        missing = [n for n in want if n not in inputs]
        extra = [n for n in inputs if n not in dict(self.columns)]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"unknown input(s) {', '.join(map(repr, extra))}")
            raise RequestError(f"{'; '.join(parts)}; this model's inputs are: {', '.join(want)}")
        columns = {}
        rows = None
        for name, dtype in self.columns:
            arr = inputs[name]
            where = f"input {name!r}"
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr.reshape(-1)
            if arr.ndim != 1:
                raise RequestError(f"{where}: shape {list(arr.shape)}; expected [-1] (one column)")
            if rows is not None and arr.shape[0] != rows:
                raise RequestError(f"{where}: {arr.shape[0]} rows; other inputs have {rows}")
            rows = arr.shape[0]
            arr = cast(arr, dtype, where)
            if not self.allow_nan:
                check_finite(arr, where)
            columns[name] = arr
        import pandas as pd

        return pd.DataFrame(columns)

    # -- the call --------------------------------------------------------------------------

    def pick(self, parameters: dict[str, Any]) -> str:
        method = parameters.get("method", self.method)
        if method not in self.methods:
            raise RequestError(
                f"method {str(method)[:40]!r} is not available; this model has: "
                f"{', '.join(self.methods)}"
            )
        return method

    def call(self, x: Any, method: str) -> list[tuple[str, Any]]:
        """Run the model; its own exceptions become ModelError with its message."""
        try:
            if self.torch:
                import torch

                with torch.inference_mode():
                    result = self.model(x)
            else:
                result = None if self.fast is None else self.fast.call(method, x)
                if result is None:
                    result = getattr(self.model, method)(x)
        except Exception as exc:
            raise ModelError(f"{type(exc).__name__}: {str(exc)[:500]}") from None
        name = "output" if self.torch else method
        if isinstance(result, dict):
            return [(str(k), _to_numpy(v, f"{method}[{k!r}]")) for k, v in result.items()]
        if isinstance(result, tuple):
            return [(f"{name}_{i}", _to_numpy(v, method)) for i, v in enumerate(result)]
        return [(name, _to_numpy(result, method))]

    def infer(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> list[tuple[str, Any]]:
        method = self.pick(parameters)
        return self.call(self.prepare(inputs), method)

    @property
    def quick(self) -> bool:
        """Whether handling a request has been fast enough to run on the event loop."""
        return self.cost is not None and self.cost < QUICK_SECONDS

    def timed(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)``, its duration folded into ``cost`` (so that a model that turns
        slow, or a slow request, moves calls back to the worker threads)."""
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            took = time.perf_counter() - start
            self.cost = took if self.cost is None else 0.8 * self.cost + 0.2 * took

    # -- warm-up ---------------------------------------------------------------------------

    def warm_up_inputs(self) -> dict[str, Any] | None:
        """An input to try the model with: the version's stored example (metadata
        ``input_example``, rows of values) or zeros shaped by the signature; None when the
        signature has string columns and no example is stored."""
        import numpy as np

        if self.example is not None:
            from amber.serve.mlflow import columns_from_rows

            return columns_from_rows(self.example, self)
        if self.kind == "dataframe":
            if any(d.kind == "O" for _, d in self.columns):
                return None
            return {n: np.zeros(1, dtype=d) for n, d in self.columns}
        if self.kind == "tensors":
            if any(s is None or d.kind == "O" for _, d, s in self.tensors):
                return None
            return {
                n: np.zeros([1 if m is None else m for m in s], dtype=d) for n, d, s in self.tensors
            }
        if self.dtype is not None and self.shape is not None and self.dtype.kind != "O":
            shape = [1 if n is None else n for n in self.shape]
            return {self.input_name: np.zeros(shape, dtype=self.dtype)}
        return None

    def warm_up(self) -> bool:
        """Answer one request with the warm-up input; False when there is none to use."""
        inputs = self.warm_up_inputs()
        if inputs is None:
            return False
        outputs = self.timed(self.infer, inputs, {})  # a first estimate of the cost
        if not self.output_meta:
            self.output_meta = [
                {
                    "name": n,
                    "datatype": datatype_of(a.dtype),
                    "shape": [-1, *a.shape[1:]] if self.batchable else list(a.shape),
                }
                for n, a in outputs
            ]
        return True
