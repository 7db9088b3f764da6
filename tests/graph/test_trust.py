"""User classes load only when trusted; the error names each class and how to trust it."""

from __future__ import annotations

import functools
from collections import Counter, OrderedDict, defaultdict, deque
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.errors import UntrustedTypeError
from amber.graph.trust import REGISTRY
from tests.graph import user_models
from tests.graph.user_models import Color, Config, NeuralNetwork, Slotted, scale


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """amber.trust() is process-wide; keep each test's registrations to itself."""
    monkeypatch.setattr(REGISTRY, "_user", set(REGISTRY._user))


def test_user_class_needs_trust_and_error_says_how(tmp_path: Path) -> None:
    path = tmp_path / "net.amber"
    net = NeuralNetwork()
    saved = amber.save(net, path)
    assert saved.untrusted_types == ("tests.graph.user_models.NeuralNetwork",)
    assert amber.inspect(path).untrusted_types == ("tests.graph.user_models.NeuralNetwork",)
    with pytest.raises(UntrustedTypeError) as info:
        amber.load(path)
    message = str(info.value)
    assert "tests.graph.user_models.NeuralNetwork" in message
    assert "trusted=" in message and "amber.trust" in message
    loaded = amber.load(path, trusted=[NeuralNetwork])
    assert type(loaded) is NeuralNetwork
    x = np.ones((2, 4))
    assert np.array_equal(loaded.predict(x), net.predict(x))
    assert amber.load(path, trusted=["tests.graph.user_models.NeuralNetwork"]).name == "tiny"


def test_trust_registration_and_decorator(tmp_path: Path) -> None:
    path = tmp_path / "net.amber"
    amber.save(NeuralNetwork(), path)
    assert amber.trust(NeuralNetwork) is NeuralNetwork
    assert type(amber.load(path)) is NeuralNetwork
    assert amber.inspect(path).untrusted_types == ()


def test_one_error_lists_every_untrusted_name(tmp_path: Path) -> None:
    path = tmp_path / "many.amber"
    amber.save({"net": NeuralNetwork(), "cfg": Config(), "f": scale}, path)
    with pytest.raises(UntrustedTypeError) as info:
        amber.load(path)
    for name in ("NeuralNetwork", "Config", "Color", "user_models.scale"):
        assert name in str(info.value)


def test_user_types_roundtrip_when_trusted(tmp_path: Path) -> None:
    path = tmp_path / "obj.amber"
    obj = {
        "cfg": Config(lr=0.5, color=Color.BLUE),
        "slots": Slotted(),
        "f": scale,
        "partial": functools.partial(scale),
        "enum": Color.RED,
    }
    amber.save(obj, path)
    loaded = amber.load(path, trusted=[Config, Color, Slotted, scale])
    assert loaded["cfg"] == obj["cfg"]
    assert loaded["enum"] is Color.RED
    assert loaded["f"] is scale
    assert loaded["partial"].func is scale
    assert loaded["slots"].a == 1
    assert np.array_equal(loaded["slots"].b, np.arange(3))


def test_standard_library_containers_are_trusted_by_default(tmp_path: Path) -> None:
    path = tmp_path / "std.amber"
    obj = {
        "od": OrderedDict(b=1, a=2),
        "dd": defaultdict(list, {"x": [1]}),
        "counter": Counter("abca"),
        "deque": deque([1, 2], maxlen=5),
        "slice": slice(1, 10, 2),
        "range": range(3, 9),
        "dtype": np.dtype("float32"),
        "type": np.float64,
        "ufunc": np.log1p,
        "strings": np.array(["a", "bc"]),
        "dates": np.array(["2020-01-01"], dtype="datetime64[D]"),
        "objects": np.array([1, "a", None], dtype=object),
        "records": np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")]),
        "rng": np.random.default_rng(3),
        "legacy": np.random.RandomState(7),
    }
    amber.save(obj, path)
    assert amber.inspect(path).untrusted_types == ()
    loaded = amber.load(path)
    assert loaded["od"] == obj["od"] and list(loaded["od"]) == ["b", "a"]
    assert loaded["dd"]["missing"] == [] and loaded["dd"]["x"] == [1]
    assert loaded["counter"] == obj["counter"]
    assert loaded["deque"] == obj["deque"] and loaded["deque"].maxlen == 5
    assert loaded["slice"] == obj["slice"] and loaded["range"] == obj["range"]
    assert loaded["dtype"] == np.float32 and loaded["type"] is np.float64
    assert loaded["ufunc"] is np.log1p
    for key in ("strings", "dates", "objects", "records"):
        assert loaded[key].dtype == obj[key].dtype
        assert loaded[key].tolist() == obj[key].tolist()
    assert loaded["rng"].random() == obj["rng"].random()
    assert loaded["legacy"].normal() == obj["legacy"].normal()


def test_module_level_names_resolve_exactly(tmp_path: Path) -> None:
    path = tmp_path / "f.amber"
    amber.save(user_models.scale, path)
    assert amber.load(path, trusted=["tests.graph.user_models:scale"]) is scale


def test_class_defined_in_a_script_gets_guidance(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(
        "import amber\n"
        "class NeuralNetwork:\n"
        "    def __init__(self):\n"
        "        self.w = [1.0, 2.0]\n"
        f"amber.save(NeuralNetwork(), {str(tmp_path / 'nn.amber')!r})\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    with pytest.raises(UntrustedTypeError) as caught:
        amber.load(tmp_path / "nn.amber")
    message = str(caught.value)
    assert "trusted=['__main__.NeuralNetwork']" in message  # the exact line to paste
    assert "defined in a script (__main__)" in message and "amber.open(path)" in message
    assert "not installed" not in message
    # Following the advice without defining the class says so, not "cannot be found".
    with pytest.raises(UntrustedTypeError, match="this program has no NeuralNetwork"):
        amber.load(
            tmp_path / "nn.amber", trusted=amber.inspect(tmp_path / "nn.amber").untrusted_types
        )


def test_untrusted_types_pass_straight_to_trusted(tmp_path: Path) -> None:
    from tests.graph.user_models import NeuralNetwork

    amber.save(NeuralNetwork(), tmp_path / "m.amber")
    names = amber.inspect(tmp_path / "m.amber").untrusted_types
    with pytest.raises(UntrustedTypeError) as caught:
        amber.load(tmp_path / "m.amber")
    assert f"trusted={list(names)!r}" in str(caught.value)
    assert type(amber.load(tmp_path / "m.amber", trusted=names)) is NeuralNetwork
