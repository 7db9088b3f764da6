"""Hypothesis fuzz of the request parsers and input checks: every request either succeeds
or raises RequestError with a 4xx status (the server answers 4xx); nothing else escapes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber.serve import mlflow, oip
from amber.serve.datatypes import TO_NUMPY
from amber.serve.models import ServedModel
from amber.serve.problems import RequestError
from amber.store.signature import infer
from tests.serve.helpers import iris

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _models() -> list[ServedModel]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris()
    clf = LogisticRegression(max_iter=300).fit(X, y)
    out = [ServedModel("iris", 1, clf, infer(clf, X[:2]))]
    for dtype in ("int8", "uint64", "float16", "bool"):
        ex = np.zeros((1, 2), dtype=dtype)
        out.append(
            ServedModel(f"echo-{dtype}", 1, FunctionTransformer(), infer(None, ex), "transform")
        )
    ex = np.array([["a", "b"]], dtype=object)
    out.append(ServedModel("echo-bytes", 1, FunctionTransformer(), infer(None, ex), "transform"))
    return out


MODELS = _models()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
datatypes = st.sampled_from([*TO_NUMPY, "FP128", "", 3])
shapes = st.one_of(st.lists(st.integers(min_value=-2, max_value=6), max_size=3), json_values)
names = st.one_of(st.sampled_from(["input", "x", "color", ""]), json_values)
tensors = st.fixed_dictionaries(
    {"name": names, "shape": shapes, "datatype": datatypes},
    optional={
        "data": json_values,
        "parameters": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"binary_data_size": st.one_of(st.integers(-4, 80), json_values)}
            ),
        ),
    },
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(tensors, max_size=3), json_values)},
        optional={
            "id": json_values,
            "parameters": st.one_of(json_values, st.fixed_dictionaries({"method": json_values})),
            "outputs": st.one_of(
                json_values,
                st.lists(
                    st.fixed_dictionaries({"name": names, "parameters": json_values}), max_size=2
                ),
            ),
        },
    ),
)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RequestError as exc:
        status = exc.status
    assert 400 <= status < 500
    return None


def _answer(model: ServedModel, body: bytes, header: str | None) -> None:
    req = _outcome(oip.parse, body, header)
    if req is None:
        return
    outputs = _outcome(model.infer, req.inputs, req.parameters)
    if outputs is None:
        return
    _outcome(oip.respond, req, model.name, "1", outputs)


@SETTINGS
@given(doc=documents, which=st.integers(0, len(MODELS) - 1))
def test_oip_json_fuzz(doc: Any, which: int) -> None:
    body = json.dumps(doc).encode()
    _answer(MODELS[which], body, None)


@SETTINGS
@given(
    doc=documents,
    tail=st.binary(max_size=96),
    header=st.one_of(st.none(), st.integers(-3, 400).map(str), st.text(max_size=4)),
    which=st.integers(0, len(MODELS) - 1),
)
def test_oip_binary_fuzz(doc: Any, tail: bytes, header: str | None, which: int) -> None:
    head = json.dumps(doc).encode()
    if header is None:
        header = str(len(head))
    _answer(MODELS[which], head + tail, header)


@SETTINGS
@given(raw=st.binary(max_size=200), which=st.integers(0, len(MODELS) - 1))
def test_raw_bytes_fuzz(raw: bytes, which: int) -> None:
    _answer(MODELS[which], raw, None)
    _answer(MODELS[which], raw, str(len(raw) // 2))


mlflow_docs = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params"]),
        st.one_of(
            json_values,
            st.fixed_dictionaries({"columns": json_values, "data": json_values}),
        ),
        max_size=2,
    ),
)


@SETTINGS
@given(doc=mlflow_docs, csv=st.text(max_size=60), which=st.integers(0, len(MODELS) - 1))
def test_mlflow_fuzz(doc: Any, csv: str, which: int) -> None:
    model = MODELS[which]
    for body, ctype in ((json.dumps(doc).encode(), "application/json"), (csv.encode(), "text/csv")):
        parsed = _outcome(mlflow.parse, body, ctype, model)
        if parsed is not None:
            outputs = _outcome(model.infer, *parsed)
            if outputs is not None:
                mlflow.respond(outputs)


def test_fuzzers_reach_success() -> None:
    """The strategies are not all rejects: a well-formed request passes the same path."""
    good = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]
    }
    req = oip.parse(json.dumps(good).encode(), None)
    assert MODELS[0].infer(req.inputs, req.parameters)[0][0] == "predict"
    with pytest.raises(RequestError):
        oip.parse(b"[", None)
