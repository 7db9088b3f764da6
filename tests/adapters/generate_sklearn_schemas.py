"""Generate amber's scikit-learn state schemas: ``src/amber/adapters/sklearn_schemas.json``.

    python -m tests.adapters.generate_sklearn_schemas

What each attribute of each scikit-learn class may hold is recorded from real objects and
from scikit-learn's own declarations:

1. every round trip of the scikit-learn test suites (all estimators fitted on arrays, fitted
   on pandas DataFrames where their data is a table -- which adds ``feature_names_in_``
   and other DataFrame-only state -- and unfitted, and the hand-built pipelines, column
   transformers, searches, scorers...) runs with the decoder recording what each
   attribute of each scikit-learn object holds instead of checking it;
2. default instances of every kernel and cross-validation splitter;
3. each class's ``_parameter_constraints``: where scikit-learn accepts a callable, an
   estimator, a kernel or a splitter;
4. ``OVERRIDES`` below: reviewed security decisions that narrow what a file may set.

Only what (1)-(3) saw is trusted: a class never met is not in the table and cannot be
loaded, and an attribute never met is refused. Review the diff of the JSON file before
committing it: every ``callables``, ``objects`` and ``types`` entry is a place where a file
may put code that scikit-learn later calls.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.adapters.sklearn_cases import METHODS

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "src" / "amber" / "adapters" / "sklearn_schemas.json"
SUITES = [
    "tests/adapters/test_sklearn_estimators.py",
    "tests/adapters/test_sklearn_examples.py",
    "tests/adapters/test_scipy_stats.py",
    "tests/adapters/test_validators.py",
    "tests/adapters/test_compare.py",
    "tests/test_api.py",
    "tests/store/test_store.py",
]
# Response methods: strings that name them are method names a file could aim elsewhere.
METHOD_NAMES = frozenset(
    {
        *METHODS,
        "inverse_transform",
        "fit",
        "fit_transform",
        "fit_predict",
        "score",
        "staged_predict",
        "staged_predict_proba",
        "staged_decision_function",
        "split",
        "get_params",
        "set_params",
    }
)


# Classes of a family stand for the family: a binary classifier holds another loss than the
# multiclass one the suites saw. Each is a library class chosen by the estimator's params.
FAMILY_BASES = (
    "sklearn._loss.loss:BaseLoss",
    "sklearn._loss._loss:CyLossFunction",
    "sklearn._loss.link:BaseLink",
    "sklearn.metrics._dist_metrics:DistanceMetric64",
    "sklearn.metrics._dist_metrics:DistanceMetric32",
)


def _class(name: str) -> type:
    from amber.graph.names import QualName

    return QualName.parse(name).resolve()


RESPONSE_METHODS = frozenset(
    {
        "auto",
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "transform",
        "score_samples",
    }
)


# Never recorded, whatever a suite touches.
DENIED_MODULES = (
    "sklearn.externals",
    "sklearn.utils._testing",
    "sklearn.utils.tests",
    "sklearn.tests",
    "sklearn._build_utils",
    "sklearn.conftest",
    "sklearn.utils._show_versions",
    "sklearn.datasets",
    "sklearn.experimental",
)


def legacy_rules(functions: frozenset[str]) -> list[Any]:
    """Trust by the shape of names (any class of any scikit-learn module file, functions of
    these names), only while the table is recorded: what amber trusted before the table."""
    from amber.graph.trust import PackageRule

    def is_class(obj: object) -> bool:
        return isinstance(obj, type) and obj.__module__.split(".")[0] == "sklearn"

    def is_function(obj: object) -> bool:
        return inspect.isfunction(obj) and obj.__module__.split(".")[0] == "sklearn"

    return [
        PackageRule("sklearn", accept=is_class, denied=DENIED_MODULES),
        PackageRule(
            "sklearn",
            accept=is_function,
            kind="function",
            denied=DENIED_MODULES,
            functions=functions,
        ),
    ]


def _dotted(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Recorder:
    def __init__(self) -> None:
        from amber.graph.schema import NOTHING

        self.slots: dict[str, dict[str | None, Any]] = defaultdict(dict)
        self.nothing = NOTHING

    def __call__(self, name: str, attribute: str | None, value: Any) -> None:
        from amber.graph.schema import observe

        if not name.startswith("sklearn."):
            return
        slots = self.slots[name]
        slots[attribute] = slots.get(attribute, self.nothing).union(observe(value))


def _generalize(slot: Any) -> Any:
    """Instances of estimators and kernels stand for their group; strings stay a closed
    set only when they are method names (a file could otherwise aim getattr elsewhere)."""
    from sklearn.base import BaseEstimator
    from sklearn.gaussian_process.kernels import Kernel

    from amber.graph.names import QualName
    from amber.graph.schema import Slot

    objects = set()
    for name in slot.objects:
        cls = QualName.parse(name).resolve()
        family = next((base for base in FAMILY_BASES if issubclass(cls, _class(base))), None)
        if family is not None:
            objects.add(f"instance:{family}")
        elif issubclass(cls, Kernel):
            objects.add("kernel")
        elif issubclass(cls, BaseEstimator) and not any("__call__" in vars(k) for k in cls.__mro__):
            objects.add("estimator")
        else:
            objects.add(name)
    strings = slot.strings
    if strings is not None and (not strings or not strings <= METHOD_NAMES):
        strings = None
    elif strings is not None:  # another estimator may answer through another method
        strings = strings | RESPONSE_METHODS
    return Slot(frozenset(objects), slot.callables, slot.types, strings)


def _constraint_slot(constraint: Any) -> Any:
    """What one of scikit-learn's parameter constraints allows beyond data."""
    from sklearn.base import BaseEstimator
    from sklearn.gaussian_process.kernels import Kernel
    from sklearn.utils import _param_validation as pv

    from amber.graph.schema import Slot

    if constraint is callable or constraint == "callable":
        return Slot(callables=True)
    if isinstance(constraint, pv.Hidden):
        return _constraint_slot(constraint.constraint)
    if isinstance(constraint, pv.HasMethods):
        if {"fit", "transform", "predict"} & set(constraint.methods):
            return Slot(objects=frozenset({"estimator"}))
        return Slot(objects=frozenset({"any"}))
    if constraint == "cv_object":
        return Slot(objects=frozenset(f"instance:{name}" for name in SPLITTERS))
    if constraint == "no_validation":
        return Slot(objects=frozenset({"any"}))
    if isinstance(constraint, type) and constraint.__module__.startswith("sklearn"):
        if issubclass(constraint, Kernel):
            return Slot(objects=frozenset({"kernel"}))
        if issubclass(constraint, BaseEstimator):
            return Slot(objects=frozenset({"estimator"}))
        return Slot(objects=frozenset({f"instance:{_dotted(constraint)}"}))
    return None


EXTRA_VARIANTS: dict[str, list[tuple[str, Any]]] = {}
SPLITTERS = (
    "sklearn.model_selection._split:BaseCrossValidator",
    "sklearn.model_selection._split:BaseShuffleSplit",
)


def _parameter_slots(cls: type) -> dict[str, Any]:
    from amber.graph.schema import DATA

    out = {}
    for param, constraints in getattr(cls, "_parameter_constraints", {}).items():
        slot = DATA
        for constraint in constraints if isinstance(constraints, list) else [constraints]:
            found = _constraint_slot(constraint)
            if found is not None:
                slot = slot.union(found)
        out[param] = slot
    return out


def _families() -> list[type]:
    """Kernels and splitters users pass as parameters, and the losses and links estimators
    choose by their parameters (binary or multiclass...), whether or not a suite met them."""
    import sklearn._loss.link as link
    import sklearn._loss.loss as loss
    import sklearn.gaussian_process.kernels as kernels
    import sklearn.metrics._dist_metrics as metrics
    import sklearn.model_selection._split as split

    found = []
    for module, base in (
        (kernels, kernels.Kernel),
        (split, split.BaseCrossValidator),
        (split, split.BaseShuffleSplit),
        (loss, loss.BaseLoss),
        (link, link.BaseLink),
        (metrics, metrics.DistanceMetric64),
        (metrics, metrics.DistanceMetric32),
    ):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, base)
                and not inspect.isabstract(cls)
                and cls.__module__ == module.__name__
            ):
                found.append(cls)
    return found


def _record_families(directory: Path) -> None:
    from sklearn.gaussian_process.kernels import RBF

    from tests.adapters.roundtrip import round_trip

    for cls in _families():
        try:
            names = set(inspect.signature(cls).parameters)
        except ValueError:  # compiled classes
            names = set()
        params = {}
        if "kernel" in names:
            params["kernel"] = RBF()
        if {"k1", "k2"} <= names:
            params = {"k1": RBF(), "k2": RBF()}
        try:
            instance = cls(**params)
        except Exception:  # needs arguments (a Mahalanobis metric needs V): not a default
            continue
        round_trip(instance, directory)


def _scorer_functions() -> frozenset[str]:
    """The metric of every scorer scikit-learn names (``scoring="..."``): pure functions."""
    from sklearn.metrics import get_scorer, get_scorer_names

    found = set()
    for name in get_scorer_names():
        func = getattr(get_scorer(name), "_score_func", None)
        if inspect.isfunction(func):
            found.add(func.__name__)
    return frozenset(found)


def _record_variants(directory: Path) -> int:
    """Every estimator once more for each option of each of its string parameters (the
    solver, loss, algorithm, criterion... decide which internals a fitted model holds),
    plus the variants whose parameters are objects or flags. Returns how many loaded."""
    import itertools

    from sklearn.base import clone
    from sklearn.utils._param_validation import StrOptions

    from amber.errors import AmberError
    from tests.adapters.roundtrip import round_trip
    from tests.adapters.sklearn_cases import all_estimator_classes, data_for, fit, make_estimator

    done = 0
    for name, cls in all_estimator_classes().items():
        try:
            base = make_estimator(name, cls)
            data = data_for(name, base)
        except Exception:  # the suites record the default already
            continue
        options = [
            (param, option)
            for param, constraints in getattr(cls, "_parameter_constraints", {}).items()
            for constraint in constraints
            if isinstance(constraint, StrOptions)
            for option in sorted(constraint.options - constraint.deprecated)
        ]
        for param, option in itertools.chain(options, EXTRA_VARIANTS.get(name, ())):
            try:
                estimator = clone(base).set_params(**{param: option})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit(estimator, data)
            except Exception:  # an option this data or these settings do not allow
                continue
            try:
                round_trip(estimator, directory)
            except AmberError as exc:
                print(f"not recorded: {name}({param}={option!r}): {exc}")
                continue
            done += 1
    return done


def _extra_variants() -> dict[str, list[tuple[str, Any]]]:
    from sklearn.gaussian_process import kernels

    gp_kernels = [
        kernels.Matern(nu=2.5),
        kernels.RationalQuadratic(),
        kernels.DotProduct() + kernels.WhiteKernel(),
        kernels.ConstantKernel() * kernels.RBF(),
        kernels.Exponentiation(kernels.RBF(), 2),
        kernels.PairwiseKernel(metric="rbf"),
    ]
    return {
        "GaussianProcessClassifier": [("kernel", k) for k in gp_kernels],
        "GaussianProcessRegressor": [("kernel", k) for k in gp_kernels],
        "KernelPCA": [("fit_inverse_transform", True)],
        "KernelRidge": [("kernel", "poly"), ("kernel", "laplacian")],
    }


def main() -> int:
    import tempfile

    import pytest
    from sklearn.utils import all_estimators

    import amber.adapters  # noqa: F401  (registrations)
    from amber.adapters.sklearn import FUNCTIONS, OVERRIDES
    from amber.graph import schema
    from amber.graph.trust import REGISTRY

    functions = FUNCTIONS | _scorer_functions()
    for rule in legacy_rules(functions):  # trust by shape while recording the table
        REGISTRY.add_rule(rule)
    # Classes whose names are not CapWords, so the rule above does not see them.
    REGISTRY.add_types(["sklearn.compose._column_transformer:make_column_selector"])
    recorder = Recorder()
    schema.RECORDING = recorder
    try:
        code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", *SUITES])
        if code != 0:
            print("the suites failed while recording; the table was not written")
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            _record_families(Path(tmp))
            EXTRA_VARIANTS.update(_extra_variants())
            print(f"{_record_variants(Path(tmp))} variants recorded")
    finally:
        schema.RECORDING = None

    import sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimators = dict(all_estimators())
    classes: dict[str, dict[str, Any]] = {}
    names = set(recorder.slots) | {_dotted(c) for c in estimators.values()}
    names |= {_dotted(c) for c in _families()}
    for name in sorted(names):
        from amber.graph.names import QualName

        cls = QualName.parse(name).resolve()
        attributes = {key: _generalize(slot) for key, slot in recorder.slots.get(name, {}).items()}
        for param, slot in _parameter_slots(cls).items():
            attributes[param] = attributes.get(param, slot).union(slot)
        whole = attributes.pop(None, None)
        entry: dict[str, Any] = {
            "attributes": {key: attributes[key].to_json() for key in sorted(attributes)}
        }
        if whole is not None:
            entry["whole"] = whole.to_json()
        classes[name] = entry
    functions = _functions_named(functions)
    table = {
        "generated_by": "python -m tests.adapters.generate_sklearn_schemas",
        "scikit-learn": sklearn.__version__,
        "overrides": sorted(OVERRIDES),
        "functions": functions,
        "classes": classes,
    }
    OUTPUT.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    where = OUTPUT.relative_to(ROOT)
    print(f"wrote {where}: {len(classes)} classes, scikit-learn {sklearn.__version__}")
    return 0


def _functions_named(names: frozenset[str]) -> list[str]:
    """``module:qualname`` of every function of these names defined in a scikit-learn
    module that the suites imported (where estimators keep them)."""
    found = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("sklearn.") or ".tests" in module_name:
            continue
        for name in names:
            obj = vars(module).get(name)
            if inspect.isfunction(obj) and obj.__module__ == module_name:
                found.add(f"{module_name}:{name}")
    return sorted(found)


if __name__ == "__main__":
    sys.exit(main())
