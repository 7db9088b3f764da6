"""The generated scikit-learn table covers the installed scikit-learn.

When this fails after a scikit-learn upgrade, regenerate the table and review its diff:

    python -m tests.adapters.generate_sklearn_schemas
"""

from __future__ import annotations

import json

import sklearn

from amber.adapters.sklearn import OVERRIDES, TABLE
from amber.graph.schema import Slot
from tests.adapters.sklearn_cases import all_estimator_classes

REGENERATE = "python -m tests.adapters.generate_sklearn_schemas"


def _table() -> dict:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def test_every_estimator_is_in_the_table() -> None:
    table = _table()
    missing = sorted(
        f"{cls.__module__}:{cls.__qualname__}"
        for cls in all_estimator_classes().values()
        if f"{cls.__module__}:{cls.__qualname__}" not in table["classes"]
    )
    assert not missing, (
        f"scikit-learn {sklearn.__version__} has estimators amber's table (made for "
        f"{table['scikit-learn']}) does not cover: {missing[:10]}; run {REGENERATE}"
    )


def test_the_table_was_made_for_this_scikit_learn() -> None:
    made_for = _table()["scikit-learn"].split(".")[:2]
    assert made_for == sklearn.__version__.split(".")[:2], f"run {REGENERATE}"


def test_no_callable_where_a_file_could_aim_library_code_at_it() -> None:
    """Reviewed: the attributes that may hold a function are parameters scikit-learn
    declares callable, or functions estimators keep; none is a fitted array or count."""
    table = _table()
    for name, entry in table["classes"].items():
        for attribute, slot in entry["attributes"].items():
            if Slot.from_json(slot).callables:
                assert not attribute.startswith("n_"), (name, attribute)
    for attribute in OVERRIDES:  # the overrides narrow what the table allows
        assert OVERRIDES[attribute].callables is False
        assert not OVERRIDES[attribute].objects
