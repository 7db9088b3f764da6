"""A structure-aware mutation fuzzer for scikit-learn models loaded from hostile files.

Rule R4 (validation that holds at use): a file must not be able to give a trusted
scikit-learn class values with which its compiled code reads or writes out of bounds at
``predict`` / ``transform`` / ``query`` time. This module looks for such files by
experiment:

1. fit each target estimator (small data, fixed seeds) and save it with amber, in a
   forked child (the driver itself never runs OpenMP code, so it can fork safely);
2. read the file's manifest and tensors back and mutate them *as a graph*: integers of
   compiled members and owner fields set to boundary values (-1, 0, n-1, n, 2^31,
   2^63-1...), record fields of tree nodes, arrays resized, reshaped, retyped or swapped
   for another tensor of the file, attributes deleted, list members dropped or repeated;
3. write the mutated graph with the container writer (digests sealed, so only the graph
   is hostile) and, in a forked child, load it and call every prediction method the
   object has (dense and sparse input), plus the queries of the neighbour trees it holds;
4. classify the child's end: loaded, refused (amber's FormatError), another error, or a
   crash (killed by a signal: SIGSEGV, SIGBUS, SIGABRT, SIGFPE...) or a hang (SIGALRM).

Crashes are written to ``--out`` (the file, and a JSON line with the mutations, the
signal and the call that crashed); a crash while loading, before any validator ran, is
counted apart (``load-crash``, see ``KNOWN_LOAD_CRASH``). A bounded, deterministic run is
part of the test suite (``test_owner_validation.py``); ``make fuzz-sklearn`` runs it for as
long as asked (``FUZZ_SECONDS``, ``FUZZ_SEED``, ``FUZZ_OUT``)::

    python -m tests.adapters.sklearn_fuzz --seconds 1500 --jobs 2 --out fuzz-out

Other modes: ``--replay CASES.json`` builds and runs given cases (the regression tests use
it, in a fresh interpreter), ``--minimize crashes.jsonl`` reduces crashes to the fewest
mutations, ``--without-validators`` drops amber's scikit-learn checks in the children (to
show what they prevent), ``--check FILE...`` runs existing files.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# -- outcomes ----------------------------------------------------------------------------------

LOADED, REFUSED, OTHER_ERROR, AMBER_ERROR = 0, 3, 4, 5
OUTCOME_NAMES = {LOADED: "loaded", REFUSED: "refused", OTHER_ERROR: "escaped", AMBER_ERROR: "error"}
CHILD_TIMEOUT_S = 20
CHILD_MEMORY = 6 << 30  # address space of a child: a huge allocation fails, not the machine

# Methods called on the loaded object (each with its own copy of X), then with sparse X.
METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
    "apply",
    "decision_path",
    "kneighbors",
    "radius_neighbors",
    "kneighbors_graph",
    "staged_predict",
    "staged_decision_function",
    "inverse_transform",
)
SPARSE_METHODS = ("predict", "decision_function", "transform", "apply", "decision_path")
PROPERTIES = ("feature_importances_",)


def outcome_name(code: int) -> str:
    if code < 0:
        return "hang" if -code in (signal.SIGALRM, signal.SIGKILL) else "crash"
    return OUTCOME_NAMES.get(code, f"exit {code}")


# -- targets -----------------------------------------------------------------------------------


def _standard(name: str, **params: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        from tests.adapters.sklearn_cases import all_estimator_classes, data_for, make_estimator

        estimator = make_estimator(name, all_estimator_classes()[name])
        if params:
            estimator.set_params(**params)
        return estimator, data_for(name, estimator)

    return make


def _with_data(name: str, data: Callable[[], Any], **params: Any) -> Callable[[], Any]:
    def make() -> tuple[Any, Any]:
        estimator, _ = _standard(name, **params)()
        return estimator, data()

    return make


def _categorical_hgb(name: str) -> Callable[[], tuple[Any, Any]]:
    def data() -> Any:
        from tests.adapters.sklearn_cases import Data, iris

        X, y = iris()
        X = X.copy()
        X[:, 0] = y  # a category that tells the class: the trees split on it
        if name.endswith("Regressor"):
            return Data(X, X[:, 2] + 3 * X[:, 0])
        return Data(X, y)

    return _with_data(name, data, categorical_features=[0])


def _mahalanobis() -> Any:
    from tests.adapters.sklearn_cases import iris

    X = iris()[0]
    return {"VI": np.linalg.inv(np.cov(X.T))}


def _sparse_iris() -> Any:
    import scipy.sparse as sp

    from tests.adapters.sklearn_cases import Data, iris

    X, y = iris()
    return Data(sp.csr_matrix(X), y, sp.csr_matrix(X))


def _precomputed() -> Any:
    from tests.adapters.sklearn_cases import Data, iris

    X, y = iris()
    return Data(X @ X.T, y)


# The targets the brief names (compiled members, their owners) first; ``BROAD`` adds the
# rest of scikit-learn's estimators that compiled code serves at prediction time.
TARGETS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "DecisionTreeClassifier": _standard("DecisionTreeClassifier", max_depth=3),
    "DecisionTreeRegressor": _standard("DecisionTreeRegressor", max_depth=3),
    "ExtraTreeClassifier": _standard("ExtraTreeClassifier", max_depth=3),
    "ExtraTreeRegressor": _standard("ExtraTreeRegressor", max_depth=3),
    "RandomForestClassifier": _standard("RandomForestClassifier", n_estimators=3, max_depth=3),
    "RandomForestRegressor": _standard("RandomForestRegressor", n_estimators=3, max_depth=3),
    "ExtraTreesClassifier": _standard("ExtraTreesClassifier", n_estimators=3, max_depth=3),
    "ExtraTreesRegressor": _standard("ExtraTreesRegressor", n_estimators=3, max_depth=3),
    "GradientBoostingClassifier": _standard(
        "GradientBoostingClassifier", n_estimators=3, max_depth=2
    ),
    "GradientBoostingRegressor": _standard(
        "GradientBoostingRegressor", n_estimators=3, max_depth=2
    ),
    "IsolationForest": _standard("IsolationForest", n_estimators=3, max_features=3),
    "RandomTreesEmbedding": _standard("RandomTreesEmbedding", n_estimators=3, max_depth=3),
    "BaggingClassifier[trees]": _standard("BaggingClassifier", n_estimators=3, max_features=3),
    "BaggingRegressor[trees]": _standard("BaggingRegressor", n_estimators=3, max_features=3),
    "HistGradientBoostingClassifier": _standard("HistGradientBoostingClassifier", max_iter=3),
    "HistGradientBoostingRegressor": _standard("HistGradientBoostingRegressor", max_iter=3),
    "HistGradientBoostingClassifier[cat]": _categorical_hgb("HistGradientBoostingClassifier"),
    "HistGradientBoostingRegressor[cat]": _categorical_hgb("HistGradientBoostingRegressor"),
    "KNeighborsClassifier[kd_tree]": _standard(
        "KNeighborsClassifier", algorithm="kd_tree", leaf_size=4
    ),
    "KNeighborsClassifier[ball_tree]": _standard(
        "KNeighborsClassifier", algorithm="ball_tree", leaf_size=4
    ),
    "KNeighborsClassifier[brute]": _standard("KNeighborsClassifier", algorithm="brute"),
    "KNeighborsRegressor[kd_tree]": _standard(
        "KNeighborsRegressor", algorithm="kd_tree", leaf_size=4
    ),
    "KNeighborsClassifier[mahalanobis]": lambda: _standard(
        "KNeighborsClassifier",
        algorithm="ball_tree",
        leaf_size=4,
        metric="mahalanobis",
        metric_params=_mahalanobis(),
    )(),
    "KNeighborsClassifier[sparse]": _with_data("KNeighborsClassifier", _sparse_iris),
    "RadiusNeighborsClassifier": _standard("RadiusNeighborsClassifier", radius=2.0),
    "RadiusNeighborsRegressor": _standard("RadiusNeighborsRegressor", radius=2.0),
    "NearestNeighbors[kd_tree]": _standard("NearestNeighbors", algorithm="kd_tree", leaf_size=4),
    "NearestNeighbors[ball_tree]": _standard(
        "NearestNeighbors", algorithm="ball_tree", leaf_size=4
    ),
    "KernelDensity[kd_tree]": _standard("KernelDensity", algorithm="kd_tree", leaf_size=4),
    "KernelDensity[ball_tree]": _standard("KernelDensity", algorithm="ball_tree", leaf_size=4),
    "LocalOutlierFactor": _standard("LocalOutlierFactor", novelty=True, n_neighbors=5, leaf_size=4),
    "KNeighborsTransformer": _standard("KNeighborsTransformer"),
    "RadiusNeighborsTransformer": _standard("RadiusNeighborsTransformer", radius=2.0),
    "KNNImputer": _standard("KNNImputer"),
    "Isomap": _standard("Isomap"),
    "SVC": _standard("SVC"),
    "SVC[proba]": _standard("SVC", probability=True),
    "SVC[precomputed]": _with_data("SVC", _precomputed, kernel="precomputed"),
    "SVC[sparse]": _with_data("SVC", _sparse_iris),
    "NuSVC": _standard("NuSVC"),
    "SVR": _standard("SVR"),
    "NuSVR": _standard("NuSVR"),
    "OneClassSVM": _standard("OneClassSVM"),
    "KMeans": _standard("KMeans"),
    "MiniBatchKMeans": _standard("MiniBatchKMeans"),
    "BisectingKMeans": _standard("BisectingKMeans"),
    "OneHotEncoder": _standard("OneHotEncoder", sparse_output=False),
    "OneHotEncoder[sparse]": _standard("OneHotEncoder"),
    "OrdinalEncoder": _standard("OrdinalEncoder"),
    "DictVectorizer": _standard("DictVectorizer", sparse=False),
    "CountVectorizer": _standard("CountVectorizer"),
    "TfidfVectorizer": _standard("TfidfVectorizer"),
    "HashingVectorizer": _standard("HashingVectorizer"),
    "FeatureHasher": _standard("FeatureHasher"),
    "LatentDirichletAllocation": _standard("LatentDirichletAllocation"),
    "NMF": _standard("NMF"),
    "MiniBatchNMF": _standard("MiniBatchNMF"),
    "PolynomialFeatures": _standard("PolynomialFeatures"),
    "KBinsDiscretizer": _standard("KBinsDiscretizer"),
    # transform caches the label -> column dict, which is then saved with the model
    "MultiLabelBinarizer[cached]": lambda: (
        *_standard("MultiLabelBinarizer")(),
        lambda model, data: model.transform(data.X),
    ),
}
BROAD = (
    "AffinityPropagation",
    "Birch",
    "GaussianMixture",
    "LabelPropagation",
    "LabelSpreading",
    "LinearSVC",
    "LogisticRegression",
    "MeanShift",
    "NearestCentroid",
    "NeighborhoodComponentsAnalysis",
    "SGDClassifier",
    "SplineTransformer",
    "StackingClassifier",
    "TargetEncoder",
    "TfidfTransformer",
    "VotingClassifier",
)
for _name in BROAD:
    TARGETS.setdefault(_name, _standard(_name))
FOCUS = (
    "DecisionTree",
    "ExtraTree",
    "RandomForest",
    "GradientBoosting",
    "IsolationForest",
    "RandomTreesEmbedding",
    "Bagging",
    "HistGradientBoosting",
    "KNeighbors",
    "RadiusNeighbors",
    "NearestNeighbors",
    "KernelDensity",
    "LocalOutlierFactor",
    "SVC",
    "NuSV",
    "SVR",
    "OneClassSVM",
)
# The few a bounded run in the test suite covers (fast to fit, one of each family).
QUICK = (
    "DecisionTreeClassifier",
    "RandomForestRegressor",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "KNeighborsClassifier[kd_tree]",
    "KernelDensity[kd_tree]",
    "SVC",
)


# -- the graph as a document -------------------------------------------------------------------


@dataclass
class Doc:
    """A saved file as data: the manifest's keys (``root`` holds the object graph) and the
    tensors by name. Mutations copy what they change."""

    extra: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: Path) -> Doc:
        from amber.container.manifest import RESERVED_TOP_KEYS
        from amber.container.reader import ContainerReader

        with ContainerReader(path, use_mmap=False) as reader:
            manifest = reader.manifest
            tensors = {t["name"]: np.array(reader.array(t["name"])) for t in manifest["tensors"]}
        extra = {k: v for k, v in manifest.items() if k not in RESERVED_TOP_KEYS}
        return cls(json.loads(json.dumps(extra)), tensors)

    def copy(self) -> Doc:
        return Doc(copy.deepcopy(self.extra), dict(self.tensors))

    def write(self, path: Path) -> None:
        from amber.container.writer import write

        used = set(_tensor_names(self.extra["root"]))
        items = [(name, array) for name, array in self.tensors.items() if name in used]
        write(path, items, self.extra)

    def new_tensor(self, base: str, array: np.ndarray) -> str:
        name = f"{base}~{len(self.tensors)}"
        while name in self.tensors:
            name += "~"
        self.tensors[name] = np.ascontiguousarray(array)
        return name


def _tensor_names(node: Any) -> Iterator[str]:
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("tensor"), str):
                yield node["tensor"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def get_at(root: Any, path: list[Any]) -> Any:
    for part in path:
        root = root[part]
    return root


def set_at(root: Any, path: list[Any], value: Any) -> None:
    get_at(root, path[:-1])[path[-1]] = value


def resolve(root: Any, spec: str) -> list[Any]:
    """The JSON path of ``spec``, an attribute path such as ``tree_/args/0`` or
    ``estimators_/2/tree_/nodes``: at an object a name is an attribute of its state
    (``args`` its construction arguments), at a dict a key, at a list or object array an
    index. A reference is followed to the node that declares it."""
    path: list[Any] = []
    node = root
    parts = [p for p in spec.split("/") if p]
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, dict) and node.get("k") == "ref":
            path = _declaring(root, node["id"])
            node = get_at(root, path)
            continue
        kind = node.get("k") if isinstance(node, dict) else None
        if kind == "object" and part == "args":
            path += ["args", int(parts[i + 1])]
            i += 1
        elif kind == "object" and part == "state":
            path += ["state"]
        elif kind == "object" and node.get("state", {}).get("k") in ("tuple", "list"):
            path += ["state", "v", int(part)]  # a state tuple (KD trees, metrics)
        elif kind == "object":
            path += ["state", "v", part]
        elif kind == "dict" and part not in (node.get("v") or {}):  # a non-string key
            keys = [_key_label(pair[0]) for pair in node.get("items") or ()]
            path += ["items", keys.index(part), 1]
        elif kind == "dict":
            path += ["v", part]
        elif kind == "objarray":  # one index per dimension
            shape = node["shape"]
            flat = 0
            for dim in shape:
                flat = flat * dim + int(parts[i])
                i += 1
            i -= 1
            path += ["v", flat]
        elif kind in ("list", "tuple"):
            path += ["v", int(part)]
        else:
            raise KeyError(f"{spec}: cannot go into {kind!r} at {part!r}")
        node = get_at(root, path)
        i += 1
    if isinstance(node, dict) and node.get("k") == "ref":  # the node that declares it
        path = _declaring(root, node["id"])
    return path


def _key_label(key: Any) -> str:
    value = _read_int(key)
    return str(key if value is None else value)


def _declaring(root: Any, node_id: int) -> list[Any]:
    stack: list[tuple[Any, list[Any]]] = [(root, [])]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            if node.get("id") == node_id and node.get("k") != "ref":
                return at
            stack.extend((v, [*at, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*at, i]) for i, v in enumerate(node))
    raise KeyError(f"no node declares id {node_id}")


# -- mutation sites ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    kind: str  # int, float, str, null, tensor, record, attr, seq
    path: tuple[Any, ...]


_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def sites(root: Any) -> list[Site]:
    """Every place of the graph a mutation can change."""
    out: list[Site] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, bool):
            continue
        if isinstance(node, int):
            out.append(Site("int", path))
        elif isinstance(node, float):
            out.append(Site("float", path))
        elif isinstance(node, str):
            out.append(Site("str", path))
        elif node is None:
            out.append(Site("null", path))
        elif isinstance(node, dict):
            kind = node.get("k")
            if kind == "int" or (kind == "npscalar" and node.get("dtype") in _INT_DTYPES):
                out.append(Site("int", path))
            elif kind == "float":
                out.append(Site("float", path))
            elif kind == "ndarray" and "tensor" in node:
                record = isinstance(node.get("dtype"), dict)
                out.append(Site("record" if record else "tensor", path))
            elif kind == "ndarray" and isinstance(node.get("shape"), list):
                out.append(Site("empty", path))
            elif kind == "dict":
                values = node.get("v")
                if isinstance(values, dict):
                    if values:
                        out.append(Site("attr", path))
                    stack.extend((v, (*path, "v", key)) for key, v in values.items())
                for i, pair in enumerate(node.get("items") or ()):
                    stack.append((pair[1], (*path, "items", i, 1)))
            elif kind in ("list", "tuple", "objarray"):
                if node.get("v"):
                    out.append(Site("seq", path))
                stack.extend((v, (*path, "v", i)) for i, v in enumerate(node.get("v") or ()))
            elif kind == "object":
                for i, arg in enumerate(node.get("args") or ()):
                    stack.append((arg, (*path, "args", i)))
                if "state" in node:
                    stack.append((node["state"], (*path, "state")))
                for key in ("listitems",):
                    for i, item in enumerate(node.get(key) or ()):
                        stack.append((item, (*path, key, i)))
    return out


# -- mutations ---------------------------------------------------------------------------------

BIG = (2**31 - 1, 2**31, 2**32, 2**40, 2**63 - 1, -(2**31), -(2**63))
SPECIAL_FLOATS = (float("nan"), float("inf"), -1.0, 0.0, 1e300, 255.0, 256.0, 1e6, 2.0**31)
STRINGS = (
    "brute",
    "kd_tree",
    "ball_tree",
    "precomputed",
    "linear",
    "poly",
    "rbf",
    "sigmoid",
    "c_svc",
    "nu_svc",
    "one_class",
    "epsilon_svr",
    "nu_svr",
    "zero",
    "euclidean",
    "minkowski",
    "haversine",
    "chebyshev",
    "auto",
)


def _int_node(value: int) -> Any:
    return value if -(2**63) <= value < 2**63 else {"k": "int", "v": str(value)}


def _read_int(node: Any) -> int | None:
    if isinstance(node, bool):
        return None
    if isinstance(node, int):
        return node
    if isinstance(node, dict) and node.get("k") == "int":
        return int(node["v"])
    if isinstance(node, dict) and node.get("k") == "npscalar":
        import base64

        return int(np.frombuffer(base64.b64decode(node["b64"]), dtype=node["dtype"])[0])
    return None


def _int_like(node: Any, value: int) -> Any:
    """``value`` in the form of the int node ``node`` (plain, big int, numpy scalar)."""
    if isinstance(node, dict) and node.get("k") == "npscalar":
        import base64

        dtype = np.dtype(node["dtype"])
        raw = np.array([_wrap(value, dtype)], dtype=dtype).tobytes()
        return {"k": "npscalar", "dtype": node["dtype"], "b64": base64.b64encode(raw).decode()}
    return _int_node(value)


def _wrap(value: int, dtype: np.dtype) -> int:
    """``value`` as ``dtype`` holds it (two's complement wrap-around)."""
    bits = dtype.itemsize * 8
    value %= 2**bits
    if dtype.kind == "i" and value >= 2 ** (bits - 1):
        value -= 2**bits
    return value


def _record_dtype(root: Any, node: dict[str, Any]) -> np.dtype | None:
    """The record dtype of an ndarray node that views its tensor's bytes (a dtype node, or a
    reference to one)."""
    descr_node = node["dtype"]
    if descr_node.get("k") == "ref":
        descr_node = get_at(root, _declaring(root, descr_node["id"]))
    descr = descr_node.get("v") if descr_node.get("k") == "dtype" else None
    if not isinstance(descr, dict) or not all(isinstance(f, str) for f in descr["formats"]):
        return None
    return np.dtype(descr)


def _array_at(doc: Doc, path: list[Any]) -> tuple[dict[str, Any], np.ndarray]:
    node = get_at(doc.extra["root"], path)
    if "tensor" not in node:  # an empty array written inline
        return node, np.zeros(node["shape"], dtype=node["dtype"])
    array = doc.tensors[node["tensor"]]
    if isinstance(node.get("dtype"), dict):
        dtype = _record_dtype(doc.extra["root"], node)
        if dtype is None:
            raise ValueError("nested record dtype")
        array = np.frombuffer(array.tobytes(), dtype=dtype).reshape(node["shape"])
    return node, array


def _put_array(doc: Doc, node: dict[str, Any], array: np.ndarray) -> None:
    if "tensor" not in node:  # was inline: now a tensor of its own
        node.pop("dtype")
        node.pop("shape")
        node["tensor"] = doc.new_tensor("inline", array)
        return
    if isinstance(node.get("dtype"), dict):
        node["shape"] = list(array.shape)
        array = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    node["tensor"] = doc.new_tensor(node["tensor"].split("~")[0], array)


def apply(doc: Doc, mutation: dict[str, Any]) -> None:
    """Apply one mutation (a JSON-able description, so that cases can be replayed)."""
    root = doc.extra["root"]
    op, path = mutation["op"], list(mutation["path"])
    if op == "set":  # a value (int, float, string, null) or a whole node
        old = get_at(root, path)
        value = mutation["value"]
        if isinstance(value, int) and not isinstance(value, bool):
            value = _int_like(old, value)
        elif isinstance(value, float) and not np.isfinite(value):
            value = {
                "k": "float",
                "v": "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"),
            }
        set_at(root, path, value)
    elif op == "delete":  # an attribute (key) of a dict node
        del get_at(root, path)["v"][mutation["key"]]
    elif op == "seq":  # drop, repeat or swap members of a list / tuple / object array
        node = get_at(root, path)
        items = node["v"]
        how, i = mutation["how"], mutation["index"] % len(items)
        step = 1
        if node["k"] == "objarray" and len(node["shape"]) == 2:
            step = node["shape"][1]
            i -= i % step
        if how == "drop":
            del items[i : i + step]
        elif how == "repeat":
            items[i:i] = copy.deepcopy(_without_ids(items[i : i + step]))
        else:  # swap with the last
            j = len(items) - step
            items[i : i + step], items[j : j + step] = items[j : j + step], items[i : i + step]
        if node["k"] == "objarray":
            node["shape"] = [len(items) // step, *node["shape"][1:]]
    elif op == "swap":  # the node names another tensor of the file
        get_at(root, path)["tensor"] = mutation["other"]
    elif op in ("element", "field", "resize", "reshape", "astype"):
        node, array = _array_at(doc, path)
        _put_array(doc, node, _mutated_array(array, mutation))
    else:
        raise ValueError(f"unknown mutation {op!r}")


def _without_ids(items: list[Any]) -> list[Any]:
    """A copy of ``items`` with node ids removed (a repeated member declares nothing)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "id"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return [strip(item) for item in items]


def _mutated_array(array: np.ndarray, m: dict[str, Any]) -> np.ndarray:
    op = m["op"]
    if op in ("element", "field"):
        out = np.array(array, copy=True)
        target = out[m["field"]] if op == "field" else out
        if target.size == 0:
            return out
        flat = target.reshape(-1)
        index = m["index"] % flat.size
        value = m["value"]
        if flat.dtype.kind in "iu":
            flat[index] = _wrap(int(value), flat.dtype)
        elif flat.dtype.kind == "b":
            flat[index] = not flat[index]
        elif flat.dtype.kind in "fc":
            flat[index] = value
        else:
            return out
        if op == "field":
            out[m["field"]] = flat.reshape(out[m["field"]].shape)
            return out
        return flat.reshape(out.shape)
    if op == "resize":
        axis = min(m.get("axis", 0), max(array.ndim - 1, 0))
        n = array.shape[axis] if array.ndim else 1
        size = max(0, {"drop": n - 1, "empty": 0, "grow": n + 1, "double": 2 * n}[m["how"]])
        if array.ndim == 0:
            return np.resize(array, size)
        index = np.arange(size) % max(n, 1) if n else np.zeros(0, dtype=int)
        if n == 0 and size:
            return np.zeros((size, *array.shape[1:]), dtype=array.dtype)
        return np.take(array, index, axis=axis)
    if op == "reshape":
        how = m["how"]
        if how == "transpose" and array.ndim >= 2:
            return np.ascontiguousarray(array.T)
        if how == "flatten":
            return array.reshape(-1)
        return array.reshape((1, *array.shape))
    if op == "astype":
        if array.dtype.names:
            return array
        return array.astype(m["dtype"])
    raise ValueError(op)


# Record fields and attribute names that index memory in compiled code: drawn more often.
INDEX_NAMES = frozenset(
    {
        "left_child",
        "right_child",
        "feature",
        "feature_idx",
        "left",
        "right",
        "bitset_idx",
        "is_leaf",
        "is_categorical",
        "idx_start",
        "idx_end",
        "n_features",
        "n_outputs",
        "node_count",
        "max_depth",
    }
)


def _object_of(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path of the object node nearest above ``path`` (its owner)."""
    for i in range(len(path) - 1, -1, -1):
        if path[i] in ("state", "args"):
            return path[:i]
    return ()


class Mutator:
    """Draws random mutations of a document, reproducibly from a seed."""

    def __init__(self, doc: Doc, rng: random.Random, *, state_tuples: bool = True) -> None:
        self.doc = doc
        self.rng = rng
        self.root = doc.extra["root"]
        self.sites = sites(self.root)
        if not state_tuples:  # leave them whole (see KNOWN_LOAD_CRASH)
            self.sites = [
                s for s in self.sites if not (s.kind == "seq" and s.path[-1:] == ("state",))
            ]
        self.by_kind: dict[str, list[Site]] = {}
        for site in self.sites:
            self.by_kind.setdefault(site.kind, []).append(site)
        ints = [_read_int(get_at(self.root, list(s.path))) for s in self.by_kind.get("int", ())]
        small = sorted({v for v in ints if v is not None and 0 < v < 10**6})[:40]
        pool = {-1, 0, 1, 2, 3, 7, 8, 32, 255, 256, 1000, 10**6, *BIG}
        for v in small:
            pool.update((v - 1, v, v + 1, 2 * v, 1000 * v))
        self.pool = sorted(pool)
        self.strings = sorted(
            set(STRINGS) | {get_at(self.root, list(s.path)) for s in self.by_kind.get("str", ())}
        )
        # int sites and integer arrays by the object that holds them (for pairs)
        self.arrays = [
            s
            for s in self.by_kind.get("record", []) + self.by_kind.get("tensor", [])
            if self._integer_array(s)
        ]

    def _integer_array(self, site: Site) -> bool:
        node = get_at(self.root, list(site.path))
        if site.kind == "record":
            dtype = _record_dtype(self.root, node)
            return dtype is not None and any(dtype[n].kind in "iu" for n in dtype.names)
        return self.doc.tensors[node["tensor"]].dtype.kind in "iu"

    def value(self) -> int:
        return self.rng.choice(self.pool)

    def case(self) -> list[dict[str, Any]]:
        count = 1
        while count < 4 and self.rng.random() < 0.5:
            count += 1
        out: list[dict[str, Any]] = []
        for _ in range(count):
            out.extend(self.one())
        return out

    def one(self) -> list[dict[str, Any]]:
        weights = {
            "int": 6,
            "record": 6,
            "tensor": 5,
            "pair": 4,
            "empty": 1,
            "attr": 1,
            "seq": 1,
            "str": 1,
            "null": 0.5,
            "float": 0.5,
        }
        kinds = [k for k in weights if (k == "pair" and self.arrays) or self.by_kind.get(k)]
        kind = self.rng.choices(kinds, [weights[k] for k in kinds])[0]
        if kind == "pair":
            return self.pair()
        site = self.rng.choice(self.by_kind[kind])
        path = list(site.path)
        rng = self.rng
        if kind in ("int", "null"):
            return [{"op": "set", "path": path, "value": self.value()}]
        if kind == "float":
            return [{"op": "set", "path": path, "value": rng.choice(SPECIAL_FLOATS)}]
        if kind == "str":
            return [{"op": "set", "path": path, "value": rng.choice(self.strings)}]
        if kind == "attr":
            keys = list(get_at(self.root, path)["v"])
            return [{"op": "delete", "path": path, "key": rng.choice(keys)}]
        if kind == "seq":
            how = rng.choice(("drop", "repeat", "swap"))
            return [{"op": "seq", "path": path, "how": how, "index": rng.randrange(1 << 16)}]
        if kind == "empty":
            return [{"op": "resize", "path": path, "how": "grow", "axis": 0}]
        if kind == "record":
            return [self.record(path)]
        return [self.tensor(path)]

    def _field(self, dtype: np.dtype, integer: bool = False) -> str:
        names = [n for n in dtype.names if not integer or dtype[n].kind in "iu"]
        weights = [4 if n in INDEX_NAMES else 1 for n in names]
        return self.rng.choices(names, weights)[0]

    def record(self, path: list[Any]) -> dict[str, Any]:
        dtype = _record_dtype(self.root, get_at(self.root, path))
        if dtype is None or self.rng.random() < 0.15:
            how = self.rng.choice(("drop", "empty", "grow", "double"))
            return {"op": "resize", "path": path, "how": how}
        name = self._field(dtype)
        value: Any = self.value()
        if dtype[name].kind == "f":
            value = self.rng.choice(SPECIAL_FLOATS)
        index = self.rng.randrange(1 << 16)
        return {"op": "field", "path": path, "field": name, "index": index, "value": value}

    def tensor(self, path: list[Any]) -> dict[str, Any]:
        rng = self.rng
        node = get_at(self.root, path)
        array = self.doc.tensors[node["tensor"]]
        op = rng.choices(("element", "resize", "reshape", "astype", "swap"), (5, 3, 1, 1, 1))[0]
        if op == "element":
            value: Any = self.value() if array.dtype.kind in "iub" else rng.choice(SPECIAL_FLOATS)
            return {"op": op, "path": path, "index": rng.randrange(1 << 16), "value": value}
        if op == "resize":
            how = rng.choice(("drop", "empty", "grow", "double"))
            return {"op": op, "path": path, "how": how, "axis": rng.choice((0, 0, 1))}
        if op == "reshape":
            how = rng.choice(("transpose", "flatten", "lead"))
            return {"op": op, "path": path, "how": how}
        if op == "astype":
            dtype = rng.choice(("int32", "int64", "float32", "float64", "uint8", "intp"))
            return {"op": op, "path": path, "dtype": dtype}
        plain = sorted(n for n in self.doc.tensors if n != node["tensor"] and "~" not in n)
        if not plain:
            return {"op": "reshape", "path": path, "how": "flatten"}
        return {"op": "swap", "path": path, "other": rng.choice(plain)}

    def pair(self) -> list[dict[str, Any]]:
        """Raise a bound and an index together: an int site to ``B`` and an element of an
        integer array (or record field) to a value below it, so that a check of the index
        against a bound the file supplies passes. Half the time both sit in one object
        (a Tree's ``n_features`` argument and its nodes' ``feature``), else the int site is
        anywhere (an owner's field)."""
        rng = self.rng
        target = rng.choice(self.arrays)
        ints = self.by_kind.get("int", [])
        near = [s for s in ints if _object_of(s.path) == _object_of(target.path)]
        pool = near if near and rng.random() < 0.5 else ints
        bound = rng.choice((8, 32, 1000, 10**6, 2**31 - 1, 2**31, 2**40, 2**62))
        index = rng.choice((bound - 1, bound // 2, min(bound - 1, 10**6 - 1)))
        out = []
        if pool:
            weights = [4 if s.path[-1] in INDEX_NAMES else 1 for s in pool]
            site = rng.choices(pool, weights)[0]
            out.append({"op": "set", "path": list(site.path), "value": bound})
        path = list(target.path)
        at = rng.randrange(1 << 16)
        if target.kind == "record":
            dtype = _record_dtype(self.root, get_at(self.root, path))
            assert dtype is not None
            name = self._field(dtype, integer=True)
            out.append({"op": "field", "path": path, "field": name, "index": at, "value": index})
        else:
            out.append({"op": "element", "path": path, "index": at, "value": index})
        return out


# The kind of crash validators cannot catch (they run after construction), found by this
# fuzzer: a KD or ball tree, or a distance metric, whose state tuple is shorter than its
# ``__setstate__`` reads (Cython indexes the tuple without a bounds check) crashed while
# loading. The state schema now refuses such states before they are applied
# (adapters/sklearn.py); a crash while loading is still counted apart ("load-crash").
KNOWN_LOAD_CRASH = "state tuple of a Cython class shorter than its __setstate__ reads"


# -- children ----------------------------------------------------------------------------------


def _calls(obj: Any, X: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, call) for every prediction-time entry point of ``obj``."""
    import scipy.sparse as sp

    for name in METHODS:
        method = getattr(type(obj), name, None)
        if method is None:
            continue
        yield name, lambda name=name: getattr(obj, name)(copy.deepcopy(X))
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        for name in SPARSE_METHODS:
            if getattr(type(obj), name, None) is not None:
                yield f"{name}[sparse]", lambda name=name: getattr(obj, name)(sp.csr_matrix(X))
    recursion = getattr(type(obj), "_compute_partial_dependence_recursion", None)
    if recursion is not None and isinstance(X, np.ndarray) and X.ndim == 2:
        grid = np.ascontiguousarray(X[:5, :2], dtype=np.float32)
        features = np.array([0, 1], dtype=np.intp)
        yield "partial_dependence", lambda: recursion(obj, grid, features)
    for name in PROPERTIES:
        if isinstance(getattr(type(obj), name, None), property):
            yield name, lambda name=name: getattr(obj, name)
    for attr in ("_tree", "tree_"):
        tree = getattr(obj, attr, None)
        if type(tree).__name__ in ("KDTree", "BallTree"):
            yield from _tree_queries(tree, attr)


def _tree_queries(tree: Any, attr: str) -> Iterator[tuple[str, Callable[[], Any]]]:
    data = np.asarray(tree.data)
    rows = np.array(data[: min(len(data), 8)], dtype=np.float64)
    k = max(1, min(3, len(data)))
    yield f"{attr}.query", lambda: tree.query(rows, k=k)
    yield f"{attr}.query[dual]", lambda: tree.query(rows, k=k, dualtree=True)
    yield f"{attr}.query[breadth]", lambda: tree.query(rows, k=k, breadth_first=True)
    yield f"{attr}.query_radius", lambda: tree.query_radius(rows, r=1.0, return_distance=True)
    yield f"{attr}.query_radius[count]", lambda: tree.query_radius(rows, r=1.0, count_only=True)
    yield f"{attr}.kernel_density", lambda: tree.kernel_density(rows, h=0.5)
    yield (
        f"{attr}.kernel_density[breadth]",
        lambda: tree.kernel_density(rows, h=0.5, breadth_first=True),
    )
    yield f"{attr}.two_point_correlation", lambda: tree.two_point_correlation(rows, r=[0.5, 1.0])
    yield (
        f"{attr}.two_point_correlation[dual]",
        lambda: tree.two_point_correlation(rows, r=[0.5, 1.0], dualtree=True),
    )


def _consume(result: Any) -> None:
    """Touch what a call returned: sparse results densified (compiled code runs there),
    generators drained, tuples walked."""
    import scipy.sparse as sp

    if isinstance(result, tuple):
        for part in result:
            _consume(part)
    elif sp.issparse(result):
        result.toarray()
        result.sum()
    elif hasattr(result, "__next__"):
        for item in result:
            _consume(item)
    elif isinstance(result, np.ndarray) and result.dtype == object:
        for item in result.ravel()[:64]:
            _consume(item)


def _child(path: str, X: Any, trusted: list[str], report: int) -> None:
    """In a forked child: load ``path``, call everything, exit with the outcome code.
    Writes the name of each step to ``report`` first (so a crash names its call)."""
    try:
        signal.alarm(CHILD_TIMEOUT_S)
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        warnings.simplefilter("ignore")
        import amber
        from amber.errors import AmberError, FormatError

        if os.environ.get("AMBER_FUZZ_WITHOUT_VALIDATORS"):  # reproduce crashes as before
            from amber.graph.constructors import VALIDATORS

            for name in [n for n in VALIDATORS if n.startswith("sklearn.")]:
                del VALIDATORS[name]
        os.write(report, b"load\n")
        try:
            obj = amber.load(path, trusted=trusted)
        except FormatError as exc:
            message = str(exc).replace("\n", " ").encode(errors="replace")[:2000]
            os.write(report, b"refused: " + message + b"\n")
            os._exit(REFUSED)
        except AmberError:
            os._exit(AMBER_ERROR)
        except Exception:
            os._exit(OTHER_ERROR)
        for name, call in _calls(obj, X):
            os.write(report, name.encode() + b"\n")
            try:
                _consume(call())
            except Exception:
                pass
        os._exit(LOADED)
    except BaseException:
        os._exit(OTHER_ERROR)


@dataclass
class Running:
    pid: int
    read: int
    started: float
    info: dict[str, Any]


def start(path: Path, X: Any, trusted: list[str], info: dict[str, Any]) -> Running:
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        _child(str(path), X, trusted, write)
    os.close(write)
    return Running(pid, read, time.monotonic(), info)


def finish(run: Running, status: int) -> tuple[int, str]:
    """(outcome code, last step) of a child that ended with ``status``."""
    chunks = []
    while True:
        chunk = os.read(run.read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(run.read)
    steps = b"".join(chunks).decode(errors="replace").splitlines()
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, steps[-1] if steps else ""


def run_one(path: Path, X: Any, trusted: list[str] = ()) -> tuple[int, str]:
    """Load ``path`` in a forked child and call everything; (outcome code, last step)."""
    run = start(path, X, list(trusted), {})
    _, status = os.waitpid(run.pid, 0)
    return finish(run, status)


# -- fitting -----------------------------------------------------------------------------------


def fit_and_save(name: str, directory: Path) -> tuple[Path, Any]:
    """Fit target ``name`` and save it, in a forked child (OpenMP runs there, never in the
    driver that forks the load children). Returns the file and the data to call on."""
    made = TARGETS[name]()
    estimator, data = made[:2]
    after = made[2] if len(made) > 2 else None  # run on the fitted model before saving
    path = directory / f"{name}.amber"
    if not path.exists():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                import amber
                from tests.adapters.sklearn_cases import fit

                warnings.simplefilter("ignore")
                fitted = fit(estimator, data)
                if after is not None:
                    after(fitted, data)
                amber.save(fitted, path)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not path.exists():
            raise RuntimeError(f"could not fit and save {name} (status {status})")
    test = data.test
    if isinstance(test, np.ndarray) and test.ndim == 2 and len(test) > 10:
        test = test[::4]
    return path, test


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Stats:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    by_target: dict[str, Counter] = field(default_factory=dict)
    baseline_failures: dict[str, str] = field(default_factory=dict)
    unwritable: Counter = field(default_factory=Counter)
    odd: list[dict[str, Any]] = field(default_factory=list)

    def add(self, info: dict[str, Any], code: int, step: str) -> None:
        self.cases += 1
        kind = outcome_name(code)
        if kind == "crash" and step == "load":
            kind = "load-crash"  # before any validator ran (see KNOWN_LOAD_CRASH)
        self.outcomes[kind] += 1
        self.by_target.setdefault(info["target"], Counter())[kind] += 1
        if kind.startswith("exit"):  # not an outcome the child reports: keep it to look at
            self.odd.append({**info, "code": code, "step": step})
        if kind in ("crash", "load-crash", "hang"):
            self.crashes.append({**info, "signal": -code, "step": step, "outcome": kind})

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "outcomes": dict(self.outcomes),
            "crashes": len([c for c in self.crashes if c["outcome"] == "crash"]),
            "load_crashes": len([c for c in self.crashes if c["outcome"] == "load-crash"]),
            "hangs": len([c for c in self.crashes if c["outcome"] == "hang"]),
            "by_target": {t: dict(c) for t, c in sorted(self.by_target.items())},
            "baseline_failures": self.baseline_failures,
            "unwritable": dict(self.unwritable.most_common(5)),
            "odd_exits": self.odd[:10],
        }


def fuzz(
    targets: list[str],
    *,
    seed: int,
    cases: int | None,
    seconds: float | None,
    jobs: int,
    out: Path | None,
    work: Path,
    progress: Callable[[Stats], None] | None = None,
    state_tuples: bool = True,
) -> Stats:
    """Run ``cases`` mutated files (or until ``seconds`` pass), ``jobs`` children at a time,
    round-robin over ``targets``."""
    import amber

    stats = Stats()
    bases: dict[str, tuple[Doc, Any, Mutator, list[str]]] = {}
    for name in targets:
        try:
            path, X = fit_and_save(name, work)
        except RuntimeError as exc:
            stats.baseline_failures[name] = str(exc)
            continue
        # Classes a user would have to trust to load the model at all are trusted.
        trusted = list(amber.inspect(path).untrusted_types)
        code, step = run_one(path, X, trusted)
        if code != LOADED:  # the unmutated file must load and run
            stats.baseline_failures[name] = f"{outcome_name(code)} at {step}"
            continue
        doc = Doc.read(path)
        mutator = Mutator(doc, random.Random(f"{seed}/{name}"), state_tuples=state_tuples)
        bases[name] = (doc, X, mutator, trusted)
    targets = [t for t in targets if t in bases]
    # The owners of compiled members the validators cover come up three times as often.
    schedule = targets + [t for t in targets if t.startswith(FOCUS)] * 2
    deadline = None if seconds is None else time.monotonic() + seconds
    running: dict[int, Running] = {}
    slots = list(range(jobs))
    issued = 0
    last_report = time.monotonic()
    while True:
        more = (cases is None or issued < cases) and (
            deadline is None or time.monotonic() < deadline
        )
        while more and slots:
            slot = slots.pop()
            name = schedule[issued % len(schedule)]
            doc, X, mutator, trusted = bases[name]
            mutations = mutator.case()
            case = doc.copy()
            try:
                for m in mutations:
                    apply(case, m)
                path = work / f"slot{slot}.amber"
                case.write(path)
            except Exception as exc:  # a mutation the writer refuses: not a file, skip it
                slots.append(slot)
                issued += 1
                stats.outcomes["unwritable"] += 1
                stats.unwritable[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                more = (cases is None or issued < cases) and (
                    deadline is None or time.monotonic() < deadline
                )
                continue
            info = {"target": name, "case": issued, "seed": seed, "mutations": mutations}
            run = start(path, X, trusted, {**info, "slot": slot, "path": str(path)})
            running[run.pid] = run
            issued += 1
            more = (cases is None or issued < cases) and (
                deadline is None or time.monotonic() < deadline
            )
        if not running:
            break
        pid, status = os.waitpid(-1, 0)
        run = running.pop(pid, None)
        if run is None:
            continue
        code, step = finish(run, status)
        info = {k: v for k, v in run.info.items() if k not in ("slot", "path")}
        stats.add(info, code, step)
        if code < 0 and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            saved = out / f"{info['target']}-{info['case']}.amber"
            shutil.copyfile(run.info["path"], saved)
            with (out / "crashes.jsonl").open("a") as f:
                f.write(json.dumps({**stats.crashes[-1], "file": str(saved)}) + "\n")
        slots.append(run.info["slot"])
        if progress is not None and time.monotonic() - last_report > 30:
            progress(stats)
            last_report = time.monotonic()
    return stats


def minimize(target: str, mutations: list[dict[str, Any]], work: Path) -> tuple[list, int, str]:
    """The fewest of ``mutations`` (dropping one at a time) that still crash the same way;
    returns them with the signal and the call."""
    import amber

    path, X = fit_and_save(target, work)
    trusted = list(amber.inspect(path).untrusted_types)
    doc = Doc.read(path)

    def outcome(subset: list[dict[str, Any]]) -> tuple[int, str]:
        case = doc.copy()
        try:
            for m in subset:
                apply(case, m)
            case.write(work / "minimize.amber")
        except Exception:
            return LOADED, ""
        return run_one(work / "minimize.amber", X, trusted)

    code, step = outcome(mutations)
    if code >= 0:
        return mutations, code, step
    kept = list(mutations)
    i = 0
    while i < len(kept) and len(kept) > 1:
        trial = kept[:i] + kept[i + 1 :]
        if outcome(trial)[0] == code:
            kept = trial
        else:
            i += 1
    return kept, code, outcome(kept)[1]


def replay(cases: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    """Build and run each case: ``{"target": name, "mutations": [[spec, mutation], ...]}``
    where ``spec`` is an attribute path (``resolve``) and ``mutation`` a mutation without
    its path. Returns, for each, the outcome and the last step (or the refusal)."""
    import amber

    bases: dict[str, tuple[Doc, Any, list[str]]] = {}
    out = []
    for i, case in enumerate(cases):
        target = case["target"]
        if target not in bases:
            path, X = fit_and_save(target, work)
            bases[target] = (Doc.read(path), X, list(amber.inspect(path).untrusted_types))
        doc, X, trusted = bases[target]
        mutated = doc.copy()
        for spec, mutation in case["mutations"]:
            apply(mutated, {**mutation, "path": resolve(mutated.extra["root"], spec)})
        path = work / f"replay{i}.amber"
        mutated.write(path)
        code, step = run_one(path, X, trusted)
        out.append({"outcome": outcome_name(code), "code": code, "step": step})
    return out


def check_files(paths: list[str], X: Any) -> dict[str, dict[str, Any]]:
    """Outcome of loading each file (in a forked child each) and calling everything."""
    out = {}
    for path in paths:
        code, step = run_one(Path(path), X)
        out[path] = {"code": code, "outcome": outcome_name(code), "step": step}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--cases", type=int, help="stop after this many files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--targets", help="comma-separated target names (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the quick targets")
    parser.add_argument("--out", type=Path, help="where crashing files and crashes.jsonl go")
    parser.add_argument("--work", type=Path, help="where fitted base files are kept")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--no-state-tuples",
        action="store_true",
        help="never shorten the state tuples of Cython classes (see KNOWN_LOAD_CRASH)",
    )
    parser.add_argument(
        "--check", nargs="+", metavar="FILE", help="load these files; X from --data (.npy)"
    )
    parser.add_argument("--data", type=Path, help="the .npy array the checked files are called on")
    parser.add_argument(
        "--replay", type=Path, metavar="JSON", help="run the cases of a JSON list (see replay)"
    )
    parser.add_argument(
        "--minimize", type=Path, metavar="JSONL", help="reduce the crashes of a crashes.jsonl"
    )
    parser.add_argument(
        "--without-validators",
        action="store_true",
        help="children drop amber's scikit-learn validators (shows what they prevent)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # casts of mutated arrays (nan to int...) are intended
    if args.without_validators:
        os.environ["AMBER_FUZZ_WITHOUT_VALIDATORS"] = "1"
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if args.check:
        X = np.load(args.data, allow_pickle=False) if args.data else None
        print(json.dumps(check_files(args.check, X)))
        return 0
    if args.replay:
        work = args.work or Path(tempfile.mkdtemp(prefix="amber-fuzz-"))
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(replay(json.loads(args.replay.read_text()), work)))
        return 0
    if args.minimize:
        work = args.work or Path(tempfile.mkdtemp(prefix="amber-fuzz-"))
        work.mkdir(parents=True, exist_ok=True)
        for line in args.minimize.read_text().splitlines():
            crash = json.loads(line)
            kept, code, step = minimize(crash["target"], crash["mutations"], work)
            print(
                json.dumps(
                    {"target": crash["target"], "code": code, "step": step, "mutations": kept}
                )
            )
        return 0
    if args.cases is None and args.seconds is None:
        parser.error("give --cases or --seconds")
    if args.targets:
        targets = args.targets.split(",")
    else:
        targets = list(QUICK) if args.quick else list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; see --list")
    work = args.work or Path(tempfile.mkdtemp(prefix="amber-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)

    def progress(stats: Stats) -> None:
        print(
            json.dumps({"progress": stats.summary()["outcomes"], "cases": stats.cases}),
            file=sys.stderr,
            flush=True,
        )

    started = time.monotonic()
    stats = fuzz(
        targets,
        seed=args.seed,
        cases=args.cases,
        seconds=args.seconds,
        jobs=max(1, args.jobs),
        out=args.out,
        work=work,
        progress=progress,
        state_tuples=not args.no_state_tuples,
    )
    summary = stats.summary()
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["crash_list"] = [
        {k: c[k] for k in ("target", "case", "signal", "step", "mutations")} for c in stats.crashes
    ]
    print(json.dumps(summary))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(c["outcome"] == "crash" for c in stats.crashes) else 0


if __name__ == "__main__":
    sys.exit(main())
