"""The graph encoder: tensor names from paths, errors with paths, nothing callable encoded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amber.errors import SerializationError
from amber.graph import Encoder


def test_tensor_names_follow_the_object_path_and_stay_unique() -> None:
    enc = Encoder()
    enc.encode({"a": {"b": np.ones(1)}, "a.b": np.ones(1), "l": [np.ones(1), np.ones(1)]})
    assert [name for name, _ in enc.tensors] == ["a.b", "a.b~2", "l.0", "l.1"]


def test_root_array_and_long_paths_get_names() -> None:
    enc = Encoder()
    enc.encode(np.ones(2))
    assert enc.tensors[0][0] == "tensor"
    enc = Encoder()
    enc.encode({"k" * 600: np.ones(1)})
    assert enc.tensors[0][0] == "t0"


def test_nodes_are_plain_json() -> None:
    enc = Encoder()
    root = enc.encode({"x": [1, 2.5, None, True, "s", (1,), {2: 3}, b"b", float("inf"), 3j]})
    text = json.dumps(root, allow_nan=False)
    assert json.loads(text) == root


def test_error_names_the_path_and_type() -> None:
    class Thing:
        pass

    with pytest.raises(SerializationError) as info:
        Encoder().encode({"model": {"steps": [("scale", 1), ("clf", Thing())]}})
    message = str(info.value)
    assert "obj['model']['steps'][1][1]" in message
    assert "Thing" in message


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_local_classes_and_unreplayable_objects_are_refused() -> None:
    class MyDict(dict):
        pass

    with pytest.raises(SerializationError, match="defined inside a function"):
        Encoder().encode([MyDict()])
    with pytest.raises(SerializationError, match="which amber does not run"):
        Encoder().encode([np.matrix([[1]])])
    with pytest.raises(SerializationError, match="lambda"):
        Encoder().encode({"f": lambda x: x})


def test_surrogates_are_refused() -> None:
    with pytest.raises(SerializationError, match="surrogates"):
        Encoder().encode({"\udc80": 1})
