"""ONNX models: round trips from scikit-learn (skl2onnx) and torch (torch.onnx.export) with
identical onnxruntime outputs, sessions from memory, `amber convert` both ways, and
external data that is never followed."""

from __future__ import annotations

import base64
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber
from amber.errors import (
    CorruptFileError,
    FormatError,
    InvalidArgumentError,
    SerializationError,
)
from tests.graph.crafting import planted, saved

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'amber[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# Files opened while ``_OPENED`` is recording (an audit hook, installed once).
_OPENED: list[str] | None = None


def _hook(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_hook)


def run(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def same_outputs(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 5),
    ).eval()
    path = tmp_path_factory.mktemp("torch") / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randn(2, 3, 8, 8),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def sklearn_model() -> Any:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    return skl2onnx.convert_sklearn(
        pipe, initial_types=[("x", FloatTensorType([None, 4]))], options={"zipmap": False}
    )


def torch_feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)}


def iris_feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(2).standard_normal((7, 4)).astype(np.float32)}


def test_torch_export_round_trips_with_identical_outputs(torch_model: Any, tmp_path: Path) -> None:
    info = amber.save(torch_model, tmp_path / "m.amber")
    names = {t.name for t in info.tensors}
    # Each numeric initializer is its own amber tensor (digest, mmap, dedup).
    for init in torch_model.graph.initializer:
        assert f"initializers.{init.name}" in names
    loaded = amber.load(tmp_path / "m.amber")
    assert isinstance(loaded, onnx.ModelProto)
    onnx.checker.check_model(loaded)
    assert same_outputs(run(loaded, torch_feeds()), run(torch_model, torch_feeds()))
    session = amber.onnx_session(tmp_path / "m.amber")
    assert same_outputs(session.run(None, torch_feeds()), run(torch_model, torch_feeds()))


def test_skl2onnx_round_trips_with_identical_outputs(sklearn_model: Any, tmp_path: Path) -> None:
    amber.save(sklearn_model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    assert same_outputs(run(loaded, iris_feeds()), run(sklearn_model, iris_feeds()))
    session = amber.onnx_session(tmp_path / "m.amber", verify="lazy")
    assert same_outputs(session.run(None, iris_feeds()), run(sklearn_model, iris_feeds()))


def test_loaded_model_equals_original_up_to_data_encoding(torch_model: Any, tmp_path: Path) -> None:
    amber.save(torch_model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    for a, b in zip(torch_model.graph.initializer, loaded.graph.initializer, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert loaded.graph.node == torch_model.graph.node
    assert loaded.opset_import == torch_model.opset_import


def test_non_numeric_initializers_stay_inline(tmp_path: Path) -> None:
    labels = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    index = numpy_helper.from_array(np.array([1], dtype=np.int64), "index")
    node = helper.make_node("Gather", ["labels", "index"], ["out"])
    graph = helper.make_graph(
        [node],
        "g",
        [],
        [helper.make_tensor_value_info("out", TensorProto.STRING, [1])],
        [labels, index],
    )
    model = helper.make_model(graph)
    info = amber.save(model, tmp_path / "m.amber")
    assert [t.name for t in info.tensors] == ["initializers.index"]
    loaded = amber.load(tmp_path / "m.amber")
    assert run(loaded, {})[0].tolist() == ["dog"]
    assert amber.onnx_session(tmp_path / "m.amber").run(None, {})[0].tolist() == ["dog"]


def test_unchanged_initializers_dedup_in_the_store(torch_model: Any, tmp_path: Path) -> None:
    store = pytest.importorskip("amber.store").Store(tmp_path / "store")
    store.save(torch_model, "net")
    changed = onnx.ModelProto()
    changed.CopyFrom(torch_model)
    last = changed.graph.initializer[-1]
    array = numpy_helper.to_array(last) + 1
    last.CopyFrom(numpy_helper.from_array(array, last.name))
    store.save(changed, "net")
    assert same_outputs(run(store.load("net@2"), torch_feeds()), run(changed, torch_feeds()))
    first = {t.digest for t in amber.save(torch_model, tmp_path / "a.amber").tensors}
    second = {t.digest for t in amber.save(changed, tmp_path / "b.amber").tensors}
    assert len(first - second) == 1  # only the changed initializer is new


# -- amber convert ----------------------------------------------------------------------------


def test_convert_both_ways(torch_model: Any, tmp_path: Path) -> None:
    onnx.save(torch_model, str(tmp_path / "in.onnx"))
    result = amber.convert(tmp_path / "in.onnx", tmp_path / "m.amber")
    assert (result.src_format, result.dst_format) == ("onnx", "amber")
    back = amber.convert(tmp_path / "m.amber", tmp_path / "out.onnx")
    assert (back.src_format, back.dst_format) == ("amber", "onnx")
    again = onnx.load(str(tmp_path / "out.onnx"))
    assert same_outputs(run(again, torch_feeds()), run(torch_model, torch_feeds()))


def test_convert_reads_external_data_inside_the_folder(torch_model: Any, tmp_path: Path) -> None:
    copy = onnx.ModelProto()
    copy.CopyFrom(torch_model)  # onnx.save moves the data out of the model it is given
    onnx.save(
        copy,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (
        onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
        .graph.initializer[0]
        .external_data
    )
    amber.convert(tmp_path / "ext.onnx", tmp_path / "m.amber")
    (tmp_path / "weights.bin").unlink()  # the .amber file holds everything
    loaded = amber.load(tmp_path / "m.amber")
    assert same_outputs(run(loaded, torch_feeds()), run(torch_model, torch_feeds()))


def test_convert_refuses_non_onnx_amber(tmp_path: Path) -> None:
    amber.save({"w": np.zeros(3)}, tmp_path / "d.amber")
    with pytest.raises(SerializationError, match="not an ONNX model"):
        amber.convert(tmp_path / "d.amber", tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


def test_convert_refuses_garbage_named_onnx(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage")
    with pytest.raises(FormatError, match="not a valid ONNX protobuf"):
        amber.convert(tmp_path / "bad.onnx", tmp_path / "m.amber")
    (tmp_path / "text.onnx").write_text("hello")
    with pytest.raises(FormatError, match="cannot tell the format"):
        amber.convert(tmp_path / "text.onnx", tmp_path / "m.amber")
    assert not (tmp_path / "m.amber").exists()


# -- external data: never followed ------------------------------------------------------------


def external_model(location: str, offset: int | None = None, length: int | None = None) -> Any:
    """A model of one Identity over an initializer whose data is at ``location``."""
    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = weight.external_data.add()
            entry.key, entry.value = key, str(value)
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight]
    )
    return helper.make_model(graph)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return path


@pytest.mark.parametrize(
    ("location", "match"),
    [
        ("../secret.bin", "not a plain relative path"),
        ("SECRET_ABS", "not a plain relative path"),
        ("sub/../../secret.bin", "not a plain relative path"),
        ("link.bin", "outside the model's folder"),
        ("C:\\secret.bin", "not a plain relative path"),
        ("", "not a plain relative path"),
    ],
)
def test_convert_refuses_external_data_outside_the_folder(
    tmp_path: Path, secret: Path, location: str, match: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    location = location.replace("SECRET_ABS", str(secret))
    onnx.save(external_model(location), str(folder / "m.onnx"))
    global _OPENED
    _OPENED = []
    try:
        with pytest.raises(FormatError, match=match):
            amber.convert(folder / "m.onnx", tmp_path / "m.amber")
    finally:
        opened, _OPENED = _OPENED, None
    assert str(secret) not in opened and not any(p.endswith("link.bin") for p in opened)
    assert not (tmp_path / "m.amber").exists()


@pytest.mark.parametrize(
    ("offset", "length", "match"),
    [(0, 8, "tensor of 16"), (8, 16, "past the end"), (10**18, None, "past the end")],
)
def test_convert_refuses_bad_external_ranges(
    tmp_path: Path, offset: int, length: int | None, match: str
) -> None:
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    onnx.save(external_model("w.bin", offset, length), str(tmp_path / "m.onnx"))
    with pytest.raises(FormatError, match=match):
        amber.convert(tmp_path / "m.onnx", tmp_path / "m.amber")


def test_convert_inlines_valid_external_reference(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    onnx.save(external_model("w.bin", 0, 16), str(tmp_path / "m.onnx"))
    amber.convert(tmp_path / "m.onnx", tmp_path / "m.amber")
    assert run(amber.load(tmp_path / "m.amber"), {})[0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_save_refuses_model_with_external_references(secret: Path) -> None:
    with pytest.raises(SerializationError, match="external data"):
        amber.save(external_model(str(secret)), secret.with_name("m.amber"))
    assert not secret.with_name("m.amber").exists()


def _plant_external(tmp_path: Path, secret: Path) -> Path:
    """An .amber file whose stored protobuf points an initializer at ``secret``."""
    data = saved(onnx.ModelProto(), tmp_path)
    model = base64.b64encode(external_model(str(secret)).SerializeToString()).decode()

    def edit(root: dict) -> None:
        root["type"] = "onnx.onnx_ml_pb2:ModelProto"
        root["mode"] = "adapter"
        root["state"] = {
            "k": "dict",
            "v": {
                "model": {
                    "k": "bytes",
                    "b64": model,
                },
                "initializers": {"k": "dict", "v": {}},
            },
        }

    return planted(data, edit, tmp_path)


def test_load_refuses_planted_external_data(tmp_path: Path, secret: Path) -> None:
    path = _plant_external(tmp_path, secret)
    global _OPENED
    _OPENED = []
    try:
        with pytest.raises(FormatError, match="external data"):
            amber.load(path)
        with pytest.raises(FormatError, match="external data"):
            amber.onnx_session(path)
    finally:
        opened, _OPENED = _OPENED, None
    assert str(secret) not in opened


# -- malformed, truncated, mismatched ---------------------------------------------------------


def _edit_state(torch_model: Any, tmp_path: Path, edit: Any) -> Path:
    return planted(saved(torch_model, tmp_path), lambda root: edit(root["state"]["v"]), tmp_path)


def test_mismatched_initializer_shape_is_refused(torch_model: Any, tmp_path: Path) -> None:
    def edit(state: dict) -> None:
        inits = state["initializers"]["v"]
        first, second = list(inits)[:2]
        inits[first], inits[second] = inits[second], inits[first]

    path = _edit_state(torch_model, tmp_path, edit)
    with pytest.raises(FormatError, match="declared"):
        amber.load(path)
    with pytest.raises(FormatError, match="declared"):
        amber.onnx_session(path)


def test_unknown_initializer_is_refused(torch_model: Any, tmp_path: Path) -> None:
    def edit(state: dict) -> None:
        inits = state["initializers"]["v"]
        inits["not-in-graph"] = {"k": "ndarray", "dtype": "float32", "shape": [0]}

    with pytest.raises(FormatError, match="not in the model's graph"):
        amber.load(_edit_state(torch_model, tmp_path, edit))


def test_garbage_protobuf_is_refused(torch_model: Any, tmp_path: Path) -> None:
    def edit(state: dict) -> None:
        state["model"] = {"k": "bytes", "b64": base64.b64encode(b"\x0a\xff\xff\xff\x0f").decode()}

    with pytest.raises(FormatError, match="not a valid protobuf"):
        amber.load(_edit_state(torch_model, tmp_path, edit))


def test_extra_state_keys_are_refused(torch_model: Any, tmp_path: Path) -> None:
    def edit(state: dict) -> None:
        state["extra"] = 1

    with pytest.raises(FormatError, match="stored as"):
        amber.load(_edit_state(torch_model, tmp_path, edit))


def test_truncated_file_is_refused(torch_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.amber"
    amber.save(torch_model, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises((FormatError, CorruptFileError)):
        amber.load(path)
    with pytest.raises((FormatError, CorruptFileError)):
        amber.onnx_session(path)


def test_flipped_weight_byte_is_detected(torch_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.amber"
    info = amber.save(torch_model, path)
    with amber.open(path) as f:
        offset = f._reader.entries[info.tensors[0].name].offset
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        amber.onnx_session(path)


def test_session_of_a_file_without_onnx_model(tmp_path: Path) -> None:
    amber.save({"w": np.zeros(2)}, tmp_path / "d.amber")
    with pytest.raises(InvalidArgumentError, match="does not hold an ONNX model"):
        amber.onnx_session(tmp_path / "d.amber")


# -- the command line -------------------------------------------------------------------------


def test_cli_convert_and_inspect(torch_model: Any, tmp_path: Path, secret: Path) -> None:
    from tests.cli.test_main import run as amber_cli

    onnx.save(torch_model, str(tmp_path / "in.onnx"))
    result = amber_cli("convert", str(tmp_path / "in.onnx"), str(tmp_path / "m.amber"))
    assert result.returncode == 0, result.stderr
    result = amber_cli("inspect", str(tmp_path / "m.amber"))
    assert result.returncode == 0 and "ModelProto" in result.stdout
    result = amber_cli("convert", str(tmp_path / "m.amber"), str(tmp_path / "out.onnx"))
    assert result.returncode == 0, result.stderr
    assert same_outputs(
        run(onnx.load(str(tmp_path / "out.onnx")), torch_feeds()), run(torch_model, torch_feeds())
    )
    onnx.save(external_model("../secret.bin"), str(tmp_path / "sub.onnx"))
    result = amber_cli("convert", str(tmp_path / "sub.onnx"), str(tmp_path / "x.amber"))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "not a plain relative path" in result.stderr
