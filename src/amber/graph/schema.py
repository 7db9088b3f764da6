"""Typed state: what each attribute of each trusted class may hold (security rules R1-R3).

A file can never choose what library code calls later. The decoder checks every value a
file gives an object (its state, its construction arguments, its items) against the
class's ``Schema`` *before* the object receives it:

- **Inert data** is always allowed: ``None``, numbers, strings, bytes, numpy arrays,
  scalars and dtypes, value classes (``numpy.float64``, ``int``: calling them only makes a
  number), value objects registered as data (dates, random generators, sparse matrices,
  tensors...), and lists, tuples, sets and dicts of those.
- Everything else must be declared by the attribute's ``Slot``: objects of listed classes
  or groups (``"estimator"``, ``"module"``...), functions (only where ``callables``; the
  audit admits only the pure-function tables and names the user trusts), other class
  objects (``types``), and ``functools.partial`` only as ``partial(<function>, *scalars)``
  without a keyword through which a function writes.
- A state key that names a method, property or other descriptor of the class is refused:
  instance state can never shadow behaviour (``predict``, ``forward``).

A class with no schema cannot be loaded (fail closed): adapters register one for every
class they trust, the caller's own classes get ``USER_DEFAULT`` unless they declare more.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amber.errors import FormatError


@dataclass(frozen=True)
class Slot:
    """What one attribute may hold beyond inert data.

    ``objects``: class names (``module:qualname``) and group names whose instances may
    appear; ``callables``: functions (and restricted partials) may appear; ``types``: class
    objects beyond value classes (names, or ``"any"``); ``strings``: when set, every string
    in the value must be one of these (method names, options).
    """

    objects: frozenset[str] = frozenset()
    callables: bool = False
    types: frozenset[str] = frozenset()
    strings: frozenset[str] | None = None
    # Functions amber trusts only where a slot names them (``SchemaRegistry.restrict``).
    functions: frozenset[str] = frozenset()

    def union(self, other: Slot) -> Slot:
        strings = (
            None if self.strings is None or other.strings is None else self.strings | other.strings
        )
        return Slot(
            self.objects | other.objects,
            self.callables or other.callables,
            self.types | other.types,
            strings,
            self.functions | other.functions,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.functions:
            out["functions"] = sorted(self.functions)
        if self.objects:
            out["objects"] = sorted(self.objects)
        if self.callables:
            out["callables"] = True
        if self.types:
            out["types"] = sorted(self.types)
        if self.strings is not None:
            out["strings"] = sorted(self.strings)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Slot:
        strings = data.get("strings")
        return cls(
            frozenset(data.get("objects", ())),
            bool(data.get("callables", False)),
            frozenset(data.get("types", ())),
            None if strings is None else frozenset(strings),
            frozenset(data.get("functions", ())),
        )


DATA = Slot()
ANY_OBJECT = Slot(objects=frozenset({"any"}))


@dataclass(frozen=True)
class Schema:
    """The attributes a class's instances may hold.

    ``attributes``: a slot per attribute name. ``default``: the slot of attributes not
    listed (None: an unlisted attribute is refused). ``whole``: the slot for state that is
    not a dict of attributes, for construction arguments and for items.
    ``check``: an extra check of the decoded state (raises ValueError).
    """

    attributes: Mapping[str, Slot] = field(default_factory=dict)
    default: Slot | None = None
    whole: Slot = DATA
    check: Callable[[Any], None] | None = None
    # Attributes never taken from a file: replaced, when present, by what the function
    # makes of the file's value (``n_jobs`` -> None, thread counts -> this machine's).
    reset: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)


# A class whose instances are transparent containers: what they hold is checked against
# the slot of the attribute that holds them (an OrderedDict of hooks is empty or refused
# where the owner says so).
CONTAINER_SLOT = Slot(objects=frozenset({"any-callable"}), callables=True, types=frozenset({"any"}))
USER_DEFAULT = Schema(default=ANY_OBJECT, whole=ANY_OBJECT)
# What ``amber.load`` returns may hold any trusted object and function: only the caller's
# own code uses the root (partials and class objects still follow the rules).
ROOT = CONTAINER_SLOT

# Keywords through which numpy and friends write into an argument.
WRITING_KEYWORDS = frozenset({"out", "where", "overwrite_input", "overwrite_a", "overwrite_b"})
# Keywords a partial may never bind: writing ones, and those that start worker processes
# or threads (scikit-learn's metrics and routines take n_jobs / n_threads).
REFUSED_KEYWORDS = WRITING_KEYWORDS | frozenset({"n_jobs", "n_threads", "backend"})


class SchemaRegistry:
    """Schemas by class name, family rules, groups, and the classes that are data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[str, Schema] = {}
        self._lazy: dict[str, Callable[[str], Schema]] = {}
        self._rules: list[Callable[[type], Schema | None]] = []
        self._groups: dict[str, Callable[[type], bool]] = {}
        self._data_names: set[str] = set()
        self._value_type_names: set[str] = set()
        self.restricted: set[str] = set()
        self._loaders: dict[str, list[Callable[[], None]]] = {}
        self._user: dict[str, Schema] = {}
        # Per class object: its dotted ``module:qualname`` and derived facts (cached).
        self._category: dict[type, str] = {}
        self._behaviour: dict[type, frozenset[str]] = {}

    # -- registration ---------------------------------------------------------------------

    def register(self, name: str, schema: Schema) -> None:
        """The schema of the class ``module:qualname``."""
        self._exact[name] = schema

    def register_lazy(self, names: Iterable[str], build: Callable[[str], Schema]) -> None:
        """Schemas of many classes, each built by ``build(name)`` the first time its class
        is checked (a table of hundreds of classes costs a load only the few it meets)."""
        for name in names:
            self._lazy[name] = build

    def register_many(self, names: Iterable[str], schema: Schema) -> None:
        for name in names:
            self._exact[name] = schema

    def add_rule(self, rule: Callable[[type, Schema | None], Schema | None]) -> None:
        """A schema for a family of classes (judged on the class, after the audit; the
        second argument is the schema the caller declared, when the caller trusts it)."""
        self._rules.append(rule)

    def add_group(self, group: str, member: Callable[[type], bool]) -> None:
        self._groups[group] = member

    def add_data(self, names: Iterable[str]) -> None:
        """Classes whose instances are inert values (dates, generators, sparse matrices)."""
        self._data_names.update(names)
        self._category.clear()

    def add_value_types(self, names: Iterable[str]) -> None:
        """Classes that may appear as class objects anywhere (calling one makes a value)."""
        self._value_type_names.update(names)
        self._category.clear()

    def restrict(self, names: Iterable[str]) -> None:
        """Functions that may sit only where a slot names them in ``functions`` (internal
        routines whose parameters reach compiled code, e.g. thread counts)."""
        self.restricted.update(names)

    def add_loader(self, package: str, loader: Callable[[], None]) -> None:
        """Fill schemas for ``package`` the first time one of its classes is checked."""
        self._loaders.setdefault(package, []).append(loader)

    def set_user(self, name: str, schema: Schema) -> None:
        self._user[name] = schema

    def ensure_loaded(self, package: str) -> None:
        if package in self._loaders:
            with self._lock:
                for loader in self._loaders.pop(package, []):
                    loader()

    # -- lookup ---------------------------------------------------------------------------

    def schema_for(self, name: str, cls: type, user: bool) -> Schema | None:
        """The schema of a resolved class; ``user``: the caller trusted it by name (its
        schema is the default for trusted classes, or what it declared when trusted)."""
        if RECORDING:
            RECORDING(name, None, ())  # the class is met, even with no state at all
            return RECORDING_SCHEMA
        self.ensure_loaded(name.split(".", 1)[0].split(":", 1)[0])
        found = self._exact.get(name)
        if found is None and name in self._lazy:
            with self._lock:
                if name not in self._exact:  # built once; a failed build is retried
                    self._exact[name] = self._lazy[name](name)
                    del self._lazy[name]
                found = self._exact[name]
        if found is not None:
            return found
        declared = self._user.get(name.replace(":", "."), USER_DEFAULT) if user else None
        for rule in self._rules:
            found = rule(cls, declared)
            if found is not None:
                return found
        return declared

    # -- categories of values -------------------------------------------------------------

    def category(self, cls: type) -> str:
        found = self._category.get(cls)
        if found is None:
            found = self._category[cls] = self._categorize(cls)
        return found

    def _categorize(self, cls: type) -> str:
        if cls in _SEQUENCES:
            return "seq"
        if cls is dict or cls in (OrderedDict, Counter, defaultdict):
            return "map"
        if cls is deque:
            return "seq"
        if cls is functools.partial:
            return "partial"
        if issubclass(cls, type):
            return "type"
        if cls in _FUNCTION_TYPES or cls.__name__ in _FUNCTION_TYPE_NAMES:
            return "function"
        np = sys.modules.get("numpy")
        if np is not None:
            if cls is np.ndarray:
                return "ndarray"
            if issubclass(cls, (np.generic, np.dtype)):
                return "data"
            if issubclass(cls, np.ufunc):
                return "function"
        torch = sys.modules.get("torch")
        if torch is not None and issubclass(cls, torch.Tensor):
            return "data"
        if _dotted(cls) in self._data_names:
            return "data"
        is_callable = any("__call__" in vars(klass) for klass in cls.__mro__)
        return "callable-object" if is_callable else "object"

    def value_type(self, cls: type) -> bool:
        return cls in _BUILTIN_VALUE_TYPES or _dotted(cls) in self._value_type_names

    def in_group(self, group: str, cls: type) -> bool:
        member = self._groups.get(group)
        return member is not None and member(cls)

    def behaviour(self, cls: type) -> frozenset[str]:
        """The names instance state may not set on ``cls``: its methods, properties and other
        descriptors (the first definition along the MRO decides). Empty for instances
        without a ``__dict__``, whose state never becomes attributes."""
        found = self._behaviour.get(cls)
        if found is None:
            names: dict[str, bool] = {}
            if cls.__dictoffset__:
                for klass in cls.__mro__:
                    for key, member in vars(klass).items():
                        if key not in names:
                            names[key] = callable(member) or hasattr(type(member), "__get__")
            found = self._behaviour[cls] = frozenset(k for k, v in names.items() if v)
        return found


_SEQUENCES = frozenset({list, tuple, set, frozenset})
_FUNCTION_TYPES = frozenset(
    {
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.BuiltinMethodType,
        types.MethodWrapperType,
        types.WrapperDescriptorType,
        types.MethodDescriptorType,
        types.ClassMethodDescriptorType,
    }
)
_FUNCTION_TYPE_NAMES = frozenset({"cython_function_or_method", "_ArrayFunctionDispatcher"})
_BUILTIN_VALUE_TYPES = frozenset({int, float, complex, bool, str, bytes, object})
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, slice, range})


def _ndarray_type() -> type | None:
    np = sys.modules.get("numpy")
    return None if np is None else np.ndarray


def _dotted(cls: type) -> str:
    return f"{getattr(cls, '__module__', '')}:{getattr(cls, '__qualname__', '')}"


SCHEMAS = SchemaRegistry()


class Refused(Exception):
    """A value the slot does not allow; the message names what and where."""


def check_value(value: Any, slot: Slot, where: str) -> None:
    """Raise FormatError unless ``value`` is inert data or declared by ``slot``."""
    try:
        _walk(value, slot, where, set())
    except Refused as exc:
        raise FormatError(f"object graph node at {exc}") from None


def _walk(value: Any, slot: Slot, where: str, seen: set[int]) -> None:
    cls = type(value)
    if slot.strings is not None and isinstance(value, (str, bytes, bytearray)):
        _closed_string(value, slot, where)  # also numpy.str_ and numpy.bytes_
        return
    if cls in _SCALARS:
        return
    category = SCHEMAS.category(cls)
    if category == "seq":
        if id(value) in seen:
            return
        seen.add(id(value))
        if _all_inert(value, slot):  # a list of 1,000 floats: one pass in C, no loop here
            return
        for i, item in enumerate(value):
            if not _inert(item, slot):  # the location is spelled only where it is needed
                _walk(item, slot, f"{where}[{i}]", seen)
        return
    if category == "map":
        if id(value) in seen:
            return
        seen.add(id(value))
        if cls is defaultdict:
            check_default_factory(value.default_factory, where)
        if _all_inert(value, slot) and _all_inert(value.values(), slot):
            return
        for key, item in value.items():
            if not _inert(key, slot):
                _walk(key, slot, f"{where} key", seen)
            if not _inert(item, slot):
                _walk(item, slot, f"{where}[{_short(key)}]", seen)
        return
    if category == "ndarray":
        if slot.strings is not None and value.dtype.kind in "US":
            for item in value.flat:
                _closed_string(item, slot, where)
        if value.dtype.hasobject:
            if id(value) in seen:
                return
            seen.add(id(value))
            for i, item in enumerate(value.flat):
                _walk(item, slot, f"{where}.flat[{i}]", seen)
        return
    if category == "data":
        return
    if category == "type":
        if SCHEMAS.value_type(value) or "any" in slot.types or _dotted(value) in slot.types:
            return
        raise Refused(
            f"{where}: the class {_label(value)} may not be placed here (a class object is "
            "callable: only value types such as numpy.float64 may appear as data)"
        )
    if category == "function":
        if not slot.callables:
            raise Refused(
                f"{where}: the function {_label(value)} may not be placed here; only "
                "attributes declared to hold a callable may hold one"
            )
        name = _function_name(value) if SCHEMAS.restricted else ""
        if name in SCHEMAS.restricted and name not in slot.functions:
            raise Refused(f"{where}: the function {_label(value)} may not be placed here")
        return
    if category == "partial":
        if not slot.callables:
            raise Refused(
                f"{where}: a functools.partial may not be placed here; only attributes "
                "declared to hold a callable may hold one"
            )
        check_partial(value, where)
        return
    # An instance of a trusted class: its own state was checked when it was built; here
    # only whether this attribute may hold an instance of that class.
    if _object_allowed(cls, category == "callable-object", slot):
        return
    kind = "callable object" if category == "callable-object" else "object"
    raise Refused(f"{where}: a {kind} of {_label(cls)} may not be placed here")


def _function_name(value: Any) -> str:
    return f"{getattr(value, '__module__', '')}:{getattr(value, '__qualname__', '')}"


def _inert(value: Any, slot: Slot) -> bool:
    """A value no slot can refuse: a number (or a string where strings are open), or an
    instance of a data class such as a tensor. Decided without a call into ``_walk``."""
    kind = type(value)
    if kind in _SCALARS:
        return kind is not str or slot.strings is None
    return SCHEMAS.category(kind) == "data"


def _all_inert(values: Any, slot: Slot) -> bool:
    """Whether every item is inert (``_inert``), judged once per distinct item type."""
    return all(
        (kind in _SCALARS and (kind is not str or slot.strings is None))
        or (kind not in _SCALARS and SCHEMAS.category(kind) == "data")
        for kind in set(map(type, values))
    )


def _closed_string(value: Any, slot: Slot, where: str) -> None:
    """Where an attribute's strings are a closed set (method names, options), only an exact
    ``str`` of the set is admitted: a numpy string or bytes would pass library checks too."""
    strings = slot.strings or frozenset()
    if type(value) is not str or value not in strings:
        raise Refused(
            f"{where}: the string {_short(str(value))} is not one this attribute may hold "
            f"({', '.join(sorted(strings)[:8]) or 'none'})"
        )


def _object_allowed(cls: type, is_callable: bool, slot: Slot) -> bool:
    if not slot.objects:
        return False
    if _dotted(cls) in slot.objects:
        return True
    for group in slot.objects:
        if group == "any-callable" or (group == "any" and not is_callable):
            return True
        if group.startswith("instance:"):  # a subclass of a class the table names
            base = _loaded_class(group[len("instance:") :])
            if base is not None and issubclass(cls, base):
                return True
            continue
        if SCHEMAS.in_group(group, cls) and (not is_callable or group in CALLABLE_GROUPS):
            return True
    return False


def _loaded_class(name: str) -> type | None:
    """The class ``module:qualname`` if its module is loaded (no instance of a class whose
    module is not loaded can exist), else None; never imports."""
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) else None


# Groups whose members may be callable objects (torch modules, kernels, scorers).
CALLABLE_GROUPS: set[str] = set()


def check_partial(value: Any, where: str) -> None:
    """``partial(<function>, *scalars, **scalars)``: no class, callable object or nested
    partial as its target, nothing mutable bound (an array bound positionally can be a
    ufunc's ``out``), no keyword through which a function writes."""
    check_partial_parts(value.func, value.args, value.keywords, where)


def check_partial_parts(target: Any, args: Any, keywords: Any, where: str) -> None:
    if SCHEMAS.category(type(target)) != "function":
        raise Refused(
            f"{where}: a functools.partial must wrap a function, not {_label(type(target))}"
        )
    if type(args) is not tuple or not (keywords is None or type(keywords) is dict):
        raise Refused(f"{where}: a functools.partial needs a tuple of arguments")
    for key in keywords or {}:
        if type(key) is not str:
            raise Refused(f"{where}: a functools.partial's keywords are strings")
    value = functools.partial(_nothing, *args, **(keywords or {}))
    for i, arg in enumerate(value.args):
        if not _bindable(arg):
            raise Refused(
                f"{where}: a functools.partial may bind only numbers, strings and value "
                f"types (argument {i} is a {_label(type(arg))})"
            )
    for key, arg in value.keywords.items():
        if key in REFUSED_KEYWORDS or not _bindable(arg):
            raise Refused(
                f"{where}: a functools.partial may not bind the keyword {key!r} "
                "(only numbers, strings and value types, never out=, where=, n_jobs= or n_threads=)"
            )


def _bindable(value: Any) -> bool:
    """What a partial may bind: numbers, strings, value types (``dtype=np.float64``) and
    numpy dtypes; nothing mutable, nothing callable that computes more than a value."""
    if type(value) in _SCALARS:
        return True
    if type(value) in (list, tuple):  # dtype=[np.float64]: no array, so never an out=
        return all(_bindable(item) for item in value)
    if isinstance(value, type):
        return SCHEMAS.value_type(value)
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.dtype)


def _nothing(*args: Any, **kwargs: Any) -> None:
    """The stand-in target while a partial's bound arguments are checked."""


def partial_state(state: Any) -> None:
    """The state of a ``functools.partial`` being built: (function, args, keywords, dict).
    Checked when it is built, so every partial that exists may appear where a callable
    may (its placement is checked again)."""
    if type(state) is not tuple or len(state) != 4 or state[3]:
        raise ValueError("a functools.partial's state is (function, args, keywords, None)")
    try:
        check_partial_parts(state[0], state[1], state[2], "functools.partial")
    except Refused as exc:
        raise ValueError(str(exc)) from None


def is_function(value: Any) -> bool:
    return SCHEMAS.category(type(value)) == "function"


def default_factory_allowed(factory: Any) -> bool:
    return any(factory is allowed for allowed in DEFAULT_FACTORIES)


# defaultdict factories a file may choose: each makes an empty value.
DEFAULT_FACTORIES = (None, int, float, list, dict, set, str, tuple, frozenset, bool, OrderedDict)


def check_default_factory(factory: Any, where: str) -> None:
    if not default_factory_allowed(factory):
        raise Refused(
            f"{where}: a defaultdict's default_factory must be one of int, float, list, dict, "
            f"set, str, tuple, frozenset, bool, OrderedDict or None, not {_label(factory)}"
        )


def _label(obj: Any) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(module, str) and isinstance(name, str):
        return f"{module}.{name}"
    return type(obj).__name__


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else ""
    if not text:
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


# The schema generator (tools/generate_sklearn_schemas.py) records what real objects hold
# instead of checking it: ``RECORDING`` receives (class name, attribute or None, value).
RECORDING: Callable[[str, str | None, Any], None] | None = None
RECORDING_SCHEMA = Schema(default=CONTAINER_SLOT, whole=CONTAINER_SLOT)


def check_state(
    name: str,
    cls: type,
    schema: Schema,
    state: Any,
    where: str,
    *,
    attributes: bool,
    reset: bool = True,
    state_check: bool = True,
) -> None:
    """Check decoded state against ``schema``. ``attributes``: ``state`` is a dict of
    attribute names (the usual pickle state; also the first part of a (dict, slots) pair).
    ``state_check``: run the schema's own check (false for arguments and items)."""
    if RECORDING is not None:
        if attributes:
            for key, value in state.items():
                RECORDING(name, key, value)
        else:
            RECORDING(name, None, state)
        return
    if attributes:
        _check_attributes(name, cls, schema, state, where)
    else:
        check_value(state, schema.whole, where)
    if state_check and schema.check is not None:
        try:
            schema.check(state)
        except (ValueError, TypeError) as exc:
            raise FormatError(
                f"object graph node at {where}: {name.replace(':', '.')} state refused: {exc}"
            ) from None
    if reset and attributes and schema.reset:
        for key, safe in schema.reset.items():
            if key in state:
                state[key] = safe(state[key])


def check_given(
    name: str, cls: type, schema: Schema, value: Any, where: str, *, part: str, reset: bool = True
) -> None:
    """Check what a file (or, when saving, the object) gives a class, by ``part``:
    ``"state"`` as pickle applies it (a dict of attributes, a (dict, slots) pair, or what
    ``__setstate__`` takes), ``"items"`` (construction arguments, list and dict items) or
    ``"adapter"`` (the state an amber constructor takes). The decoder and the encoder both
    call this, so saving refuses exactly what loading would."""
    if part != "state":
        check_state(
            name,
            cls,
            schema,
            value,
            where,
            attributes=False,
            reset=reset,
            state_check=part == "adapter",
        )
        return
    pieces = value if type(value) is tuple and len(value) == 2 else (value,)
    if any(isinstance(piece, dict) and type(piece) is not dict for piece in pieces):
        # A dict subclass would be applied as attributes without the attribute checks.
        raise FormatError(
            f"object graph node at {where}: the state of {name.replace(':', '.')} must be "
            "a plain dict"
        )
    if type(value) is dict:
        check_state(name, cls, schema, value, where, attributes=True, reset=reset)
    elif (
        type(value) is tuple
        and len(value) == 2
        and all(piece is None or type(piece) is dict for piece in value)
    ):
        for piece in value:
            if piece:
                check_state(name, cls, schema, piece, where, attributes=True, reset=reset)
    else:
        check_state(name, cls, schema, value, where, attributes=False, reset=reset)


# Key sets found to pass the key checks, by class and exact keys, with the schema they passed
# (a forest checks the same 25 keys 600 times per load). Only verdicts that the keys alone
# decide are kept (no special names, nothing shadowing a method): what a file's values
# hold never decides an entry, so no file can make another file's state skip a check.
_GOOD_KEYS: dict[tuple[type, tuple[Any, ...]], Schema] = {}
_GOOD_KEYS_MAX = 4096


def _check_attributes(name: str, cls: type, schema: Schema, state: dict, where: str) -> None:
    """The attribute checks, with set operations first (a forest checks some 600 states of
    25 attributes per load) and a value walked only when it is not a number or an array."""
    keys = state.keys()
    slots, default = schema.attributes, schema.default
    memo = (cls, tuple(keys))
    if _GOOD_KEYS.get(memo) is not schema:
        _check_keys(name, cls, schema, state, where)
        if (
            len(_GOOD_KEYS) < _GOOD_KEYS_MAX
            and not keys & SCHEMAS.behaviour(cls)
            and all(type(key) is str and key[:2] != "__" for key in keys)
        ):
            _GOOD_KEYS[memo] = schema
    ndarray = _ndarray_type()
    for key, value in state.items():
        kind = type(value)
        if kind in _FAST or (kind is ndarray and not value.dtype.hasobject):
            slot = slots.get(key, default)
            if slot is not None and slot.strings is None:
                continue
        check_value(value, slots.get(key, default), f"{where}.{key}")


def _check_keys(name: str, cls: type, schema: Schema, state: dict, where: str) -> None:
    """What the keys of a state dict may be: no special names, no method or property of the
    class (data under a method's name only for classes the caller trusts), no attribute
    outside the schema."""
    keys = state.keys()
    slots, default = schema.attributes, schema.default
    odd = special_keys(state)
    if odd:
        raise FormatError(f"object state may not set the special attribute {odd[0]!r}")
    shadowing = keys & SCHEMAS.behaviour(cls)
    if shadowing and default == ANY_OBJECT:
        # A class the caller trusts may keep data under a method's name (statsmodels caches
        # results that way); never a callable or an object, so no behaviour is planted.
        shadowing = {k for k in shadowing if not _inert_data(state[k])}
    if shadowing:
        raise FormatError(
            f"object graph node at {where}: the state of {name.replace(':', '.')} sets "
            f"{sorted(shadowing)[0]!r}, which is a method or property of the class; instance "
            "state may not replace behaviour"
        )
    if default is None:
        unknown = keys - slots.keys()
        if unknown:
            raise FormatError(
                f"object graph node at {where}: {name.replace(':', '.')} has no attribute "
                f"{sorted(unknown)[0]!r} in amber's state schema; the file was refused"
            )


def _inert_data(value: Any) -> bool:
    """Numbers, strings, arrays and containers of those: nothing that can be called."""
    if callable(value):
        return False
    try:
        _walk(value, DATA, "", set())
    except Refused:
        return False
    return True


def special_keys(state: dict) -> list[Any]:
    """The keys of an attribute dict that no file may set: non-strings and special names
    (``__class__``, ``__dict__``...). An instance docstring (statsmodels' result wrappers
    keep one) is allowed as text, nothing else."""
    return [
        k
        for k in state
        if type(k) is not str
        or (
            k[:2] == "__"
            and k[-2:] == "__"
            and not (k == "__doc__" and type(state[k]) in (str, type(None)))
        )
    ]


# Values that are data whatever the slot, unless the slot closes its strings.
_FAST = frozenset({type(None), bool, int, float, complex, str, bytes})


def observe(value: Any, seen: set[int] | None = None) -> Slot:
    """The narrowest slot that admits ``value`` (the schema generator records these)."""
    seen = set() if seen is None else seen
    cls = type(value)
    if cls in _SCALARS:
        return Slot(strings=frozenset({value} if cls is str else ()))
    category = SCHEMAS.category(cls)
    if category in ("seq", "map", "ndarray"):
        if id(value) in seen:
            return NOTHING
        seen.add(id(value))
        if category == "ndarray":
            items: Iterable[Any] = value.flat if value.dtype.hasobject else ()
        elif category == "map":
            items = [v for pair in value.items() for v in pair]
        else:
            items = value
        out = NOTHING
        for item in items:
            out = out.union(observe(item, seen))
        return out
    if category == "data":
        return NOTHING
    if category == "type":
        if SCHEMAS.value_type(value):
            return NOTHING
        return Slot(types=frozenset({_dotted(value)}), strings=frozenset())
    if category in ("function", "partial"):
        return Slot(callables=True, strings=frozenset())
    return Slot(objects=frozenset({_dotted(cls)}), strings=frozenset())


# What observing inert data without strings gives (the neutral element of ``union``).
NOTHING = Slot(strings=frozenset())
