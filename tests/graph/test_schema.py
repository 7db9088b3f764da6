"""Typed state (docs/security.md, rules R1-R3 and R5): one regression test per category of
attack the adversarial review found, each with the exact error.

Files are made by saving a benign object and editing its manifest (re-sealed), as an
attacker would; loading must refuse them before the planted value reaches the object.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier, StackingRegressor
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import FunctionTransformer

import amber
from amber.errors import FormatError, SerializationError, UntrustedTypeError
from tests.graph import user_models
from tests.graph.crafting import find, planted, saved, state

X = np.arange(40, dtype=np.float64).reshape(20, 2)
Y = np.arange(20) % 2


def refused(path: Path, fragment: str, error: type = FormatError, **options: Any) -> str:
    with pytest.raises(error) as caught:
        amber.load(path, **options)
    assert fragment in str(caught.value), str(caught.value)
    return str(caught.value)


FUNC_MAX = {"k": "func", "name": "builtins:max"}


# -- 1. callables anywhere ---------------------------------------------------------------------


def test_a_function_where_data_belongs_is_refused(tmp_path: Path) -> None:
    data = saved(LogisticRegression(), tmp_path)
    path = planted(data, lambda root: state(root).update(C=FUNC_MAX), tmp_path)
    refused(path, "root<LogisticRegression>.C: the function builtins.max may not be placed here")


def test_a_class_object_where_data_belongs_is_refused(tmp_path: Path) -> None:
    data = saved(LogisticRegression(), tmp_path)
    cls = {"k": "type", "name": "sklearn.linear_model._logistic:LogisticRegression"}
    path = planted(data, lambda root: state(root).update(C=cls), tmp_path)
    refused(path, "the class sklearn.linear_model._logistic.LogisticRegression may not be placed")


def test_a_declared_callable_takes_only_functions_and_plain_partials(tmp_path: Path) -> None:
    ok = FunctionTransformer(func=functools.partial(np.clip, a_min=0.0, a_max=1.0))
    loaded = amber.load(_write(ok, tmp_path))
    assert loaded.func.keywords == {"a_min": 0.0, "a_max": 1.0}
    # A partial that binds a function, or writes through out=, is refused at save and load.
    for func in (functools.partial(max, "PAYLOAD", key=len), functools.partial(np.add, out=X)):
        with pytest.raises(
            SerializationError, match=r"loading would refuse obj\.func: a functools\.partial"
        ):
            amber.save(FunctionTransformer(func=func), tmp_path / "x.amber")
    data = saved(FunctionTransformer(func=functools.partial(np.add, 1.0)), tmp_path)

    def bind_out(root: dict[str, Any]) -> None:
        partial = find(root, "functools:partial")
        partial["state"]["v"][2] = {"k": "dict", "v": {"out": 1.0}}

    refused(planted(data, bind_out, tmp_path), "may not bind the keyword 'out'")


def test_a_partial_of_a_class_is_refused(tmp_path: Path) -> None:
    data = saved(FunctionTransformer(func=functools.partial(np.add, 1.0)), tmp_path)

    def wrap_class(root: dict[str, Any]) -> None:
        partial = find(root, "functools:partial")
        cls = {"k": "type", "name": "sklearn.linear_model._base:LinearRegression"}
        partial["args"][0] = cls
        partial["state"]["v"][0] = cls

    refused(planted(data, wrap_class, tmp_path), "partial cannot be called with these arguments")


def test_defaultdict_factories_are_builtins_only(tmp_path: Path) -> None:
    data = saved({"vocabulary": defaultdict(list, {"a": [1]})}, tmp_path)
    assert amber.load(planted(data, lambda root: None, tmp_path))["vocabulary"]["b"] == []
    factory = {"k": "type", "name": "sklearn.linear_model._base:LinearRegression"}

    def plant(root: dict[str, Any]) -> None:
        root["v"]["vocabulary"]["args"] = [factory]

    refused(planted(data, plant, tmp_path), "defaultdict cannot be called with these arguments")
    with pytest.raises(SerializationError, match="default_factory must be one of"):
        amber.save({"d": defaultdict(LinearRegression)}, tmp_path / "x.amber")


def test_torch_hooks_and_shadowing_state_are_refused(tmp_path: Path) -> None:
    data = saved(torch.nn.Linear(3, 2), tmp_path)
    hooks = {
        "k": "object",
        "type": "collections:OrderedDict",
        "mode": "call",
        "dictitems": [[0, {"k": "func", "name": "torch.nn.functional:relu"}]],
    }
    for key, value, fragment in (
        ("_forward_pre_hooks", hooks, "the function torch.nn.functional.relu may not be placed"),
        ("forward", FUNC_MAX, "sets 'forward', which is a method or property of the class"),
        ("_compiled_call_impl", FUNC_MAX, "the function builtins.max may not be placed here"),
    ):
        path = planted(data, lambda root, k=key, v=value: state(root).update({k: v}), tmp_path)
        refused(path, fragment)


def test_sequential_holds_only_modules(tmp_path: Path) -> None:
    data = saved(torch.nn.Sequential(torch.nn.ReLU()), tmp_path)

    def plant(root: dict[str, Any]) -> None:
        modules = state(root)["_modules"]
        modules["v"]["0"] = FUNC_MAX

    refused(planted(data, plant, tmp_path), "root<Sequential>._modules['0']: the function")


# -- 2. an object where another type belongs ---------------------------------------------------


def test_method_names_are_a_closed_set(tmp_path: Path) -> None:
    model = StackingRegressor([("lr", LinearRegression())]).fit(X, Y)
    data = saved(model, tmp_path)

    def plant(root: dict[str, Any]) -> None:
        state(root)["stack_method_"] = {"k": "list", "v": ["write_text"]}

    refused(planted(data, plant, tmp_path), "the string 'write_text' is not one this attribute")


def test_state_may_not_shadow_a_method(tmp_path: Path) -> None:
    data = saved(LogisticRegression(), tmp_path)
    path = planted(data, lambda root: state(root).update(predict=1), tmp_path)
    refused(path, "sets 'predict', which is a method or property of the class")


def test_an_undeclared_attribute_is_refused(tmp_path: Path) -> None:
    data = saved(LogisticRegression(), tmp_path)
    path = planted(data, lambda root: state(root).update(planted_=1), tmp_path)
    refused(path, "has no attribute 'planted_' in amber's state schema")


def test_concrete_paths_are_saved_as_pure_paths(tmp_path: Path) -> None:
    loaded = amber.load(_write({"where": pathlib.Path("/tmp/x")}, tmp_path))
    assert type(loaded["where"]) is pathlib.PurePosixPath
    assert loaded["where"] == pathlib.PurePosixPath("/tmp/x")
    data = saved({"where": pathlib.PurePosixPath("/tmp/x")}, tmp_path)
    path = planted(data, lambda root: root["v"]["where"].update(type="pathlib:PosixPath"), tmp_path)
    refused(path, "pathlib.PosixPath", UntrustedTypeError)


# -- 3. side effects in trusted classes --------------------------------------------------------


def test_worker_processes_are_never_taken_from_a_file(tmp_path: Path) -> None:
    model = RandomForestClassifier(n_estimators=3, n_jobs=2, random_state=0).fit(X, Y)
    loaded = amber.load(_write(model, tmp_path))
    assert loaded.n_jobs is None
    assert model.n_jobs == 2  # saving changed nothing
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_pre_dispatch_is_never_code(tmp_path: Path) -> None:
    data = saved(GridSearchCV(LogisticRegression(), {"C": [1.0]}), tmp_path)
    payload = "__import__('os').system('id')"
    path = planted(data, lambda root: state(root).update(pre_dispatch=payload), tmp_path)
    refused(path, "joblib evaluates it as Python code")


def test_vectorizers_never_open_files(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="'filename' is not one this attribute"):
        amber.save(CountVectorizer(input="filename"), tmp_path / "x.amber")
    data = saved(CountVectorizer(), tmp_path)
    path = planted(data, lambda root: state(root).update(input="file"), tmp_path)
    refused(path, "the string 'file' is not one this attribute may hold")


@pytest.mark.parametrize(
    "name",
    [
        "sklearn.callback._scoring_monitor:ScoringMonitor",
        "sklearn.utils.estimator_checks:NoSuchClass",
        "sklearn.utils._test_common.instance_generator:NoSuchClass",
        "sklearn.experimental.enable_halving_search_cv:X",
        "sklearn.utils.parallel:Parallel",
    ],
)
def test_classes_outside_the_table_import_nothing(name: str, tmp_path: Path) -> None:
    data = saved({"x": 1}, tmp_path)
    node = {"k": "object", "type": name, "mode": "new"}
    path = planted(data, lambda root: root["v"].update(x=node), tmp_path)
    script = (
        "import sys, amber\n"
        "from amber.errors import UntrustedTypeError\n"
        f"try:\n    amber.load({str(path)!r})\nexcept UntrustedTypeError as e:\n"
        "    print('refused', e)\n"
        f"print(sorted(m for m in sys.modules if m.startswith(('sklearn', 'pytest'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("refused loading would import untrusted name"), out
    assert out.strip().endswith("[]"), out  # not even scikit-learn was imported


# -- 5/6. allocation sized by the file ---------------------------------------------------------


def test_torch_layers_are_never_created_by_a_call(tmp_path: Path) -> None:
    data = saved(torch.nn.Linear(3, 2), tmp_path)

    def plant(root: dict[str, Any]) -> None:
        root.update(mode="call", args=[70000, 70000])
        root.pop("state")

    refused(planted(data, plant, tmp_path), "torch.nn.modules.linear.Linear cannot be created")


def test_tree_construction_arguments_must_agree(tmp_path: Path) -> None:
    data = saved(RandomForestClassifier(n_estimators=1, random_state=0).fit(X, Y), tmp_path)

    def plant(root: dict[str, Any]) -> None:
        tree = find(root, "sklearn.tree._tree:Tree")
        tree["args"][2] = 1 << 40  # n_outputs: one class count per output is read

    refused(planted(data, plant, tmp_path), "Tree cannot be called with these arguments")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(2**31 - 1, "exceeds what its tensors hold"), (7, "but its configuration makes")],
)
def test_torch_layer_configuration_must_describe_its_weights(
    value: int, fragment: str, tmp_path: Path
) -> None:
    """Found by the gadget fuzzer: an LSTM whose hidden_size disagrees with its weights
    hangs or segfaults in torch's kernels at the first call."""
    data = saved(torch.nn.LSTM(3, 4), tmp_path)
    path = planted(data, lambda root: state(root).update(hidden_size=value), tmp_path)
    refused(path, fragment)


# -- the caller's own classes ------------------------------------------------------------------


def test_user_classes_hold_callables_only_where_declared(tmp_path: Path) -> None:
    model = user_models.Activated()
    name = "tests.graph.user_models.Activated"
    with pytest.raises(SerializationError, match=r"amber.trust\(Activated, callables"):
        amber.save(model, tmp_path / "x.amber")
    amber.trust(user_models.Activated, callables=["activation"])
    path = _write(model, tmp_path)
    loaded = amber.load(path, trusted=[name])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    data = path.read_bytes()
    planted_path = planted(data, lambda root: state(root).update(scale=FUNC_MAX), tmp_path)
    refused(planted_path, "root<Activated>.scale: the function builtins.max", trusted=[name])


def _write(obj: Any, tmp_path: Path) -> Path:
    path = tmp_path / "obj.amber"
    amber.save(obj, path)
    return path


# -- key checks remembered across loads never skip a value check -----------------------------


def test_remembered_key_sets_still_check_every_value(tmp_path: Path) -> None:
    # A benign file loads first (its key set is remembered as passing the key checks); a
    # file with the same keys but a planted value, or a special key, is still refused.
    data = saved(LogisticRegression(), tmp_path)
    amber.load(tmp_path / "benign.amber")
    path = planted(data, lambda root: state(root).update(C=FUNC_MAX), tmp_path)
    refused(path, "root<LogisticRegression>.C: the function builtins.max may not be placed here")
    special = planted(data, lambda root: state(root).update(__class__=1), tmp_path)
    refused(special, "special attribute '__class__'")
    for _ in range(2):  # refused every time: a refused key set is never remembered
        shadow = planted(data, lambda root: state(root).update(predict=1), tmp_path)
        refused(shadow, "'predict', which is a method or property of the class")
