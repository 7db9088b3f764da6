"""Hostile .amber files: valid containers whose object graph tries to run or import code.

Each case starts from a file amber wrote (``tests/corpus/valid/weights.amber``, or a saved
scikit-learn/scipy model), replaces the manifest's ``root`` node (or another part) and
re-seals the manifest with ``tests.corpus.build.with_manifest``, so the container is valid
and only the object graph is hostile. ``cases()`` lists them all with what loading must do:
raise ``UntrustedTypeError`` naming every untrusted class or function, or ``FormatError``
for a malformed graph, importing and running nothing (``test_hostile.py`` checks that in a
subprocess under an audit hook, see ``_tripwire.py``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import AmberError, FormatError, UntrustedTypeError
from tests.corpus.build import base_file, edit_manifest, edit_tensor, manifest_of, with_manifest

KINDS = ("type", "func", "object")

# Names that loading must refuse, each spelled as a file would: "module:qualname". Every
# one is tried as a type node, a func node and an object node's class.
UNTRUSTED_NAMES = (
    # code execution and attribute access
    "builtins:eval",
    "builtins:exec",
    "builtins:compile",
    "builtins:getattr",
    "builtins:__import__",
    "builtins:open",
    "builtins:type",
    "builtins:object.__subclasses__",
    "os:system",
    "posix:system",
    "os:popen",
    "os:execv",
    "subprocess:Popen",
    "subprocess:check_output",
    "operator:attrgetter",
    "operator:methodcaller",
    "functools:reduce",
    "copyreg:_reconstructor",
    "pkgutil:resolve_name",
    "importlib:import_module",
    "pydoc:locate",
    "runpy:run_path",
    "code:InteractiveInterpreter",
    "types:FunctionType",
    "types:CodeType",
    "ctypes:CDLL",
    "socket:socket",
    "shutil:rmtree",
    "webbrowser:open",
    # deserializers that run code
    "marshal:loads",
    "pickle:loads",
    "_pickle:loads",
    "pickle:Unpickler",
    "numpy:load",
    "numpy.lib._npyio_impl:load",
    "numpy.testing._private.utils:runstring",
    # attribute walks to a module's globals, in every module:qualname split
    "sklearn.pipeline:Pipeline.__init__.__globals__",
    "sklearn.pipeline.Pipeline.__init__:__globals__",
    "sklearn.pipeline.Pipeline:__init__.__globals__",
    "sklearn:pipeline.Pipeline.__init__.__globals__",
    "numpy:os.system",
    "numpy.os:system",
    "numpy:os",
    "sklearn.utils:os.system",
    "sklearn.utils.os:system",
    "sklearn:utils.os.system",
    # a trusted class name in an untrusted module, an untrusted name in a trusted module
    "os:LogisticRegression",
    "subprocess:LogisticRegression",
    "sklearn.linear_model:system",
    "sklearn.linear_model._logistic:LogisticRegression.__init__",
    # scikit-learn modules outside the package rule (tests, testing helpers, vendored code)
    "sklearn.utils._testing:MinimalClassifier",
    "sklearn.tests.test_base:MyEstimator",
    "sklearn.externals._packaging.version:Version",
)
# Trusted names used as the wrong kind: a function as a class, a class as a function.
MISUSED_NAMES = {
    "builtins:len": ("type", "object"),
    "math:sqrt": ("type", "object"),
    "functools:partial": ("func",),
    "collections:OrderedDict": ("func",),
}
# The second untrusted name of every single-name case: loading must list both.
COMPANION = "antigravity:geohash"

# Spellings that are not "module:qualname" at all: refused as malformed, whatever the kind.
MALFORMED_NAMES: dict[str, Any] = {
    "dotted-builtins.eval": "builtins.eval",
    "dotted-os.system": "os.system",
    "dotted-numpy.os.system": "numpy.os.system",
    "two-colons": "os:system:x",
    "no-module": ":system",
    "no-qualname": "os:",
    "spaces": "os : system",
    "call-syntax": "os:system()",
    "expression": "__import__('os').system:x",
    "cyrillic-o": "\u043es:system",
    "nul-byte": "os:system\x00",
    "path": "os/../x:y",
    "too-long": "a" * 600 + ":b",
    "list": ["os", "system"],
    "object": {"module": "os", "name": "system"},
    "null": None,
    "number": 7,
}


@dataclass(frozen=True)
class Hostile:
    """One hostile file and what loading it must do."""

    name: str
    data: bytes
    errors: tuple[type[AmberError], ...]  # load must raise one of these (exact classes)
    untrusted: frozenset[str] = frozenset()  # dotted names the error and inspect() list
    fragment: str = ""  # part of the error message
    warm: str = "plain"  # the benign file that sets the baseline: "plain" or "model"
    timeout: float = 60.0
    # aspect ("refused", "clean") -> reason, for known holes (strict xfail)
    xfail: dict[str, str] = field(default_factory=dict)


# -- crafting ---------------------------------------------------------------------------------


def with_root(data: bytes, root: Any) -> bytes:
    """``data`` (a file amber wrote) with its object graph's root node replaced, re-sealed."""
    return edit_manifest(data, lambda m: m.__setitem__("root", root))


def with_raw_root(data: bytes, text: bytes) -> bytes:
    """Like ``with_root`` with the root given as raw JSON text (e.g. too deep for json)."""
    manifest = manifest_of(data)
    manifest["root"] = "\x00ROOT\x00"
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return with_manifest(data, raw.replace(b'"\\u0000ROOT\\u0000"', text, 1))


def dotted(name: str) -> str:
    return name.replace(":", ".")


def name_node(kind: str, name: Any) -> dict[str, Any]:
    """A node of ``kind`` ("type", "func", "object") that names ``name``."""
    if kind == "object":
        return {"k": "object", "type": name, "mode": "call", "args": ["echo pwned"]}
    return {"k": kind, "name": name}


def b64(raw: bytes) -> dict[str, Any]:
    return {"k": "bytes", "b64": base64.b64encode(raw).decode()}


def lst(*items: Any) -> dict[str, Any]:
    return {"k": "list", "v": list(items)}


def tup(*items: Any) -> dict[str, Any]:
    return {"k": "tuple", "v": list(items)}


def _untrusted(case: str, data: bytes, refs: list[tuple[str, str]], **kw: Any) -> Hostile:
    return Hostile(
        case,
        data,
        (UntrustedTypeError,),
        frozenset(dotted(name) for _, name in refs),
        "nothing was imported",
        **kw,
    )


def _names(base: bytes) -> Iterator[Hostile]:
    """Every untrusted name as every kind of node, each with a second untrusted name."""
    companion = name_node("func", COMPANION)
    for name in UNTRUSTED_NAMES:
        for kind in KINDS:
            refs = [(kind, name), ("func", COMPANION)]
            data = with_root(base, lst(name_node(kind, name), companion))
            yield _untrusted(f"{kind}-{name}", data, refs)
    for name, kinds in MISUSED_NAMES.items():
        for kind in kinds:
            refs = [(kind, name), ("func", COMPANION)]
            data = with_root(base, lst(name_node(kind, name), companion))
            yield _untrusted(f"{kind}-{name}", data, refs)
    # the construction mode does not matter: the class is audited first
    for name in ("os:system", "builtins:eval", "subprocess:Popen"):
        for mode in ("new", "call", "cython", "adapter"):
            node = {"k": "object", "type": name, "mode": mode, "args": ["id"]}
            node["state"] = {"k": "dict", "v": {"cmd": "id"}}
            refs = [("object", name), ("func", COMPANION)]
            data = with_root(base, lst(node, companion))
            yield _untrusted(f"object-{name}-mode-{mode}", data, refs)


def _several(base: bytes) -> Iterator[Hostile]:
    """Files naming many untrusted things: one error must list them all."""
    everything: list[Any] = []
    all_refs: list[tuple[str, str]] = []
    for kind in KINDS:
        nodes = [name_node(kind, name) for name in UNTRUSTED_NAMES]
        refs = [(kind, name) for name in UNTRUSTED_NAMES]
        everything += nodes
        all_refs += refs
        yield _untrusted(f"several-{kind}-names", with_root(base, lst(*nodes)), refs)
    # the standard library's names alone (nothing of numpy or scikit-learn to look up)
    plain = [
        name
        for name in UNTRUSTED_NAMES
        if name.split(":")[0].split(".")[0] not in ("numpy", "sklearn")
    ]
    refs = [(kind, name) for kind in KINDS for name in plain]
    nodes = [name_node(kind, name) for kind, name in refs]
    yield _untrusted("several-names-outside-numpy-sklearn", with_root(base, lst(*nodes)), refs)
    nested = {"k": "dict", "v": {"a": lst(*everything[: len(everything) // 2])}}
    nested["v"]["b"] = tup(*everything[len(everything) // 2 :])
    yield _untrusted("several-names-all-kinds-nested", with_root(base, nested), all_refs)


def _hiding_places(base: bytes) -> Iterator[Hostile]:
    """An untrusted function in every place a node can hold another node."""
    evil = {"k": "func", "name": "os:system"}
    safe_object = {"k": "object", "type": "collections:OrderedDict", "mode": "call", "args": []}
    places = {
        "dict-value": {"k": "dict", "v": {"x": evil}},
        "dict-items-key": {"k": "dict", "items": [[evil, 1]]},
        "dict-items-value": {"k": "dict", "items": [[1, evil]]},
        "list": lst(1, evil),
        "tuple": tup(evil),
        "set": {"k": "set", "v": [evil]},
        "frozenset": {"k": "frozenset", "v": [evil]},
        "objarray": {"k": "objarray", "shape": [1], "v": [evil]},
        "complex-part": {"k": "complex", "v": [evil, 1.0]},
        "npscalar-array": {"k": "npscalar", "array": evil},
        "object-args": {**safe_object, "args": [evil]},
        "object-state": {**safe_object, "state": evil},
        "object-listitems": {**safe_object, "listitems": [evil]},
        "object-dictitems-key": {**safe_object, "dictitems": [[evil, 1]]},
        "object-dictitems-value": {**safe_object, "dictitems": [[1, evil]]},
        "partial-args": {
            "k": "object",
            "type": "functools:partial",
            "mode": "new",
            "args": [evil, "echo pwned"],
        },
        "partial-state": {
            "k": "object",
            "type": "functools:partial",
            "mode": "new",
            "args": [{"k": "func", "name": "builtins:len"}],
            "state": tup(evil, tup("echo pwned"), {"k": "dict", "v": {}}, None),
        },
        "deep-list-100": _nest(evil, 100),
    }
    for place, node in places.items():
        yield _untrusted(f"hidden-in-{place}", with_root(base, node), [("func", "os:system")])
    # functools.partial(numpy.load, "evil.npy", allow_pickle=True)
    load = {"k": "func", "name": "numpy:load"}
    partial = {
        "k": "object",
        "type": "functools:partial",
        "mode": "new",
        "args": [load],
        "state": tup(load, tup("evil.npy"), {"k": "dict", "v": {"allow_pickle": True}}, None),
    }
    refs = [("func", "numpy:load")]
    yield _untrusted("partial-numpy-load-allow-pickle", with_root(base, partial), refs)
    call = {"k": "object", "type": "functools:partial", "mode": "call"}
    call["args"] = [{"k": "func", "name": "builtins:eval"}, "__import__('os').system('id')"]
    yield _untrusted(
        "partial-call-builtins-eval", with_root(base, call), [("func", "builtins:eval")]
    )


def _nest(node: Any, depth: int) -> Any:
    for _ in range(depth):
        node = lst(node)
    return node


def _malformed(base: bytes) -> Iterator[Hostile]:
    for label, name in MALFORMED_NAMES.items():
        for kind in KINDS:
            data = with_root(base, name_node(kind, name))
            yield Hostile(f"{kind}-malformed-name-{label}", data, (FormatError,), fragment="not a")


def _structure(base: bytes) -> Iterator[Hostile]:
    """Malformed graphs: unknown kinds, keys and modes, bad references, cycles, depth."""
    fmt: dict[str, tuple[Any, str]] = {}
    for kind in ("global", "reduce", "pickle", "eval", "exec", "import", "getattr", "build"):
        fmt[f"unknown-kind-{kind}"] = ({"k": kind, "v": "os.system"}, "unknown node kind")
    for i, kind in enumerate(("", "LIST", " list", "list\x00", "__class__")):
        fmt[f"unknown-kind-spelling-{i}"] = ({"k": kind, "v": []}, "unknown node kind")
    for i, kind in enumerate((["list"], 1, None, True, {"k": "list"})):
        fmt[f"kind-not-a-string-{i}"] = ({"k": kind, "v": []}, "unknown node kind")
    fmt["kind-missing"] = ({"v": [1], "type": "os:system"}, "unknown node kind")
    fmt["unknown-key-on-type"] = (
        {"k": "type", "name": "builtins:int", "module": "os"},
        "unknown keys ['module']",
    )
    fmt["unknown-key-on-func"] = (
        {"k": "func", "name": "math:sqrt", "args": ["x"]},
        "unknown keys ['args']",
    )
    fmt["unknown-key-on-object"] = (
        {"k": "object", "type": "builtins:object", "mode": "new", "reduce": "os:system"},
        "unknown keys ['reduce']",
    )
    modes = {"reduce": "reduce", "pickle": "pickle", "eval": "eval", "upper-case": "NEW"}
    modes |= {"null": None, "number": 1, "list": ["new"], "object": {"k": "new"}}
    for label, mode in modes.items():
        node = {"k": "object", "type": "builtins:object", "mode": mode, "args": []}
        fmt[f"object-mode-{label}"] = (node, "construction mode")
    fmt["object-mode-missing"] = (
        {"k": "object", "type": "builtins:object", "args": []},
        "construction mode",
    )
    fmt["object-mode-cython-on-builtin"] = (
        {
            "k": "object",
            "type": "builtins:object",
            "mode": "cython",
            "args": [0, {"k": "dict", "v": {}}],
        },
        "not a Cython class",
    )
    fmt["object-mode-adapter-on-builtin"] = (
        {
            "k": "object",
            "type": "builtins:dict",
            "mode": "adapter",
            "state": {"k": "dict", "v": {}},
        },
        "no constructor",
    )
    fmt["object-mode-adapter-with-args"] = (
        {
            "k": "object",
            "type": "numpy.random.mtrand:RandomState",
            "mode": "adapter",
            "args": [0],
            "state": {"k": "dict", "v": {}},
        },
        "no constructor",
    )
    for generator in ("os.system", "__class__", "Generator"):
        state = {"k": "dict", "v": {"bit_generator": generator, "state": {"k": "dict", "v": {}}}}
        node = {"k": "object", "type": "numpy.random.mtrand:RandomState", "mode": "adapter"}
        fmt[f"adapter-state-names-bit-generator-{generator}"] = (
            {**node, "state": state},
            "must name one of",
        )
    # references
    fmt["ref-to-missing-id"] = ({"k": "ref", "id": 12345}, "reference to id 12345")
    fmt["ref-negative-id"] = ({"k": "ref", "id": -1}, "reference to id -1")
    fmt["ref-string-id"] = ({"k": "ref", "id": "0"}, "reference to id '0'")
    fmt["ref-without-id"] = ({"k": "ref"}, "reference to id None")
    fmt["ref-forward"] = (
        lst({"k": "ref", "id": 1}, {"k": "list", "id": 1, "v": []}),
        "reference to id 1",
    )
    fmt["id-declared-twice"] = (
        lst({"k": "list", "id": 1, "v": []}, {"k": "dict", "id": 1, "v": {}}),
        "declared twice",
    )
    fmt["id-not-an-integer"] = ({"k": "list", "id": "x", "v": []}, "non-negative integer")
    # cycles through immutable containers cannot be built: the reference comes first
    fmt["cycle-through-tuple"] = (
        {"k": "tuple", "id": 0, "v": [{"k": "ref", "id": 0}]},
        "reference to id 0",
    )
    fmt["cycle-through-nested-tuple"] = (
        {"k": "list", "id": 0, "v": [{"k": "tuple", "id": 1, "v": [tup({"k": "ref", "id": 1})]}]},
        "reference to id 1",
    )
    fmt["cycle-through-frozenset"] = (
        {"k": "frozenset", "id": 0, "v": [{"k": "ref", "id": 0}]},
        "reference to id 0",
    )
    fmt["cycle-through-constructor-args"] = (
        {
            "k": "object",
            "type": "collections:OrderedDict",
            "mode": "call",
            "id": 0,
            "args": [{"k": "ref", "id": 0}],
        },
        "reference to id 0",
    )
    # arrays and bytes that claim more than the file holds
    fmt["ndarray-view-larger-than-tensor"] = (
        {"k": "ndarray", "tensor": "tail", "dtype": "<f8", "shape": [1 << 40]},
        "cannot hold",
    )
    fmt["ndarray-view-object-dtype"] = (
        {"k": "ndarray", "tensor": "tail", "dtype": "|O", "shape": [0]},
        "cannot have dtype",
    )
    fmt["objarray-declares-huge-shape"] = (
        {"k": "objarray", "shape": [1 << 31, 1 << 31], "v": []},
        "needs",
    )
    fmt["bytes-from-float-tensor"] = (
        {"k": "bytes", "tensor": "embed.weight"},
        "one-dimensional uint8",
    )
    # attributes a state may not set (the class itself has no __setstate__)
    fmt["slots-state-sets-class"] = (
        {
            "k": "object",
            "type": "builtins:object",
            "mode": "new",
            "args": [],
            "state": tup(
                None, {"k": "dict", "v": {"__class__": {"k": "type", "name": "builtins:int"}}}
            ),
        },
        "special attribute '__class__'",
    )
    fmt["tuple-state-sets-dict"] = (
        {
            "k": "object",
            "type": "builtins:object",
            "mode": "new",
            "args": [],
            "state": tup({"k": "dict", "v": {"__dict__": {"k": "dict", "v": {}}}}, None),
        },
        "special attribute '__dict__'",
    )
    for case, (node, fragment) in fmt.items():
        mode = node.get("mode") if isinstance(node, dict) else None
        yield Hostile(
            case,
            with_root(base, node),
            (FormatError,),
            fragment=fragment,
            # resolving numpy.random's trusted classes imports numpy.random (by design)
            warm="model" if "numpy.random" in json.dumps(node) else "plain",
        )

    deep = b'{"k":"list","v":[' * 100_000 + b"1" + b"]}" * 100_000
    yield Hostile(
        "nested-lists-depth-100000", with_raw_root(base, deep), (FormatError,), fragment="deeper"
    )
    deep_objects = b'{"k":"object","type":"builtins:list","mode":"call","args":[' * 100_000
    deep_objects += b"1" + b"]}" * 100_000
    yield Hostile(
        "nested-objects-depth-100000",
        with_raw_root(base, deep_objects),
        (FormatError,),
        fragment="deeper",
    )
    tensors = manifest_of(base)["tensors"]
    last = next(i for i, t in enumerate(tensors) if t["name"] == "tail")
    assert tensors[last]["dtype"] == "uint8"
    yield Hostile(
        "tensor-declared-larger-than-file",
        edit_tensor(base, last, shape=[1 << 30], nbytes=1 << 30),
        (FormatError,),
        fragment="past the data region",
    )


def _memory(base: bytes) -> Iterator[Hostile]:
    """Trusted-looking constructors fed file bytes or numbers: object arrays whose elements
    would be pointers read from the file, exponent bombs."""
    raw_pointers = {
        "k": "object",
        "type": "numpy:ndarray",
        "mode": "new",
        "args": [lst(2), {"k": "dtype", "v": "|O"}, b64(b"\x41" * 16)],
    }
    record = {"names": ["a"], "formats": ["|O"], "offsets": [0], "itemsize": 8}
    record_pointers = {**raw_pointers}
    record_pointers["args"] = [lst(2), {"k": "dtype", "v": record}, b64(b"\x41" * 16)]
    strides = {**raw_pointers}
    strides["args"] = [lst(2), {"k": "dtype", "v": "<f8"}, b64(b"A" * 16), 0, lst(1 << 30)]
    arrays = {
        "ndarray-object-dtype-over-file-bytes": raw_pointers,
        "ndarray-object-field-over-file-bytes": record_pointers,
        # builtins.list(array) would dereference the pointers during the load (SIGSEGV)
        "ndarray-object-dtype-over-file-bytes-iterated": {
            "k": "object",
            "type": "builtins:list",
            "mode": "call",
            "args": [raw_pointers],
        },
        "ndarray-strides-past-file-bytes": strides,
    }
    for case, node in arrays.items():
        yield _untrusted(case, with_root(base, node), [("object", "numpy:ndarray")])
    huge_range = {
        "k": "object",
        "type": "builtins:range",
        "mode": "call",
        "args": [(1 << 63) - 1],
    }
    drain = {"k": "object", "type": "collections:deque", "mode": "call", "args": [huge_range, 0]}
    yield Hostile(
        "deque-drains-huge-range",
        with_root(base, drain),
        (FormatError,),
        timeout=2.0,
    )
    bomb = {"k": "object", "type": "fractions:Fraction", "mode": "call", "args": ["1e1000000000"]}
    yield Hostile(
        "fraction-exponent-bomb",
        with_root(base, bomb),
        (FormatError,),
        timeout=3.0,
    )


# -- cases on a saved scikit-learn / scipy model ----------------------------------------------

LOGISTIC = "sklearn.linear_model._logistic:LogisticRegression"


def model_files(directory: Path) -> tuple[bytes, bytes]:
    """(a benign saved model, a file of compiled-code-backed objects plus spare index arrays
    that point out of bounds), both written by amber."""
    import numpy as np
    import scipy.sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KDTree

    import amber

    points = np.random.RandomState(0).rand(20, 2)
    model = {
        "clf": LogisticRegression(),
        "sparse": scipy.sparse.csr_matrix(np.eye(3)),
        "kd": KDTree(points, leaf_size=2),
    }
    amber.save(model, directory / "model.amber")
    spare = {
        "csr": scipy.sparse.csr_matrix(np.eye(2)),
        "csr_indices": np.array([0, 10**8], np.int32),
        "kd": KDTree(points, leaf_size=2),
        "kd_indices": np.full(len(points), 10**9, np.intp),
    }
    amber.save(spare, directory / "spare.amber")
    return (directory / "model.amber").read_bytes(), (directory / "spare.amber").read_bytes()


def _model(model: bytes, spare: bytes) -> Iterator[Hostile]:
    """Cases on trusted scikit-learn/scipy classes: their state, their construction modes,
    and the index arrays their compiled code trusts (read in a process that loaded a
    benign model first, so importing scikit-learn is part of the baseline)."""
    clf = manifest_of(model)["root"]["v"]["clf"]
    assert clf["type"] == LOGISTIC and clf["state"]["k"] == "dict", clf

    def with_state(**extra: Any) -> dict[str, Any]:
        state = {"k": "dict", "v": {**clf["state"]["v"], **extra}}
        return {**clf, "state": state}

    linear = {"k": "type", "name": "sklearn.linear_model._base:LinearRegression"}
    special = {
        "__class__": linear,
        "__dict__": {"k": "dict", "v": {"coef_": 1}},
        "__setstate__": {"k": "func", "name": "math:sqrt"},
        "__reduce_ex__": {"k": "func", "name": "math:sqrt"},
        "__init__": None,
        "__doc__": {"k": "func", "name": "math:sqrt"},  # a docstring may only be text
    }
    for attribute, value in special.items():
        yield Hostile(
            f"sklearn-state-sets-{attribute}",
            with_root(model, with_state(**{attribute: value})),
            (FormatError,),
            fragment=f"special attribute {attribute!r}",
            warm="model",
        )
    items_state = {"k": "dict", "items": [[1, 2], *[[k, v] for k, v in clf["state"]["v"].items()]]}
    yield Hostile(
        "sklearn-state-non-string-key",
        with_root(model, {**clf, "state": items_state}),
        (FormatError,),
        fragment="special attribute 1",
        warm="model",
    )
    for mode, args in (("cython", [0, {"k": "dict", "v": {}}]), ("adapter", None)):
        node = {**clf, "mode": mode}
        node.pop("args", None)
        if args is not None:
            node.update(args=args)
            node.pop("state")
        yield Hostile(
            f"sklearn-mode-{mode}-without-constructor",
            with_root(model, node),
            (FormatError,),
            fragment="not a Cython class" if mode == "cython" else "no constructor",
            warm="model",
        )
    yield Hostile(
        "sklearn-cython-mode-checksum-mismatch",
        with_root(
            model,
            {
                "k": "object",
                "type": "sklearn._loss._loss:CyHalfMultinomialLoss",
                "mode": "cython",
                "args": [0xDEAD, tup()],
            },
        ),
        (FormatError,),
        fragment="could not rebuild",
        warm="model",
    )
    # the state of a trusted class holds an untrusted object / function
    wrap = {"k": "object", "type": "os:_wrap_close", "mode": "new", "args": [], "state": None}
    yield _untrusted(
        "sklearn-state-holds-untrusted-object",
        with_root(model, with_state(solver=wrap)),
        [("object", "os:_wrap_close")],
        warm="model",
    )
    yield _untrusted(
        "sklearn-state-holds-untrusted-function",
        with_root(model, with_state(solver={"k": "func", "name": "builtins:eval"})),
        [("func", "builtins:eval")],
        warm="model",
    )
    # an untrusted class whose __setstate__ the state would reach
    for name in (
        "subprocess:Popen",
        "pandas.io.pytables:HDFStore",
        "numpy.lib._npyio_impl:NpzFile",
    ):
        node = {"k": "object", "type": name, "mode": "new", "args": [], "state": clf["state"]}
        yield _untrusted(
            f"untrusted-setstate-{name}", with_root(model, node), [("object", name)], warm="model"
        )
    # passes the name check (a class-shaped name in a scikit-learn module), then is refused
    # when found to be something else; scikit-learn is trusted, so importing it is expected
    yield Hostile(
        "sklearn-module-class-shaped-name-not-found",
        with_root(model, {"k": "type", "name": "sklearn.linear_model:Popen"}),
        (UntrustedTypeError,),
        fragment="nothing was imported",
        warm="model",
    )
    yield Hostile(
        "sklearn-class-re-exported-elsewhere",
        with_root(model, {"k": "type", "name": "sklearn.linear_model:LogisticRegression"}),
        (UntrustedTypeError,),
        fragment="nothing was imported",
        warm="model",
    )
    # compiled code that trusts its index arrays: rebuilt with indices out of bounds
    # (loading them, then .toarray() / .query(), writes or reads out of bounds: SIGSEGV)
    root = manifest_of(spare)["root"]["v"]
    csr, kd = root["csr"], root["kd"]
    csr["state"]["v"]["indices"] = root["csr_indices"]
    kd["state"]["v"][1] = root["kd_indices"]  # idx_array
    yield Hostile(
        "sparse-indices-out-of-bounds", with_root(spare, csr), (FormatError,), warm="model"
    )
    yield Hostile(
        "kdtree-indices-out-of-bounds",
        with_root(spare, kd),
        (FormatError,),
        warm="model",
    )
    # scipy's checks themselves must not let other errors escape
    for fmt in ("csr", "bsr", "dia", "lil"):
        name = f"scipy.sparse._{fmt}:{fmt}_matrix"
        node = {
            "k": "object",
            "type": name,
            "mode": "new",
            "args": [],
            "state": {"k": "dict", "v": {}},
        }
        yield Hostile(
            f"sparse-{fmt}-state-empty",
            with_root(spare, node),
            (FormatError,),
            warm="model",
        )
    as_lists = {
        "_shape": tup(2, 2),
        "indptr": lst(0, 1, 2),
        "indices": lst(0, 1),
        "data": lst(1.0, 2.0),
    }
    node = {"k": "object", "type": "scipy.sparse._csr:csr_matrix", "mode": "new", "args": []}
    yield Hostile(
        "sparse-csr-state-arrays-as-lists",
        with_root(spare, {**node, "state": {"k": "dict", "v": as_lists}}),
        (FormatError,),
        warm="model",
    )


def torch_file() -> bytes:
    """The committed PyTorch sample: parameters, views sharing a storage, bfloat16."""
    from tests.corpus.samples import VALID_DIR

    return (VALID_DIR / "torch_state.amber").read_bytes()


def _torch(data: bytes) -> Iterator[Hostile]:
    """torch nodes that lie about their dtype, their storage or their view of it."""
    root = manifest_of(data)["root"]["v"]
    rows = root["rows"]  # a view of the 24-element float32 "encoder.weight"

    def torch_case(name: str, node: dict[str, Any], fragment: str) -> Hostile:
        entries = {**root, "evil": node}
        return Hostile(
            f"torch-{name}",
            with_root(data, {"k": "dict", "v": entries}),
            (FormatError,),
            fragment=fragment,
            warm="torch",
        )

    def view(**fields: Any) -> dict[str, Any]:
        return {**rows, "view": {**rows["view"], **fields}}

    for dtype in ("float128", "qint8", "int4", "object", "Tensor", "", 7, None):
        yield torch_case(f"dtype-{dtype}", {**rows, "dtype": dtype}, "unknown torch dtype")
    yield torch_case("view-past-end", view(offset=19), "points outside the stored data")
    yield torch_case("view-offset-huge", view(offset=2**61), "points outside")
    yield torch_case("view-shape-too-big", view(shape=[5, 6]), "points outside")
    yield torch_case("view-stride-too-big", view(stride=[100, 1]), "points outside")
    yield torch_case("view-empty-offset-past-end", view(shape=[0, 6], offset=25), "past the end")
    yield torch_case("view-negative-stride", view(stride=[-6, 1]), "integers >= 0")
    yield torch_case("view-negative-offset", view(offset=-1), "integers >= 0")
    yield torch_case("view-float-size", view(shape=[2.0, 6]), "integers >= 0")
    yield torch_case("view-bool-size", view(shape=[True, 6]), "integers >= 0")
    yield torch_case("view-huge-size", view(shape=[2**62, 1]), "integers >= 0")
    yield torch_case("view-rank-mismatch", view(stride=[6]), "equal length")
    yield torch_case("view-scalar-past-end", view(shape=[], stride=[], offset=24), "outside")
    yield torch_case(
        "view-too-many-elements", view(shape=[2**40, 2**40], stride=[0, 0], offset=0), "limit"
    )
    yield torch_case("view-rank-65", view(shape=[1] * 65, stride=[1] * 65), "equal length")
    yield torch_case("view-extra-key", view(storage="elsewhere"), "exactly 'shape'")
    yield torch_case("view-not-object", {**rows, "view": [2, 6]}, "exactly 'shape'")
    yield torch_case("tensor-missing", {**rows, "tensor": "nope"}, "not in the file")
    yield torch_case("tensor-not-string", {**rows, "tensor": ["encoder.weight"]}, "not in the")
    yield torch_case(
        "whole-itemsize-mismatch",
        {"k": "torch", "tensor": "encoder.weight", "dtype": "float64"},
        "without a 'view'",
    )
    yield torch_case("grad-on-integers", {**root["step"], "grad": True}, "cannot require")
    yield torch_case("grad-not-bool", {**rows, "grad": 1}, "true or false")
    yield torch_case("param-not-bool", {**rows, "param": "yes"}, "true or false")
    yield torch_case("unknown-key", {**rows, "code": "os.system"}, "unknown keys")


def cases(model: bytes, spare: bytes, base: bytes | None = None) -> list[Hostile]:
    """Every hostile file (``model``, ``spare``: from ``model_files``)."""
    base = base_file() if base is None else base
    found = [
        *_names(base),
        *_several(base),
        *_hiding_places(base),
        *_malformed(base),
        *_structure(base),
        *_memory(base),
        *_model(model, spare),
        *_torch(torch_file()),
    ]
    names = [case.name for case in found]
    assert len(names) == len(set(names)), "case names must be unique"
    return found
