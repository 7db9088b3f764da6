"""Red-team regression tests: crafted files that default-trust loading must refuse.

Each test builds a hostile file the way an attacker would (save a benign object, edit the
manifest, re-seal the digests) and asserts that ``amber.load`` refuses it with a typed
``amber.errors`` exception. None of them uses the loaded object: a file that loads is the
failure (what it would then do at predict/transform/fit is in the comments).
"""

from __future__ import annotations

import collections
import copy
import functools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.ensemble import StackingRegressor
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import amber
from amber.errors import AmberError, SerializationError
from tests.graph.crafting import planted, saved

X = np.arange(40, dtype=np.float64).reshape(20, 2)
Y = np.arange(20) % 2


def refused(path: Path) -> str:
    with pytest.raises(AmberError) as caught:
        amber.load(path)
    return str(caught.value)


def ordered_dict(pairs: list[list[Any]], **extra: Any) -> dict[str, Any]:
    return {
        "k": "object",
        "type": "collections:OrderedDict",
        "mode": "call",
        "dictitems": [list(p) for p in pairs],
        **extra,
    }


def ref(node_id: int) -> dict[str, Any]:
    return {"k": "ref", "id": node_id}


def replace_root(root: dict[str, Any], node: dict[str, Any]) -> None:
    root.clear()
    root.update(node)


def hide_then_return(root: dict[str, Any], hidden: dict[str, Any], returned: int) -> None:
    """The root becomes ``{"m": <object id returned>}``: ``hidden`` is decoded first under
    the same key and then overwritten, so no container walk from the root ever sees it."""
    replace_root(root, {"k": "dict", "items": [["m", hidden], ["m", ref(returned)]]})


# -- 1. a dict subclass as an object's state skips the per-attribute schema --------------------


def _as_ordered_dict_state(**changes: Any) -> Any:
    def edit(root: dict[str, Any]) -> None:
        state = dict(root["state"]["v"], **changes)
        root["state"] = ordered_dict([[k, v] for k, v in state.items()])

    return edit


def test_ordered_dict_state_cannot_set_memory(tmp_path: Path) -> None:
    # Loaded, AgglomerativeClustering(memory="/tmp/...").fit(X) makes joblib write a cache
    # folder (func_code.py, output.pkl) there: the `memory` override (R3) never runs.
    data = saved(AgglomerativeClustering(), tmp_path)
    edit = _as_ordered_dict_state(memory=str(tmp_path / "cache"))
    refused(planted(data, edit, tmp_path))


def test_ordered_dict_state_cannot_set_n_jobs_or_shadow_methods(tmp_path: Path) -> None:
    # n_jobs=-1 survives (RESET is skipped) and `predict` is shadowed by instance state.
    data = saved(KNeighborsClassifier(algorithm="brute", n_neighbors=2).fit(X, Y), tmp_path)
    refused(planted(data, _as_ordered_dict_state(n_jobs=-1, predict="shadow"), tmp_path))


def test_counter_state_is_checked_per_attribute(tmp_path: Path) -> None:
    data = saved(AgglomerativeClustering(), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        state = dict(root["state"]["v"], memory=str(tmp_path / "cache"), planted_=1)
        root["state"] = {
            "k": "object",
            "type": "collections:Counter",
            "mode": "call",
            "args": [{"k": "dict", "v": state}],
        }

    refused(planted(data, edit, tmp_path))


# -- 2. numpy strings are not checked against closed string sets --------------------------------


def test_numpy_str_cannot_set_memory(tmp_path: Path) -> None:
    # memory=np.str_(path): joblib's check_memory accepts it (a str subclass) and writes.
    pipe = Pipeline([("s", StandardScaler()), ("lr", LogisticRegression())])
    data = saved({"m": pipe, "s": np.str_(str(tmp_path / "cache"))}, tmp_path)

    def edit(root: dict[str, Any]) -> None:
        root["v"]["m"]["state"]["v"]["memory"] = root["v"].pop("s")

    refused(planted(data, edit, tmp_path))


def test_numpy_str_cannot_make_a_vectorizer_open_files(tmp_path: Path) -> None:
    # input=np.str_("filename"): transform(["/etc/passwd"]) reads the file.
    data = saved({"cv": CountVectorizer().fit(["hello world"]), "s": np.str_("filename")}, tmp_path)

    def edit(root: dict[str, Any]) -> None:
        root["v"]["cv"]["state"]["v"]["input"] = root["v"].pop("s")

    refused(planted(data, edit, tmp_path))


def test_string_array_cannot_name_any_method(tmp_path: Path) -> None:
    # stack_method_ as a str array skips the closed set (fast path for arrays).
    model = StackingRegressor([("lr", LinearRegression())]).fit(X, Y)
    data = saved({"m": model, "s": np.array(["write_text"])}, tmp_path)

    def edit(root: dict[str, Any]) -> None:
        root["v"]["m"]["state"]["v"]["stack_method_"] = root["v"].pop("s")

    refused(planted(data, edit, tmp_path))


# -- 3. thread counts other than n_jobs ----------------------------------------------------------


def test_kmeans_thread_count_is_not_taken_from_a_file(tmp_path: Path) -> None:
    # predict() runs an OpenMP region with num_threads=_n_threads: 300 makes 300 threads,
    # 100000 kills the process ("libgomp: Thread creation failed"). Refusing the file or
    # resetting the value (as n_jobs is) both close it.
    data = saved(KMeans(n_clusters=2, n_init=1, random_state=0).fit(X), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        root["state"]["v"]["_n_threads"] = 100000

    path = planted(data, edit, tmp_path)
    try:
        loaded = amber.load(path)
    except AmberError:
        return
    assert loaded._n_threads != 100000, "_n_threads taken from the file"


# -- 4. containers filled after their owner was checked ------------------------------------------


def test_torch_hook_dict_filled_after_the_module_check(tmp_path: Path) -> None:
    # The module's _forward_pre_hooks is a dict node still being filled when the module
    # (decoded as its first key) is checked: model(x) then calls builtins.sum(model, args).
    data = saved(torch.nn.Sequential(), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        module = copy.deepcopy(root)
        module["id"] = 1
        module["state"]["v"]["_forward_pre_hooks"] = ref(2)
        hooks = {"k": "dict", "id": 2, "items": [[module, {"k": "func", "name": "builtins:sum"}]]}
        hide_then_return(root, hooks, 1)

    refused(planted(data, edit, tmp_path))


def test_vocabulary_filled_after_the_owner_validator(tmp_path: Path) -> None:
    # vocabulary_ is validated (columns 0..n-1) while still empty; then it gets column
    # 100000000: transform(docs).toarray() writes out of bounds (SIGSEGV).
    data = saved(CountVectorizer().fit(["hello world"]), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        model = copy.deepcopy(root)
        model["id"] = 3
        model["state"]["v"]["vocabulary_"] = ref(2)
        vocabulary = {
            "k": "dict",
            "id": 2,
            "items": [["hello", model], ["hello", 0], ["world", 100000000]],
        }
        hide_then_return(root, vocabulary, 3)

    refused(planted(data, edit, tmp_path))


def test_kw_args_filled_after_the_keyword_check(tmp_path: Path) -> None:
    # kw_args gets out= after the check that refuses it: transform(X) writes into an array.
    model = FunctionTransformer(func=np.negative, kw_args={})
    data = saved({"m": model, "w": np.zeros((2, 2))}, tmp_path)

    def edit(root: dict[str, Any]) -> None:
        target = root["v"].pop("w")
        transformer = root["v"]["m"]
        transformer["id"] = 1
        transformer["state"]["v"]["kw_args"] = ref(2)
        kw_args = {"k": "dict", "id": 2, "items": [["out", transformer], ["out", target]]}
        hide_then_return(root, kw_args, 1)

    refused(planted(data, edit, tmp_path))


def test_list_filled_after_the_owner_check(tmp_path: Path) -> None:
    # A list node is registered before its items: an object decoded as its first item can
    # hold it in a data-only attribute, and later items (functions, class objects) are
    # never checked.
    data = saved(LogisticRegression(), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        model = copy.deepcopy(root)
        model["id"] = 1
        model["state"]["v"]["C"] = ref(2)
        items = [model, {"k": "func", "name": "builtins:max"}]
        hide_then_return(root, {"k": "list", "id": 2, "v": items}, 1)

    refused(planted(data, edit, tmp_path))


# -- 5. a partial's state is applied after it was checked where it is placed ---------------------


def test_defaultdict_factory_partial_allocating_from_a_tiny_file(tmp_path: Path) -> None:
    # vocabulary_ = defaultdict(partial(bytearray, 10**12)) from a 1.6 KB file: transform on
    # an unseen word calls the factory (a 1 GB allocation was measured with 10**9).
    data = saved(CountVectorizer().fit(["hello world"]), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        model = copy.deepcopy(root)
        model["id"] = 3
        model["state"]["v"]["vocabulary_"] = ref(2)
        factory_state = {"k": "dict", "v": {"default_factory": ref(1)}}
        vocabulary = {
            "k": "object",
            "type": "collections:defaultdict",
            "mode": "call",
            "id": 2,
            "dictitems": [["hello", 0], ["world", 1], ["\x00", model]],
            "state": {"k": "tuple", "v": [None, factory_state]},
        }
        partial = {
            "k": "object",
            "type": "functools:partial",
            "mode": "call",
            "id": 1,
            "args": [{"k": "func", "name": "builtins:len"}],
            "state": {
                "k": "tuple",
                "v": [
                    {"k": "type", "name": "builtins:bytearray"},
                    {"k": "tuple", "v": [10**12]},
                    {"k": "dict", "v": {}},
                    {"k": "dict", "items": [["h", vocabulary], ["h", None]]},
                ],
            },
        }
        hide_then_return(root, partial, 3)

    refused(planted(data, edit, tmp_path))


# -- 6. parameter grids set parameters the per-attribute rules refuse ---------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("memory", "/tmp/amber-redteam-cache"), ("lr__n_jobs", -1)],
)
def test_param_grid_cannot_set_refused_parameters(key: str, value: Any, tmp_path: Path) -> None:
    # GridSearchCV.fit(X, y) calls set_params(**candidate): memory writes a joblib cache,
    # n_jobs starts workers.
    pipe = Pipeline([("s", StandardScaler()), ("lr", LogisticRegression())])
    data = saved(GridSearchCV(pipe, {"lr__C": [1.0]}, cv=2), tmp_path)

    def edit(root: dict[str, Any]) -> None:
        root["state"]["v"]["param_grid"]["v"][key] = {"k": "list", "v": [value]}

    refused(planted(data, edit, tmp_path))


# -- 7. error messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["dtype", "generator"])
def test_error_messages_do_not_leak_addresses(target: str, tmp_path: Path) -> None:
    data = saved({"d": torch.float32, "g": np.random.default_rng(0)}, tmp_path)

    def edit(root: dict[str, Any]) -> None:
        generator = copy.deepcopy(root["v"]["g"])
        if target == "dtype":
            root["v"]["d"]["state"] = generator
        else:
            root["v"]["g"]["state"]["v"]["bit_generator"] = generator

    message = refused(planted(data, edit, tmp_path))
    assert not re.search(r"0x[0-9a-fA-F]{6,}", message), message


# -- 8. save must refuse what load refuses -------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: {"d": collections.defaultdict(LogisticRegression)},
        lambda: {"p": functools.partial(np.add, out=np.zeros(3))},
        lambda: {"p": functools.partial(LogisticRegression, C=2.0)},
        lambda: {"d": collections.defaultdict(functools.partial(int, 3))},
        lambda: {"m": np.ma.array(np.array([np.add, 1], dtype=object))},
        lambda: {"q": collections.deque([1, 2])},
    ],
    ids=[
        "defaultdict-class-factory",
        "partial-out",
        "partial-of-class",
        "defaultdict-partial-factory",
        "masked-object-array-with-function",
        "deque-without-maxlen",
    ],
)
def test_save_refuses_what_load_refuses(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "saved.amber"
    try:
        amber.save(make(), path)
    except SerializationError:
        return
    amber.load(path)  # saved, so it must load
