"""Keras and ONNX models as predictors for serving and batch prediction, and their
signatures read from the models' own input and output specs.

A Keras model declares its inputs (``keras.Input``: name, shape, dtype) and an ONNX graph
its inputs and outputs (name, element type, shape with symbolic dimensions), so their
signature needs no example. Serving and batch prediction call a model's ``predict``:
``predictor(model)`` gives one that takes an array (one input), a mapping of named arrays
or a DataFrame of one column per input, and answers an array (one output) or a mapping of
named arrays. An ONNX model is run by an onnxruntime session built from it.

A signature with one input keeps the form every other model has (``type: ndarray``,
``dtype``, ``shape`` with ``None`` for any size) plus the input's ``name``; several inputs
are ``type: tensors`` with a list ``tensors`` of ``{name, dtype, shape}``. ONNX symbolic
dimensions are ``None`` in ``shape`` and named in ``dims``. Nothing here imports Keras,
onnx or onnxruntime unless the model is one of theirs.
"""

from __future__ import annotations

import sys
from typing import Any

from amber.errors import InvalidArgumentError

# ONNX TensorProto element types -> numpy dtype names (8: strings).
_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "object",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


def is_keras_model(model: Any) -> bool:
    """A ``keras.Model`` (any backend), without importing Keras."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def is_onnx_model(model: Any) -> bool:
    """An ``onnx.ModelProto``, without importing onnx."""
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(model, onnx.ModelProto)


def _spec(name: str, dtype: str, shape: list[int | None] | None) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _side(specs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One side of a signature: the ndarray form for one tensor, ``tensors`` for several."""
    if not specs:
        return None
    if len(specs) == 1:
        out = {"type": "ndarray", **specs[0]}
        if out["shape"] is None:
            del out["shape"]
        return out
    return {"type": "tensors", "tensors": specs}


def _keras_specs(tensors: Any) -> list[dict[str, Any]]:
    return [
        _spec(str(t.name), str(t.dtype), [None if n is None else int(n) for n in t.shape])
        for t in tensors
    ]


def keras_signature(model: Any) -> dict[str, Any] | None:
    """Inputs and outputs of a Keras model from its ``keras.Input`` specs; None for a
    model that was never built on inputs (a Sequential without ``Input``, not yet called)."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    out_specs = _keras_specs(outputs)
    names = _output_names(model, len(outputs))
    for spec, name in zip(out_specs, names, strict=True):
        spec["name"] = name
    return {"inputs": _side(_keras_specs(inputs)), "outputs": _side(out_specs), "source": "keras"}


def _output_names(model: Any, count: int) -> list[str]:
    names = getattr(model, "output_names", None)
    if isinstance(names, (list, tuple)) and len(names) == count:
        return [str(n) for n in names]
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _onnx_specs(values: Any) -> tuple[list[dict[str, Any]], bool]:
    """Specs of ONNX ``ValueInfoProto``s; whether any has a symbolic dimension."""
    specs, symbolic = [], False
    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":  # sequences and maps (skl2onnx's ZipMap): no tensor spec
            specs.append({"name": value.name, "dtype": "object", "shape": None, "kind": kind})
            continue
        tensor = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type, f"onnx:{tensor.elem_type}")
        if not tensor.HasField("shape"):
            specs.append(_spec(value.name, dtype, None))
            continue
        shape, dims = [], []
        for dim in tensor.shape.dim:
            fixed = dim.WhichOneof("value") == "dim_value"
            shape.append(int(dim.dim_value) if fixed else None)
            dims.append(None if fixed else (dim.dim_param or None))
        spec = _spec(value.name, dtype, shape)
        if any(d is not None for d in dims):
            spec["dims"] = dims
            symbolic = True
        specs.append(spec)
    return specs, symbolic


def onnx_signature(model: Any) -> dict[str, Any]:
    """Inputs and outputs of an ONNX graph: names, element types as numpy dtype names,
    shapes (``None`` for a symbolic or unknown dimension, named in ``dims``). Initializers
    listed among the graph's inputs (older exporters do this) are not inputs."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs, _ = _onnx_specs([v for v in graph.input if v.name not in constants])
    outputs, _ = _onnx_specs(graph.output)
    return {"inputs": _side(inputs), "outputs": _side(outputs), "source": "onnx"}


def signature_of(model: Any) -> dict[str, Any] | None:
    """The signature a Keras or ONNX model (or its predictor) declares; None for others."""
    if isinstance(model, (KerasPredictor, OnnxPredictor)):
        return model.signature
    if is_keras_model(model):
        return keras_signature(model)
    if is_onnx_model(model):
        return onnx_signature(model)
    return None


def input_specs(signature: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The input tensors a signature declares (one for the ndarray form), each with
    ``name``, ``dtype`` and ``shape``; empty for a DataFrame or no signature."""
    inputs = (signature or {}).get("inputs")
    if not isinstance(inputs, dict):
        return []
    if inputs.get("type") == "tensors" and isinstance(inputs.get("tensors"), list):
        return [t for t in inputs["tensors"] if isinstance(t, dict)]
    if inputs.get("type") in ("ndarray", "tensor") and "dtype" in inputs:
        return [
            {
                "name": inputs.get("name", "input"),
                "dtype": inputs["dtype"],
                "shape": inputs.get("shape"),
            }
        ]
    return []


def predictor(model: Any) -> Any:
    """A predictor for a Keras model or an ONNX ``ModelProto``; any other model as it is."""
    if isinstance(model, (KerasPredictor, OnnxPredictor)):
        return model
    if is_keras_model(model):
        return KerasPredictor(model)
    if is_onnx_model(model):
        return OnnxPredictor.from_model(model)
    return model


class _Predictor:
    """Named inputs in, named outputs out, for models whose inputs are declared."""

    signature: dict[str, Any] | None
    input_names: list[str]
    output_names: list[str]

    def _named(self, x: Any) -> dict[str, Any]:
        """``{input name: array}`` from an array (one input), a mapping or a DataFrame."""
        import numpy as np

        if hasattr(x, "columns") and hasattr(x, "iloc"):  # a DataFrame: a column per input
            x = {str(c): x[c].to_numpy() for c in x.columns}
        if not isinstance(x, dict):
            if len(self.input_names) != 1:
                raise InvalidArgumentError(
                    f"this model takes {len(self.input_names)} inputs "
                    f"({', '.join(self.input_names)}); give them by name"
                )
            return {self.input_names[0]: np.asarray(x)}
        missing = [n for n in self.input_names if n not in x]
        extra = [str(n)[:64] for n in x if n not in self.input_names]
        if missing or extra:
            parts = [f"missing input {n!r}" for n in missing]
            parts += [f"unknown input {n!r}" for n in extra]
            raise InvalidArgumentError(
                f"{'; '.join(parts)}; this model's inputs are: {', '.join(self.input_names)}"
            )
        shapes = {s["name"]: s.get("shape") for s in input_specs(self.signature)}
        out = {}
        for name in self.input_names:
            arr = np.asarray(x[name])
            shape = shapes.get(name)
            # A column of a table feeds an input of one value per row.
            if isinstance(shape, list) and len(shape) == 2 and shape[1] == 1 and arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            out[name] = arr
        return out

    def _answer(self, values: list[Any]) -> Any:
        import numpy as np

        arrays = [np.asarray(v) for v in values]
        if len(arrays) == 1:
            return arrays[0]
        return dict(zip(self.output_names, arrays, strict=True))


class KerasPredictor(_Predictor):
    """A Keras model called on one batch of named inputs in inference mode (what
    ``predict_on_batch`` does, without its progress bar or copies)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.signature = keras_signature(model)
        specs = input_specs(self.signature)
        self.input_names = [s["name"] for s in specs] or ["input"]
        try:
            self.by_name = isinstance(model.input, dict)
        except (AttributeError, ValueError):
            self.by_name = False
        outputs = (self.signature or {}).get("outputs") or {}
        self.output_names = [
            t["name"] for t in outputs.get("tensors", [outputs] if "name" in outputs else [])
        ]

    def predict(self, x: Any) -> Any:
        named = self._named(x)
        if len(self.input_names) == 1 and not self.by_name:
            args: Any = next(iter(named.values()))
        elif self.by_name:  # a model built on a dict of inputs takes one
            args = named
        else:
            args = [named[n] for n in self.input_names]
        result = self._call(args)
        if isinstance(result, dict):
            return {str(k): _to_numpy(v) for k, v in result.items()}
        if isinstance(result, (list, tuple)):
            return self._answer([_to_numpy(v) for v in result])
        return self._answer([_to_numpy(result)])

    def _call(self, args: Any) -> Any:
        """The model on one batch, in inference mode (no gradients kept on torch)."""
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(self.model, torch.nn.Module):
            with torch.no_grad():
                return self.model(args, training=False)
        return self.model(args, training=False)


def _to_numpy(value: Any) -> Any:
    """A backend tensor as numpy (torch directly: Keras's own conversion warns on numpy 2)."""
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    from keras import ops

    return ops.convert_to_numpy(value)


class OnnxPredictor(_Predictor):
    """An onnxruntime session answering ``predict`` with every graph output."""

    def __init__(self, session: Any, signature: dict[str, Any]) -> None:
        self.session = session
        self.signature = signature
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def from_model(cls, model: Any) -> OnnxPredictor:
        """A CPU session for ``model`` (its initializers already checked inline by the
        adapter's load; a model in hand with external data is refused here too)."""
        from amber.adapters import onnx as onnx_adapter
        from amber.errors import SerializationError

        if onnx_adapter.external_tensors(model):
            raise SerializationError("this ONNX model refers to external data; load it inline")
        try:
            import onnxruntime as ort
        except ImportError:
            from amber.errors import MissingDependencyError

            raise MissingDependencyError(
                "running an ONNX model needs onnxruntime (pip install 'amber[onnx]')"
            ) from None
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return cls(session, onnx_signature(model))

    def predict(self, x: Any) -> Any:
        return self._answer(self.session.run(None, self._named(x)))


def session_signature(session: Any) -> dict[str, Any]:
    """The signature of an onnxruntime session's inputs and outputs (``tensor(float)`` ->
    float32; a symbolic dimension is ``None`` in ``shape`` and named in ``dims``)."""

    def specs(args: Any) -> list[dict[str, Any]]:
        out = []
        for arg in args:
            kind = str(arg.type)
            dtype = _ORT_DTYPES.get(kind, "object")
            shape = arg.shape
            if not isinstance(shape, list):
                out.append(_spec(arg.name, dtype, None))
                continue
            spec = _spec(arg.name, dtype, [n if isinstance(n, int) else None for n in shape])
            if any(not isinstance(n, int) for n in shape):
                spec["dims"] = [n if isinstance(n, str) else None for n in shape]
            out.append(spec)
        return out

    return {
        "inputs": _side(specs(session.get_inputs())),
        "outputs": _side(specs(session.get_outputs())),
        "source": "onnx",
    }


_ORT_DTYPES = {
    f"tensor({k})": v
    for k, v in {
        "float": "float32",
        "double": "float64",
        "float16": "float16",
        "bfloat16": "bfloat16",
        "int8": "int8",
        "int16": "int16",
        "int32": "int32",
        "int64": "int64",
        "uint8": "uint8",
        "uint16": "uint16",
        "uint32": "uint32",
        "uint64": "uint64",
        "bool": "bool",
        "string": "object",
    }.items()
}


def load(store: Any, spec: str, *, trusted: Any = None) -> Any:
    """Version ``spec`` of ``store`` ready to predict, every digest verified: an ONNX model
    as an onnxruntime session over the store's mapped files (never a protobuf copy of its
    weights), a Keras model as a ``KerasPredictor``, any other model as loaded."""
    from amber.adapters.onnx import MODEL

    root = store.resolve(spec).manifest.get("root")
    if isinstance(root, dict) and root.get("type") == MODEL:
        session = store.onnx_session(spec)
        return OnnxPredictor(session, session_signature(session))
    return predictor(store.load(spec, verify="full", trusted=trusted))
