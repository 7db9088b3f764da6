"""A vectorized evaluator for scikit-learn random forests and extra-trees, for a few rows.

scikit-learn predicts with a forest one tree at a time: for one row, a 200-tree forest spends
about 9 ms in Python overhead around 200 tiny Cython calls (measured on this project's
2-core machine), so a served forest answers ~110 requests/s whatever the server does.
This evaluator walks all trees at once with numpy over concatenated node arrays, one step
per level, and gives **bitwise the same** result as the estimator's own method:

- inputs are cast to float32 as scikit-learn casts them, and compared with ``<=`` against
  the float64 thresholds, as the Cython tree does;
- per-tree outputs are summed in tree order starting from zero and divided by the number of
  trees, as the forest's own accumulation does (a ``cumsum`` is sequential; ``+ 0.0`` turns
  the -0.0 that only a sum of all -0.0 could leave into the +0.0 scikit-learn gives).

It answers only what it is sure of and returns None otherwise, so the caller falls back to
the estimator: exactly these four classes (no subclasses), one output, a numpy array of
finite numbers of the right width, at most ``MAX_ROWS`` rows (and ``MAX_CALL_BYTES`` of
work arrays), a model fitted without feature names, trees at most ``MAX_DEPTH`` deep. When
built, it checks itself against the estimator on probe rows that sit on, just below and
just above the thresholds; any difference and it is not used.
"""

from __future__ import annotations

from typing import Any

CLASSIFIERS = ("RandomForestClassifier", "ExtraTreesClassifier")
REGRESSORS = ("RandomForestRegressor", "ExtraTreesRegressor")
MODULE = "sklearn.ensemble._forest"
# Past a few hundred rows scikit-learn's per-tree overhead is amortized and its Cython walk
# wins; the evaluator is for requests, not for batch scoring.
MAX_ROWS = 128
# The evaluator copies the node arrays; a forest larger than this keeps only its own copy
# (which workers share page for page through mmap).
MAX_BYTES = 64 << 20
PROBE_ROWS = 64
# One numpy step per level: past this depth scikit-learn's own walk is the cheaper one (and
# a file's degenerate chain of a million levels cannot cost a million steps per request).
MAX_DEPTH = 64
# A call gathers a value per tree, row and class: past this many bytes (many tiny trees
# of many classes) the model's own tree-by-tree accumulation uses far less memory.
MAX_CALL_BYTES = 32 << 20


class ForestEvaluator:
    """All trees of a fitted forest as flat arrays; see the module docstring."""

    def __init__(self, model: Any) -> None:
        import numpy as np

        trees = [e.tree_ for e in model.estimators_]
        sizes = [t.node_count for t in trees]
        starts = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        left = np.concatenate([t.children_left for t in trees]).astype(np.intp)
        right = np.concatenate([t.children_right for t in trees]).astype(np.intp)
        offsets = np.repeat(starts, sizes)
        leaf = left < 0
        index = np.arange(left.size, dtype=np.intp)
        # A leaf points to itself, so extra steps leave a finished walk where it is.
        self.internal = ~leaf
        self.left = np.where(leaf, index, left + offsets)
        self.right = np.where(leaf, index, right + offsets)
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        self.threshold = np.concatenate([t.threshold for t in trees])
        self.roots = starts
        self.depth = self._levels()
        self.classifier = type(model).__name__ in CLASSIFIERS
        self.n_trees = len(trees)
        self.n_features = int(model.n_features_in_)
        self.width = int(model.n_classes_) if self.classifier else 1
        if self.classifier:
            n_classes = int(model.n_classes_)
            self.classes = model.classes_
            self.value = np.concatenate([t.value[:, 0, :n_classes] for t in trees])
        else:
            self.value = np.concatenate([t.value[:, 0, 0] for t in trees])
        self.methods = (
            ("predict", "predict_proba", "predict_log_proba") if self.classifier else ("predict",)
        )

    def _levels(self) -> int:
        """Steps from the roots to the deepest leaf, walked here rather than read from the
        file's ``max_depth`` and never past ``MAX_DEPTH``: a hostile count cannot make the
        walk long, and a tree whose children do not descend (a cycle) is refused."""
        import numpy as np

        frontier = self.roots
        for level in range(MAX_DEPTH + 1):
            frontier = frontier[self.internal[frontier]]
            if frontier.size == 0:
                return level
            frontier = np.concatenate([self.left[frontier], self.right[frontier]])
            if frontier.size > self.left.size:  # more nodes than exist: not a tree
                break
        raise ValueError(f"the forest's trees do not end in leaves within {MAX_DEPTH} levels")

    @classmethod
    def build(cls, model: Any) -> ForestEvaluator | None:
        """An evaluator for ``model`` when it is one of the supported forests and agrees
        bitwise with it on probe rows; None otherwise."""
        kind = type(model)
        if kind.__module__ != MODULE or kind.__name__ not in CLASSIFIERS + REGRESSORS:
            return None
        if getattr(model, "n_outputs_", None) != 1 or hasattr(model, "feature_names_in_"):
            return None
        estimators = getattr(model, "estimators_", None)
        if not estimators or not all(hasattr(e, "tree_") for e in estimators):
            return None
        nodes = sum(e.tree_.node_count for e in estimators)
        width = int(getattr(model, "n_classes_", 1)) if kind.__name__ in CLASSIFIERS else 1
        if nodes * (8 * 4 + 8 * width) > MAX_BYTES:
            return None
        try:
            evaluator = cls(model)
        except (ValueError, IndexError, TypeError, AttributeError):
            return None  # not shaped like a fitted forest: the model answers for itself
        try:
            agrees = evaluator.agrees_with(model)
        except Exception:  # the model's own methods fail on the probe: it answers for itself
            return None
        return evaluator if agrees else None

    def agrees_with(self, model: Any) -> bool:
        """Whether every method gives bitwise what the estimator gives on probe rows."""
        import warnings

        import numpy as np

        probe = self.probe_rows()
        for method in self.methods:
            mine = self.call(method, probe)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = getattr(model, method)(probe)
            if (
                mine is None
                or mine.shape != theirs.shape
                or mine.dtype != theirs.dtype
                or mine.tobytes() != np.ascontiguousarray(theirs).tobytes()
            ):
                return False
        return True

    def probe_rows(self) -> Any:
        """Rows whose values sit on, just below and just above the forest's thresholds."""
        import numpy as np

        rng = np.random.default_rng(0)
        x = np.zeros((PROBE_ROWS, self.n_features), dtype=np.float32)
        for f in range(self.n_features):
            cuts = self.threshold[self.internal & (self.feature == f)].astype(np.float32)
            if cuts.size == 0:
                continue
            picked = rng.choice(cuts, PROBE_ROWS)
            step = rng.integers(-1, 2, PROBE_ROWS)  # below, on, above (as float32)
            x[:, f] = np.where(
                step < 0,
                np.nextafter(picked, np.float32(-np.inf)),
                np.where(step > 0, np.nextafter(picked, np.float32(np.inf)), picked),
            )
        return x

    def call(self, method: str, x: Any) -> Any:
        """``method(x)`` as the estimator would answer it, or None when this evaluator does
        not take such an input (the caller then asks the estimator)."""
        import numpy as np

        if method not in self.methods or type(x) is not np.ndarray:
            return None
        if x.ndim != 2 or x.shape[1] != self.n_features or not 0 < x.shape[0] <= MAX_ROWS:
            return None
        if x.dtype.kind not in "fiub":
            return None
        # Node indices and values per tree and row, and the running sum: held at once.
        if self.n_trees * x.shape[0] * (16 + 16 * self.width) > MAX_CALL_BYTES:
            return None
        with np.errstate(over="ignore"):  # out of float32's range: inf, declined below
            x32 = x.astype(np.float32)
        if not np.isfinite(x32).all():  # NaN routing and scikit-learn's errors: its own
            return None
        total = self._sum(self._leaves(x32))
        mean = total / float(self.n_trees)
        if not self.classifier:
            return mean
        if method == "predict_proba":
            return mean
        if method == "predict_log_proba":
            with np.errstate(divide="ignore"):
                return np.log(mean)
        return self.classes.take(np.argmax(mean, axis=1), axis=0)

    def _leaves(self, x32: Any) -> Any:
        """The leaf each row reaches in each tree: (trees, rows) node indices."""
        import numpy as np

        rows = np.arange(x32.shape[0])[None, :]
        node = np.repeat(self.roots[:, None], x32.shape[0], axis=1)
        for _ in range(self.depth):
            go_left = x32[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def _sum(self, leaves: Any) -> Any:
        """Per-tree values summed in tree order from zero, as the forest accumulates them."""
        import numpy as np

        return np.cumsum(self.value[leaves], axis=0)[-1] + 0.0
