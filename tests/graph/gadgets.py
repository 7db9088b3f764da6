"""Gadgets for the generative fuzzer (``test_gadget_fuzz.py``, ``_gadget_child.py``).

A *gadget* is data a hostile file plants so that behaviour runs later, when the user first
uses the loaded object (``predict``, ``transform``, ``model(x)``, ``state_dict()``...):
callables where the code calls attributes (trusted functions, class objects,
``functools.partial`` with any target and bound arguments, ``out=`` arrays shared with the
model, callable scikit-learn objects), objects of a trusted class where another type
belongs (a ``PosixPath`` among a stacking ensemble's estimators), strings that name methods
of reachable objects (``stack_method_ = ["write_bytes"]``), instance state that shadows
methods (``predict``, ``forward``, ``_compiled_call_impl``), torch hook dicts,
``defaultdict`` factories, worker counts (``n_jobs`` starts processes; ``n_threads`` and
``_n_threads`` reach OpenMP in compiled code), keyword dicts passed to functions
(``kw_args``), other tensors behind an array node (lengths and indices compiled code
trusts), and classes that act on the world when built (scikit-learn's callbacks).

This module draws such object graphs with hypothesis, in two modes:

``synth``
    random graphs over the trusted universe, written directly as manifest graph nodes (as
    ``hostile.py`` does) into the universe file (``build_universe``: its tensors are those
    of fitted models, torch modules and a few plain arrays);
``mutate``
    a real saved model (``base_models``) whose graph has 1-3 attribute values replaced
    (or state entries added) with gadgets, references repaired so that the file is refused
    or run for its gadget, not for a dangling ``ref``.

The universe (classes, functions, templates of real encoded objects) is what amber trusted
before typed state schemas, computed from the installed libraries by name
(``_in_universe``), not from the registry: classes the allowlist drops are still drawn, and
must be refused. Generation is biased towards what matters (``HOT_TYPES``,
``HOT_FUNCTIONS``, ``INTERESTING`` attributes, ``KEY_VALUES``) and stays random around it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

# The loaded file is ``CASE_FILE`` in the child's sandbox (its working directory): path
# gadgets name it, relative names, and places outside the sandbox (writes there are refused
# by the tripwire before they happen).
CASE_FILE = "case.amber"
PATH_STRINGS = [
    CASE_FILE,
    "pwned.txt",
    "pwned",
    ".",
    "sub/dir",
    "benign.amber",
    "/tmp/amber-gadget-canary",
    "/nonexistent-amber-canary/x",
]
# Method names of objects a model can reach (paths, arrays, containers, estimators,
# modules): the strings that getattr-by-name code paths would call.
METHOD_NAMES = [
    "write_bytes",
    "write_text",
    "unlink",
    "touch",
    "mkdir",
    "rmdir",
    "rename",
    "replace",
    "chmod",
    "symlink_to",
    "hardlink_to",
    "open",
    "read_bytes",
    "tofile",
    "dump",
    "resize",
    "fill",
    "put",
    "setflags",
    "clear",
    "pop",
    "update",
    "append",
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "inverse_transform",
    "fit",
    "fit_transform",
    "fit_predict",
    "partial_fit",
    "score",
    "score_samples",
    "set_params",
    "get_params",
    "forward",
    "state_dict",
    "load_state_dict",
    "register_forward_hook",
    "apply",
    "__call__",
    "__init__",
    "__setattr__",
    "__class__",
    "__reduce__",
    "__getattribute__",
]
# Instance-state keys that shadow methods or drive hooks when planted on an object.
SHADOW_KEYS = [
    "predict",
    "predict_proba",
    "decision_function",
    "transform",
    "inverse_transform",
    "score",
    "score_samples",
    "get_params",
    "fit",
    "forward",
    "_call_impl",
    "_compiled_call_impl",
    "_forward_pre_hooks",
    "_forward_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_get_name",
    "extra_repr",
    "_repr_html_",
    "n_jobs",
    "stack_method_",
    "_response_method",
    "__sklearn_tags__",
    "__call__",
]
# Keyword arguments bound into partials.
KEYWORDS = [
    "out",
    "n_jobs",
    "metric",
    "kernel",
    "func",
    "where",
    "dtype",
    "axis",
    "missing_ok",
    "exist_ok",
    "parents",
    "mode",
    "data",
    "verbose",
    "casting",
    "initial",
    "scoring",
    "max_propagation_depth",
]
# Classes that act on the world (sockets, threads, files) or dispatch on their state:
# drawn far more often than their share of the universe.
HOT_TYPES = [
    "sklearn.callback._scoring_monitor:ScoringMonitor",
    "sklearn.callback._scoring_monitor:ScoringMonitorLog",
    "sklearn.callback._progressbar:ProgressBar",
    "sklearn.callback._progressbar:RichProgressMonitor",
    "sklearn.callback._progressbar:RichTask",
    "sklearn.callback._callback_context:CallbackContext",
    "sklearn.callback._transport:ListenerHandle",
    "sklearn.ensemble._stacking:StackingRegressor",
    "sklearn.ensemble._stacking:StackingClassifier",
    "sklearn.ensemble._bagging:BaggingClassifier",
    "sklearn.pipeline:Pipeline",
    "sklearn.pipeline:FeatureUnion",
    "sklearn.preprocessing._function_transformer:FunctionTransformer",
    "sklearn.compose._target:TransformedTargetRegressor",
    "sklearn.metrics._scorer:_Scorer",
    "sklearn.metrics._scorer:_MultimetricScorer",
    "sklearn.utils.parallel:Parallel",
    "sklearn.frozen._frozen:FrozenEstimator",
    "pathlib:PosixPath",
    "collections:defaultdict",
    "functools:partial",
]
# Attribute -> the kinds of value worth planting there (see Gen.for_key).
KEY_VALUES: dict[str, list[str]] = {
    "n_jobs": ["jobs"],
    "_n_threads": ["threads"],
    "n_threads": ["threads"],
    "n_threads_": ["threads"],
    "stack_method_": ["writing-list"],
    "estimators_": ["paths", "paths", "hot"],
    "estimators": ["paths", "hot"],
    "estimator": ["path", "hot"],
    "estimator_": ["path", "hot"],
    "base_estimator_": ["path", "hot"],
    "final_estimator_": ["path", "hot"],
    "regressor_": ["path", "hot"],
    "transformer_": ["path", "hot"],
    "_response_method": ["writing", "string"],
    "response_method": ["writing", "string"],
    "method": ["writing", "string"],
    "pre_dispatch": ["string"],
    "memory": ["string", "path"],
    "input": ["string"],
    "_sklearn_output_config": ["string"],
    "metric": ["callable", "partial", "string"],
    "kw_args": ["keywords"],
    "inv_kw_args": ["keywords"],
    "_kwargs": ["keywords"],
    "metric_params": ["keywords"],
    "kernel_params": ["keywords"],
    "kwds": ["keywords"],
    "pairwise_kernels_kwargs": ["keywords"],
    "_kmeans_single": ["hot-func"],
    "kernel": ["callable", "partial", "hot"],
    "func": ["callable", "partial", "hot-func"],
    "inverse_func": ["callable", "partial", "hot-func"],
    "score_func": ["callable", "partial"],
    "_score_func": ["callable", "partial"],
    "weights": ["callable", "partial"],
    "activation": ["string", "callable"],
    "out_activation_": ["string", "callable"],
    "callbacks": ["hot"],
    "_skl_callbacks": ["hot"],
    "_compiled_call_impl": ["callable", "partial"],
    "_forward_pre_hooks": ["hooks"],
    "_forward_hooks": ["hooks"],
    "_state_dict_hooks": ["hooks"],
    "_state_dict_pre_hooks": ["hooks"],
    "_backward_hooks": ["hooks"],
    "predict": ["callable", "partial"],
    "transform": ["callable", "partial"],
    "forward": ["callable", "partial"],
}
KEY_STRINGS: dict[str, list[str]] = {
    "pre_dispatch": ["2*n_jobs", "__import__('os').getpid()", "[i for i in (1, 2)][0]"],
    "memory": ["pwned-cache", "/tmp/amber-gadget-canary/cache"],
    "input": ["filename", "file"],
    "_sklearn_output_config": ["pandas", "polars"],
    "activation": ["identity", "tanh", "write_bytes", "__class__"],
    "out_activation_": ["identity", "softmax", "write_bytes"],
    "metric": ["precomputed", "pyfunc", "haversine"],
    "_response_method": ["predict", "write_bytes"],
    "response_method": ["predict", "write_bytes"],
    "method": ["predict", "write_bytes"],
}
# Functions that start workers: processes (n_jobs, joblib's default backend) or OpenMP
# threads (n_threads, trusted by compiled code).
HOT_FUNCTIONS = frozenset(
    {
        "mutual_info_regression",
        "mutual_info_classif",
        "pairwise_distances",
        "pairwise_kernels",
        "_kmeans_single_lloyd",
        "_kmeans_single_elkan",
    }
)
WORKER_KEYWORDS = ["n_jobs", "n_threads", "metric"]
# A callable attribute and the dict of keyword arguments the estimator passes it.
CALL_PAIRS = {
    "func": "kw_args",
    "inverse_func": "inv_kw_args",
    "metric": "metric_params",
    "kernel": "kernel_params",
    "_score_func": "_kwargs",
    "score_func": "_kwargs",
}
# Keys of the dicts estimators pass on as keyword arguments.
CALL_KEYWORDS = [
    "n_jobs",
    "n_threads",
    "y",
    "sample_weight",
    "centers_init",
    "Y",
    "metric",
    "gamma",
    "copy",
    "discrete_features",
]
# Method names of the objects that can write: tried more often.
WRITING_METHODS = [
    "write_bytes",
    "write_text",
    "unlink",
    "touch",
    "mkdir",
    "rmdir",
    "tofile",
    "dump",
    "rename",
    "replace",
    "chmod",
    "symlink_to",
    "hardlink_to",
    "open",
]
INTS = [0, 1, -1, 2, 3, 7, 64, 2**31 - 1, -(2**31), 2**62]
FLOATS = [0.0, 1.0, -1.0, 0.5, 1e300, -1e-300, "nan", "inf", "-inf"]


@dataclass
class Universe:
    """What the generator draws from: all names spelled ``module:qualname``."""

    types: list[str]  # trusted classes (sklearn, torch.nn, numpy, scipy, stdlib)
    functions: list[str]  # trusted functions
    callable_types: list[str]  # classes whose instances are callable (kernels, scorers...)
    templates: dict[str, list[Any]]  # class -> real encoded nodes valid in the universe file
    tensors: dict[str, str]  # tensor name -> dtype, in the universe file
    torch_tensors: list[str] = field(default_factory=list)  # float32 tensors for torch nodes
    # declarations (by their id in the universe file) that templates refer to from outside
    shared: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Universe:
        return cls(**data)


# -- graph helpers -----------------------------------------------------------------------------


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, JSON value) below ``node``: paths are tuples of keys and indices."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, (*path, i))


def get_at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def set_at(node: Any, path: tuple, value: Any) -> Any:
    """``node`` (copied) with the value at ``path`` replaced; a missing last key is added."""
    if not path:
        return value
    out = copy.deepcopy(node)
    parent = get_at(out, path[:-1])
    parent[path[-1]] = value
    return out


def max_id(node: Any) -> int:
    ids = [v["id"] for _, v in walk(node) if isinstance(v, dict) and type(v.get("id")) is int]
    return max(ids, default=0)


def relabel(node: Any, next_id: list[int], shared: dict[str, Any] | None = None) -> Any:
    """A copy of ``node`` (a subtree of another graph) whose declared ids are fresh; a ref
    to an id declared outside it becomes a copy of that declaration (from ``shared``), or
    None."""
    node = copy.deepcopy(node)
    mapping: dict[int, int] = {}
    shared = shared or {}

    def visit(n: Any) -> Any:
        if isinstance(n, dict):
            if n.get("k") == "ref":
                target = mapping.get(n.get("id"))
                if target is None and str(n.get("id")) in shared:
                    return visit(copy.deepcopy(shared[str(n.get("id"))]))
                return None if target is None else {"k": "ref", "id": target}
            out = {}
            for key, value in n.items():
                if key == "id" and type(value) is int and n.get("k") != "ref":
                    mapping[value] = next_id[0]
                    out["id"] = next_id[0]
                    next_id[0] += 1
                else:
                    out[key] = visit(value)
            return out
        if isinstance(n, list):
            return [visit(v) for v in n]
        return n

    return visit(node)


def declarations(node: Any) -> dict[int, Any]:
    """id -> the node that declares it."""
    return {
        v["id"]: v
        for _, v in walk(node)
        if isinstance(v, dict) and v.get("k") != "ref" and type(v.get("id")) is int
    }


def repair(root: Any, originals: dict[int, Any]) -> Any:
    """``root`` with every ``ref`` declared before use: a ref met before its id's
    declaration (a gadget moved it, or replaced the subtree that declared it) becomes that
    declaration (from ``root``, else from ``originals``), and the later declaration a ref.
    Keeps mutated real graphs loadable, so what runs is the gadget, not a format error."""
    declared_at = {**originals, **declarations(root)}
    seen: set[int] = set()

    def visit(n: Any) -> Any:
        if isinstance(n, dict):
            node_id = n.get("id")
            if n.get("k") == "ref":
                if node_id in seen or node_id not in declared_at:
                    return n
                return visit(copy.deepcopy(declared_at[node_id]))
            if type(node_id) is int:
                if node_id in seen:
                    return {"k": "ref", "id": node_id}
                seen.add(node_id)
            return {key: visit(value) for key, value in n.items()}
        if isinstance(n, list):
            return [visit(v) for v in n]
        return n

    return visit(root)


def describe_path(root: Any, path: tuple) -> str:
    """A readable location: ``root<StackingRegressor>.estimators_[0]``."""
    out = "root"
    node = root
    for i, part in enumerate(path):
        if isinstance(node, dict) and node.get("k") == "object" and i == len(path) - 1:
            out += f"<{str(node.get('type')).split(':')[-1]}>.{part}"
        if isinstance(node, dict) and node.get("k") == "object":
            out += f"<{str(node.get('type')).split(':')[-1]}>"
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("v", "state", "args", "dictitems", "listitems", "items"):
            out += f".{part}"
        elif part in ("args", "dictitems", "listitems"):
            out += f".<{part}>"
    return out.replace(">.<", ">.").replace("><", ".")


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


def short(node: Any, limit: int = 600) -> str:
    text = json.dumps(node, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the generator -------------------------------------------------------------------------------


def tup(*items: Any) -> dict[str, Any]:
    return {"k": "tuple", "v": list(items)}


def lst(*items: Any) -> dict[str, Any]:
    return {"k": "list", "v": list(items)}


class Gen:
    """Draws gadget nodes (hypothesis ``draw``), tracking the ids it declares so that
    ``ref`` nodes can share arrays and objects (``out=`` the model's own coefficients)."""

    def __init__(self, draw: Any, universe: Universe, first_id: int, tensors: dict[str, str]):
        self.draw = draw
        self.u = universe
        self.next_id = [first_id]
        self.tensors = tensors  # tensor name -> dtype, in the file being built
        self.array_ids: list[int] = []
        self.object_ids: list[int] = []

    # -- primitives

    def pick(self, seq: list[Any]) -> Any:
        return self.draw(st.sampled_from(seq))

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) < percent

    def fresh(self) -> int:
        self.next_id[0] += 1
        return self.next_id[0]

    # -- leaves

    def number(self) -> Any:
        if self.chance(60):
            return self.pick(INTS)
        value = self.pick(FLOATS)
        return {"k": "float", "v": value} if isinstance(value, str) else value

    def string(self) -> str:
        kind = self.pick(["method", "writing", "writing", "path", "other"])
        if kind == "method":
            return self.pick(METHOD_NAMES)
        if kind == "writing":
            return self.pick(WRITING_METHODS)
        if kind == "path":
            return self.pick(PATH_STRINGS)
        return self.pick(["", "auto", "lbfgs", "euclidean", "precomputed", "x" * 10, "\x00"])

    def array(self) -> Any:
        numeric = [n for n, d in self.tensors.items() if d not in ("bfloat16",)]
        if self.array_ids and self.chance(40):
            return {"k": "ref", "id": self.pick(self.array_ids)}
        if not numeric:
            return self.number()
        node_id = self.fresh()
        self.array_ids.append(node_id)
        return {"k": "ndarray", "tensor": self.pick(sorted(numeric)), "id": node_id}

    def torch_tensor(self) -> Any:
        names = [n for n, d in self.tensors.items() if d == "float32"]
        if not names:
            return self.array()
        node = {"k": "torch", "tensor": self.pick(sorted(names)), "dtype": "float32"}
        if self.chance(50):
            node["param"] = True
        return node

    # -- callables

    def func(self) -> dict[str, Any]:
        return {"k": "func", "name": self.pick(self.u.functions)}

    def hot_func(self) -> dict[str, Any]:
        """A function that takes worker counts (processes, OpenMP threads)."""
        hot = [f for f in self.u.functions if f.split(":")[-1] in HOT_FUNCTIONS]
        return {"k": "func", "name": self.pick(hot)} if hot else self.func()

    def sized(self, rows: int, floats: bool) -> Any:
        """A vector as long as the inputs the child gives (an array of the file if one
        fits, else a list)."""
        suffix = f"{'f64' if floats else self.pick(['f64', 'i64'])}_{rows}"
        fitting = sorted(n for n in self.tensors if n.endswith(suffix))
        if fitting and self.chance(70):
            return {"k": "ndarray", "tensor": fitting[0]}
        return lst(*[float(i % 2) if floats else i % 2 for i in range(rows)])

    def keyword_dict(self, depth: int) -> dict[str, Any]:
        """Keyword arguments an estimator passes to its function (``kw_args``...)."""
        out: dict[str, Any] = {}
        for _ in range(self.draw(st.integers(1, 3))):
            key = self.pick(CALL_KEYWORDS)
            if key in ("n_jobs", "n_threads"):
                out[key] = self.pick([2, -1, 100_000])
            elif key in ("y", "sample_weight", "Y"):
                out[key] = self.sized(self.pick([6, 16]), key == "sample_weight")
            elif key == "centers_init":
                fitting = [n for n in self.tensors if n.endswith("f64_2x3")]
                if fitting and self.chance(70):
                    out[key] = {"k": "ndarray", "tensor": fitting[0]}
                else:
                    out[key] = lst(lst(0.5, 0.5, 0.5), lst(0.2, 0.2, 0.2))
            else:
                out[key] = self.value(max(depth - 1, 0))
        return {"k": "dict", "v": out}

    def type_node(self) -> dict[str, Any]:
        return {"k": "type", "name": self.pick(self.u.types)}

    def callable_(self, depth: int) -> Any:
        kind = self.pick(["func", "func", "type", "hot", "partial", "object", "template"])
        if kind == "func":
            return self.func()
        if kind == "type":
            return self.type_node()
        if kind == "hot":
            hot = [t for t in HOT_TYPES if t in self.u.types]
            return {"k": "type", "name": self.pick(hot)} if hot else self.type_node()
        if kind == "partial" and depth > 0:
            return self.partial(depth - 1)
        if kind == "object" and self.u.callable_types and depth > 0:
            return self.instance(self.pick(self.u.callable_types), depth - 1)
        if kind == "template" and depth > 0:
            return self.instance(self.pick(sorted(self.u.templates)), depth - 1)
        return self.func()

    def partial(self, depth: int) -> dict[str, Any]:
        if self.chance(40):  # partial(<function>, *scalars, **scalars): what schemas admit
            target = self.hot_func() if self.chance(50) else self.func()
            args = [self.number() for _ in range(self.draw(st.integers(0, 2)))]
            keywords = {}
            for _ in range(self.draw(st.integers(0, 2))):
                key = self.pick(WORKER_KEYWORDS)
                keywords[key] = self.pick([2, -1, 100_000, 4]) if key != "metric" else "cityblock"
            return {
                "k": "object",
                "type": "functools:partial",
                "mode": "call",
                "args": [target],
                "state": tup(
                    dict(target), {"k": "tuple", "v": args}, {"k": "dict", "v": keywords}, None
                ),
            }
        target = self.callable_(depth)
        if isinstance(target, dict) and target.get("k") in ("func", "type"):
            first, again = target, dict(target)
        else:  # an object: declared once, referred to from the state
            node_id = self.fresh()
            first = {**target, "id": node_id} if isinstance(target, dict) else target
            again = {"k": "ref", "id": node_id} if isinstance(target, dict) else target
        args = [self.value(depth) for _ in range(self.draw(st.integers(0, 2)))]
        keywords = {}
        for _ in range(self.draw(st.integers(0, 3))):
            name = self.pick(KEYWORDS)
            if name == "out":
                keywords[name] = self.array() if self.chance(80) else tup(self.array())
            elif name == "n_jobs":
                keywords[name] = self.pick([-1, 2, 4])
            else:
                keywords[name] = self.value(depth)
        return {
            "k": "object",
            "type": "functools:partial",
            "mode": "call",
            "args": [first],
            "state": tup(again, {"k": "tuple", "v": args}, {"k": "dict", "v": keywords}, None),
        }

    # -- objects of trusted classes

    def path(self) -> dict[str, Any]:
        parts = [self.pick(PATH_STRINGS)]
        if self.chance(20):
            parts.append(self.pick(["x", "..", CASE_FILE]))
        return {"k": "object", "type": "pathlib:PosixPath", "mode": "call", "args": parts}

    def hooks(self, depth: int) -> dict[str, Any]:
        """An OrderedDict of callables: what torch keeps its hooks in."""
        items = [[i, self.callable_(depth)] for i in range(self.draw(st.integers(1, 2)))]
        return {
            "k": "object",
            "type": "collections:OrderedDict",
            "mode": "call",
            "dictitems": items,
        }

    def defaultdict(self, depth: int) -> dict[str, Any]:
        items = []
        if self.chance(30):
            items.append([self.string(), self.value(depth)])
        return {
            "k": "object",
            "type": "collections:defaultdict",
            "mode": "call",
            "args": [self.callable_(depth)],
            "dictitems": items,
        }

    def instance(self, cls: str, depth: int) -> Any:
        """An object node of ``cls``: a real template with values replaced or added, or a
        bare ``new`` with a drawn state."""
        templates = self.u.templates.get(cls)
        if cls == "pathlib:PosixPath":
            return self.path()
        if cls == "functools:partial":
            return self.partial(depth)
        if cls == "collections:defaultdict":
            return self.defaultdict(depth)
        if cls == "collections:OrderedDict":
            return self.hooks(depth)
        if templates:
            node = relabel(self.pick(templates), self.next_id, self.u.shared)
            return self.tweak(node, depth)
        if cls.split(".")[0].split(":")[0] in ("sklearn", "torch"):
            state = {key: self.value(depth) for key in self._keys()}
            return {"k": "object", "type": cls, "mode": "new", "state": {"k": "dict", "v": state}}
        return {"k": "type", "name": cls}

    def _keys(self) -> list[str]:
        count = self.draw(st.integers(0, 3))
        return [self.pick(SHADOW_KEYS) for _ in range(count)]

    def tweak(self, node: Any, depth: int) -> Any:
        """Replace 0-2 state values of an object node (or add shadowing keys)."""
        if not (isinstance(node, dict) and node.get("k") == "object"):
            return node
        state = node.get("state")
        if not (isinstance(state, dict) and state.get("k") == "dict" and "v" in state):
            return node
        entries = state["v"]
        for _ in range(self.draw(st.integers(0, 2))):
            if entries and self.chance(70):
                key = self.pick(sorted(entries))
            else:
                key = self.pick(SHADOW_KEYS)
            entries[key] = self.for_key(key, entries.get(key), depth)
            partner = CALL_PAIRS.get(key)
            if partner is not None and self.chance(60):  # the function and its arguments
                entries[partner] = self.keyword_dict(depth)
        return node

    def object_(self, depth: int) -> Any:
        kind = self.pick(["template", "template", "path", "hot", "any", "callable_obj", "torch"])
        if kind == "path":
            return self.path()
        if kind == "hot":
            hot = [t for t in HOT_TYPES if t in self.u.types]
            if hot:
                return self.instance(self.pick(hot), depth)
        if kind == "callable_obj" and self.u.callable_types:
            return self.instance(self.pick(self.u.callable_types), depth)
        if kind == "torch":
            torch_templates = sorted(t for t in self.u.templates if t.startswith("torch"))
            if torch_templates:
                return self.instance(self.pick(torch_templates), depth)
        if kind == "any":
            return self.instance(self.pick(self.u.types), depth)
        return self.instance(self.pick(sorted(self.u.templates)), depth)

    # -- any value

    def value(self, depth: int, like: Any = None) -> Any:
        """A gadget value; ``like`` (the value it replaces) biases the kind half the time."""
        if like is not None and self.chance(50):
            biased = self._like(like, depth)
            if biased is not _NOTHING:
                return biased
        leaves = ["number", "string", "string", "none", "callable", "array", "path", "bool"]
        deep = ["partial", "partial", "object", "object", "list", "dict", "hooks", "defaultdict"]
        kind = self.pick(leaves + (deep if depth > 0 else []))
        if kind == "number":
            return self.number()
        if kind == "string":
            return self.string()
        if kind == "none":
            return None
        if kind == "bool":
            return self.pick([True, False])
        if kind == "callable":
            return self.callable_(depth)
        if kind == "array":
            return self.array() if self.chance(75) else self.torch_tensor()
        if kind == "path":
            return self.path()
        if kind == "partial":
            return self.partial(depth - 1)
        if kind == "object":
            return self.object_(depth - 1)
        if kind == "hooks":
            return self.hooks(depth - 1)
        if kind == "defaultdict":
            return self.defaultdict(depth - 1)
        items = [self.value(depth - 1) for _ in range(self.draw(st.integers(0, 3)))]
        if kind == "list":
            return lst(*items) if self.chance(60) else tup(*items)
        return {"k": "dict", "v": {self.string(): item for item in items}}

    def for_key(self, key: Any, current: Any, depth: int) -> Any:
        """A value for state entry ``key``: the values known to matter for that attribute
        (worker counts, method names, paths among estimators...) most of the time."""
        if key in KEY_VALUES and self.chance(75):
            kind = self.pick(KEY_VALUES[key])
            if kind == "jobs":
                return self.pick([2, -1, 4])
            if kind == "threads":  # OpenMP thread counts that compiled code trusts
                return self.pick([2**31 - 1, 100_000, -1, 0, 2**62])
            if kind == "writing":
                return self.pick(WRITING_METHODS)
            if kind == "writing-list":
                count = len(current["v"]) if isinstance(current, dict) and current.get("v") else 2
                return lst(*[self.pick(WRITING_METHODS) for _ in range(count)])
            if kind == "paths":
                count = len(current["v"]) if isinstance(current, dict) and current.get("v") else 2
                return lst(*[self.path() for _ in range(count)])
            if kind == "path":
                return self.path()
            if kind == "string":
                return self.pick(KEY_STRINGS.get(key, PATH_STRINGS))
            if kind == "callable":
                return self.callable_(depth)
            if kind == "partial":
                return self.partial(depth)
            if kind == "hooks":
                return self.hooks(depth)
            if kind == "keywords":
                return self.keyword_dict(depth)
            if kind == "hot-func":
                return self.hot_func() if self.chance(50) else self.partial(depth)
            if kind == "hot":
                hot = [t for t in HOT_TYPES if t in self.u.types and t in self.u.templates]
                if hot:
                    return self.instance(self.pick(hot), depth)
        return self.value(depth, like=current)

    def _like(self, like: Any, depth: int) -> Any:
        if type(like) is str:
            return self.pick(METHOD_NAMES)
        if type(like) is int and not isinstance(like, bool):
            return self.pick([-1, 2, 2**31 - 1, 0, 100_000, 2**62, -(2**31), like + 1])
        if isinstance(like, dict):
            kind = like.get("k")
            if kind == "ndarray" and like.get("tensor") in self.tensors and self.chance(40):
                # the same view of another tensor of the same stored dtype: other values,
                # lengths and indices where compiled code may trust them
                dtype = self.tensors[like["tensor"]]
                same = sorted(n for n, d in self.tensors.items() if d == dtype)
                return {**like, "tensor": self.pick(same)}
            if kind in ("ndarray", "ref"):
                if self.chance(50):  # another array: shapes and dtypes compiled code trusts
                    return self.array()
                return self.pick([self.partial, self.callable_])(depth) if depth else self.array()
            if kind == "npscalar":
                return self.pick([-1, 0, 2**31 - 1, 1e308, {"k": "float", "v": "nan"}])
            if kind == "torch":
                return self.torch_tensor() if self.chance(50) else self.callable_(depth)
            if kind == "object":
                return self.object_(depth) if self.chance(60) else self.callable_(depth)
            if kind in ("list", "tuple") and like.get("v"):
                if all(type(v) is str for v in like["v"]):
                    return {"k": like["k"], "v": [self.string() for _ in like["v"]]}
                if self.chance(50):
                    items = [self.path() for _ in like["v"][:3]]
                else:
                    items = [self.object_(max(depth - 1, 0)) for _ in like["v"][:3]]
                return {"k": like["k"], "v": items}
        return _NOTHING


_NOTHING = object()


# -- the two case strategies -------------------------------------------------------------------


@st.composite
def synth_case(draw: Any, universe: Universe) -> dict[str, Any]:
    """A random root graph for the universe file: {"mode", "root"}."""
    gen = Gen(draw, universe, 1_000_000, universe.tensors)
    shape = gen.pick(["object", "object", "dict", "torch", "callable"])
    if shape == "dict":
        root = {"k": "dict", "v": {f"m{i}": gen.object_(2) for i in range(gen.pick([1, 2, 3]))}}
    elif shape == "torch":
        torch_templates = sorted(t for t in universe.templates if t.startswith("torch"))
        root = gen.instance(gen.pick(torch_templates), 2) if torch_templates else gen.object_(2)
    elif shape == "callable":
        root = gen.callable_(2)
    else:
        root = gen.object_(3)
    return {"mode": "synth", "root": root}


def slots(root: Any) -> list[tuple[str, tuple]]:
    """Where a gadget can be planted in a real graph: ("set", path) replaces the value at
    path (an object's state entry, a dict value, a list item); ("add", path) adds a key to
    an object's state dict; ("hook", path) adds an item to an (empty) OrderedDict."""
    out: list[tuple[str, tuple]] = []
    for path, node in walk(root):
        if not isinstance(node, dict):
            continue
        kind = node.get("k")
        if kind == "object":
            state = node.get("state")
            if isinstance(state, dict) and state.get("k") == "dict" and "v" in state:
                for key in state["v"]:
                    out.append(("set", (*path, "state", "v", key)))
                out.append(("add", (*path, "state", "v")))
            if node.get("type") == "collections:OrderedDict" and "dictitems" in node:
                out.append(("hook", path))
        elif kind == "dict" and isinstance(node.get("v"), dict):
            for key in node["v"]:
                out.append(("set", (*path, "v", key)))
        elif kind in ("list", "tuple") and isinstance(node.get("v"), list):
            for i in range(len(node["v"])):
                out.append(("set", (*path, "v", i)))
    return out


def paired_slots(root: Any) -> list[tuple[tuple, tuple]]:
    """(path of a list of objects, path of a list of strings) in one object's state: an
    ensemble and the method it calls on each member (``estimators_``, ``stack_method_``)."""
    out = []
    for path, node in walk(root):
        if not (isinstance(node, dict) and node.get("k") == "object"):
            continue
        state = node.get("state")
        if not (isinstance(state, dict) and isinstance(state.get("v"), dict)):
            continue
        lists = {
            key: value["v"]
            for key, value in state["v"].items()
            if isinstance(value, dict) and value.get("k") in ("list", "tuple") and value.get("v")
        }
        names = [k for k, v in lists.items() if all(type(i) is str for i in v)]
        # fitted attributes (``estimators_``): what predict() iterates over
        objects = [
            k for k, v in lists.items() if k.endswith("_") and any(isinstance(i, dict) for i in v)
        ]
        for o in objects:
            for n in names:
                out.append(((*path, "state", "v", o), (*path, "state", "v", n)))
    return out


# Attributes whose values library code calls, indexes by or dispatches on.
INTERESTING = frozenset(
    {
        "estimators_",
        "estimators",
        "estimator",
        "estimator_",
        "base_estimator_",
        "final_estimator_",
        "stack_method_",
        "named_estimators_",
        "steps",
        "transformers_",
        "func",
        "inverse_func",
        "kw_args",
        "inv_kw_args",
        "metric",
        "metric_params",
        "kernel",
        "kernel_",
        "kernel_params",
        "score_func",
        "_score_func",
        "_response_method",
        "_kwargs",
        "activation",
        "out_activation_",
        "_loss",
        "loss_function_",
        "weights",
        "n_jobs",
        "pre_dispatch",
        "memory",
        "regressor_",
        "transformer_",
        "calibrated_classifiers_",
        "tree_",
        "_tree",
        "_fit_X",
        "callbacks",
        "_callbacks",
        "_sklearn_output_config",
        "_compiled_call_impl",
        "_modules",
        "_parameters",
        "_forward_pre_hooks",
        "_forward_hooks",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_backward_hooks",
        "training",
        "_n_threads",
        "n_threads",
        "_bin_mapper",
        "_skl_callbacks",
        "pairwise_kernels_kwargs",
        "_kmeans_single",
        "input",
        "response_method",
        "method",
    }
)


@st.composite
def mutate_case(draw: Any, universe: Universe, bases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A base model's graph with 1-3 gadgets planted: {"mode", "base", "root", "planted"}."""
    name = draw(st.sampled_from(sorted(bases)))
    base = bases[name]
    original = base["root"]
    originals = declarations(original)
    root = original
    gen = Gen(draw, universe, max_id(root) + 1_000_000, base["tensors"])
    arrays = [p for p, v in walk(root) if isinstance(v, dict) and v.get("k") == "ndarray"]
    if arrays and gen.chance(50):  # the model's own arrays, for out= and other sharing
        for _ in range(gen.pick([1, 2, 3])):
            path = gen.pick(arrays)
            node = get_at(root, path)
            if "id" not in node:
                node_id = gen.fresh()
                root = set_at(root, path, {**node, "id": node_id})
                gen.array_ids.append(node_id)
    planted = []
    pairs = paired_slots(root)
    if pairs and gen.chance(40):  # objects and the method names called on them
        objects_path, names_path = gen.pick(pairs)
        count = len(get_at(root, names_path)["v"])
        objects = {
            "k": "list",
            "v": [gen.path() if gen.chance(70) else gen.object_(1) for _ in range(count)],
        }
        names = {"k": "list", "v": [gen.string() for _ in range(count)]}
        for target, gadget in ((objects_path, objects), (names_path, names)):
            root = set_at(root, target, gadget)
            planted.append(
                {"path": list(target), "at": describe_path(root, target), "gadget": gadget}
            )
    for _ in range(gen.pick([1, 1, 1, 2, 3]) - (1 if planted else 0)):
        candidates = slots(root)
        groups = {
            "interesting": [c for c in candidates if c[0] == "set" and c[1][-1] in INTERESTING],
            "hook": [c for c in candidates if c[0] == "hook"],
            "add": [c for c in candidates if c[0] == "add"],
            "any": candidates,
        }
        order = ("interesting", "interesting", "hook", "add", "any")
        group = gen.pick([g for g in order if groups[g]])
        action, path = gen.pick(groups[group])
        current = get_at(root, path)
        if action == "set":
            gadget = gen.for_key(path[-1], current, 2)
            target = path
            root = set_at(root, target, gadget)
            partner = CALL_PAIRS.get(path[-1])
            if partner is not None and gen.chance(60):  # the function and its arguments
                arguments = gen.keyword_dict(2)
                other = (*path[:-1], partner)
                root = set_at(root, other, arguments)
                planted.append(
                    {"path": list(other), "at": describe_path(root, other), "gadget": arguments}
                )
        elif action == "add":
            key = gen.pick(SHADOW_KEYS)
            gadget = gen.for_key(key, None, 2)
            target = (*path, key)
            root = set_at(root, target, gadget)
        else:  # hook: an item of an OrderedDict (torch keeps its hooks in them)
            gadget = [gen.pick([0, 1, 2]), gen.callable_(2)]
            target = (*path, "dictitems", len(current["dictitems"]))
            node = copy.deepcopy(current)
            node["dictitems"].append(gadget)
            root = set_at(root, path, node)
        planted.append({"path": list(target), "at": describe_path(root, target), "gadget": gadget})
    return {"mode": "mutate", "base": name, "root": repair(root, originals), "planted": planted}


# -- the real models and the universe (built in the fuzzer's driver process) -----------------


@dataclass
class Base:
    """A real saved model, and the inputs a user would give it."""

    name: str
    model: Any
    data: bytes  # the file amber wrote
    root: Any  # its manifest graph
    tensors: dict[str, str]  # tensor name -> dtype
    X: Any
    y: Any


def _sklearn_models() -> dict[str, tuple[Any, str]]:
    """name -> (unfitted model, "clf" | "reg" | "unsup")."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        BaggingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
    )
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KernelDensity, KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    return {
        "logistic": (LogisticRegression(), "clf"),
        "tree": (DecisionTreeClassifier(max_depth=3, random_state=0), "clf"),
        "forest": (RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0), "clf"),
        "pipeline": (
            Pipeline([("sc", StandardScaler()), ("pca", PCA(2)), ("lr", LogisticRegression())]),
            "clf",
        ),
        "stacking-reg": (
            StackingRegressor(
                [
                    ("lr", LinearRegression()),
                    ("dt", DecisionTreeRegressor(max_depth=2, random_state=0)),
                ],
                cv=2,
            ),
            "reg",
        ),
        "stacking-clf": (
            StackingClassifier(
                [
                    ("lr", LogisticRegression()),
                    ("dt", DecisionTreeClassifier(max_depth=2, random_state=0)),
                ],
                cv=2,
            ),
            "clf",
        ),
        "voting": (
            VotingClassifier(
                [
                    ("lr", LogisticRegression()),
                    ("dt", DecisionTreeClassifier(max_depth=2, random_state=0)),
                ],
                voting="soft",
            ),
            "clf",
        ),
        "knn": (KNeighborsClassifier(n_neighbors=3), "clf"),
        "svc": (SVC(random_state=0), "clf"),
        "function-transformer": (
            FunctionTransformer(np.log1p, inverse_func=np.expm1, check_inverse=False),
            "unsup",
        ),
        "target-transform": (
            TransformedTargetRegressor(LinearRegression(), func=np.log1p, inverse_func=np.expm1),
            "reg",
        ),
        "column-transformer": (
            ColumnTransformer([("s", StandardScaler(), [0, 1]), ("p", "passthrough", [2])]),
            "unsup",
        ),
        "kmeans": (KMeans(2, n_init=1, random_state=0), "unsup"),
        "gaussian-process": (GaussianProcessRegressor(kernel=RBF()), "reg"),
        "mlp": (MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0), "clf"),
        "isolation-forest": (IsolationForest(n_estimators=4, random_state=0), "unsup"),
        "bagging": (BaggingClassifier(n_estimators=3, random_state=0), "clf"),
        "hist-gb": (HistGradientBoostingClassifier(max_iter=3, random_state=0), "clf"),
        "select-k-best": (
            Pipeline([("k", SelectKBest(f_classif, k=2)), ("lr", LogisticRegression())]),
            "clf",
        ),
        "kernel-density": (KernelDensity(), "unsup"),
        "one-vs-rest": (OneVsRestClassifier(LogisticRegression()), "clf"),
        "nystroem": (Nystroem(n_components=5, random_state=0), "unsup"),
        "sgd": (SGDClassifier(max_iter=20, random_state=0), "clf"),
        "calibrated": (CalibratedClassifierCV(LogisticRegression(), cv=2), "clf"),
    }


def _torch_models() -> dict[str, tuple[Any, Any]]:
    """name -> (module, example input)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return {
        "torch-mlp": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.rand(2, 3)),
        "torch-conv": (nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten()), torch.rand(2, 1, 5)),
        "torch-lstm": (nn.LSTM(3, 4, batch_first=True), torch.rand(2, 5, 3)),
        "torch-transformer": (
            nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, batch_first=True, dropout=0.0),
            torch.rand(2, 5, 4),
        ),
        "torch-embedding": (nn.Embedding(5, 3), torch.tensor([[0, 1, 2]])),
    }


def sample_data() -> tuple[Any, Any, Any]:
    import numpy as np

    rng = np.random.RandomState(0)
    X = rng.rand(16, 3) + 0.1
    y_clf = np.array([0, 1] * 8)
    y_reg = X @ np.array([1.0, 2.0, 3.0]) + 0.5
    return X, y_clf, y_reg


def base_models(directory: Any) -> dict[str, Base]:
    """Fit and save the real models that the ``mutate`` mode plants gadgets in."""
    import warnings

    X, y_clf, y_reg = sample_data()
    out: dict[str, Base] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (model, kind) in _sklearn_models().items():
            y = {"clf": y_clf, "reg": y_reg, "unsup": None}[kind]
            if y is None:
                model.fit(X)
            else:
                model.fit(X, y)
            out[name] = _base(name, model, X, y if y is not None else y_clf, directory)
        for name, (module, x) in _torch_models().items():
            out[name] = _base(name, module, x, None, directory)
    return out


def _base(name: str, model: Any, X: Any, y: Any, directory: Any) -> Base:
    import amber
    from tests.corpus.build import manifest_of

    path = directory / f"{name}.amber"
    amber.save(model, path)
    data = path.read_bytes()
    manifest = manifest_of(data)
    tensors = {t["name"]: t["dtype"] for t in manifest["tensors"]}
    return Base(name, model, data, manifest["root"], tensors, X, y)


# Modules whose classes join the universe besides scikit-learn's estimators: callables and
# internals that estimators hold, and modules whose classes act on the world.
EXTRA_SKLEARN_MODULES = [
    "sklearn.gaussian_process.kernels",
    "sklearn.metrics._scorer",
    "sklearn.metrics._dist_metrics",
    "sklearn.callback",
    "sklearn.callback._scoring_monitor",
    "sklearn.callback._progressbar",
    "sklearn.callback._transport",
    "sklearn.callback._callback_context",
    "sklearn._loss.loss",
    "sklearn._loss.link",
    "sklearn.neural_network._stochastic_optimizers",
    "sklearn.model_selection._split",
    "sklearn.compose._column_transformer",
    "sklearn.frozen",
    "sklearn.utils._metadata_requests",
    "sklearn.utils._estimator_html_repr",
    "sklearn.utils._repr_html.estimator",
    "sklearn.utils.parallel",
    "sklearn.inspection._plot.decision_boundary",
    "sklearn.metrics._plot.confusion_matrix",
]
STDLIB_TYPES = [
    "builtins:object",
    "builtins:list",
    "builtins:dict",
    "builtins:set",
    "builtins:slice",
    "builtins:range",
    "builtins:str",
    "builtins:int",
    "builtins:bytes",
    "collections:OrderedDict",
    "collections:defaultdict",
    "collections:Counter",
    "collections:deque",
    "functools:partial",
    "datetime:timedelta",
    "decimal:Decimal",
    "fractions:Fraction",
    "uuid:UUID",
    "pathlib:PurePosixPath",
    "pathlib:PosixPath",
    "numpy:float64",
    "numpy:int64",
    "numpy:dtype",
    "numpy.random.mtrand:RandomState",
    "numpy.random._generator:Generator",
    "numpy.ma:MaskedArray",
    "scipy.sparse._csr:csr_matrix",
    "scipy.sparse._coo:coo_array",
    "scipy.interpolate._bsplines:BSpline",
    "torch:Tensor",
    "torch:device",
    "torch:dtype",
    "torch:Size",
]
SKLEARN_FUNCTION_MODULES = [
    "sklearn.metrics",
    "sklearn.metrics.pairwise",
    "sklearn.feature_selection",
    "sklearn.cluster._kmeans",
]


def _listener_handle(address: Any) -> dict[str, Any]:
    return {
        "k": "object",
        "type": "sklearn.callback._transport:ListenerHandle",
        "mode": "new",
        "args": [address, {"k": "bytes", "b64": "a2V5"}],
    }


# Templates of classes amber cannot save an instance of here (making one would act on the
# world in this process): written by hand from their __getstate__.
HAND_TEMPLATES: dict[str, Any] = {
    "sklearn.callback._scoring_monitor:ScoringMonitor": {
        "k": "object",
        "type": "sklearn.callback._scoring_monitor:ScoringMonitor",
        "mode": "new",
        "state": {
            "k": "dict",
            "v": {
                "_scoring": lst("accuracy"),
                "_log": lst(),
                "_estimator_scorers": {"k": "dict", "v": {}},
                "_listener_handle": _listener_handle("/tmp/amber-gadget-canary/listener"),
            },
        },
    },
    "sklearn.callback._transport:ListenerHandle": _listener_handle(tup("127.0.0.1", 9)),
    "sklearn.callback._progressbar:ProgressBar": {
        "k": "object",
        "type": "sklearn.callback._progressbar:ProgressBar",
        "mode": "new",
        "state": {"k": "dict", "v": {"max_propagation_depth": 1}},
    },
}


def _spelled(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


# Never part of the universe: test and vendored code (amber never trusted them).
_OUTSIDE = ("sklearn.externals", "sklearn.utils._testing", "sklearn.tests", "sklearn.datasets")


def _in_universe(name: str) -> bool:
    """The universe is what amber trusted before typed schemas (scikit-learn: any class
    of a module file outside tests and vendored code; torch.nn layers; the stdlib, numpy
    and scipy tables), judged from the name: the fuzzer must not follow the allowlist it
    checks, so classes dropped from it are still tried (and must be refused)."""
    module = name.split(":")[0]
    return not any(module == o or module.startswith(o + ".") for o in _OUTSIDE) and (
        ".tests" not in module
    )


def _candidate_types() -> list[str]:
    import importlib
    import inspect

    import torch.nn.modules as torch_modules
    from sklearn.utils import all_estimators

    names = set(STDLIB_TYPES)
    names |= {_spelled(cls) for _, cls in all_estimators()}
    for module_name in EXTRA_SKLEARN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith("sklearn"):
                names.add(_spelled(cls))
    for name in dir(torch_modules):
        cls = getattr(torch_modules, name)
        if isinstance(cls, type):
            names.add(_spelled(cls))
    return sorted(names)


def _candidate_functions() -> list[str]:
    import importlib

    import numpy as np

    from amber.adapters import builtin, sklearn, torch

    names = set(getattr(builtin, "FUNCTIONS", ())) | set(getattr(torch, "FUNCTIONS", ()))
    for name, value in vars(np).items():
        if isinstance(value, np.ufunc) and value.__name__ == name:
            names.add(f"numpy:{name}")
    names |= {f"numpy:{n}" for n in ("mean", "sum", "clip", "percentile", "quantile")}
    for module_name in SKLEARN_FUNCTION_MODULES:
        module = importlib.import_module(module_name)
        for fname in sorted(getattr(sklearn, "FUNCTIONS", ())):
            fn = getattr(module, fname, None)
            if fn is not None:
                names.add(_spelled(fn))
    return sorted(names)


def _default_instances() -> list[Any]:
    """Default-constructed scikit-learn estimators, callables and internals."""
    import warnings

    import numpy as np
    from sklearn.gaussian_process import kernels
    from sklearn.metrics import get_scorer, make_scorer
    from sklearn.metrics.pairwise import rbf_kernel
    from sklearn.model_selection import KFold
    from sklearn.utils import all_estimators

    out: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, cls in all_estimators():
            try:
                out.append(cls())
            except Exception:
                pass
        out += [
            kernels.RBF(),
            kernels.DotProduct(),
            kernels.WhiteKernel() + kernels.Matern(),
            make_scorer(rbf_kernel),
            get_scorer("accuracy"),
            get_scorer("neg_log_loss"),
            get_scorer("roc_auc"),
            KFold(2),
            np.random.RandomState(0),
        ]
    return out


def build_universe(directory: Any, bases: dict[str, Base]) -> tuple[Universe, bytes]:
    """The universe and the file that synth cases replace the root of (its tensors: the
    fitted models', the torch modules', a few plain arrays)."""
    import warnings

    import numpy as np
    import torch

    import amber
    from tests.corpus.build import manifest_of

    types = [t for t in _candidate_types() if _in_universe(t)]
    functions = [f for f in _candidate_functions() if _in_universe(f)]
    arrays = {
        "f64": np.linspace(0.1, 1.0, 15).reshape(5, 3),
        "f64_1d": np.arange(3, dtype=np.float64),
        "i64": np.arange(5),
        "u8": np.zeros(16, np.uint8),
        "f32": np.ones((3, 3), np.float32),
        "bool": np.array([True, False, True]),
        # sized like the inputs the child gives models (6 or 16 rows, 3 columns)
        "f64_6": np.ones(6),
        "f64_16": np.ones(16),
        "f64_2x3": np.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2]]),
        "i64_6": np.array([0, 1] * 3),
        "i64_16": np.array([0, 1] * 8),
        "torch_w": torch.ones(2, 3),
        "torch_b": torch.zeros(2),
    }
    everything = {
        "arrays": arrays,
        "fitted": [b.model for b in bases.values()],
        "defaults": [],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for instance in _default_instances():
            try:  # keep only what amber can save on its own
                amber.api.encode(instance, {})
            except Exception:
                continue
            everything["defaults"].append(instance)
    path = directory / "universe.amber"
    amber.save(everything, path)
    data = path.read_bytes()
    manifest = manifest_of(data)
    templates: dict[str, list[Any]] = {}
    for _, node in walk(manifest["root"]):
        if isinstance(node, dict) and node.get("k") == "object":
            name = node.get("type")
            size = len(json.dumps(node))
            if name in types and size < 30_000 and len(templates.get(name, [])) < 3:
                templates.setdefault(name, []).append(node)
    callable_types = []
    for instance in [*_default_instances(), *(b.model for b in bases.values())]:
        name = _spelled(type(instance))
        if callable(instance) and name in templates and name not in callable_types:
            callable_types.append(name)
    for name, node in HAND_TEMPLATES.items():
        if name in types:
            templates.setdefault(name, []).append(node)
    declared = declarations(manifest["root"])
    shared: dict[str, Any] = {}
    pending = [n for nodes in templates.values() for n in nodes]
    while pending:  # what templates refer to outside themselves, transitively
        node = pending.pop()
        inside = declarations(node)
        for _, ref in walk(node):
            if isinstance(ref, dict) and ref.get("k") == "ref":
                target = ref.get("id")
                if target not in inside and target in declared and str(target) not in shared:
                    shared[str(target)] = declared[target]
                    pending.append(declared[target])
    tensors = {t["name"]: t["dtype"] for t in manifest["tensors"]}
    universe = Universe(
        types=types,
        functions=functions,
        callable_types=sorted(callable_types),
        templates=templates,
        tensors=tensors,
        shared=shared,
    )
    return universe, data


def with_root(data: bytes, root: Any) -> bytes:
    """``data`` (a file amber wrote) with its graph's root replaced, re-sealed."""
    from tests.corpus.build import edit_manifest

    return edit_manifest(data, lambda m: m.__setitem__("root", root))
