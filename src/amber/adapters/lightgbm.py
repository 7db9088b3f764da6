"""LightGBM: ``lightgbm.Booster`` and the scikit-learn wrappers (``LGBMClassifier``,
``LGBMRegressor``, ``LGBMRanker``).

A booster is stored as LightGBM's own text model (``model_to_string``, every iteration)
plus the few Python attributes its predictions depend on (``best_iteration``). LightGBM's
C++ model parser trusts its input: a shifted byte makes it read past the string or abort
the process from inside an OpenMP loop. The text is therefore parsed and checked here in
full (every line, every array length, every child link, feature and category index) before
LightGBM sees it; models this check cannot vouch for (linear trees) are refused on save.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from amber.adapters.xgboost import (
    wrapper_decode,
    wrapper_encode,
)
from amber.errors import FormatError, SerializationError
from amber.graph.constructors import Constructor, register, register_family
from amber.graph.schema import ANY_OBJECT, DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

BOOSTER = "lightgbm.basic:Booster"
WRAPPERS = (
    "lightgbm.sklearn:LGBMModel",
    "lightgbm.sklearn:LGBMClassifier",
    "lightgbm.sklearn:LGBMRegressor",
    "lightgbm.sklearn:LGBMRanker",
)

# Numbers as LightGBM writes them, one space apart: the grammar.
PLAIN_INT = r"-?\d{1,10}"
PLAIN_FLOAT = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d{1,3})?|\.\d+(?:[eE][-+]?\d{1,3})?|inf|nan)"
if sys.version_info >= (3, 11, 5):
    # The same language with every quantifier possessive, so no backtracking state is kept:
    # a number is followed by a space or the end, which no part of a number matches, so
    # giving characters back never finds another match (tests/adapters/
    # test_lightgbm_numbers.py compares the two). The pass over every number of a model is
    # ~25% faster. Python 3.10 has no possessive quantifiers, and those of 3.11.0-3.11.4
    # match wrongly (CPython gh-106052: "1 " and "70e" pass): both use the grammar as is.
    _INT = r"-?+\d{1,10}+"
    _FLOAT = (
        r"[-+]?+(?>\d++\.?+\d*+(?:[eE][-+]?+\d{1,3}+)?+|\.\d++(?:[eE][-+]?+\d{1,3}+)?+"
        r"|inf|nan)"
    )
    _MORE = "*+"
else:  # pragma: no cover - Python 3.10 to 3.11.4
    _INT, _FLOAT, _MORE = PLAIN_INT, PLAIN_FLOAT, "*"
_INTS = re.compile(rf"{_INT}(?: {_INT}){_MORE}")
_FLOATS = re.compile(rf"{_FLOAT}(?: {_FLOAT}){_MORE}")
_INT_ONE = re.compile(_INT)
_FLOAT_ONE = re.compile(_FLOAT)
_NAME = re.compile(r"[^\s=]+")
_FEATURE_INFO = re.compile(r"none|\[[^\s\]]*\]|-?\d+(?::-?\d+)*")
_PARAMETER = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*): ([^\]\n]*)\]")
_TREE_HEAD = re.compile(r"Tree=(\d+)\n")

# Objectives LightGBM writes, and the extra tokens each may carry.
_OBJECTIVES = {
    "regression": {"sqrt"},
    "regression_l1": {"sqrt"},
    "huber": {"sqrt"},
    "fair": {"sqrt"},
    "poisson": set(),
    "quantile": {"sqrt"},
    "mape": {"sqrt"},
    "gamma": set(),
    "tweedie": set(),
    "binary": {"sigmoid"},
    "cross_entropy": set(),
    "cross_entropy_lambda": set(),
    "lambdarank": set(),
    "rank_xendcg": set(),
    "multiclass": {"num_class"},
    "multiclassova": {"num_class", "sigmoid"},
    "custom": set(),
}
_HEADER_KEYS = {
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "average_output",
    "feature_names",
    "feature_infos",
    "tree_sizes",
}
# Tree fields: how many values each holds (in terms of the leaf count n), and their kind.
_LEAF_FIELDS = {"leaf_value": "f", "leaf_weight": "f", "leaf_count": "i"}
_NODE_FIELDS = {
    "split_feature": "i",
    "split_gain": "f",
    "threshold": "f",
    "decision_type": "i",
    "left_child": "i",
    "right_child": "i",
    "internal_value": "f",
    "internal_weight": "f",
    "internal_count": "i",
}
_TREE_KEYS = {
    "num_leaves",
    "num_cat",
    "is_linear",
    "shrinkage",
    "cat_boundaries",
    "cat_threshold",
    *_LEAF_FIELDS,
    *_NODE_FIELDS,
}
# Parameters naming files or hosts: a model trained through the Python API leaves them
# empty, and a file has no business pointing a later training run at a path.
_PATH_PARAMETERS = {
    "data",
    "valid",
    "input_model",
    "output_model",
    "output_result",
    "convert_model",
    "machines",
}
_INT32 = 2**31 - 1


def _bad(message: str) -> FormatError:
    return FormatError(f"LightGBM model text in the file is malformed: {message}")


def _int(text: str, what: str, low: int = 0, high: int = _INT32) -> int:
    if not _INT_ONE.fullmatch(text) or not low <= int(text) <= high:
        raise _bad(f"{what} must be an integer in [{low}, {high}], got {text[:40]!r}")
    return int(text)


def _array(text: str, kind: str, count: int, what: str) -> str:
    """Check that ``text`` holds exactly ``count`` numbers of ``kind`` separated by one space
    (LightGBM's parser reads that many without checking)."""
    if count == 0:
        if text:
            raise _bad(f"{what} must be empty")
        return text
    if text.count(" ") + 1 != count:
        raise _bad(f"{what} must hold {count} values")
    if not (_INTS if kind == "i" else _FLOATS).fullmatch(text):
        raise _bad(f"{what} holds something other than {'integers' if kind == 'i' else 'numbers'}")
    return text


def _ints(text: str) -> Any:
    import numpy as np

    return np.array(text.split(" "), dtype=np.int64) if text else np.zeros(0, np.int64)


def _tree_fields(
    block: str, index: int, numbers: dict[str, list[tuple[str, int, str]]]
) -> tuple[int, int, dict[str, str]]:
    """The leaf count, ``num_cat`` and fields of one ``Tree=i`` block (without its first
    line: ``key=value`` lines, then blank lines). Array lengths are checked here; their
    number syntax is queued in ``numbers`` (kind -> [(text, what)]) to be checked for all
    trees at once."""
    body, _, rest = block.partition("\n\n")
    if rest.strip("\n"):
        raise _bad(f"tree {index} has text after its blank line")
    fields: dict[str, str] = {}
    for line in body.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or key not in _TREE_KEYS or key in fields:
            raise _bad(f"tree {index} has an unexpected line {line[:40]!r}")
        fields[key] = value
    for key in ("num_leaves", "num_cat", "leaf_value"):
        if key not in fields:
            raise _bad(f"tree {index} lacks {key}")
    n = _int(fields["num_leaves"], "num_leaves", 1)
    num_cat = _int(fields["num_cat"], "num_cat", 0)
    if _int(fields.get("is_linear", "0"), "is_linear", 0, 1):
        raise _bad("linear trees are not supported by amber yet")
    if "shrinkage" in fields and not _FLOAT_ONE.fullmatch(fields["shrinkage"]):
        raise _bad(f"tree {index} shrinkage is not a number")
    for group, count in ((_LEAF_FIELDS, n), (_NODE_FIELDS, n - 1)):
        for key, kind in group.items():
            if key not in fields:
                continue
            text = fields[key]
            if count == 0 or (key == "split_gain" and n == 1):
                if text:
                    raise _bad(f"tree {index} {key} must be empty")
                continue
            if text.count(" ") + 1 != count:
                raise _bad(f"tree {index} {key} must hold {count} values")
            numbers[kind].append((text, index, key))
    if n == 1:
        if set(fields) & set(_NODE_FIELDS) - {"split_gain"} or num_cat:
            raise _bad(f"tree {index} has one leaf but splits")
    else:
        for key in ("split_feature", "threshold", "left_child", "right_child"):
            if key not in fields:
                raise _bad(f"tree {index} lacks {key}")
    return n, num_cat, fields


def _check_numbers(numbers: dict[str, list[tuple[str, int, str]]]) -> None:
    """One regular-expression pass per kind over the arrays of every tree; the first array
    that fails is named (tree index, field)."""
    for kind, items in numbers.items():
        pattern = _INTS if kind == "i" else _FLOATS
        if items and not pattern.fullmatch(" ".join(item[0] for item in items)):
            index, key = next((i, k) for text, i, k in items if not pattern.fullmatch(text))
            raise _bad(
                f"tree {index} {key} holds something other than "
                f"{'integers' if kind == 'i' else 'numbers'}"
            )


def _joined(trees: list[tuple[int, int, int, dict[str, str]]], key: str) -> Any:
    import numpy as np

    return np.array(" ".join(t[3][key] for t in trees).split(" "), dtype=np.int64)


def _check_trees(blocks: list[tuple[int, str]], n_features: int) -> None:
    """Every tree's fields, then their numbers and shapes checked for all trees at once (a
    model has hundreds of small trees: one numpy pass instead of one per tree)."""
    import numpy as np

    numbers: dict[str, list[tuple[str, int, str]]] = {"i": [], "f": []}
    trees = []
    for index, block in blocks:
        n, num_cat, fields = _tree_fields(block, index, numbers)
        trees.append((index, n, num_cat, fields))
    _check_numbers(numbers)
    split = [t for t in trees if t[1] > 1]
    if not split:
        return
    inner_counts = np.array([t[1] - 1 for t in split], dtype=np.int64)
    tree_of = np.repeat(np.arange(len(split)), inner_counts)
    inner_start = np.concatenate([[0], np.cumsum(inner_counts)[:-1]])
    leaf_start = inner_start + np.arange(len(split))  # each tree has one more leaf
    local = np.arange(int(inner_counts.sum())) - inner_start[tree_of]
    inner_of = inner_counts[tree_of]
    seen_inner = np.zeros(int(inner_counts.sum()), dtype=np.int64)
    seen_leaf = np.zeros(int(inner_counts.sum()) + len(split), dtype=np.int64)
    for side in ("left_child", "right_child"):
        child = _joined(split, side)
        inner = child >= 0
        # Internal children come after their parent (no cycle) and inside the tree.
        bad = inner & ((child <= local) | (child >= inner_of)) | ~inner & (~child > inner_of)
        if bad.any():
            index = split[int(tree_of[np.argmax(bad)])][0]
            raise _bad(f"tree {index} {side} points outside the tree or backwards")
        seen_inner += np.bincount((child + inner_start[tree_of])[inner], minlength=seen_inner.size)
        seen_leaf += np.bincount((~child + leaf_start[tree_of])[~inner], minlength=seen_leaf.size)
    roots = inner_start
    expected = np.ones_like(seen_inner)
    expected[roots] = 0
    if not np.array_equal(seen_inner, expected) or np.any(seen_leaf != 1):
        raise _bad("a tree is not a tree: a node has no parent or several")
    feature = _joined(split, "split_feature")
    if np.any((feature < 0) | (feature >= n_features)):
        raise _bad(f"a tree splits on a feature outside the model's {n_features}")
    plain = [t for t in split if not t[2] and "decision_type" in t[3]]
    if plain:  # no categorical splits: decision types in range, none categorical
        decision = _joined(plain, "decision_type")
        if np.any((decision < 0) | (decision > 11) | (decision & 1).astype(bool)):
            raise _bad("a tree without categories has a categorical or unknown decision type")
    for index, n, num_cat, fields in split:
        if num_cat or "cat_boundaries" in fields or "cat_threshold" in fields:
            _check_decisions(index, n, num_cat, fields)


def _check_decisions(index: int, n: int, num_cat: int, fields: dict[str, str]) -> None:
    """Decision types and categorical bitsets of one tree."""
    import numpy as np

    decision = _ints(fields.get("decision_type", ""))
    if decision.size == 0:
        decision = np.zeros(n - 1, dtype=np.int64)
    if np.any((decision < 0) | (decision > 11)):
        raise _bad(f"tree {index} decision_type out of range")
    categorical = (decision & 1).astype(bool)
    if num_cat == 0:
        if categorical.any() or "cat_boundaries" in fields or "cat_threshold" in fields:
            raise _bad(f"tree {index} has categorical splits but num_cat=0")
        return
    if "cat_boundaries" not in fields or "cat_threshold" not in fields:
        raise _bad(f"tree {index} lacks cat_boundaries or cat_threshold")
    bounds = _ints(_array(fields["cat_boundaries"], "i", num_cat + 1, "cat_boundaries"))
    if bounds[0] != 0 or np.any(np.diff(bounds) < 0):
        raise _bad(f"tree {index} cat_boundaries must start at 0 and not decrease")
    words = _ints(_array(fields["cat_threshold"], "i", int(bounds[-1]), "cat_threshold"))
    if np.any((words < 0) | (words > 2**32 - 1)):
        raise _bad(f"tree {index} cat_threshold must hold 32-bit words")
    # A categorical split's threshold is the index of its bitset in cat_boundaries.
    thresholds = np.array(fields["threshold"].split(" "), dtype=np.float64)[categorical]
    if np.any((thresholds != np.floor(thresholds)) | (thresholds < 0) | (thresholds >= num_cat)):
        raise _bad(f"tree {index} categorical split outside its {num_cat} bitsets")


def _check_header(lines: list[str]) -> dict[str, str]:
    if not lines or lines[0] != "tree":
        raise _bad("it must start with 'tree'")
    header: dict[str, str] = {}
    for line in lines[1:]:
        if line == "":
            continue
        key, sep, value = line.partition("=")
        extra_equals = "=" in value and key != "feature_names"
        if key not in _HEADER_KEYS or key in header or extra_equals:
            raise _bad(f"unexpected header line {line[:60]!r}")
        if (key == "average_output") == bool(sep):
            raise _bad(f"malformed header line {line[:60]!r}")
        header[key] = value
    for key in ("version", "num_class", "label_index", "max_feature_idx", "feature_names"):
        if key not in header:
            raise _bad(f"the header lacks {key}")
    for key in ("feature_infos", "tree_sizes"):
        if key not in header:
            raise _bad(f"the header lacks {key}")
    return header


def _check_objective(text: str, num_class: int) -> None:
    name, *tokens = text.split(" ")
    allowed = _OBJECTIVES.get(name)
    if allowed is None:
        raise _bad(f"unknown objective {name[:40]!r}")
    seen = set()
    for token in tokens:
        key, sep, value = token.partition(":")
        if key not in allowed or key in seen or (key == "sqrt") == bool(sep):
            raise _bad(f"objective has an unexpected token {token[:40]!r}")
        seen.add(key)
        if key == "num_class" and _int(value, "objective num_class", 1) != num_class:
            # The objective converts scores into num_class outputs: it must match.
            raise _bad("objective num_class differs from the model's")
        if key == "sigmoid" and not (_FLOAT_ONE.fullmatch(value) and math.isfinite(float(value))):
            raise _bad("objective sigmoid must be a number")
    if name.startswith("multiclass") != (num_class > 1) or (
        name.startswith("multiclass") and "num_class" not in seen
    ):
        raise _bad("num_class does not fit the objective")


def _check_tail(tail: str) -> None:
    """``end of trees``, feature importances, parameters and ``pandas_categorical``."""
    lines = tail.split("\n")
    if lines[0] != "end of trees":
        raise _bad("'end of trees' must follow the last tree")
    i = 1
    while i < len(lines) and lines[i] == "":
        i += 1
    if i < len(lines) and lines[i] == "feature_importances:":
        i += 1
        while i < len(lines) and lines[i] and "=" in lines[i] and not lines[i].startswith("["):
            name, _, count = lines[i].rpartition("=")
            if not _NAME.fullmatch(name) or not count.isdigit():
                raise _bad(f"malformed feature importance {lines[i][:40]!r}")
            i += 1
        while i < len(lines) and lines[i] == "":
            i += 1
    if i < len(lines) and lines[i] == "parameters:":
        i += 1
        while i < len(lines) and lines[i] != "end of parameters":
            if lines[i] == "" and lines[i + 1 : i + 2] == ["end of parameters"]:
                i += 1
                break
            match = _PARAMETER.fullmatch(lines[i])
            if match is None:
                raise _bad(f"malformed parameter line {lines[i][:60]!r}")
            name, value = match.groups()
            if value and (name in _PATH_PARAMETERS or name.endswith(("_filename", "_file"))):
                raise _bad(f"parameter {name} names a file or host")
            i += 1
        if i == len(lines):
            raise _bad("parameters lack 'end of parameters'")
        i += 1
        while i < len(lines) and lines[i] == "":
            i += 1
    rest = [line for line in lines[i:] if line]
    if len(rest) > 1 or (rest and not rest[0].startswith("pandas_categorical:")):
        raise _bad("unexpected text after the parameters")
    if rest:
        _check_pandas_categorical(rest[0][len("pandas_categorical:") :])


def _check_pandas_categorical(text: str) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        raise _bad("pandas_categorical is not JSON") from None
    plain = (str, int, float, bool)
    if value is not None and not (
        isinstance(value, list)
        and all(isinstance(c, list) and all(isinstance(v, plain) for v in c) for c in value)
    ):
        raise _bad("pandas_categorical must be a list of category lists")


def check_model_string(text: str) -> dict[str, int]:
    """Refuse (FormatError) a LightGBM model text that LightGBM's parser could misread.

    Returns the numbers the wrappers are checked against: ``num_feature``, ``num_class``,
    ``num_tree_per_iteration`` and ``num_trees``.
    """
    if not isinstance(text, str):
        raise _bad("it must be text")
    if "\x00" in text or "\r" in text:
        raise _bad("it holds NUL or carriage-return characters")
    data = text.encode("utf-8")
    first = _TREE_HEAD.search(text)
    if first is None or first.start() == 0 or text[first.start() - 1] != "\n":
        raise _bad("it holds no tree")
    header = _check_header(text[: first.start()].split("\n"))
    num_class = _int(header["num_class"], "num_class", 1, 10**6)
    per_iteration = _int(header.get("num_tree_per_iteration", str(num_class)), "trees per round")
    if per_iteration != num_class:
        raise _bad("num_tree_per_iteration must equal num_class")
    _int(header["label_index"], "label_index")
    n_features = _int(header["max_feature_idx"], "max_feature_idx", 0, 10**8) + 1
    names = header["feature_names"].split(" ")
    if len(names) != n_features or not all(_NAME.fullmatch(n) for n in names):
        raise _bad(f"feature_names must be {n_features} names without spaces")
    infos = header["feature_infos"].split(" ")
    if len(infos) != n_features or not all(_FEATURE_INFO.fullmatch(i) for i in infos):
        raise _bad(f"feature_infos must hold {n_features} entries")
    if "objective" in header:
        _check_objective(header["objective"], num_class)
    elif num_class != 1:
        raise _bad("a multiclass model needs its objective")
    sizes = [_int(s, "tree size", 1, len(data)) for s in header["tree_sizes"].split(" ")]
    if len(sizes) % per_iteration:
        raise _bad("the number of trees is not a multiple of num_tree_per_iteration")
    # LightGBM jumps to each tree by these byte sizes: every tree must start exactly there.
    start = len(text[: first.start()].encode("utf-8"))
    blocks = []
    for index, size in enumerate(sizes):
        block = data[start : start + size]
        if len(block) != size or not block.startswith(f"Tree={index}\n".encode()):
            raise _bad(f"tree_sizes do not match tree {index}")
        if not block.endswith(b"\n\n"):
            raise _bad(f"tree {index} does not end with a blank line")
        blocks.append((index, block.decode("utf-8")[len(f"Tree={index}\n") :]))
        start += size
    _check_trees(blocks, n_features)
    _check_tail(data[start:].decode("utf-8"))
    return {
        "num_feature": n_features,
        "num_class": num_class,
        "num_tree_per_iteration": per_iteration,
        "num_trees": len(sizes),
    }


# -- the booster -------------------------------------------------------------------------------


def _booster_state(booster: Any) -> dict[str, Any]:
    from amber.adapters.xgboost import check_threads, refuse_callables

    # num_iteration=-1: every tree. The default would cut the model at best_iteration.
    text = booster.model_to_string(num_iteration=-1)
    try:
        check_model_string(text)
    except FormatError as exc:
        raise SerializationError(f"amber cannot save this LightGBM model safely: {exc}") from None
    state = {
        # bytes, not str: a large payload becomes a tensor instead of manifest text
        "model": text.encode("utf-8"),
        "best_iteration": int(booster.best_iteration),
        "best_score": _plain_scores(booster.best_score),
        "params": dict(booster.params or {}),
    }
    refuse_callables(state["params"], "lightgbm.Booster params")
    check_threads(state["params"], "lightgbm.Booster params")
    return state


def _plain_scores(scores: Any) -> dict[str, dict[str, float]]:
    """best_score as plain dicts (LightGBM keeps a defaultdict of OrderedDicts)."""
    return {str(k): {str(m): float(v) for m, v in d.items()} for k, d in (scores or {}).items()}


def _booster(cls: type, state: Any) -> Any:
    import collections

    keys = {"model", "best_iteration", "best_score", "params"}
    if not isinstance(state, dict) or set(state) != keys:
        raise FormatError(f"a LightGBM booster is stored as {sorted(keys)}")
    model, best = state["model"], state["best_iteration"]
    scores, params = state["best_score"], state["params"]
    if not isinstance(model, bytes):
        raise FormatError("a LightGBM model must be stored as bytes")
    try:
        text = model.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("it is not UTF-8 text") from None
    info = check_model_string(text)
    if type(best) is not int or not 0 <= best <= info["num_trees"] // info["num_class"]:
        raise FormatError(f"LightGBM best_iteration {best!r} is outside the model's iterations")
    if not isinstance(params, dict) or not isinstance(scores, dict):
        raise FormatError("LightGBM booster params and best_score must be dicts")
    from amber.adapters.xgboost import check_threads, refuse_callables

    refuse_callables(params, "lightgbm.Booster params", error=FormatError)
    check_threads(params, "lightgbm.Booster params", error=FormatError)
    booster = cls(model_str=text)
    booster.best_iteration = best
    # LightGBM keeps best_score as a defaultdict of OrderedDicts; rebuild that shape.
    best_score: Any = collections.defaultdict(collections.OrderedDict)
    for name, metrics in scores.items():
        if not isinstance(metrics, dict):
            raise FormatError("LightGBM best_score must map data sets to metric dicts")
        best_score[name] = collections.OrderedDict(metrics)
    booster.best_score = best_score
    booster.params = params
    return booster


def _check_wrapper(model: Any) -> None:
    """The wrapper's fitted numbers must agree with its booster (predict trusts them)."""
    booster = getattr(model, "_Booster", None)
    if booster is None:
        return
    import lightgbm

    if not isinstance(booster, lightgbm.Booster):
        raise ValueError("_Booster is not a lightgbm.Booster")
    n_features = booster.num_feature()
    for name in ("_n_features", "_n_features_in"):
        if getattr(model, name, n_features) != n_features:
            raise ValueError(f"{name} differs from the booster's {n_features} features")
    best = getattr(model, "_best_iteration", 0)
    if type(best) is not int or not 0 <= best <= booster.current_iteration():
        raise ValueError("_best_iteration is outside the booster's iterations")
    if isinstance(model, lightgbm.LGBMClassifier):
        classes = getattr(model, "_classes", None)
        n_classes = getattr(model, "_n_classes", None)
        if classes is None or type(n_classes) is not int or len(classes) != n_classes:
            raise ValueError("_classes and _n_classes disagree")
        per_round = booster.num_model_per_iteration()
        if per_round != (n_classes if n_classes > 2 else 1):
            raise ValueError(f"{n_classes} classes do not fit {per_round} trees per round")


REGISTRY.add_types([BOOSTER, *WRAPPERS])
register(BOOSTER, Constructor(_booster_state, _booster))
register_family(WRAPPERS, Constructor(wrapper_encode, wrapper_decode), _check_wrapper)

# Typed state (graph/schema.py): the booster is its native model; a wrapper holds its
# parameters, its booster and fitted values (callables were refused when it was saved).
SCHEMAS.register(BOOSTER, Schema(whole=DATA))
SCHEMAS.register_many(WRAPPERS, Schema(whole=ANY_OBJECT))
