"""Hostile files are refused, and refusing them imports nothing and runs nothing.

Every file of ``hostile.cases`` is read in a fresh interpreter (``_tripwire.py``): one
process establishes the baseline of a valid load, then ``amber.inspect`` and
``amber.load`` of each case run in their own forked children of it, under a
``sys.addaudithook`` tripwire, and report the error, the modules that appeared in
``sys.modules`` and the audit events seen (code compiled or executed, modules imported,
files other than the loaded one opened, processes, sockets, ctypes, pickle, marshal). The
positive controls show that the tripwire sees each of those events, the negative ones that
a valid load trips nothing.

A hole that is known and not fixed yet is an ``xfail(strict=True)`` whose reason says what
goes wrong (see ``hostile.XFAIL_*``); fixing it turns the test into an XPASS failure, the
signal to drop the mark.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amber
from amber.errors import AmberError, UntrustedTypeError
from amber.graph.names import QualName
from amber.graph.nodes import KINDS
from amber.graph.trust import REGISTRY
from tests.corpus.build import base_file
from tests.corpus.samples import VALID_DIR
from tests.graph import hostile

PROBE = Path(__file__).with_name("_tripwire.py")
STEPS = ("inspect", "load")

# control -> the events (or event prefixes) that prove the tripwire saw it
CONTROLS = {
    "os.system": ("os.system",),
    "subprocess.Popen": ("subprocess.Popen",),
    "os.exec": ("os.exec",),
    # on POSIX, os.spawn* is os.fork + os.exec* in Python; "os.spawn" exists on Windows
    "os.spawn": ("os.spawn", "os.fork", "os.exec"),
    "os.posix_spawn": ("os.posix_spawn",),
    "exec": ("exec",),
    "compile": ("compile",),
    "import": ("import",),
    "open": ("open",),
    "ctypes": ("ctypes.",),
    "socket": ("socket.",),
    "pickle.find_class": ("pickle.find_class",),
    "marshal.loads": ("marshal.loads",),
}


def _build() -> tuple[bytes, list[hostile.Hostile]]:
    with tempfile.TemporaryDirectory() as directory:
        model, spare = hostile.model_files(Path(directory))
    return model, hostile.cases(model, spare)


MODEL, CASES = _build()
BASE = base_file()
BY_NAME = {case.name: case for case in CASES}


def _params(aspect: str, cases: list[hostile.Hostile]) -> list[Any]:
    return [
        pytest.param(
            case.name,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail[aspect])]
            if aspect in case.xfail
            else [],
        )
        for case in cases
    ]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every case (and the controls) through the tripwire probe, once."""
    if not hasattr(os, "fork"):
        pytest.skip("the tripwire probe forks a child per case (POSIX only)")
    root = tmp_path_factory.mktemp("hostile")
    files, out = root / "files", root / "out"
    files.mkdir()
    out.mkdir()
    (files / "benign-model.amber").write_bytes(MODEL)
    spec: dict[str, Any] = {
        "benign": {
            "plain": str(VALID_DIR / "weights.amber"),
            "model": str(files / "benign-model.amber"),
            "torch": str(VALID_DIR / "torch_state.amber"),
        },
        "cases": [],
        "controls": list(CONTROLS),
    }
    keys = {}
    for i, case in enumerate(CASES):
        key = keys[case.name] = f"case-{i:04d}"
        path = files / f"{key}.amber"
        path.write_bytes(case.data)
        entry = {"key": key, "path": str(path), "warm": case.warm, "timeout": case.timeout}
        spec["cases"].append(entry)
    (root / "spec.json").write_text(json.dumps(spec))
    # -P (3.11+): no script directory on sys.path; amber is found as in this process
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    run = subprocess.run(
        [sys.executable, *flags, str(PROBE), str(root / "spec.json"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    def read(name: str) -> Any:
        path = out / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    return {
        "warm": {group: read(f"warm-{group}") for group in ("plain", "model", "torch")},
        "cases": {name: _steps(read, key) for name, key in keys.items()},
        "controls": {
            name: (read(f"control-{name}"), read(f"control-{name}.status")) for name in CONTROLS
        },
    }


def _steps(read: Any, key: str) -> dict[str, tuple[Any, Any]]:
    """step -> (its report, how its child ended)."""
    return {step: (read(f"{key}.{step}"), read(f"{key}.{step}.status")) for step in STEPS}


def _finished(result: Any, status: Any) -> dict[str, Any]:
    """The child's report, after checking that it ran to the end."""
    assert status is not None, "the probe never ran this case"
    assert not status["timed_out"], "it ran past its time limit (killed)"
    assert status["signal"] is None, f"it crashed the interpreter (signal {status['signal']})"
    assert status["exit"] == 0 and result is not None, result
    return result


# -- the tripwire itself ----------------------------------------------------------------------


@pytest.mark.parametrize("group", ["plain", "model", "torch"])
def test_valid_load_passes_the_tripwire(outcomes: dict[str, Any], group: str) -> None:
    """Negative control: loading a valid file leaves no trace (so every trace is the file's)."""
    report = outcomes["warm"][group]
    assert report is not None
    assert report["error"] is None
    assert report["new_modules"] == []
    assert report["events"] == []


@pytest.mark.parametrize("control", list(CONTROLS))
def test_tripwire_sees_the_event(outcomes: dict[str, Any], control: str) -> None:
    """Positive control: code doing ``control`` under the hook is seen (and blocked)."""
    report = _finished(*outcomes["controls"][control])
    seen = [e.split(" ", 1)[0] for e in report["events"]]
    assert any(e.startswith(CONTROLS[control]) for e in seen), report
    if control == "import":
        assert report["new_modules"], report


# -- hostile files ----------------------------------------------------------------------------

_LISTED = re.compile(r"untrusted names?: (?P<names>[^;(]*?)(?: \(.*\))?; nothing was imported")


@pytest.mark.parametrize("name", _params("refused", CASES))
def test_hostile_file_is_refused(outcomes: dict[str, Any], name: str) -> None:
    case = BY_NAME[name]
    report = _finished(*outcomes["cases"][name]["load"])
    error = report["error"]
    assert error is not None, f"amber.load returned a {report['returned']}"
    expected = [f"{c.__module__}.{c.__qualname__}" for c in case.errors]
    assert error["types"][0] in expected, error
    message = error["message"]
    assert case.fragment in message
    if case.untrusted:
        # one error listing every untrusted name, and how to trust them
        listed = _LISTED.search(message)
        assert listed, message
        assert set(listed["names"].split(", ")) == case.untrusted
        assert "amber.load(path, trusted=[" in message
        assert "amber.trust(" in message


@pytest.mark.parametrize("name", _params("clean", CASES))
def test_hostile_file_imports_and_runs_nothing(outcomes: dict[str, Any], name: str) -> None:
    for step in STEPS:
        report = _finished(*outcomes["cases"][name][step])
        assert report["new_modules"] == [], f"{step} imported modules"
        assert report["events"] == [], f"{step} tripped the audit hook"


@pytest.mark.parametrize("name", _params("inspect", [c for c in CASES if c.untrusted]))
def test_inspect_lists_the_untrusted_names(outcomes: dict[str, Any], name: str) -> None:
    report = _finished(*outcomes["cases"][name]["inspect"])
    assert report["error"] is None
    assert set(report["info"]["untrusted"]) == BY_NAME[name].untrusted


@pytest.mark.parametrize("name", _params("inspect", [c for c in CASES if not c.untrusted]))
def test_inspect_of_malformed_files_raises_only_amber_errors(
    outcomes: dict[str, Any], name: str
) -> None:
    report = _finished(*outcomes["cases"][name]["inspect"])
    if report["error"] is not None:
        assert "amber.errors.AmberError" in report["error"]["types"], report["error"]


def test_every_issue_case_is_covered() -> None:
    """The cases the issue asks for are all present, as every kind of node."""
    for name in (
        "builtins:eval",
        "os:system",
        "subprocess:Popen",
        "operator:attrgetter",
        "pkgutil:resolve_name",
        "importlib:import_module",
        "pydoc:locate",
        "builtins:getattr",
        "types:FunctionType",
        "marshal:loads",
        "pickle:loads",
        "numpy:load",
        "numpy.testing._private.utils:runstring",
        "sklearn.pipeline:Pipeline.__init__.__globals__",
        "sklearn.pipeline.Pipeline.__init__:__globals__",
        "numpy:os.system",
        "numpy.os:system",
        "sklearn.utils:os.system",
        "sklearn.utils.os:system",
        "os:LogisticRegression",
        "sklearn.linear_model:system",
    ):
        for kind in hostile.KINDS:
            assert f"{kind}-{name}" in BY_NAME
    for name in (
        "hidden-in-partial-args",
        "partial-numpy-load-allow-pickle",
        "unknown-kind-global",
        "ref-to-missing-id",
        "cycle-through-tuple",
        "nested-lists-depth-100000",
        "tensor-declared-larger-than-file",
        "ndarray-view-larger-than-tensor",
        "sklearn-state-sets-__class__",
        "sklearn-state-sets-__dict__",
        "untrusted-setstate-subprocess:Popen",
        "sklearn-state-holds-untrusted-object",
        "sklearn-mode-cython-without-constructor",
        "sklearn-mode-adapter-without-constructor",
        "several-names-all-kinds-nested",
    ):
        assert name in BY_NAME


# -- property: random node trees --------------------------------------------------------------

DANGEROUS_MODULES = [
    "os",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "sys",
    "importlib",
    "pkgutil",
    "pydoc",
    "runpy",
    "code",
    "pty",
    "shutil",
    "socket",
    "ctypes",
    "pickle",
    "_pickle",
    "marshal",
    "types",
    "operator",
    "functools",
    "copyreg",
    "webbrowser",
    "antigravity",
    "this",
    "numpy",
    "numpy.testing._private.utils",
    "numpy.lib._npyio_impl",
    "sklearn",
    "sklearn.utils",
    "sklearn.pipeline",
    "sklearn.linear_model",
]
# Trusted names the trees may use. Left out on purpose (they have their own cases, run in a
# subprocess), because a hole there would crash or hang this process: fractions:Fraction
# and builtins:range (exponent bombs, huge ranges), numpy:ndarray (object arrays over file
# bytes), scipy's sparse matrices and scikit-learn's compiled trees (index arrays).
TRUSTED = [
    "builtins:int",
    "builtins:str",
    "builtins:list",
    "builtins:tuple",
    "builtins:dict",
    "builtins:set",
    "builtins:object",
    "builtins:bytearray",
    "builtins:slice",
    "collections:OrderedDict",
    "collections:defaultdict",
    "collections:deque",
    "collections:Counter",
    "functools:partial",
    "datetime:timedelta",
    "decimal:Decimal",
    "uuid:UUID",
    "pathlib:PurePosixPath",
    "numpy:float64",
    "numpy:int64",
    "numpy:dtype",
    "numpy.random.mtrand:RandomState",
    "numpy.random._pcg64:PCG64",
    "math:sqrt",
    "operator:add",
    "builtins:len",
    hostile.LOGISTIC,
    "sklearn.pipeline:Pipeline",
]
NODE_KEYS = sorted(
    {"k", "v", "id", "items", "b64", "tensor", "dtype", "shape", "array", "name", "type"}
    | {"mode", "args", "state", "listitems", "dictitems"}
)
LEAVES = [
    {"k": "float", "v": "nan"},
    {"k": "float", "v": "1e400"},
    {"k": "int", "v": "123456789012345678901234567890"},
    {"k": "int", "v": "9" * 5000},
    {"k": "bytes", "b64": "AAEC"},
    {"k": "bytes", "b64": "%%"},
    {"k": "bytearray", "tensor": "tail"},
    {"k": "ndarray", "tensor": "embed.weight"},
    {"k": "ndarray", "tensor": "tail", "dtype": "<u2", "shape": [2]},
    {"k": "ndarray", "tensor": "tail", "dtype": "|O", "shape": [1]},
    {"k": "ndarray", "tensor": "missing"},
    {"k": "npscalar", "dtype": "float32", "b64": "AACAPw=="},
    {"k": "dtype", "v": "<f8"},
    {"k": "dtype", "v": "|O"},
]

_WORDS = ["system", "eval", "exec", "Popen", "loads", "load", "os", "getattr", "__globals__"]
_WORDS += ["__init__", "__class__", "__reduce__", "__subclasses__", "LogisticRegression"]
_identifiers = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z") | st.sampled_from(_WORDS)
_dotted = st.lists(_identifiers, min_size=1, max_size=3).map(".".join)
_qualified = st.builds("{}:{}".format, st.sampled_from(DANGEROUS_MODULES) | _dotted, _dotted)
_names = _qualified | _qualified | st.sampled_from(TRUSTED) | st.text(max_size=12)
# the names of type, func and object nodes: trusted ones half of the time, so that random
# trees also get past the audit and exercise the decoder
_code_names = st.sampled_from(TRUSTED) | _names
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**16), 2**16)
    | st.sampled_from([2**63 - 1, -(2**63)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    items = st.lists(children, max_size=4)
    pairs = st.lists(st.lists(children, min_size=2, max_size=2), max_size=3)
    ids = st.integers(0, 4)
    containers = st.builds(
        lambda kind, v, node_id: {"k": kind, "v": v} | ({} if node_id is None else {"id": node_id}),
        st.sampled_from(["list", "tuple", "set", "frozenset", "complex"]),
        items,
        st.none() | ids,
    )
    objarrays = st.builds(
        lambda v, shape: {"k": "objarray", "v": v, "shape": shape},
        items,
        st.lists(st.integers(0, 4), max_size=2),
    )
    dicts = st.builds(
        lambda v: {"k": "dict", "v": v}, st.dictionaries(st.text(max_size=4), children, max_size=3)
    ) | st.builds(lambda v: {"k": "dict", "items": v}, pairs)
    code = st.builds(
        lambda kind, name: {"k": kind, "name": name}, st.sampled_from(["type", "func"]), _code_names
    )
    objects = st.fixed_dictionaries(
        {
            "k": st.just("object"),
            "type": _code_names,
            "mode": st.sampled_from(["new", "call", "cython", "adapter", "reduce", None, ["new"]]),
        },
        optional={
            "args": items,
            "state": children,
            "listitems": items,
            "dictitems": pairs,
            "id": ids,
        },
    )
    refs = st.builds(lambda node_id: {"k": "ref", "id": node_id}, ids | st.text(max_size=2))
    random_nodes = st.builds(
        lambda kind, body: {**body, "k": kind},
        st.sampled_from(sorted(KINDS)) | st.text(max_size=6),
        st.dictionaries(
            st.sampled_from(NODE_KEYS) | st.text(max_size=5), children | _names, max_size=4
        ),
    )
    return (
        containers
        | objarrays
        | dicts
        | code
        | objects
        | refs
        | st.sampled_from(LEAVES)
        | random_nodes
        | items  # a bare JSON list is not a node
    )


_trees = st.recursive(_scalars | _names, _extend, max_leaves=25)


@pytest.fixture(scope="module")
def settled_registry() -> None:
    """Import, once, what the trusted names of the trees resolve to, and run the allowlist's
    lazy table loaders (they may import their own package, once per process): after this,
    nothing a tree does may import anything (the subprocess cases check the first time)."""
    for module in {name.split(":")[0] for name in TRUSTED} | {"sklearn.utils"}:
        importlib.import_module(module)
    for package in ("numpy", "sklearn"):
        for kind in ("type", "function"):
            REGISTRY.allows(QualName(package, "_"), kind)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=_trees)
def test_random_graphs_load_or_raise_amber_errors(
    settled_registry: None, tmp_path_factory: pytest.TempPathFactory, root: Any
) -> None:
    path = tmp_path_factory.getbasetemp() / "random-graph.amber"
    path.write_bytes(hostile.with_root(BASE, root))
    before = set(sys.modules)
    try:
        amber.inspect(path)
    except AmberError:
        pass
    error: AmberError | None = None
    try:
        amber.load(path)
    except AmberError as exc:  # anything else fails the test
        error = exc
    # amber's own modules load lazily (the zstd codec when a tree reaches a compressed
    # entry); nothing else may appear.
    imported = {m for m in set(sys.modules) ^ before if m.split(".")[0] != "amber"}
    assert not imported, imported
    if isinstance(error, UntrustedTypeError):
        message = str(error)
        assert "trusted=[" in message or "loading refused after checking" in message
