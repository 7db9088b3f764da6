"""Python object -> inert JSON nodes plus a list of numpy tensors.

Objects of other classes are described by their class name (audited on load) and their
state, following the pickle protocol (``__reduce_ex__``) but only in the few shapes amber
can replay without running code chosen by a file: ``cls.__new__(cls, *args)``, a call of a
class, a Cython class's own unpickler, or a constructor registered by an adapter.
"""

from __future__ import annotations

import base64
import copyreg
import math
import pathlib
import sys
import types
from typing import Any

from amber.container import dtypes
from amber.errors import FormatError, SerializationError
from amber.graph import nodes as k
from amber.graph import unsaveable
from amber.graph.constructors import CONSTRUCTORS, NEW_MODE_MODULES, SAVED_AS
from amber.graph.names import QualName
from amber.graph.schema import ROOT, SCHEMAS, check_given, check_value
from amber.graph.torch_nodes import TorchTensors

# Python nesting allowed. A level costs two JSON levels (three for a dict with non-string
# keys) and the manifest allows 256.
MAX_DEPTH = 80

_FUNCTION_TYPES: tuple[type, ...] = (
    types.FunctionType,
    types.BuiltinFunctionType,
)
# Function types of compiled libraries, matched by name so their modules are not imported:
# Cython functions, and numpy's wrappers of Python functions (np.mean, np.clip...).
_FUNCTION_TYPE_NAMES = frozenset({"cython_function_or_method", "_ArrayFunctionDispatcher"})


# Packages whose schemas amber owns (the hint to declare callables is for the user's own).
_LIBRARY_PACKAGES = frozenset({"sklearn", "torch", "numpy", "scipy", "xgboost", "lightgbm"})


_PURE_PATHS: dict[type, type] = {
    pathlib.PosixPath: pathlib.PurePosixPath,
    pathlib.WindowsPath: pathlib.PureWindowsPath,
}


class _Path:
    """The location inside the saved object, for error messages and tensor names."""

    __slots__ = ("attr", "parent", "part")

    def __init__(self, parent: _Path | None, part: Any, *, attr: bool = False) -> None:
        self.parent = parent
        self.part = part
        self.attr = attr

    def nodes(self) -> list[_Path]:
        out, node = [], self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def display(self) -> str:
        return "obj" + "".join(f".{p.part}" if p.attr else f"[{p.part!r}]" for p in self.nodes())

    def tensor_name(self) -> str:
        return ".".join(str(p.part) for p in self.nodes()) or "tensor"


class Encoder:
    """Encodes one object. ``tensors`` lists (name, array) pairs in first-seen order;
    ``names`` the (kind, qualified name) of every class and function referenced."""

    def __init__(self) -> None:
        self.tensors: list[tuple[str, Any]] = []
        self.names: set[tuple[str, QualName]] = set()
        self._tensor_names: set[str] = set()
        # id(obj) -> (node, obj); obj is kept so its id cannot be reused while encoding.
        self._memo: dict[int, tuple[dict[str, Any], Any]] = {}
        # Objects that exist only once their children are built (tuples, frozensets,
        # objects made by calling a class): a reference back to them would be a cycle
        # the loader cannot rebuild.
        self._built_after_children: set[int] = set()
        self._dtypes: dict[str, dict[str, Any]] = {}  # descriptor -> first dtype node
        self._next_id = 0
        self._torch: TorchTensors | None = None

    def encode(self, obj: Any) -> Any:
        return self.encode_all([obj])[0]

    def encode_all(self, objs: list[Any]) -> list[Any]:
        """Encode several roots that may share objects and tensors; a later root refers to
        what an earlier one declared (decode them in the same order)."""
        roots = [self._encode(obj, _Path(None, None), 0) for obj in objs]
        for obj in objs:  # what the loader checks last: partials, factories at the root
            try:
                check_value(obj, ROOT, "obj")
            except FormatError as exc:
                message = str(exc).replace("object graph node at ", "loading would refuse ", 1)
                raise SerializationError(f"cannot save: {message}") from None
        if self._torch is not None:  # what shares storage is known only at the end
            self._torch.finish(self.tensors)
        return roots

    # -- helpers ---------------------------------------------------------------------------

    def _fail(self, path: _Path, message: str) -> SerializationError:
        return SerializationError(f"cannot save {path.display()}: {message}")

    def _name(self, obj: Any, path: _Path, kind: str = "type") -> QualName:
        try:
            name = QualName.of(obj)
        except SerializationError as exc:
            raise self._fail(path, str(exc)) from None
        self.names.add((kind, name))
        return name

    def _tensor_name(self, path: _Path) -> str:
        base = path.tensor_name()
        if len(base.encode("utf-8", "surrogatepass")) > 512:
            base = f"t{len(self.tensors)}"
        name, n = base, 1
        while name in self._tensor_names:
            n += 1
            name = f"{base}~{n}"
        self._tensor_names.add(name)
        return name

    def _add_tensor(self, array: Any, path: _Path) -> str:
        name = self._tensor_name(path)
        self.tensors.append((name, array))
        return name

    def _reserve_tensor(self, path: _Path) -> tuple[str, int]:
        """A name and a slot in ``tensors``, filled once the encoding is complete."""
        name = self._tensor_name(path)
        self.tensors.append((name, None))
        return name, len(self.tensors) - 1

    def _shared(self, obj: Any, path: _Path) -> dict[str, Any] | None:
        """A ref node when ``obj`` was already encoded, else None."""
        entry = self._memo.get(id(obj))
        if entry is None:
            return None
        node = entry[0]
        if id(obj) in self._built_after_children:
            raise self._fail(
                path,
                f"a {type(obj).__name__} contains itself; a cycle through an immutable "
                "object (or one built by calling its class) cannot be saved",
            )
        if "id" not in node:
            node["id"] = self._next_id
            self._next_id += 1
        return {"k": k.REF, "id": node["id"]}

    def _remember(self, obj: Any, node: dict[str, Any]) -> None:
        self._memo[id(obj)] = (node, obj)

    def _children(self, items: Any, path: _Path, depth: int) -> list[Any]:
        return [self._encode(v, _Path(path, i), depth + 1) for i, v in enumerate(items)]

    # -- dispatch --------------------------------------------------------------------------

    def _encode(self, obj: Any, path: _Path, depth: int) -> Any:
        if obj is None or obj is True or obj is False:
            return obj
        cls = type(obj)
        if cls is str:
            try:
                obj.encode("utf-8")
            except UnicodeEncodeError:
                raise self._fail(path, "string holds lone surrogates, not valid Unicode") from None
            return obj
        if cls is int:
            if k.INT64_MIN <= obj <= k.INT64_MAX:
                return obj
            try:
                return {"k": k.INT, "v": str(obj)}
            except ValueError as exc:
                raise self._fail(path, f"integer too large ({exc})") from None
        if cls is float:
            return obj if math.isfinite(obj) else {"k": k.FLOAT, "v": repr(obj)}
        if cls is complex:
            return {
                "k": k.COMPLEX,
                "v": [self._encode(obj.real, path, depth), self._encode(obj.imag, path, depth)],
            }
        if depth >= MAX_DEPTH:
            raise self._fail(path, f"nesting deeper than {MAX_DEPTH} levels")
        ref = self._shared(obj, path)
        if ref is not None:
            return ref
        handler = (
            _HANDLERS.get(cls)
            or _numpy_handler(obj)
            or _torch_handler(obj)
            or _reference_handler(obj)
        )
        if handler is None:
            handler = Encoder._object
        return handler(self, obj, path, depth)

    # -- builtin containers ----------------------------------------------------------------

    def _sequence(self, obj: Any, path: _Path, depth: int) -> dict:
        kind = _SEQUENCE_KINDS[type(obj)]
        node: dict[str, Any] = {"k": kind}
        self._remember(obj, node)
        if kind in (k.LIST, k.TUPLE) and len(obj) >= k.SCALARS_MIN:
            array = _scalar_run(obj)
            if array is not None:  # e.g. a loss curve of np.float64: one tensor, not N nodes
                node.update({"k": k.SCALARS, "of": kind, "tensor": self._add_tensor(array, path)})
                return node
        immutable = kind in (k.TUPLE, k.FROZENSET)
        if immutable:
            self._built_after_children.add(id(obj))
        try:
            node["v"] = self._children(obj, path, depth)
        finally:
            self._built_after_children.discard(id(obj))
        return node

    def _dict(self, obj: dict, path: _Path, depth: int) -> dict:
        node: dict[str, Any] = {"k": k.DICT}
        self._remember(obj, node)
        node.update(self._dict_body(obj, path, depth, attr=False))
        return node

    def _dict_body(self, obj: dict, path: _Path, depth: int, *, attr: bool) -> dict[str, Any]:
        if all(type(key) is str for key in obj):
            for key in obj:  # surrogates in keys cannot be JSON-encoded as UTF-8
                self._encode(key, _Path(path, key), depth + 1)
            return {
                "v": {
                    key: self._encode(value, _Path(path, key, attr=attr), depth + 1)
                    for key, value in obj.items()
                }
            }
        return {
            "items": [
                [
                    self._encode(key, _Path(path, key), depth + 1),
                    self._encode(value, _Path(path, key), depth + 1),
                ]
                for key, value in obj.items()
            ]
        }

    def _bytes(self, obj: bytes | bytearray, path: _Path, depth: int) -> dict:
        kind = k.BYTES if type(obj) is bytes else k.BYTEARRAY
        node: dict[str, Any] = {"k": kind}
        self._remember(obj, node)
        if len(obj) <= k.INLINE_BYTES_MAX:
            node["b64"] = base64.b64encode(obj).decode("ascii")
        else:
            import numpy as np

            node["tensor"] = self._add_tensor(np.frombuffer(obj, dtype=np.uint8), path)
        return node

    # -- numpy -----------------------------------------------------------------------------

    def _ndarray(self, obj: Any, path: _Path, depth: int) -> dict:
        import numpy as np

        node: dict[str, Any] = {"k": k.NDARRAY}
        self._remember(obj, node)
        table_name = dtypes.from_numpy(obj.dtype)
        if table_name is not None and obj.size == 0:
            # No payload: an empty array is described inline, without a tensor entry.
            node.update({"dtype": table_name, "shape": list(obj.shape)})
        elif table_name is not None:
            node["tensor"] = self._add_tensor(obj, path)
        elif obj.dtype.hasobject:
            if obj.dtype != np.dtype(object):
                raise self._fail(
                    path, f"structured arrays holding objects ({obj.dtype}) are not supported"
                )
            node["k"] = k.OBJARRAY
            node["shape"] = list(obj.shape)
            node["v"] = self._children(obj.reshape(-1).tolist(), path, depth)
        else:
            # Strings, datetimes, structured records: raw bytes plus the exact dtype.
            # A dtype node (shared by reference): a forest's record arrays name one dtype.
            node["dtype"] = self._dtype(obj.dtype, path, depth)
            node["shape"] = list(obj.shape)
            raw = np.ascontiguousarray(obj).reshape(-1).view(np.uint8)
            node["tensor"] = self._add_tensor(raw, path)
        return node

    def _dtype_descr(self, dtype: Any, path: _Path) -> Any:
        if dtype.fields is None:
            if dtype.subdtype is not None:
                raise self._fail(path, f"sub-array dtype {dtype} is not supported")
            return dtype.str
        if dtype.hasobject:
            raise self._fail(path, f"structured dtype {dtype} holding objects is not supported")
        names = list(dtype.names)
        return {
            "names": names,
            "formats": [self._dtype_descr(dtype.fields[n][0], path) for n in names],
            "offsets": [dtype.fields[n][1] for n in names],
            "itemsize": dtype.itemsize,
        }

    def _dtype(self, obj: Any, path: _Path, depth: int) -> dict:
        descr = self._dtype_descr(obj, path)
        key = descr if isinstance(descr, str) else repr(descr)
        first = self._dtypes.get(key)
        if first is None:
            node = self._dtypes[key] = {"k": k.DTYPE, "v": descr}
            return node
        if "id" not in first:
            first["id"] = self._next_id
            self._next_id += 1
        return {"k": k.REF, "id": first["id"]}

    def _npscalar(self, obj: Any, path: _Path, depth: int) -> dict:
        import numpy as np

        name = dtypes.from_numpy(obj.dtype)
        if name is None:
            # np.str_, np.datetime64...: a 0-d array of the same dtype, then its item.
            return {"k": k.NPSCALAR, "array": self._ndarray(np.asarray(obj), path, depth)}
        raw = np.asarray(obj).astype(obj.dtype.newbyteorder("<")).tobytes()
        return {"k": k.NPSCALAR, "dtype": name, "b64": base64.b64encode(raw).decode("ascii")}

    # -- torch -----------------------------------------------------------------------------

    def _torch_tensor(self, obj: Any, path: _Path, depth: int) -> dict:
        if self._torch is None:
            self._torch = TorchTensors(self._reserve_tensor)
        node, name = self._torch.encode(obj, path, lambda message: self._fail(path, message))
        self.names.add(("type", name))
        self._remember(obj, node)
        return node

    # -- references to classes and functions -----------------------------------------------

    def _type(self, obj: type, path: _Path, depth: int) -> dict:
        return {"k": k.TYPE, "name": str(self._name(obj, path))}

    def _function(self, obj: Any, path: _Path, depth: int) -> dict:
        if isinstance(obj, types.BuiltinMethodType) and not isinstance(
            getattr(obj, "__self__", None), types.ModuleType
        ):
            owner = type(obj.__self__).__name__
            raise self._fail(
                path,
                f"the bound method {obj.__name__} of a {owner} object is code, not data; "
                "save its owner",
            )
        return {"k": k.FUNC, "name": str(self._name(obj, path, "function"))}

    # -- other objects ---------------------------------------------------------------------

    def _object(self, obj: Any, path: _Path, depth: int) -> dict:
        cls = type(obj)
        unwrap = SAVED_AS.get(f"{cls.__module__}:{cls.__qualname__}")
        if unwrap is not None:  # before anything is remembered for the wrapper
            return self._encode(unwrap(obj), path, depth + 1)
        resource = unsaveable.advice(obj)
        if resource is not None:
            raise self._fail(path, f"{_label(cls)} cannot be saved: {resource}")
        name = self._name(cls, path)
        node: dict[str, Any] = {"k": k.OBJECT, "type": str(name)}
        self._remember(obj, node)
        constructor = CONSTRUCTORS.get(str(name))
        if constructor is not None:
            node["mode"] = k.MODE_ADAPTER
            self._built_after_children.add(id(obj))  # built from its state: no cycle back
            try:
                adapter_state = constructor.encode(obj)
                self._check_schema(cls, adapter_state, path, part="adapter")
                node["state"] = self._encode(adapter_state, path, depth + 1)
            finally:
                self._built_after_children.discard(id(obj))
            return node
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception as exc:
            raise self._fail(
                path, f"{name.dotted} cannot be saved: it refuses to be serialized ({exc})"
            ) from None
        if isinstance(reduced, str) or not isinstance(reduced, tuple) or len(reduced) < 2:
            raise self._fail(path, f"{name.dotted} is a global object amber cannot save")
        func, args, state, listitems, dictitems = (*reduced, None, None, None)[:5]
        mode, node_type, args = self._construction(cls, func, args, path)
        if node_type is not cls:
            node["type"] = str(self._name(node_type, path))
        node["mode"] = mode
        self._built_after_children.add(id(obj))
        try:
            if args:  # "args" is optional: most objects are rebuilt with none
                self._check_schema(node_type, tuple(args), path, part="items")
                node["args"] = self._children(args, path, depth)
        finally:
            self._built_after_children.discard(id(obj))
        self._object_body(obj, node, node_type, (listitems, dictitems, state), path, depth)
        return node

    def _object_body(
        self, obj: Any, node: dict, cls: type, parts: tuple, path: _Path, depth: int
    ) -> None:
        """Items, then state: the order the loader rebuilds them in (as pickle does), so the
        first occurrence of a shared object is the full node."""
        listitems, dictitems, state = parts
        if listitems is not None:
            items = list(listitems)
            self._check_schema(cls, items, path, part="items")
            node["listitems"] = self._children(items, path, depth)
        if dictitems is not None:
            pairs = list(dictitems)
            self._check_schema(cls, pairs, path, part="items")
            node["dictitems"] = [
                [
                    self._encode(key, _Path(path, key), depth + 1),
                    self._encode(value, _Path(path, key), depth + 1),
                ]
                for key, value in pairs
            ]
        if state is not None:
            self._check_schema(cls, state, path)
            if type(state) is dict and all(type(key) is str for key in state):
                node["state"] = {"k": k.DICT, **self._dict_body(state, path, depth, attr=True)}
            else:
                node["state"] = self._encode(state, path, depth + 1)

    def _check_schema(self, cls: type, value: Any, path: _Path, *, part: str = "state") -> None:
        """Refuse now what loading would refuse (``schema.check_given``); a class amber
        has no schema for is judged by the default for trusted classes."""
        name = QualName.of(cls, check=False)
        schema = SCHEMAS.schema_for(str(name), cls, user=True)
        if schema is None:
            return
        try:
            check_given(str(name), cls, schema, value, path.display(), part=part, reset=False)
        except FormatError as exc:
            message = str(exc).replace("object graph node at ", "loading would refuse ", 1)
            if "<locals>" in message:
                # A class or function made inside a function: no file can name it, and no
                # trust declaration helps. A model's weights still save (transformers 5.25
                # keeps such objects in its attention layers).
                hint = (
                    "; it is defined inside a function, so no file can name it: save the "
                    "weights instead, amber.save(model.state_dict(), path), and load them "
                    "with amber.load(path, into=model)"
                )
            elif name.top_package in _LIBRARY_PACKAGES:
                hint = ""
            else:
                hint = (
                    "; if an attribute must hold a function, declare it with "
                    f"amber.trust({name.qualname}, callables=[...])"
                )
            raise self._fail(path, f"{message}{hint}") from None

    def _construction(
        self, cls: type, func: Any, args: Any, path: _Path
    ) -> tuple[str, type, tuple]:
        """Map a __reduce_ex__ result onto one of the construction modes amber replays."""
        args = tuple(args or ())
        if func is copyreg.__newobj__ and args and args[0] is cls:
            return k.MODE_NEW, cls, args[1:]
        if (
            func is copyreg._reconstructor  # type: ignore[attr-defined]
            and len(args) == 3
            and args[0] is cls
            and args[1] is object
            and args[2] is None
        ):
            return k.MODE_NEW, cls, ()
        if isinstance(func, type):
            # A concrete path can read, write and delete files: saved as the pure path it
            # names (R3), which compares and joins the same but touches nothing.
            return k.MODE_CALL, _PURE_PATHS.get(func, func), args
        if (
            getattr(func, "__name__", "") == "newObj"
            and getattr(func, "__module__", None) in NEW_MODE_MODULES
            and args == (cls,)
        ):
            return k.MODE_NEW, cls, ()
        if (
            getattr(func, "__name__", "") == f"__pyx_unpickle_{cls.__name__}"
            and getattr(func, "__module__", None) == cls.__module__
            and len(args) == 3
            and args[0] is cls
        ):
            return k.MODE_CYTHON, cls, args[1:]
        raise self._fail(
            path,
            f"{QualName.of(cls).dotted} is saved by pickle through a function of its own "
            f"({_label(func)}), which amber does not run; amber has no adapter for this type "
            "yet: save the data it holds (arrays, numbers, strings) instead, or ask for an "
            "adapter",
        )


def _label(obj: Any) -> str:
    """A readable name for a class or function, without its memory address."""
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(name, str):
        return type(obj).__name__
    return f"{module}.{name}" if module and module != "builtins" else name


def _scalar_run(items: list | tuple) -> Any:
    """The items as one array when all are numpy scalars of one numeric dtype, else None."""
    np = sys.modules.get("numpy")
    first = type(items[0])
    if np is None or not issubclass(first, np.generic) or first.__module__ != "numpy":
        return None
    if any(type(item) is not first for item in items):
        return None
    array = np.array(items)
    if dtypes.from_numpy(array.dtype) is None or type(array[0]) is not first:
        return None
    return array


def _numpy_handler(obj: Any) -> Any:
    """Numpy types are dispatched without importing numpy unless it is already loaded."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    cls = type(obj)
    if cls is np.ndarray or cls is np.memmap:
        return Encoder._ndarray
    if isinstance(obj, np.generic) and cls.__module__ in ("numpy", "ml_dtypes"):
        return Encoder._npscalar
    if isinstance(obj, np.dtype):
        return Encoder._dtype
    if isinstance(obj, np.ufunc):
        return Encoder._function
    return None


def _torch_handler(obj: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return Encoder._torch_tensor
    return None


def _reference_handler(obj: Any) -> Any:
    if isinstance(obj, type):
        return Encoder._type
    if isinstance(obj, _FUNCTION_TYPES) or type(obj).__name__ in _FUNCTION_TYPE_NAMES:
        return Encoder._function
    if isinstance(obj, (types.MethodType, types.ModuleType)):
        return _unsupported
    return None


def _unsupported(encoder: Encoder, obj: Any, path: _Path, depth: int) -> Any:
    if isinstance(obj, types.MethodType):
        owner = type(obj.__self__).__name__
        reason = f"a bound method of a {owner} object is code, not data; save its owner"
    else:
        reason = unsaveable.advice(obj) or "it is not data"
    raise encoder._fail(path, f"{_label(type(obj))} cannot be saved: {reason}")


_SEQUENCE_KINDS: dict[type, str] = {
    list: k.LIST,
    tuple: k.TUPLE,
    set: k.SET,
    frozenset: k.FROZENSET,
}

_HANDLERS: dict[type, Any] = {
    list: Encoder._sequence,
    tuple: Encoder._sequence,
    set: Encoder._sequence,
    frozenset: Encoder._sequence,
    dict: Encoder._dict,
    bytes: Encoder._bytes,
    bytearray: Encoder._bytes,
}
