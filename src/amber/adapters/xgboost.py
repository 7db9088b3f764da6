"""XGBoost: ``xgboost.Booster`` and the scikit-learn wrappers (``XGBClassifier``,
``XGBRegressor``, ``XGBRanker``, ``XGBRFClassifier``, ``XGBRFRegressor``).

A booster is stored as XGBoost's own UBJSON model (``save_raw("ubj")``); a wrapper as its
parameters, its booster and its other fitted attributes. XGBoost's C++ UBJSON reader and
predictor trust the model: a truncated buffer makes the reader run past its end, and a
split on a feature index beyond the model's makes prediction read out of bounds. The
UBJSON is therefore parsed here in full, with limits, and the model checked (array sizes,
child links, feature, category and output-group indices) before XGBoost sees it.

The wrapper helpers at the end are shared with the LightGBM adapter.
"""

from __future__ import annotations

import struct
from typing import Any

from amber.errors import FormatError, SerializationError
from amber.graph.constructors import Constructor, register, register_family
from amber.graph.schema import ANY_OBJECT, DATA, SCHEMAS, Schema
from amber.graph.trust import REGISTRY

BOOSTER = "xgboost.core:Booster"
WRAPPERS = (
    "xgboost.sklearn:XGBModel",
    "xgboost.sklearn:XGBClassifier",
    "xgboost.sklearn:XGBRegressor",
    "xgboost.sklearn:XGBRanker",
    "xgboost.sklearn:XGBRFClassifier",
    "xgboost.sklearn:XGBRFRegressor",
)

# -- UBJSON ------------------------------------------------------------------------------------

_SCALARS = {
    "i": (">b", 1),
    "U": (">B", 1),
    "I": (">h", 2),
    "l": (">i", 4),
    "L": (">q", 8),
    "d": (">f", 4),
    "D": (">d", 8),
}
_MAX_DEPTH = 32


def _bad(message: str) -> FormatError:
    return FormatError(f"XGBoost model in the file is malformed: {message}")


_STRUCTS = {ord(m): struct.Struct(fmt) for m, (fmt, _) in _SCALARS.items()}
_INTEGERS = {m: st for m, st in _STRUCTS.items() if chr(m) in "iUIlL"}
_CONSTANTS = {ord("T"): True, ord("F"): False, ord("Z"): None}
_OPEN = {ord("["): False, ord("{"): True}
_DOLLAR, _HASH, _STRING = ord("$"), ord("#"), ord("S")
_CLOSE = {False: ord("]"), True: ord("}")}
_ARRAY = ord("[")


def _integer(buf: bytes, pos: int) -> tuple[int, int]:
    """An integer value (marker and payload) at ``pos``; the position after it."""
    if pos >= len(buf):
        raise _bad("it is truncated")
    st = _INTEGERS.get(buf[pos])
    if st is None:
        raise _bad(f"expected an integer, found marker {chr(buf[pos])!r}")
    end = pos + 1 + st.size
    if end > len(buf):
        raise _bad("it is truncated")
    return st.unpack_from(buf, pos + 1)[0], end


def _count(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _integer(buf, pos)
    if n < 0 or n > len(buf) - pos:
        raise _bad("a length is larger than the data left")
    return n, pos


def _text(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = _count(buf, pos)
    try:
        return buf[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError:
        raise _bad("a string is not UTF-8") from None


def _value(buf: bytes, pos: int, marker: int, depth: int) -> tuple[Any, int]:
    """The value whose marker is ``marker`` (already read); its payload starts at ``pos``."""
    st = _STRUCTS.get(marker)
    if st is not None:
        end = pos + st.size
        if end > len(buf):
            raise _bad("it is truncated")
        return st.unpack_from(buf, pos)[0], end
    if marker == _STRING:
        return _text(buf, pos)
    if marker in _CONSTANTS:
        return _CONSTANTS[marker], pos
    if marker in _OPEN:
        if depth >= _MAX_DEPTH:
            raise _bad("it nests too deep")
        return _container(buf, pos, _OPEN[marker], depth + 1)
    raise _bad(f"unexpected marker {chr(marker)!r}")


def _container(buf: bytes, pos: int, is_object: bool, depth: int) -> tuple[Any, int]:
    size = len(buf)
    typed = count = None
    if pos < size and buf[pos] == _DOLLAR:
        if pos + 2 >= size:
            raise _bad("it is truncated")
        typed = buf[pos + 1]
        pos += 2
        if buf[pos] != _HASH:
            raise _bad("a typed container lacks its count")
    if pos < size and buf[pos] == _HASH:
        count, pos = _count(buf, pos + 1)
    if not is_object and count is not None and typed in _STRUCTS:
        import numpy as np

        fmt, itemsize = _SCALARS[chr(typed)]
        end = pos + count * itemsize
        if end > size:
            raise _bad("it is truncated")
        return np.frombuffer(buf, dtype=fmt, count=count, offset=pos), end
    if typed is not None and typed not in _STRUCTS and typed not in (_STRING, *_OPEN):
        raise _bad(f"unexpected container type {chr(typed)!r}")
    out: Any = {} if is_object else []
    closing = _CLOSE[is_object]
    while True:
        if count is not None and len(out) == count:
            return out, pos
        if pos >= size:
            raise _bad("it is truncated")
        if count is None and buf[pos] == closing:
            return out, pos + 1
        if is_object:  # a key: an integer length, then UTF-8 (``_text``, inlined: hot)
            st = _INTEGERS.get(buf[pos])
            if st is None:
                raise _bad(f"expected an integer, found marker {chr(buf[pos])!r}")
            start = pos + 1 + st.size
            if start > size:
                raise _bad("it is truncated")
            n = st.unpack_from(buf, pos + 1)[0]
            if n < 0 or n > size - start:
                raise _bad("a length is larger than the data left")
            pos = start + n
            try:
                key = buf[start:pos].decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("a string is not UTF-8") from None
            if key in out:
                raise _bad(f"key {key[:40]!r} appears twice")
        if typed is None:
            if pos >= size:
                raise _bad("it is truncated")
            marker, pos = buf[pos], pos + 1
        else:
            marker = typed
        if marker == _ARRAY and depth < _MAX_DEPTH and pos < size and buf[pos] == _DOLLAR:
            # A typed array (a model's node arrays: most of its values), inlined: hot.
            item, pos = _typed_array(buf, pos, depth + 1)
        else:
            item, pos = _value(buf, pos, marker, depth)
        if is_object:
            out[key] = item
        else:
            out.append(item)


def _typed_array(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """An array that starts ``$ type # count`` at ``pos``: numeric ones as one numpy view,
    others (strings, containers) through ``_container``."""
    size = len(buf)
    if pos + 3 < size and buf[pos + 2] == _HASH:
        numeric = _STRUCTS.get(buf[pos + 1])  # the element type: its format and size
        st = _INTEGERS.get(buf[pos + 3])
        if numeric is not None and st is not None:
            start = pos + 4 + st.size
            if start > size:
                raise _bad("it is truncated")
            count = st.unpack_from(buf, pos + 4)[0]
            if count < 0 or count > size - start:
                raise _bad("a length is larger than the data left")
            end = start + count * numeric.size
            if end > size:
                raise _bad("it is truncated")
            return _NUMPY["frombuffer"](buf, dtype=numeric.format, count=count, offset=start), end
    return _container(buf, pos, False, depth)  # every other case, and every error


# numpy's frombuffer, looked up once by ``parse_ubjson`` (this module imports numpy lazily:
# ``import amber`` stays light), then called once per array of the model.
_NUMPY: dict[str, Any] = {}


def parse_ubjson(data: bytes) -> Any:
    """The value in ``data``, which must hold exactly one UBJSON value. Typed numeric
    arrays come back as (zero-copy, big-endian) numpy arrays; every length is checked
    against the bytes left."""
    if not _NUMPY:
        import numpy as np

        _NUMPY["frombuffer"] = np.frombuffer
    buf = bytes(data)
    if not buf:
        raise _bad("it is empty")
    value, pos = _value(buf, 1, buf[0], 0)
    if pos != len(buf):
        raise _bad("bytes follow the model")
    return value


# -- the model ---------------------------------------------------------------------------------

_TREE_ARRAYS = {
    "left_children": "i",
    "right_children": "i",
    "parents": "i",
    "split_indices": "i",
    "split_conditions": "f",
    "default_left": "u",
    "split_type": "u",
    "base_weights": "f",
    "loss_changes": "f",
    "sum_hessian": "f",
}
_CATEGORY_ARRAYS = ("categories", "categories_nodes", "categories_segments", "categories_sizes")
# XGBoost stores category codes as floats: beyond 2**24 they are not exact, and the
# predictor sizes a bitset by the largest one.
_MAX_CATEGORY = 2**24


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], kind):
        raise _bad(f"{where}.{key} is missing or has the wrong type")
    return obj[key]


def _number(text: Any, where: str, low: int = 0, high: int = 2**31 - 1) -> int:
    """XGBoost writes its model parameters as decimal strings."""
    if not isinstance(text, str) or not text.isdigit() or not low <= int(text) <= high:
        raise _bad(f"{where} must be an integer in [{low}, {high}]")
    return int(text)


def _int_array(value: Any, where: str) -> Any:
    import numpy as np

    if isinstance(value, list) and all(type(v) is int for v in value):
        return np.array(value, dtype=np.int64)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return value.astype(np.int64)
    raise _bad(f"{where} must be an integer array")


def _tree_arrays(tree: Any, index: int, n_features: int) -> tuple[int, dict[str, Any]]:
    """The node count and node arrays of one tree, after the checks of its own fields."""
    import numpy as np

    where = f"tree {index}"
    param = _get(tree, "tree_param", dict, where)
    n = _number(param.get("num_nodes"), f"{where} num_nodes", 1)
    if _number(param.get("size_leaf_vector"), f"{where} size_leaf_vector") > 1:
        raise _bad("multi-output trees are not supported by amber yet")
    if _number(param.get("num_feature"), f"{where} num_feature") != n_features:
        raise _bad(f"{where} num_feature differs from the model's")
    if _get(tree, "id", int, where) != index:
        raise _bad(f"{where} has id {tree['id']}")
    arrays = {}
    for key, kind in _TREE_ARRAYS.items():
        array = tree.get(key)
        if type(array) is not np.ndarray or array.shape != (n,) or array.dtype.kind != kind:
            raise _bad(f"{where}.{key} must hold {n} values")
        arrays[key] = array
    return n, arrays


def _check_trees(trees: list, n_features: int) -> None:
    """Every tree at once: the checks run over the nodes of all trees concatenated (one
    numpy pass instead of one per tree: a forest has hundreds of small trees)."""
    import numpy as np

    sizes, columns = [], {key: [] for key in _TREE_ARRAYS}
    for index, tree in enumerate(trees):
        n, arrays = _tree_arrays(tree, index, n_features)
        sizes.append(n)
        for key, array in arrays.items():
            columns[key].append(array)
    if not trees:
        return
    counts = np.array(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    total = int(counts.sum())
    tree_of = np.repeat(np.arange(len(trees)), counts)
    local = np.arange(total) - starts[tree_of]  # each node's index inside its tree
    size_of = counts[tree_of]
    left = np.concatenate(columns["left_children"]).astype(np.int64)
    right = np.concatenate(columns["right_children"]).astype(np.int64)
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise _bad(
            f"tree {int(tree_of[np.argmax(leaf != (right == -1))])} has a node with one child"
        )
    inner = ~leaf
    parent_local = local[inner]
    for child in (left[inner], right[inner]):
        # Children after their parent (no cycle) and inside their tree.
        bad = (child <= parent_local) | (child >= size_of[inner])
        if bad.any():
            culprit = int(tree_of[inner][np.argmax(bad)])
            raise _bad(f"tree {culprit} has a child link outside the tree or backwards")
    # Every node but a root is the child of exactly one node (children are distinct, and
    # there are n - 1 of them per tree), and its parent link (which XGBoost follows too)
    # names that node.
    children = np.concatenate([left[inner], right[inner]]) + np.tile(starts[tree_of[inner]], 2)
    per_tree = np.bincount(tree_of[inner], minlength=len(trees)) * 2
    if not np.array_equal(per_tree, counts - 1) or np.unique(children).size != children.size:
        raise _bad("a tree is not a tree: a node has no parent or several")
    parents = np.concatenate(columns["parents"]).astype(np.int64)
    if not np.all(np.isin(parents[starts], (-1, 2**31 - 1))) or not np.array_equal(
        parents[children], np.tile(parent_local, 2)
    ):
        raise _bad("a tree has parent links that do not match its children")
    feature = np.concatenate(columns["split_indices"])[inner]
    if np.any((feature < 0) | (feature >= n_features)):
        raise _bad(f"a tree splits on a feature outside the model's {n_features}")
    split_type = np.concatenate(columns["split_type"])
    if np.any(split_type > 1) or np.any(split_type[leaf] != 0):
        raise _bad("a tree has an unknown split type")
    categorical = np.bincount(tree_of[split_type == 1], minlength=len(trees))
    for index, tree in enumerate(trees):
        arrays = [_get(tree, key, (list, np.ndarray), f"tree {index}") for key in _CATEGORY_ARRAYS]
        if categorical[index] or any(len(a) for a in arrays):
            _check_categories(arrays, columns["split_type"][index], index)


def _check_categories(arrays: list, split_type: Any, index: int) -> None:
    import numpy as np

    where = f"tree {index}"
    categories, cat_nodes, segments, sizes = (_int_array(a, where) for a in arrays)
    if not (cat_nodes.shape == segments.shape == sizes.shape):
        raise _bad(f"{where} categorical arrays differ in length")
    if not np.array_equal(np.sort(cat_nodes), np.flatnonzero(split_type == 1)):
        raise _bad(f"{where} categorical nodes do not match the split types")
    if np.any((segments < 0) | (sizes < 0) | (segments + sizes > categories.size)):
        raise _bad(f"{where} category segments outside the categories")
    if np.any((categories < 0) | (categories >= _MAX_CATEGORY)):
        raise _bad(f"{where} category codes out of range")


def _check_encoder(cats: Any, n_features: int) -> None:
    """The category recoding tables (pandas categories seen at training)."""
    import numpy as np

    enc = _get(cats, "enc", list, "cats")
    segments = _int_array(_get(cats, "feature_segments", (list, np.ndarray), "cats"), "cats")
    order = _int_array(_get(cats, "sorted_idx", (list, np.ndarray), "cats"), "cats")
    if not enc and segments.size == 0 and order.size == 0:
        return
    if len(enc) != n_features or segments.shape != (n_features + 1,):
        raise _bad("category tables do not match the features")
    if segments[0] != 0 or np.any(np.diff(segments) < 0) or segments[-1] != order.size:
        raise _bad("category feature segments are inconsistent")
    for feature, entry in enumerate(enc):
        values = _get(entry, "values", np.ndarray, f"cats.enc[{feature}]")
        size = int(segments[feature + 1] - segments[feature])
        if "offsets" in entry:  # strings: offsets into UTF-8 bytes
            offsets = _int_array(entry["offsets"], "cats offsets")
            if set(entry) != {"offsets", "values"}:
                raise _bad("unexpected category table keys")
            if offsets.size == 0 and values.size == 0:
                count = 0
            elif (
                offsets[0] != 0
                or np.any(np.diff(offsets) < 0)
                or offsets[-1] != values.size
                or values.dtype.itemsize != 1
            ):
                raise _bad(f"category strings of feature {feature} are inconsistent")
            else:
                count = offsets.size - 1
        else:
            if set(entry) != {"type", "values"} or type(entry["type"]) is not int:
                raise _bad("unexpected category table keys")
            count = values.size
        if count != size:
            raise _bad(f"feature {feature} has {count} categories, its segment {size}")
        part = order[segments[feature] : segments[feature + 1]]
        if not np.array_equal(np.sort(part), np.arange(size)):
            raise _bad(f"category order of feature {feature} is not a permutation")


def _check_gbtree(model: Any, n_features: int, groups: int, where: str) -> None:
    import numpy as np

    trees = _get(model, "trees", list, where)
    param = _get(model, "gbtree_model_param", dict, where)
    if _number(param.get("num_trees"), "num_trees") != len(trees):
        raise _bad("num_trees differs from the trees stored")
    _number(param.get("num_parallel_tree"), "num_parallel_tree", 1)
    info = _int_array(_get(model, "tree_info", (list, np.ndarray), where), "tree_info")
    if info.shape != (len(trees),) or np.any((info < 0) | (info >= groups)):
        # The predictor adds each tree's output into column tree_info[i].
        raise _bad("tree_info names an output group outside the model")
    indptr = _int_array(_get(model, "iteration_indptr", (list, np.ndarray), where), "indptr")
    if (
        indptr.size == 0
        or indptr[0] != 0
        or indptr[-1] != len(trees)
        or np.any(np.diff(indptr) < 0)
    ):
        raise _bad("iteration_indptr is inconsistent with the trees")
    _check_trees(trees, n_features)
    if "cats" in model:
        _check_encoder(model["cats"], n_features)


def check_model(data: bytes) -> dict[str, int]:
    """Refuse (FormatError) an XGBoost UBJSON model that XGBoost could misread.

    Returns ``num_feature``, ``num_class`` and ``num_target`` for the wrapper checks.
    """
    import numpy as np

    model = parse_ubjson(data)
    learner = _get(model, "learner", dict, "model")
    _get(model, "version", (list, np.ndarray), "model")
    param = _get(learner, "learner_model_param", dict, "learner")
    n_features = _number(param.get("num_feature"), "num_feature", 0, 10**8)
    num_class = _number(param.get("num_class"), "num_class", 0, 10**6)
    num_target = _number(param.get("num_target", "1"), "num_target", 1, 10**6)
    groups = max(num_class, num_target, 1)
    base = param.get("base_score")
    if not isinstance(base, str) or len(base) > 64 * groups + 16:
        raise _bad("base_score is malformed")
    if base.startswith("[") and (not base.endswith("]") or base.count(",") + 1 not in (1, groups)):
        raise _bad("base_score does not match the output groups")
    for key in ("feature_names", "feature_types"):
        names = learner.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad(f"{key} must be a list of strings")
        if names and len(names) != n_features:
            raise _bad(f"{key} must name the model's {n_features} features")
    attributes = learner.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise _bad("attributes must map names to strings")
    objective = _get(learner, "objective", dict, "learner")
    _get(objective, "name", str, "objective")
    booster = _get(learner, "gradient_booster", dict, "learner")
    name = _get(booster, "name", str, "gradient_booster")
    if name == "gbtree":
        _check_gbtree(_get(booster, "model", dict, "gbtree"), n_features, groups, "gbtree")
    elif name == "dart":
        inner = _get(booster, "gbtree", dict, "dart")
        trees_model = _get(inner, "model", dict, "dart")
        _check_gbtree(trees_model, n_features, groups, "dart")
        weights = _get(booster, "weight_drop", (list, np.ndarray), "dart")
        if len(weights) != len(trees_model["trees"]):
            raise _bad("dart weight_drop does not match the trees")
    elif name == "gblinear":
        weights = _get(_get(booster, "model", dict, "gblinear"), "weights", np.ndarray, "gblinear")
        if weights.shape != ((n_features + 1) * groups,) or weights.dtype.kind != "f":
            raise _bad("gblinear weights do not match the features and groups")
    else:
        raise _bad(f"unknown booster {name[:40]!r}")
    _check_best(attributes, booster, name)
    return {"num_feature": n_features, "num_class": num_class, "num_target": num_target}


def _check_best(attributes: dict[str, str], booster: dict, name: str) -> None:
    """best_iteration/best_score attributes drive the wrappers' predict: a number of
    rounds inside the model, and a number."""
    if "best_score" in attributes:
        try:
            float(attributes["best_score"])
        except ValueError:
            raise _bad("best_score is not a number") from None
    if "best_iteration" not in attributes:
        return
    rounds = 2**31 - 1
    if name in ("gbtree", "dart"):
        trees_model = booster["model"] if name == "gbtree" else booster["gbtree"]["model"]
        rounds = max(len(trees_model["iteration_indptr"]) - 1, 1)
    _number(attributes["best_iteration"], "best_iteration", 0, rounds - 1)


# -- the booster -------------------------------------------------------------------------------


def _booster_state(booster: Any) -> dict[str, Any]:
    raw = bytes(booster.save_raw("ubj"))
    try:
        check_model(raw)  # what the loader will insist on, checked while the user is here
    except FormatError as exc:
        raise SerializationError(f"amber cannot save this XGBoost model safely: {exc}") from None
    return {"ubj": raw}


def _booster(cls: type, state: Any) -> Any:
    if not isinstance(state, dict) or set(state) != {"ubj"} or not isinstance(state["ubj"], bytes):
        raise FormatError("an XGBoost booster is stored as {'ubj': bytes}")
    check_model(state["ubj"])
    booster = cls()
    booster.load_model(bytearray(state["ubj"]))
    return booster


# -- scikit-learn wrappers (XGBoost and LightGBM) ----------------------------------------------

_CONTAINERS = (list, tuple, set, frozenset)


def refuse_callables(value: Any, where: str, error: type[Exception] = SerializationError) -> None:
    """Raise ``error`` naming the first callable inside ``value`` (dicts and sequences are
    searched): custom objectives, metrics and callbacks are code, which amber never saves."""
    if callable(value) or _is_callback(value):
        raise error(
            f"cannot save {where}: it is code ({value!r}), a function or callback; amber "
            "stores data, never code. Save the model without it (set_params(...=None) after "
            "fitting) and pass it again after loading"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_callables(item, f"{where}[{key!r}]", error)
    elif isinstance(value, _CONTAINERS):
        for i, item in enumerate(value):
            refuse_callables(item, f"{where}[{i}]", error)


def _is_callback(value: Any) -> bool:
    """XGBoost's training callbacks are objects, not functions, but code all the same."""
    return any(
        cls.__name__ == "TrainingCallback" and cls.__module__ == "xgboost.callback"
        for cls in type(value).__mro__
    )


# Thread-count parameters (and LightGBM's aliases) go to OpenMP at predict time: a huge
# value from a file crashes LightGBM's predictor (segfault creating the threads).
THREAD_PARAMETERS = frozenset({"n_jobs", "nthread", "nthreads", "num_thread", "num_threads"})
MAX_THREADS = 1024


def check_threads(params: Any, where: str, error: type[Exception] = SerializationError) -> None:
    """Thread counts must be None or an int in [-MAX_THREADS, MAX_THREADS]."""
    if not isinstance(params, dict):
        return
    for key in THREAD_PARAMETERS & params.keys():
        value = params[key]
        if value is not None and (
            type(value) is not int or not -MAX_THREADS <= value <= MAX_THREADS
        ):
            raise error(
                f"{where}: {key}={value!r} is not a thread count amber accepts "
                f"(None or an integer within +-{MAX_THREADS})"
            )


def wrapper_encode(model: Any) -> dict[str, Any]:
    """Parameters (``get_params``), the booster, and every other instance attribute."""
    name = type(model).__name__
    params = model.get_params(deep=False)
    for key, value in params.items():
        refuse_callables(value, f"{name} parameter {key!r}")
    check_threads(params, f"{name} parameters")
    # Attributes __init__ sets from the parameters are rebuilt by calling it; "kwargs"
    # (XGBoost) and "_other_params" (LightGBM) hold the extra parameters.
    skip = {*params, "_Booster", "kwargs", "_other_params"}
    fitted = {k: v for k, v in vars(model).items() if k not in skip}
    for key, value in fitted.items():
        refuse_callables(value, f"{name} attribute {key!r}")
    return {"params": params, "booster": getattr(model, "_Booster", None), "fitted": fitted}


def wrapper_decode(cls: type, state: Any) -> Any:
    """Call the class with the parameters, then restore the booster and fitted attributes.

    Attribute names may not shadow anything the class defines (methods, properties): a
    file could otherwise replace ``predict`` on the instance.
    """
    if not isinstance(state, dict) or set(state) != {"params", "booster", "fitted"}:
        raise FormatError(f"a {cls.__name__} is stored as params, booster and fitted")
    params, fitted = state["params"], state["fitted"]
    for part in (params, fitted):
        if not isinstance(part, dict) or not all(
            type(k) is str and k.isidentifier() and not k.startswith("__") for k in part
        ):
            raise FormatError(f"{cls.__name__} params and attributes must be plain names")
    refuse_callables(params, f"{cls.__name__} params", error=FormatError)
    refuse_callables(fitted, f"{cls.__name__} attributes", error=FormatError)
    check_threads(params, f"{cls.__name__} params", error=FormatError)
    for key in fitted:
        if key in params or hasattr(cls, key) or key in ("kwargs", "_other_params", "_Booster"):
            raise FormatError(f"{cls.__name__} attribute {key!r} is not a fitted attribute")
    booster = state["booster"]
    expected = _booster_class(cls)
    if booster is not None and type(booster) is not expected:
        raise FormatError(f"{cls.__name__} needs a {expected.__qualname__}, got {type(booster)}")
    model = cls(**params)
    for key, value in fitted.items():
        setattr(model, key, value)
    if booster is not None:
        model._Booster = booster
    return model


def _booster_class(cls: type) -> type:
    if cls.__module__.startswith("lightgbm"):
        import lightgbm

        return lightgbm.Booster
    import xgboost

    return xgboost.Booster


def _check_wrapper(model: Any) -> None:
    """A classifier's class count must match its booster's outputs."""
    booster = getattr(model, "_Booster", None)
    if booster is None:
        return
    import json

    from sklearn.base import is_classifier

    if not is_classifier(model):
        return
    config = json.loads(booster.save_config())
    num_class = int(config["learner"]["learner_model_param"]["num_class"])
    n_classes = getattr(model, "n_classes_", None)
    if type(n_classes) is not int or n_classes != max(num_class, 2):
        raise ValueError(f"n_classes_ {n_classes!r} does not match the booster ({num_class})")


REGISTRY.add_types([BOOSTER, *WRAPPERS])
register(BOOSTER, Constructor(_booster_state, _booster))
register_family(WRAPPERS, Constructor(wrapper_encode, wrapper_decode), _check_wrapper)

# Typed state (graph/schema.py): the booster is its native model; a wrapper holds its
# parameters, its booster and fitted values (callables were refused when it was saved).
SCHEMAS.register(BOOSTER, Schema(whole=DATA))
SCHEMAS.register_many(WRAPPERS, Schema(whole=ANY_OBJECT))
