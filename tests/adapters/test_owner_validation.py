"""Rule R4, validation that holds at use: owners of compiled members are checked against
their members (adapters/sklearn_validators.py).

``REGRESSIONS`` keeps every crash the structure-aware fuzzer (``sklearn_fuzz.py``) found
before the owner checks existed, each reduced to the mutations that cause it, plus cases
found by reading the compiled code (silent out-of-bounds reads and writes a crash-only
fuzzer does not see). Each is built from a freshly fitted model, loaded in a forked child
of a fresh interpreter (a regression must not crash the test run) and must be refused
with a FormatError naming what is inconsistent. ``before`` records what the file did
without the checks (``python -m tests.adapters.sklearn_fuzz --replay ... --without-validators``).

A bounded, deterministic fuzz run (seconds) checks that no mutation of a few models
crashes; ``make fuzz-sklearn`` runs the fuzzer for as long as asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber.adapters.sklearn_validators  # noqa: F401  (registers the checks)
from amber.graph.constructors import VALIDATORS
from tests.adapters.sklearn_cases import Data, all_estimator_classes, fit, iris

ROOT = Path(__file__).resolve().parents[2]
# One OpenMP/BLAS thread in the fuzzer's children: two children share the CPUs.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # a sklearn_fuzz.TARGETS name
    mutations: tuple[tuple[str, dict[str, Any]], ...]  # (attribute path, mutation)
    fragment: str  # part of the refusal
    before: str  # what happened without the owner checks


def set_(spec: str, value: Any) -> tuple[str, dict[str, Any]]:
    return spec, {"op": "set", "value": value}


def field(spec: str, name: str, index: int, value: Any) -> tuple[str, dict[str, Any]]:
    return spec, {"op": "field", "field": name, "index": index, "value": value}


def element(spec: str, index: int, value: Any) -> tuple[str, dict[str, Any]]:
    return spec, {"op": "element", "index": index, "value": value}


def resize(spec: str, how: str, axis: int = 0) -> tuple[str, dict[str, Any]]:
    return spec, {"op": "resize", "how": how, "axis": axis}


def _wider_member(prefix: str, width: int = 2**31 - 1, keep: bool = True) -> tuple:
    """A member tree that declares ``width`` features and splits on the last of them;
    ``keep``: its estimator claims that width too (consistent in itself, not with its
    owner), else it has no ``n_features_in_`` (then scikit-learn checks no columns)."""
    changes: tuple = (
        set_(f"{prefix}/tree_/args/0", width),
        field(f"{prefix}/tree_/nodes", "feature", 0, width - 1),
    )
    if keep:
        return (*changes, set_(f"{prefix}/n_features_in_", width))
    return (*changes, (f"{prefix}/state", {"op": "delete", "key": "n_features_in_"}))


REGRESSIONS = [
    # -- found by the fuzzer --------------------------------------------------------------
    Case(
        "tree-n_features-2^20",
        "DecisionTreeClassifier",
        (set_("tree_/args/0", 2**20), field("tree_/nodes", "feature", 0, 999_999)),
        "tree_ splits 1048576 features, the estimator takes 4",
        "SIGSEGV in predict",
    ),
    Case(
        "extra-tree-n_features-2^31-1",
        "ExtraTreeRegressor",
        (set_("tree_/args/0", 2**31 - 1), field("tree_/nodes", "feature", 0, 2**31 - 2)),
        "tree_ splits 2147483647 features",
        "SIGSEGV in predict",
    ),
    Case(
        "hgb-feature_idx",
        "HistGradientBoostingRegressor",
        (field("_predictors/0/0/nodes", "feature_idx", 0, 200_000_000),),
        "splits on feature 200000000, the model takes 4",
        "SIGSEGV in predict",
    ),
    Case(
        "hgb-classifier-feature_idx",
        "HistGradientBoostingClassifier",
        (field("_predictors/1/0/nodes", "feature_idx", 0, 999_999),),
        "splits on feature 999999",
        "SIGSEGV in predict",
    ),
    Case(
        "hgb-empty-predictor",
        "HistGradientBoostingRegressor",
        (resize("_predictors/1/0/nodes", "empty"),),
        "no nodes",
        "SIGSEGV in predict (reads the root of an empty array)",
    ),
    Case(
        "kd-tree-leaf-with-children",
        "RadiusNeighborsClassifier",
        (field("_tree/2", "is_leaf", 0, 0),),
        "children lie outside the node arrays",
        "SIGSEGV in KDTree.query",
    ),
    Case(
        "kd-tree-leaf_size-0",
        "KernelDensity[kd_tree]",
        (set_("tree_/4", 0),),
        "leaf_size must be at least 1",
        "SIGFPE in score_samples",
    ),
    Case(
        "knn-empty-_fit_X",
        "KNeighborsClassifier[brute]",
        (resize("_fit_X", "empty"),),
        "_fit_X has no rows",
        "SIGFPE in predict",
    ),
    Case(
        "knn-class-index",
        "KNeighborsClassifier[brute]",
        (set_("p", 2**31 - 1), element("_y", 0, 2**31 - 1)),
        "_y holds an index outside [0, 3)",
        "SIGSEGV in predict (ArgKminClassMode counts votes per class)",
    ),
    Case(
        "knn-sparse-class-index",
        "KNeighborsClassifier[sparse]",
        (set_("p", 2**31 - 1), element("_y", 0, 2**31 - 2)),
        "_y holds an index",
        "SIGSEGV in predict",
    ),
    Case(
        "svc-n_support",
        "SVC[precomputed]",
        (element("_n_support", 0, 45_000),),
        "_n_support does not add up",
        "SIGBUS in predict",
    ),
    Case(
        "svc-precomputed-support",
        "SVC[precomputed]",
        (element("support_", 0, 999_999),),
        "support_ holds an index outside [0, 45)",
        "SIGSEGV in predict",
    ),
    Case(
        "svc-precomputed-to-rbf",
        "SVC[precomputed]",
        (set_("kernel", "rbf"),),
        "support_vectors_ does not match support_",
        "SIGSEGV in predict",
    ),
    Case(
        "svc-empty-dual-coef",
        "SVC[proba]",
        (resize("dual_coef_", "empty"),),
        "_dual_coef_ does not match",
        "SIGSEGV in predict",
    ),
    Case(
        "nusvc-empty-support-vectors",
        "NuSVC",
        (resize("support_vectors_", "empty"),),
        "support_vectors_ does not match",
        "SIGSEGV in predict",
    ),
    Case(
        "nusvr-empty-dual-coef",
        "NuSVR",
        (resize("dual_coef_", "empty"),),
        "_dual_coef_ does not match",
        "SIGSEGV in predict",
    ),
    Case(
        "one-class-svm-empty-dual-coef",
        "OneClassSVM",
        (resize("dual_coef_", "empty"),),
        "_dual_coef_ does not match",
        "SIGSEGV in predict",
    ),
    Case(
        "sparse-svc-n_support",
        "SVC[sparse]",
        (element("_n_support", 0, 999_999),),
        "_n_support does not add up",
        "SIGSEGV in predict",
    ),
    Case(
        "dict-vectorizer-negative-column",
        "DictVectorizer",
        (set_("vocabulary_/kind_3", -(2**31)),),
        "vocabulary_ column=-2147483648 is out of range",
        "SIGSEGV in transform",
    ),
    Case(
        "dict-vectorizer-column",
        "DictVectorizer",
        (set_("vocabulary_/kind_1", 10**6),),
        "vocabulary_ columns must be 0..n-1",
        "SIGSEGV in transform",
    ),
    Case(
        "count-vectorizer-column",
        "CountVectorizer",
        (set_("vocabulary_/cherry", 2**31 - 1),),
        "vocabulary_ columns must be 0..n-1",
        "SIGSEGV / SIGABRT in transform",
    ),
    Case(
        "feature-hasher-zero",
        "FeatureHasher",
        (set_("n_features", 0),),
        "n_features=0 is out of range",
        "SIGFPE in transform",
    ),
    # -- found by reading the compiled code ------------------------------------------------
    Case(
        "forest-member-wider",
        "RandomForestClassifier",
        _wider_member("estimators_/1"),
        "estimators_[1] splits 2147483647 features, not 4",
        "refused by scikit-learn: members check X's columns against their n_features_in_",
    ),
    Case(
        "forest-member-without-n_features_in_",
        "RandomForestClassifier",
        _wider_member("estimators_/1", keep=False),
        "the fitted estimator has no n_features_in_",
        "SIGSEGV in predict (a member without n_features_in_ checks nothing)",
    ),
    Case(
        "gradient-boosting-member-wider",
        "GradientBoostingClassifier",
        _wider_member("estimators_/1/0"),
        "estimators_[1, 0] splits 2147483647 features",
        "SIGSEGV in predict (predict_stages)",
    ),
    Case(
        "gradient-boosting-fewer-columns",
        "GradientBoostingClassifier",
        (set_("n_trees_per_iteration_", 1), set_("init_", "zero")),
        "n_trees_per_iteration_ trees per stage",
        "no crash seen: writes past the raw-prediction buffer (predict_stages)",
    ),
    Case(
        "isolation-forest-member-wider",
        "IsolationForest",
        _wider_member("estimators_/1"),
        "estimators_[1] takes 2147483647 features, not 3",
        "refused by scikit-learn: members check X's columns against their n_features_in_",
    ),
    Case(
        "isolation-forest-member-without-n_features_in_",
        "IsolationForest",
        _wider_member("estimators_/1", keep=False),
        "the fitted estimator has no n_features_in_",
        "SIGSEGV in score_samples",
    ),
    Case(
        "tree-max_depth",
        "DecisionTreeClassifier",
        (set_("tree_/max_depth", 0),),
        "max_depth is not the depth of the tree",
        "no crash seen: writes past decision_path's buffer",
    ),
    Case(
        "tree-max_depth-2^62",
        "RandomTreesEmbedding",
        (set_("estimators_/1/tree_/max_depth", 2**62),),
        "max_depth is not the depth of the tree",
        "SIGSEGV in decision_path (n_samples * (1 + max_depth) overflows)",
    ),
    Case(
        "tree-two-parents",
        "DecisionTreeRegressor",
        (field("tree_/nodes", "right_child", 0, 1),),
        "more than one parent",
        "no crash seen: depth and partial-dependence stacks sized for a tree",
    ),
    Case(
        "kd-tree-bounds-planes",
        "KNeighborsClassifier[kd_tree]",
        (resize("_tree/3", "drop"),),
        "node bounds do not match",
        "no crash seen: reads upper bounds past the array",
    ),
    Case(
        "kmeans-centers-features",
        "KMeans",
        (resize("cluster_centers_", "drop", axis=1),),
        "cluster_centers_ do not have the model's features",
        "no crash seen: reads centers past the array (wrong labels)",
    ),
    Case(
        "bisecting-kmeans-center",
        "BisectingKMeans",
        (resize("_bisecting_tree/left/center", "drop"),),
        "a _bisecting_tree center does not have the model's features",
        "no crash seen: reads centers past the array",
    ),
    Case(
        "one-hot-columns",
        "OneHotEncoder",
        (set_("_n_features_outs/0", 1),),
        "the codes of feature 0 holds an index outside [0, 1)",
        "no crash seen: writes past the rows of the dense output",
    ),
    Case(
        "multilabel-cache",
        "MultiLabelBinarizer[cached]",
        (set_("_cached_dict/1", 10**7),),
        "_cached_dict columns must be 0..n-1",
        "SIGSEGV in transform",
    ),
    Case(
        "hashing-vectorizer-negative",
        "HashingVectorizer",
        (set_("n_features", -8),),
        "n_features=-8 is out of range",
        "no crash seen: negative column indices in the sparse output",
    ),
]


def _run_fuzzer(*args: str, stdin: str | None = None, timeout: float = 600) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tests.adapters.sklearn_fuzz", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every regression case (and each target unmutated) loaded by the fuzzer's replay,
    in a fresh interpreter."""
    work = tmp_path_factory.mktemp("replay")
    baselines = sorted({case.target for case in REGRESSIONS})
    cases = [{"target": t, "mutations": []} for t in baselines] + [
        {"target": c.target, "mutations": [list(m) for m in c.mutations]} for c in REGRESSIONS
    ]
    spec = work / "cases.json"
    spec.write_text(json.dumps(cases))
    results = _run_fuzzer("--replay", str(spec), "--work", str(work))
    names = [f"baseline:{t}" for t in baselines] + [c.name for c in REGRESSIONS]
    return dict(zip(names, results, strict=True))


@pytest.mark.slow
def test_unmutated_targets_load_and_run(replayed: dict[str, dict[str, Any]]) -> None:
    """The re-sealed, unmutated files load and every call runs (the cases test the checks,
    not a broken writer)."""
    bad = {k: v for k, v in replayed.items() if k.startswith("baseline:") and v["code"] != 0}
    assert not bad


@pytest.mark.slow
@pytest.mark.parametrize("case", REGRESSIONS, ids=[c.name for c in REGRESSIONS])
def test_hostile_owner_fields_are_refused(case: Case, replayed: dict[str, Any]) -> None:
    result = replayed[case.name]
    assert result["outcome"] == "refused", f"{case.before}: now {result}"
    assert case.fragment in result["step"], result["step"]


@pytest.mark.slow
def test_bounded_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    """A short deterministic run over a few models of each family: no mutation crashes or
    hangs a child (while loading or at use), and every model's unmutated file loads."""
    summary = _run_fuzzer(
        "--quick",
        "--cases",
        "140",
        "--seed",
        "0",
        "--jobs",
        "2",
        "--work",
        str(tmp_path),
        "--out",
        str(tmp_path / "crashes"),
    )
    assert summary["baseline_failures"] == {}
    assert summary["crashes"] == summary["load_crashes"] == summary["hangs"] == 0, summary[
        "crash_list"
    ]
    assert summary["cases"] >= 120
    assert summary["outcomes"].get("refused", 0) > 20  # the mutations do reach the checks


@pytest.mark.slow
def test_short_cython_state_tuple_is_refused(tmp_path: Path) -> None:
    """A KD tree's state tuple shorter than its __setstate__ reads crashed while loading,
    before any validator ran; the state schema now requires the exact length."""
    cases = [
        {"target": "KNeighborsClassifier[kd_tree]", "mutations": [["_tree/state", _drop_last()]]}
    ]
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    (result,) = _run_fuzzer("--replay", str(spec), "--work", str(tmp_path))
    assert result["outcome"] == "refused", result


def _drop_last() -> dict[str, Any]:
    return {"op": "seq", "how": "drop", "index": -1}


# -- the checks themselves, in memory ----------------------------------------------------------


def test_every_validator_names_a_real_class() -> None:
    """Validators are keyed by the name files write ("module:Qualname"); a typo would
    silently check nothing."""
    import importlib

    for name in [n for n in VALIDATORS if n.startswith("sklearn.")]:
        module, qualname = name.split(":")
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        assert isinstance(obj, type), name
        assert (obj.__module__, obj.__qualname__) == (module, qualname), name


def _validate(obj: Any) -> None:
    cls = type(obj)
    VALIDATORS[f"{cls.__module__}:{cls.__qualname__}"](obj)


def _categorical_hgb() -> Any:
    from tests.adapters.sklearn_fuzz import TARGETS

    return fit(*TARGETS["HistGradientBoostingClassifier[cat]"]())


def test_valid_models_pass_every_check() -> None:
    from tests.adapters.sklearn_fuzz import TARGETS

    for name in ("HistGradientBoostingClassifier[cat]", "KNeighborsClassifier[mahalanobis]"):
        estimator, data = TARGETS[name]()
        model = fit(estimator, data)
        _validate(model)
        members = [getattr(model, "_tree", None)] + [
            p for it in getattr(model, "_predictors", []) for p in it
        ]
        for member in members:
            if member is not None:
                _validate(member)


def test_categorical_split_on_a_numeric_feature_is_refused() -> None:
    model = _categorical_hgb()
    predictor = next(
        p for it in model._predictors for p in it if (p.nodes["is_categorical"] == 1).any()
    )
    nodes = predictor.nodes.copy()
    split = np.flatnonzero(nodes["is_categorical"] == 1)[0]
    nodes["feature_idx"][split] = 1  # a numeric column: f_idx_map sends it to row 0
    predictor.nodes = nodes
    with pytest.raises(ValueError, match="numeric feature by category"):
        _validate(model)


def test_narrow_bitsets_are_refused() -> None:
    model = _categorical_hgb()
    predictor = next(
        p for it in model._predictors for p in it if (p.nodes["is_categorical"] == 1).any()
    )
    predictor.raw_left_cat_bitsets = np.ascontiguousarray(predictor.raw_left_cat_bitsets[:, :1])
    with pytest.raises(ValueError, match="bitsets of 8 words"):
        _validate(predictor)


def test_categorical_preprocessor_width_is_checked() -> None:
    model = _categorical_hgb()
    model._preprocessor.transformers_[1] = ("numerical", "passthrough", ~model.is_categorical_)
    with pytest.raises(ValueError, match="not what scikit-learn builds"):
        _validate(model)


def test_a_tree_without_n_features_in_is_refused() -> None:
    """Without n_features_in_ scikit-learn checks nothing about X's columns."""
    from sklearn.tree import DecisionTreeClassifier

    model = fit(DecisionTreeClassifier(max_depth=2), Data(*iris()))
    del model.n_features_in_
    with pytest.raises(ValueError, match="no n_features_in_"):
        _validate(model)


def test_mahalanobis_metric_must_fit_the_data() -> None:
    from sklearn.neighbors import BallTree

    X = iris()[0]
    tree = BallTree(X, leaf_size=4, metric="mahalanobis", VI=np.eye(4))
    _validate(tree)
    metric = tree.__getstate__()[11]
    p, vec, _ = metric.__getstate__()
    metric.__setstate__((p, vec, np.eye(1)))  # VI for one feature: rdist writes 4 floats
    with pytest.raises(ValueError, match="does not match"):
        _validate(tree)


def test_unfitted_owners_pass() -> None:
    for name in sorted({n.split(":")[1] for n in VALIDATORS if n.startswith("sklearn.")}):
        cls = all_estimator_classes().get(name)
        if cls is not None and name not in ("SparseCoder",):
            from tests.adapters.sklearn_cases import make_estimator

            _validate(make_estimator(name, cls))
