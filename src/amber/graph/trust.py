"""The trust allowlist and the audit that runs before anything is imported.

A name in a file is trusted when one of these says so:

1. an exact entry of a library table (adapters register them; builtins, numpy, scipy...),
2. a package rule (scikit-learn's classes: see ``PackageRule``),
3. the caller, through ``amber.load(..., trusted=[...])`` or ``amber.trust(...)``.

Loading audits in two steps. First every name is checked *without importing anything*; if
any fails, one UntrustedTypeError lists them all. Then the names are resolved: only modules
that passed the first step are imported, and each object found must be exactly the named
one and pass its rule's check of the object itself.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any, Literal

from amber.errors import UntrustedTypeError
from amber.gcpause import gc_resumed
from amber.graph.names import QualName, user_name
from amber.graph.schema import ANY_OBJECT, SCHEMAS, Schema, Slot
from amber.stackroom import with_room

Kind = Literal["type", "function"]


@dataclass
class PackageRule:
    """Trust names of an installed package by their shape, then by what they are.

    Before import: the module must be a file inside the package (found on disk, not
    imported), outside ``denied`` sub-modules and test packages. For classes the name must
    be a plain CapWords identifier; for functions it must be one of ``functions``.
    After import: the object must be exactly the named one and ``accept(obj)`` true.
    """

    package: str
    accept: Callable[[Any], bool]
    kind: Kind = "type"
    denied: tuple[str, ...] = ()
    functions: frozenset[str] = frozenset()
    # When set, only modules inside these (e.g. torch.nn.modules) qualify.
    within: tuple[str, ...] = ()
    _root: str | None = field(default=None, repr=False)

    def _package_dir(self) -> str | None:
        if self._root is None:
            spec = importlib.util.find_spec(self.package)  # top level: imports nothing
            locations = list(spec.submodule_search_locations or []) if spec else []
            self._root = locations[0] if locations else ""
        return self._root or None

    def allows_name(self, name: QualName, kind: Kind) -> bool:
        if kind != self.kind:
            return False
        parts = name.module.split(".")
        if parts[0] != self.package or any(p.startswith("__") or p == "tests" for p in parts):
            return False
        if any(_inside(name.module, d) for d in self.denied):
            return False
        if self.within and not any(_inside(name.module, w) for w in self.within):
            return False
        if kind == "function":
            if name.qualname not in self.functions:
                return False
        elif "." in name.qualname or not _is_class_name(name.qualname):
            return False
        root = self._package_dir()
        return root is not None and _module_file_exists(root, parts[1:])


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_class_name(text: str) -> bool:
    stripped = text.lstrip("_")
    return bool(stripped) and stripped[0].isupper() and "__" not in text


def _module_file_exists(root: str, parts: list[str]) -> bool:
    path = os.path.join(root, *parts)
    if os.path.isfile(os.path.join(path, "__init__.py")):
        return True
    if os.path.isfile(path + ".py"):
        return True
    return any(os.path.isfile(path + suffix) for suffix in EXTENSION_SUFFIXES)


class Registry:
    """Names trusted by the library (exact tables, package rules) and by the user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[QualName, Callable[[Any], bool] | None] = {}
        self._functions: set[QualName] = set()
        self._rules: list[PackageRule] = []
        self._user: set[str] = set()
        self._loaders: dict[tuple[str, Kind], list[Callable[[Registry], None]]] = {}

    # -- registration (adapters at first use, users any time) --------------------------------

    def add_types(self, names: Iterable[str]) -> None:
        for name in names:
            self._types[QualName.parse(name)] = None

    def add_functions(self, names: Iterable[str]) -> None:
        self._functions.update(QualName.parse(n) for n in names)

    def add_rule(self, rule: PackageRule) -> None:
        self._rules.append(rule)

    def add_loader(self, package: str, kind: Kind, loader: Callable[[Registry], None]) -> None:
        """Register a table filler for names of ``kind`` in ``package``, run once, the first
        time such a name is audited (so auditing a numpy name never imports scipy)."""
        self._loaders.setdefault((package, kind), []).append(loader)

    def trust_user(self, items: Iterable[Any]) -> None:
        with self._lock:
            for item in items:
                self._user |= user_name(item)

    def by_user(self, name: QualName, extra: frozenset[str] = frozenset()) -> bool:
        """Did the caller trust ``name`` (``trusted=`` or ``amber.trust``)?"""
        return name.dotted in extra or name.dotted in self._user

    def _ensure_loaded(self, package: str, kind: Kind) -> None:
        with self._lock:
            loaders = self._loaders.pop((package, kind), [])
            if not loaders:
                return
            with gc_resumed():  # loaders import a library's tables (amber.gcpause)
                for loader in loaders:
                    with_room(loader, self)  # amber.stackroom

    # -- audit -----------------------------------------------------------------------------

    def allows(self, name: QualName, kind: Kind, extra: frozenset[str] = frozenset()) -> bool:
        """Step 1: is ``name`` trusted, judged from the name alone? Nothing the file names is
        imported; a loader may import the library's own table source (e.g. numpy)."""
        self._ensure_loaded(name.top_package, kind)
        if name.dotted in extra or name.dotted in self._user:
            return True
        if kind == "function" and name in self._functions:
            return True
        if kind == "type" and name in self._types:
            return True
        return any(rule.allows_name(name, kind) for rule in self._rules)

    def resolve(self, name: QualName, kind: Kind, extra: frozenset[str] = frozenset()) -> Any:
        """Step 2: import and return the object; only for names that passed ``allows``.

        The object must be of the kind the file uses it as, even when the user trusts the
        name: a trusted function must never be called as a class by an ``object`` node.
        """
        obj = name.resolve()
        if kind == "function" and (not callable(obj) or isinstance(obj, type)):
            raise LookupError(f"{name.dotted} is used as a function but is not one")
        if kind == "type" and not isinstance(obj, type):
            raise LookupError(f"{name.dotted} is used as a class but is not one")
        if name.dotted in extra or name.dotted in self._user:
            return obj
        if (kind == "function" and name in self._functions) or (
            kind == "type" and name in self._types
        ):
            return obj
        for rule in self._rules:
            if rule.allows_name(name, kind) and rule.accept(obj):
                return obj
        raise LookupError(f"{name.dotted} is not a {kind} amber trusts by default")


REGISTRY = Registry()


def trust(*items: Any, callables: Iterable[str] = ()) -> Any:
    """Trust classes or functions (objects or dotted names) for every later load.

    Usable as a decorator on a class or function. Trust means: amber may import and
    construct it from data in a file. Trust only code you wrote or reviewed.

    A trusted class's instances may hold data, arrays and objects of trusted classes;
    ``callables`` names the attributes that may also hold a function (a pure one from
    amber's tables, or one you trust), e.g. ``amber.trust(MyModel, callables=["activation"])``.
    """
    callables = [callables] if isinstance(callables, str) else list(callables)
    if not items:
        return lambda item: trust(item, callables=callables)
    REGISTRY.trust_user(items)
    if callables:
        slot = Slot(objects=frozenset({"any"}), callables=True)
        schema = Schema(
            attributes=dict.fromkeys(callables, slot), default=ANY_OBJECT, whole=ANY_OBJECT
        )
        for item in items:
            for name in user_name(item):
                SCHEMAS.set_user(name, schema)
    return items[0] if len(items) == 1 else None


def trusted_set(trusted: Iterable[Any] | None) -> frozenset[str]:
    """Normalize a ``trusted=`` argument to dotted names."""
    out: set[str] = set()
    for item in trusted or ():
        out |= user_name(item)
    return frozenset(out)


def untrusted_message(names: list[tuple[Kind, QualName]]) -> str:
    dotted = sorted({n.dotted for _, n in names})
    in_scripts = sorted({n.qualname for _, n in names if n.module == "__main__"})
    missing = sorted(
        {
            n.top_package
            for _, n in names
            if n.module != "__main__" and not _installed(n.top_package)
        }
    )
    note = (
        f" ({', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here)"
        if missing
        else ""
    )
    message = (
        f"loading would import untrusted {'names' if len(dotted) > 1 else 'name'}: "
        f"{', '.join(dotted)}{note}; nothing was imported. If you wrote or reviewed this "
        f"code, trust it with amber.load(path, trusted={dotted!r}) (the same list is "
        "amber.inspect(path).untrusted_types) or amber.trust(<the class or function>)"
    )
    if in_scripts:
        message += ". " + script_advice(in_scripts)
    return message


def script_advice(qualnames: list[str]) -> str:
    """What to do about classes that were defined in a script (``__main__``) when saved."""
    plural = len(qualnames) > 1
    listed = ", ".join(qualnames)
    return (
        f"{listed} {'were' if plural else 'was'} defined in a script (__main__) when the file "
        "was saved, so only a program defining the same code can load it: define "
        f"{'them' if plural else 'it'} in your script and pass trusted=[{listed}], or better, "
        "move the code into a module, import it from there and save again; "
        "amber.open(path) reads the tensors without any class"
    )


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def audit(
    names: Iterable[tuple[Kind, QualName]],
    trusted: frozenset[str],
    before_import: Callable[[], None] | None = None,
) -> dict:
    """Check every name first, then resolve all of them; raise one error listing failures.

    ``before_import`` runs between the two steps: the last chance to refuse a file before
    the modules of its trusted names are imported.
    """
    unique = sorted(set(names), key=lambda item: (item[1], item[0]))
    refused = [item for item in unique if not REGISTRY.allows(item[1], item[0], trusted)]
    if refused:
        raise UntrustedTypeError(untrusted_message(refused))
    if before_import is not None:
        before_import()
    resolved: dict[tuple[Kind, QualName], Any] = {}
    failures: list[str] = []
    for kind, name in unique:
        try:
            resolved[kind, name] = REGISTRY.resolve(name, kind, trusted)
        except LookupError as exc:
            if name.module == "__main__":
                failures.append(
                    f"this program has no {name.qualname}; " + script_advice([name.qualname])
                )
            else:
                failures.append(str(exc))
    if failures:
        raise UntrustedTypeError(
            "loading refused after checking the objects named: " + "; ".join(failures)
        )
    return resolved
