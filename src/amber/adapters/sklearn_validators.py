"""Consistency checks for scikit-learn objects whose compiled code indexes memory with
values from the file: a hostile file must not be able to make them read or write out of
bounds. Each check raises ValueError; the decoder turns it into a FormatError naming the
class.

Two levels (security rule R4, "validation that holds at use"):

- compiled members (``Tree``, histogram ``TreePredictor``, KD and ball trees) are checked
  against themselves: links inside their arrays, one parent per node, depths;
- their **owners** are checked against the bounds the member was checked with. A member's
  own check can only compare an index with a bound the file also supplies (a ``Tree`` whose
  ``n_features`` is 2**31 accepts any feature index); what keeps prediction in bounds is
  that the bound equals what the owner validates its input against (``n_features_in_``,
  the number of classes, the rows of ``_fit_X``...). The decoder runs an object's check
  after its state is applied, members first, so an owner's check sees built members.

Every owner check returns at once for an unfitted estimator (no fitted attributes).
Attributes are read from the instance ``__dict__``, never through properties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from amber.graph.constructors import register_validator

# -- helpers ------------------------------------------------------------------------------------


def _state(obj: Any) -> dict[str, Any]:
    return getattr(obj, "__dict__", {})


def _integer(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    """``value`` as an int, if it is an integer (Python or numpy, not bool) in range."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{what}={value} is out of range")
    return value


def _features_in(obj: Any) -> int:
    """``n_features_in_``: what the estimator checks the columns of its input against.
    Without it scikit-learn checks nothing, so a fitted owner must have it."""
    if "n_features_in_" not in _state(obj):
        raise ValueError("the fitted estimator has no n_features_in_")
    return _integer(_state(obj)["n_features_in_"], "n_features_in_", 1)


def _array(value: Any, what: str, ndim: int | None = None, kind: str | None = None) -> Any:
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be an array, not {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, not {value.ndim}")
    if kind is not None and value.dtype.kind not in kind:
        raise ValueError(f"{what} has dtype {value.dtype}")
    return value


def _indices(values: Any, bound: int, what: str) -> Any:
    """``values`` as an integer array whose every entry is in [0, bound)."""
    import numpy as np

    array = np.asarray(values)
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integers")
    if array.size and (array.min() < 0 or array.max() >= bound):
        raise ValueError(f"{what} holds an index outside [0, {bound})")
    return array


def _is(obj: Any, module: str, name: str) -> bool:
    cls = type(obj)
    return cls.__module__ == module and cls.__qualname__ == name


def _tree_depth(left: Any, right: Any, inner: Any) -> int:
    """The depth of the deepest node (the root at depth 0) of a tree whose links point
    forward with one parent per node, by pointer jumping: about log2(depth) passes."""
    import numpy as np

    count = len(left)
    parent = np.full(count, -1, dtype=np.int64)
    index = np.flatnonzero(inner)
    parent[left[index]] = index
    parent[right[index]] = index
    depth = (parent >= 0).astype(np.int64)  # distance to ``parent``
    up = parent
    while True:
        has = np.flatnonzero(up >= 0)
        if not has.size:
            return int(depth.max())
        depth[has] += depth[up[has]]
        up = up.copy()
        up[has] = up[up[has]]


def _one_parent(children: Any, count: int) -> None:
    """No node is the child of two nodes (nor twice of one): traversals that keep a stack
    sized by the node count, or a path buffer sized by the depth, rely on it."""
    import numpy as np

    if children.size and np.bincount(children, minlength=count).max() > 1:
        raise ValueError("a node has more than one parent")


# -- compiled members ----------------------------------------------------------------------------


def _check_tree(tree: Any) -> None:
    """One tree: ``_check_trees`` over a list of one."""
    _check_trees([tree])


# Trees checked together in one numpy pass: up to this many nodes (their link arrays stay in
# the CPU's cache; one pass over a whole forest's nodes is slower than 200 small ones).
_CHUNK_NODES = 1 << 15
_LINKS = ("left_child", "right_child", "feature")


def _check_trees(trees: list[Any]) -> None:
    """Every tree of a load, several at a time (see ``_check_tree_chunk``)."""
    chunk: list[Any] = []
    nodes = 0
    for tree in trees:
        if chunk and nodes + int(tree.node_count) > _CHUNK_NODES:
            _check_tree_chunk(chunk)
            chunk, nodes = [], 0
        chunk.append(tree)
        nodes += max(0, int(tree.node_count))
    if chunk:
        _check_tree_chunk(chunk)


def _links(tree: Any, count: int) -> Any:
    """The (count, 3) int64 links of a tree: left child, right child, feature; read from its
    node records in one pass when they have the layout scikit-learn gives them."""
    import numpy as np

    left = tree.children_left
    nodes = left.base  # the node records the property views
    fields = getattr(getattr(nodes, "dtype", None), "fields", None) or {}
    if (
        isinstance(nodes, np.ndarray)
        and nodes.shape == (count,)
        and nodes.flags.c_contiguous
        and nodes.dtype.itemsize % 8 == 0
        and [fields.get(name) for name in _LINKS]
        == [(np.dtype(np.int64), offset) for offset in (0, 8, 16)]
    ):
        return nodes.view(np.int64).reshape(count, -1)[:, :3]
    return np.stack([left, tree.children_right, tree.feature], axis=1).astype(np.int64)


def _check_tree_chunk(trees: list[Any]) -> None:
    """Trees checked in one numpy pass over their concatenated links. For each tree: child
    links must point forward inside the tree (no out-of-bounds read, no cycle), each node
    one parent, features inside the fitted feature count, values shaped for the node count,
    and ``max_depth`` between the depth and the node count (``decision_path`` sizes its
    output by it). Uses the trees' array properties, which view their memory
    (``__getstate__`` would copy it)."""
    import numpy as np

    counts = np.array([int(tree.node_count) for tree in trees], dtype=np.int64)
    if counts.min() < 1:
        raise ValueError("the tree has no nodes (prediction reads the root)")
    blocks = []
    for tree, count in zip(trees, counts.tolist(), strict=True):
        if tree.children_left.shape != (count,) or tree.children_right.shape != (count,):
            raise ValueError("child arrays do not match the node count")
        if tree.value.shape[0] != count:
            raise ValueError("values do not match the node count")
        blocks.append(_links(tree, count))
    links = np.concatenate(blocks)
    left, right, feature = links[:, 0], links[:, 1], links[:, 2]
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise ValueError("a node has one child")
    inner = np.flatnonzero(~leaf)
    starts = np.cumsum(counts) - counts  # where each tree's nodes begin
    owner = np.repeat(np.arange(len(trees)), counts)[inner]  # the tree of each inner node
    start = starts[owner]
    index = inner - start  # each inner node's index in its own tree
    bound = counts[owner]
    lefts, rights = left[inner], right[inner]
    if np.any((lefts <= index) | (lefts >= bound) | (rights <= index) | (rights >= bound)):
        raise ValueError("a child index points outside the tree or backwards")
    # With one parent each, every node but the root is a child: 2 per inner node.
    if np.any(2 * np.bincount(owner, minlength=len(trees)) != counts - 1):
        raise ValueError("the nodes do not form one tree")
    # Links stay inside their own tree, so one count over all trees finds a second parent.
    _one_parent(np.concatenate([lefts + start, rights + start]), 0)
    features = np.array([tree.n_features for tree in trees], dtype=np.int64)[owner]
    split = feature[inner]
    if np.any((split < 0) | (split >= features)):
        raise ValueError("a split uses a feature index outside the fitted features")
    for tree, count in zip(trees, counts.tolist(), strict=True):
        # decision_path allocates n_samples * (1 + max_depth) entries: at least the depth,
        # and no more than the nodes (a huge value overflows the size it computes).
        if hasattr(tree, "compute_node_depths"):  # compiled, and safe once links are checked
            depth = int(tree.compute_node_depths().max()) - 1
        else:
            one = tree.children_left
            depth = _tree_depth(one, tree.children_right, one != -1)
        if not depth <= tree.max_depth < count:
            raise ValueError("max_depth is not the depth of the tree")


def _check_tree_predictor(predictor: Any) -> None:
    """One histogram tree: ``_check_tree_predictors`` over a list of one."""
    _check_tree_predictors([predictor])


def _check_tree_predictors(predictors: list[Any]) -> None:
    """Every histogram tree of a load at once (one numpy pass over their concatenated
    nodes). Each: at least a root, links forward and inside, one parent per node, split
    features non-negative (the owner bounds them), categorical bitsets of 8 words (the
    width the compiled lookup assumes) with every bitset index inside both arrays."""
    import numpy as np

    tables, bitsets = [], []
    for predictor in predictors:
        nodes = _array(_state(predictor).get("nodes"), "nodes", 1)
        if nodes.dtype.names is None or not {"is_leaf", "left", "right", "feature_idx"} <= set(
            nodes.dtype.names
        ):
            raise ValueError("nodes are not predictor records")
        if len(nodes) < 1:
            raise ValueError("the tree has no nodes (prediction reads the root)")
        sizes = []
        for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
            bits = _array(_state(predictor).get(name), name, 2)
            if bits.shape[1] != 8 or bits.dtype != np.uint32:
                raise ValueError(f"{name} must be uint32 bitsets of 8 words")
            sizes.append(len(bits))
        tables.append(nodes)
        bitsets.append(min(sizes))
    counts = np.array([len(nodes) for nodes in tables], dtype=np.int64)

    def field(name: str) -> Any:
        return np.concatenate([nodes[name] for nodes in tables])

    inner = field("is_leaf") == 0
    starts = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(tables)), counts)[inner]
    index = np.flatnonzero(inner) - starts[owner]
    left = field("left")[inner].astype(np.int64)
    right = field("right")[inner].astype(np.int64)
    # Children come after their parent and inside the array: forward links, no cycles.
    bound = counts[owner]
    if np.any((left <= index) | (right <= index) | (left >= bound) | (right >= bound)):
        raise ValueError("a child index points outside the tree or backwards")
    _one_parent(np.concatenate([left, right]) + np.tile(starts[owner], 2), 0)
    if index.size and field("feature_idx")[inner].min() < 0:
        raise ValueError("a split uses a negative feature index")
    categorical = field("is_categorical")[inner] != 0
    if categorical.any() and np.any(
        field("bitset_idx")[inner][categorical] >= np.array(bitsets)[owner[categorical]]
    ):
        raise ValueError("a categorical split points outside the bitsets")


def _check_binary_tree(tree: Any) -> None:
    """KD and ball trees index their data through idx_array and node_data in compiled code:
    every index must stay inside the data, the implicit heap layout must keep the children
    (2i+1, 2i+2) of every non-leaf node inside the node arrays, and the metric must fit
    the data's dimension."""
    import numpy as np

    state = tree.__getstate__()
    data, idx, node_data, node_bounds = state[0], state[1], state[2], state[3]
    leaf_size, n_nodes, metric, sample_weight = state[4], state[6], state[11], state[12]
    if data.ndim != 2:
        raise ValueError("tree data must be two-dimensional")
    n, d = data.shape
    if n < 1 or d < 1:
        raise ValueError("tree data is empty")
    if _integer(leaf_size, "leaf_size") < 1:  # breadth-first queries divide by it
        raise ValueError("leaf_size must be at least 1")
    if idx.shape != (n,) or not np.array_equal(np.sort(idx), np.arange(n)):
        raise ValueError("idx_array must be a permutation of the data rows")
    if n_nodes < 1 or node_data.shape != (n_nodes,) or node_bounds.ndim != 3:
        raise ValueError("node arrays do not match the node count")
    # KD trees keep lower and upper bounds per node, ball trees a centroid.
    planes = 2 if type(tree).__name__.startswith("KDTree") else 1
    if node_bounds.shape != (planes, n_nodes, d):
        raise ValueError("node bounds do not match the nodes and features")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if np.any((start < 0) | (start > end) | (end > n)):
        raise ValueError("a node's index range lies outside the data")
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if inner.size and 2 * inner.max() + 2 >= n_nodes:
        raise ValueError("a non-leaf node's children lie outside the node arrays")
    if sample_weight is not None and np.shape(sample_weight) != (n,):
        raise ValueError("sample weights do not match the data")
    _, vec, mat = metric.__getstate__()[:3]
    if np.shape(vec) not in ((1,), (d,)) or np.shape(mat) not in ((1, 1), (d, d)):
        raise ValueError("the distance metric does not match the data dimension")
    metric._validate_data(data)  # per-metric sizes (weights, V, VI, haversine's 2)


# -- trees and forests -------------------------------------------------------------------------

_TREE = ("sklearn.tree._tree", "Tree")


def _fitted_tree(estimator: Any, what: str) -> Any:
    """A fitted decision tree estimator's ``tree_`` (checked by its own validator)."""
    if not any(
        _is(estimator, "sklearn.tree._classes", name)
        for name in (
            "DecisionTreeClassifier",
            "DecisionTreeRegressor",
            "ExtraTreeClassifier",
            "ExtraTreeRegressor",
        )
    ):
        raise ValueError(f"{what} is a {type(estimator).__name__}, not a decision tree")
    tree = _state(estimator).get("tree_")
    if not _is(tree, *_TREE):
        raise ValueError(f"{what} has no fitted tree")
    return tree


def _check_decision_tree(estimator: Any) -> None:
    """The tree's feature count is the estimator's (what ``predict`` checks ``X``
    against), and its outputs and classes are the estimator's."""
    import numpy as np

    state = _state(estimator)
    if "tree_" not in state:
        return
    tree = state["tree_"]
    if not _is(tree, *_TREE):
        raise ValueError("tree_ is not a scikit-learn Tree")
    if tree.n_features != _features_in(estimator):
        raise ValueError(
            f"tree_ splits {tree.n_features} features, the estimator takes "
            f"{state['n_features_in_']}"
        )
    n_outputs = _integer(state.get("n_outputs_"), "n_outputs_", 1)
    if tree.n_outputs != n_outputs:
        raise ValueError("tree_ and the estimator have different numbers of outputs")
    n_classes = np.asarray(tree.n_classes)
    if tree.value.shape[1:] != (n_outputs, n_classes.max()):
        raise ValueError("tree_ values do not match its outputs and classes")
    if "classes_" in state:  # a classifier
        classes = state["classes_"] if n_outputs > 1 else [state["classes_"]]
        counts = np.atleast_1d(state.get("n_classes_"))
        if len(classes) != n_outputs or len(counts) != n_outputs:
            raise ValueError("classes_ do not match the outputs")
        for k in range(n_outputs):
            if not len(classes[k]) == int(counts[k]) == int(n_classes[k]):
                raise ValueError("classes_, n_classes_ and tree_ disagree")
    elif np.any(n_classes != 1):
        raise ValueError("a regression tree must have one value per output")


def _members(owner: Any, what: str = "estimators_") -> list[Any]:
    members = _state(owner).get(what)
    if not isinstance(members, list):
        raise ValueError(f"{what} must be a list")
    return members


def _check_forest(forest: Any) -> None:
    """Every tree of the forest splits the forest's features (the forest checks ``X``
    against its own ``n_features_in_`` and hands it to the trees unchecked) and has its
    outputs."""
    state = _state(forest)
    if "estimators_" not in state:
        return
    n_features = _features_in(forest)
    n_outputs = state.get("n_outputs_")
    for i, member in enumerate(_members(forest)):
        tree = _fitted_tree(member, f"estimators_[{i}]")
        if tree.n_features != n_features:
            raise ValueError(
                f"estimators_[{i}] splits {tree.n_features} features, not {n_features}"
            )
        if n_outputs is not None and tree.n_outputs != n_outputs:
            raise ValueError(f"estimators_[{i}] has other outputs than the forest")


def _check_bagging(bagging: Any) -> None:
    """Each member sees the columns ``estimators_features_`` picks for it: indices inside
    the owner's features, one list per member, and a member that records its feature count
    must expect exactly those columns."""
    state = _state(bagging)
    if "estimators_" not in state:
        return
    n_features = _features_in(bagging)
    members = _members(bagging)
    features = state.get("estimators_features_")
    if not isinstance(features, list) or len(features) != len(members):
        raise ValueError("estimators_features_ does not have one entry per member")
    for i, (member, picked) in enumerate(zip(members, features, strict=True)):
        picked = _indices(picked, n_features, f"estimators_features_[{i}]")
        if picked.ndim != 1:
            raise ValueError(f"estimators_features_[{i}] must be one-dimensional")
        expected = _state(member).get("n_features_in_")
        if expected is not None and expected != len(picked):
            raise ValueError(f"estimators_[{i}] takes {expected} features, not {len(picked)}")


def _check_isolation_forest(forest: Any) -> None:
    """Bagging's rule, and each tree splits exactly the columns picked for it (scoring
    calls the trees' compiled ``apply`` with unchecked input)."""
    _check_bagging(forest)
    state = _state(forest)
    if "estimators_" not in state:
        return
    _integer(state.get("_max_features"), "_max_features", 1, _features_in(forest))
    for i, (member, picked) in enumerate(
        zip(_members(forest), state["estimators_features_"], strict=True)
    ):
        tree = _fitted_tree(member, f"estimators_[{i}]")
        if tree.n_features != len(picked):
            raise ValueError(
                f"estimators_[{i}] splits {tree.n_features} features, not {len(picked)}"
            )


def _check_gradient_boosting(model: Any) -> None:
    """``predict_stages`` walks every tree of ``estimators_`` (n_stages x K) in compiled
    code, on ``X`` checked against ``estimators_[0, 0]``, adding into a buffer of
    ``n_trees_per_iteration_`` columns (or the init estimator's outputs): every tree
    splits the model's features, K is the number of trees per iteration, and the init
    estimator gives that many columns."""
    import numpy as np

    state = _state(model)
    if "estimators_" not in state:
        return
    n_features = _features_in(model)
    estimators = _array(state["estimators_"], "estimators_", 2)
    per_iteration = _integer(state.get("n_trees_per_iteration_"), "n_trees_per_iteration_", 1)
    if estimators.dtype != object or estimators.shape[1] != per_iteration:
        raise ValueError("estimators_ must hold n_trees_per_iteration_ trees per stage")
    if estimators.shape[0] < 1:
        raise ValueError("estimators_ is empty")
    if "n_classes_" in state:
        n_classes = _integer(state["n_classes_"], "n_classes_", 2)
        if per_iteration != (1 if n_classes == 2 else n_classes):
            raise ValueError("n_trees_per_iteration_ does not match n_classes_")
        if len(state.get("classes_", ())) != n_classes:
            raise ValueError("classes_ does not match n_classes_")
    elif per_iteration != 1:
        raise ValueError("a regressor has one tree per iteration")
    for (i, k), member in np.ndenumerate(estimators):
        tree = _fitted_tree(member, f"estimators_[{i}, {k}]")
        if tree.n_features != n_features:
            raise ValueError(f"estimators_[{i}, {k}] splits {tree.n_features} features")
        if tree.n_outputs != 1 or tree.value.shape[1:] != (1, 1):
            raise ValueError(f"estimators_[{i}, {k}] is not a single-output regression tree")
    _check_init_width(state.get("init_"), per_iteration, "n_classes_" in state)


def _check_init_width(init: Any, width: int, classifier: bool) -> None:
    """The raw predictions the init estimator starts from have ``width`` columns (when
    amber can tell: the default dummy estimators; another init estimator gives what its
    own predict gives)."""
    import numpy as np

    if init is None or isinstance(init, str):
        if init not in (None, "zero"):
            raise ValueError(f"init_={init!r}")
        return
    state = _state(init)
    if _is(init, "sklearn.dummy", "DummyRegressor"):
        constant = np.asarray(state.get("constant_"))
        if state.get("n_outputs_") != 1 or constant.shape != (1, 1):
            raise ValueError("the init estimator must predict one value")
    elif _is(init, "sklearn.dummy", "DummyClassifier"):
        prior = np.asarray(state.get("class_prior_"))
        n_classes = state.get("n_classes_")
        if state.get("n_outputs_") != 1 or prior.shape != (n_classes,):
            raise ValueError("the init estimator's classes do not match its priors")
        if n_classes < (2 if width == 1 else width):
            raise ValueError("the init estimator predicts fewer classes than the model")
    elif classifier and width > 1 and len(state.get("classes_", ())) != width:
        raise ValueError("the init estimator predicts other classes than the model")


def _check_hist_gradient_boosting(model: Any) -> None:
    """Histogram trees read ``X[row, feature_idx]`` in compiled code, and for categorical
    splits ``f_idx_map[feature_idx]`` and the known-category bitsets built from
    ``_bin_mapper``: every split feature is a column of the input the model validates,
    categorical splits only on features the bin mapper knows as categorical, and one tree
    per output and iteration."""
    import numpy as np

    state = _state(model)
    if "_predictors" not in state:
        return
    width = _hgb_input_width(model)
    mapper = state.get("_bin_mapper")
    if not _is(mapper, "sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper"):
        raise ValueError("_bin_mapper is not a _BinMapper")
    is_categorical = _array(_state(mapper).get("is_categorical_"), "is_categorical_", 1)
    thresholds = _state(mapper).get("bin_thresholds_")
    if len(is_categorical) != width or not isinstance(thresholds, list) or len(thresholds) != width:
        raise ValueError("_bin_mapper does not describe the model's features")
    if _state(model).get("_n_features", width) != width:
        raise ValueError("_n_features does not match the model's features")
    for f in np.flatnonzero(is_categorical):
        known = np.asarray(thresholds[f])
        if known.size and (known.min() < 0 or known.max() > 255 or np.any(known % 1)):
            raise ValueError(f"known categories of feature {f} are not codes in [0, 255]")
    per_iteration = _integer(state.get("n_trees_per_iteration_"), "n_trees_per_iteration_", 1)
    for i, iteration in enumerate(_members(model, "_predictors")):
        if not isinstance(iteration, list) or len(iteration) != per_iteration:
            raise ValueError(f"_predictors[{i}] does not hold one tree per output")
        for k, predictor in enumerate(iteration):
            if not _is(
                predictor, "sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"
            ):
                raise ValueError(f"_predictors[{i}][{k}] is not a TreePredictor")
            nodes = predictor.nodes
            inner = nodes["is_leaf"] == 0
            features = nodes["feature_idx"][inner]
            if features.size and features.max() >= width:
                raise ValueError(
                    f"_predictors[{i}][{k}] splits on feature {features.max()}, the model "
                    f"takes {width}"
                )
            categorical = features[nodes["is_categorical"][inner] != 0]
            if categorical.size and not is_categorical[categorical].all():
                raise ValueError(f"_predictors[{i}][{k}] splits a numeric feature by category")


def _hgb_input_width(model: Any) -> int:
    """The number of columns the histogram trees are given: ``n_features_in_`` when the
    model validates ``X`` itself, else what its categorical preprocessor (the
    ColumnTransformer scikit-learn builds: an OrdinalEncoder and a check_array pass-through,
    one column out for each column in) produces."""
    import numpy as np

    width = _features_in(model)
    pre = _state(model).get("_preprocessor")
    if pre is None:
        return width
    if not _is(pre, "sklearn.compose._column_transformer", "ColumnTransformer"):
        raise ValueError("_preprocessor is not a ColumnTransformer")
    if _state(pre).get("n_features_in_") != width:
        raise ValueError("_preprocessor takes other features than the model")
    out = 0
    for entry in _state(pre).get("transformers_", ()):
        if not isinstance(entry, tuple) or len(entry) != 3:
            raise ValueError("_preprocessor.transformers_ entries must be (name, step, columns)")
        _, step, columns = entry
        columns = np.asarray(columns)
        if columns.dtype == bool:
            if columns.shape != (width,):
                raise ValueError("a column mask of _preprocessor does not match the features")
            picked = int(columns.sum())
        else:
            picked = len(_indices(columns, width, "_preprocessor columns"))
        if isinstance(step, str):
            if step != "drop" or picked:
                raise ValueError(f"_preprocessor step {step!r} is not what scikit-learn builds")
            continue
        if _is(step, "sklearn.preprocessing._encoders", "OrdinalEncoder"):
            categories = _state(step).get("categories_")
            if _state(step).get("n_features_in_") != picked or len(categories) != picked:
                raise ValueError("the OrdinalEncoder of _preprocessor takes other columns")
        elif not (
            _is(step, "sklearn.preprocessing._function_transformer", "FunctionTransformer")
            and _is_check_array(_state(step).get("func"))
        ):
            raise ValueError("_preprocessor holds a step scikit-learn does not build")
        out += picked
    return out


def _is_check_array(func: Any) -> bool:
    import functools

    if isinstance(func, functools.partial):
        func = func.func
    return (
        getattr(func, "__module__", None) == "sklearn.utils.validation"
        and getattr(func, "__qualname__", None) == "check_array"
    )


# -- neighbours ----------------------------------------------------------------------------------

_BINARY_TREES = {
    "kd_tree": ("sklearn.neighbors._kd_tree", "KDTree"),
    "ball_tree": ("sklearn.neighbors._ball_tree", "BallTree"),
}


def _check_neighbors(model: Any) -> None:
    """The search structure matches the training data it answers for: ``_fit_X`` has
    ``n_samples_fit_`` rows (queries check ``n_neighbors`` against it) and the model's
    features, a KD or ball tree holds that data, and classifier labels ``_y`` are class
    indices (compiled class-mode reductions count votes in an array of one slot per
    class)."""
    import numpy as np
    import scipy.sparse as sp

    state = _state(model)
    if "_fit_method" not in state:
        return
    method = state["_fit_method"]
    fit_X = state.get("_fit_X")
    if not (isinstance(fit_X, np.ndarray) or sp.issparse(fit_X)) or fit_X.ndim != 2:
        raise ValueError("_fit_X must be a two-dimensional array")
    n, d = fit_X.shape
    if n < 1:
        raise ValueError("_fit_X has no rows")
    if _integer(state.get("n_samples_fit_"), "n_samples_fit_") != n:
        raise ValueError("n_samples_fit_ does not match _fit_X")
    if state.get("metric") != "precomputed" and _features_in(model) != d:
        raise ValueError("_fit_X does not have the model's features")
    if method in _BINARY_TREES:
        tree = state.get("_tree")
        if not _is(tree, *_BINARY_TREES[method]):
            raise ValueError(f"_fit_method {method!r} needs a {_BINARY_TREES[method][1]}")
        if np.shape(tree.data) != (n, d):
            raise ValueError("_tree does not hold _fit_X")
    elif method != "brute":
        raise ValueError(f"_fit_method={method!r}")
    if "_y" in state and state["_y"] is not None:
        y = np.asarray(state["_y"])
        if len(y) != n:
            raise ValueError("_y does not have one label per row of _fit_X")
        if "classes_" in state:
            _check_class_indices(y, state["classes_"], state.get("outputs_2d_", y.ndim == 2))
    lrd = state.get("_lrd")
    if lrd is not None and np.shape(lrd) != (n,):
        raise ValueError("_lrd does not have one value per row of _fit_X")


def _check_class_indices(y: Any, classes: Any, two_dimensional: Any) -> None:
    import numpy as np

    if two_dimensional:
        if y.ndim != 2 or not isinstance(classes, list) or len(classes) != y.shape[1]:
            raise ValueError("_y does not match classes_")
        for k, values in enumerate(classes):
            _indices(y[:, k], len(values), f"_y[:, {k}]")
    else:
        if y.ndim != 1:
            raise ValueError("_y must be one-dimensional")
        _indices(y, len(np.atleast_1d(classes)), "_y")


def _check_kernel_density(model: Any) -> None:
    state = _state(model)
    if "tree_" not in state:
        return
    tree = state["tree_"]
    if not any(_is(tree, *kind) for kind in _BINARY_TREES.values()):
        raise ValueError("tree_ must be a KDTree or a BallTree")
    if tree.data.shape[1] != _features_in(model):
        raise ValueError("tree_ does not hold the model's features")


# -- support vector machines --------------------------------------------------------------------

_LIBSVM_IMPL = ("c_svc", "nu_svc", "one_class", "epsilon_svr", "nu_svr")


def _check_libsvm(model: Any) -> None:
    """libsvm rebuilds its model from these arrays at every prediction and trusts them:
    ``l = len(support_)`` support vectors (rows of ``support_vectors_``, or columns of the
    kernel matrix for a precomputed kernel), ``_n_support`` per class summing to ``l``,
    ``_dual_coef_`` (classes - 1) x l, one intercept (and probability pair) per pair of
    classes."""
    import numpy as np
    import scipy.sparse as sp

    state = _state(model)
    if "support_" not in state:
        return
    impl = state.get("_impl", type(model)._impl)
    if impl != type(model)._impl:
        raise ValueError(f"_impl={impl!r} is not this class's libsvm type")
    support = _array(state["support_"], "support_", 1, "i")
    n_sv = len(support)
    n_support = _array(state.get("_n_support"), "_n_support", 1, "i")
    n_class = len(n_support)
    pairs = n_class * (n_class - 1) // 2
    if n_class < 2:
        raise ValueError("_n_support must describe at least two classes")
    if impl in ("c_svc", "nu_svc"):
        if n_support.min() < 0 or int(n_support.sum()) != n_sv:
            raise ValueError("_n_support does not add up to the support vectors")
        if len(state.get("classes_", ())) != n_class:
            raise ValueError("classes_ does not match _n_support")
    elif n_class != 2:
        raise ValueError("a regression or one-class model has _n_support for two classes")
    kernel = state.get("kernel")
    shape_fit = state.get("shape_fit_")
    if not isinstance(shape_fit, tuple) or len(shape_fit) != 2:
        raise ValueError("shape_fit_ must be (samples, features)")
    vectors = state.get("support_vectors_")
    dual = state.get("_dual_coef_")
    sparse = state.get("_sparse")
    if sparse:
        if callable(kernel) or kernel == "precomputed":
            raise ValueError("a sparse model cannot have a precomputed kernel")
        if not sp.issparse(vectors) or vectors.shape != (n_sv, _features_in(model)):
            raise ValueError("support_vectors_ does not match support_")
        if not sp.issparse(dual) or dual.shape != (n_class - 1, n_sv):
            raise ValueError("_dual_coef_ does not match the classes and support vectors")
        if dual.data.shape != ((n_class - 1) * n_sv,):
            raise ValueError("_dual_coef_ must store every coefficient")
    else:
        vectors = _array(vectors, "support_vectors_", 2)
        if callable(kernel) or kernel == "precomputed":
            # The kernel matrix has one column per training sample; predict checks that.
            _indices(support, _integer(shape_fit[0], "shape_fit_[0]"), "support_")
            if callable(kernel):
                fit = _state(model).get("_BaseLibSVM__Xfit")
                if np.shape(fit)[:1] != (shape_fit[0],):
                    raise ValueError("the training data of the kernel does not match shape_fit_")
        elif vectors.shape != (n_sv, _features_in(model)):
            raise ValueError("support_vectors_ does not match support_ and the features")
        if _array(dual, "_dual_coef_", 2).shape != (n_class - 1, n_sv):
            raise ValueError("_dual_coef_ does not match the classes and support vectors")
    if np.shape(state.get("_intercept_")) != (pairs,):
        raise ValueError("_intercept_ needs one value per pair of classes")
    for name in ("_probA", "_probB"):
        if np.shape(state.get(name)) not in ((0,), (pairs,)):
            raise ValueError(f"{name} needs one value per pair of classes")


# -- clustering ------------------------------------------------------------------------------------


def _check_kmeans(model: Any) -> None:
    """Compiled k-means assignment reads ``n_features`` columns of every center, with
    ``n_features`` taken from ``X``: the centers have the model's features."""
    state = _state(model)
    if "cluster_centers_" not in state:
        return
    centers = _array(state["cluster_centers_"], "cluster_centers_", 2, "f")
    if centers.shape[0] < 1 or centers.shape[1] != _features_in(model):
        raise ValueError("cluster_centers_ do not have the model's features")
    tree = state.get("_bisecting_tree")
    if tree is None:
        return
    seen, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise ValueError("_bisecting_tree is not a tree")
        seen.add(id(node))
        node_state = _state(node)
        center = node_state.get("center")
        if _array(center, "a _bisecting_tree center", 1).shape != (centers.shape[1],):
            raise ValueError("a _bisecting_tree center does not have the model's features")
        children = [node_state.get("left"), node_state.get("right")]
        if (children[0] is None) != (children[1] is None):
            raise ValueError("a _bisecting_tree node has one child")
        stack.extend(c for c in children if c is not None)


# -- vectorizers -----------------------------------------------------------------------------------


def _check_vocabulary(model: Any) -> None:
    """The column of each term comes from ``vocabulary_`` and goes unchecked into a sparse
    matrix (densified or multiplied in compiled code): the columns are 0..n-1, each once."""
    import numpy as np

    state = _state(model)
    vocabulary = state.get("vocabulary_")
    if vocabulary is None:
        return
    if not isinstance(vocabulary, dict):
        raise ValueError("vocabulary_ must be a dict")
    columns = list(vocabulary.values())
    for column in columns:
        _integer(column, "a vocabulary_ column")
    if sorted(int(c) for c in columns) != list(range(len(columns))):
        raise ValueError("vocabulary_ columns must be 0..n-1, each once")
    names = state.get("feature_names_")
    if names is not None and len(names) != len(columns):
        raise ValueError("feature_names_ does not match vocabulary_")
    tfidf = state.get("_tfidf")
    idf = _state(tfidf).get("idf_") if tfidf is not None else None
    if idf is not None and np.shape(idf) != (len(columns),):
        raise ValueError("idf_ does not match vocabulary_")


def _check_label_cache(model: Any) -> None:
    """``transform`` takes each label's column from ``_cached_dict`` (saved once the model
    has transformed) into a sparse matrix it densifies: columns 0..n-1, each once."""
    cache = _state(model).get("_cached_dict")
    if cache is None:
        return
    if not isinstance(cache, dict):
        raise ValueError("_cached_dict must be a dict")
    columns = [_integer(c, "a _cached_dict column") for c in cache.values()]
    if sorted(columns) != list(range(len(columns))):
        raise ValueError("_cached_dict columns must be 0..n-1, each once")
    classes = _state(model).get("classes_")
    if classes is not None and len(classes) != len(columns):
        raise ValueError("_cached_dict does not match classes_")


def _check_hasher(model: Any) -> None:
    """Feature hashing takes ``hash % n_features`` in compiled code (a zero divides by
    zero) and uses it as a column index."""
    n_features = _state(model).get("n_features")
    if n_features is not None:
        _integer(n_features, "n_features", 1, 2**31 - 1)


def _check_one_hot(model: Any) -> None:
    """``transform`` builds a sparse matrix from category codes offset by
    ``_n_features_outs`` and densifies it in compiled code: every code a category can
    take, after grouping infrequent ones and dropping one, is inside its feature's
    columns."""
    import numpy as np

    state = _state(model)
    categories = state.get("categories_")
    if categories is None or "_n_features_outs" not in state:
        return
    outs = state["_n_features_outs"]
    if not isinstance(categories, list) or len(outs) != len(categories):
        raise ValueError("_n_features_outs does not match categories_")
    drop = state.get("_drop_idx_after_grouping")
    infrequent = state.get("_infrequent_indices") if state.get("_infrequent_enabled") else None
    mappings = state.get("_default_to_infrequent_mappings") if infrequent is not None else None
    for i, cats in enumerate(categories):
        width = _integer(outs[i], f"_n_features_outs[{i}]")
        codes = np.arange(len(cats))
        if infrequent is not None and infrequent[i] is not None:
            _indices(infrequent[i], len(cats), f"_infrequent_indices[{i}]")
        if mappings is not None and mappings[i] is not None:
            mapping = np.asarray(mappings[i])
            if mapping.shape != (len(cats),):
                raise ValueError(f"_default_to_infrequent_mappings[{i}] does not match")
            codes = _indices(mapping, len(cats), f"_default_to_infrequent_mappings[{i}]")
        if drop is not None and drop[i] is not None:
            dropped = _integer(drop[i], f"_drop_idx_after_grouping[{i}]")
            codes = codes[codes != dropped]
            codes = codes - (codes > dropped)
        _indices(codes, width, f"the codes of feature {i}")


# -- registration --------------------------------------------------------------------------------


def _register(
    module: str,
    names: Iterable[str],
    check: Callable[[Any], None],
    batch: Callable[[list[Any]], None] | None = None,
) -> None:
    for name in names:
        register_validator(f"{module}:{name}", check, batch=batch)


def _each(check: Callable[[Any], None]) -> Callable[[list[Any]], None]:
    """A batch check that checks each object in turn (an owner read only for shapes, so it
    may wait with its members' batch)."""

    def check_all(objects: list[Any]) -> None:
        for obj in objects:
            check(obj)

    return check_all


register_validator("sklearn.tree._tree:Tree", _check_tree, batch=_check_trees)
register_validator("sklearn.neighbors._kd_tree:KDTree", _check_binary_tree)
register_validator("sklearn.neighbors._ball_tree:BallTree", _check_binary_tree)
register_validator(
    "sklearn.ensemble._hist_gradient_boosting.predictor:TreePredictor",
    _check_tree_predictor,
    batch=_check_tree_predictors,
)
_register(
    "sklearn.tree._classes",
    (
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    ),
    _check_decision_tree,
    batch=_each(_check_decision_tree),
)
_register(
    "sklearn.ensemble._forest",
    (
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "RandomTreesEmbedding",
    ),
    _check_forest,
)
_register("sklearn.ensemble._bagging", ("BaggingClassifier", "BaggingRegressor"), _check_bagging)
register_validator("sklearn.ensemble._iforest:IsolationForest", _check_isolation_forest)
_register(
    "sklearn.ensemble._gb",
    ("GradientBoostingClassifier", "GradientBoostingRegressor"),
    _check_gradient_boosting,
)
_register(
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
    ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"),
    _check_hist_gradient_boosting,
)
_register(
    "sklearn.neighbors._classification",
    ("KNeighborsClassifier", "RadiusNeighborsClassifier"),
    _check_neighbors,
)
_register(
    "sklearn.neighbors._regression",
    ("KNeighborsRegressor", "RadiusNeighborsRegressor"),
    _check_neighbors,
)
_register("sklearn.neighbors._unsupervised", ("NearestNeighbors",), _check_neighbors)
_register(
    "sklearn.neighbors._graph",
    ("KNeighborsTransformer", "RadiusNeighborsTransformer"),
    _check_neighbors,
)
_register("sklearn.neighbors._lof", ("LocalOutlierFactor",), _check_neighbors)
register_validator("sklearn.neighbors._kde:KernelDensity", _check_kernel_density)
_register("sklearn.svm._classes", ("SVC", "NuSVC", "SVR", "NuSVR", "OneClassSVM"), _check_libsvm)
_register("sklearn.cluster._kmeans", ("KMeans", "MiniBatchKMeans"), _check_kmeans)
register_validator("sklearn.cluster._bisect_k_means:BisectingKMeans", _check_kmeans)
register_validator("sklearn.feature_extraction._dict_vectorizer:DictVectorizer", _check_vocabulary)
_register(
    "sklearn.feature_extraction.text", ("CountVectorizer", "TfidfVectorizer"), _check_vocabulary
)
register_validator("sklearn.feature_extraction.text:HashingVectorizer", _check_hasher)
register_validator("sklearn.feature_extraction._hash:FeatureHasher", _check_hasher)
register_validator("sklearn.preprocessing._encoders:OneHotEncoder", _check_one_hot)
register_validator("sklearn.preprocessing._label:MultiLabelBinarizer", _check_label_cache)
