"""Inert pickle values -> amber's graph nodes (``graph/nodes.py``) plus tensors.

Each construction a pickle records is matched against the shapes amber replays: a class
created with ``__new__`` (NEWOBJ, ``copyreg._reconstructor``/``__newobj__``), a class called
with arguments (REDUCE), a Cython class's own unpickler, and a few library functions whose
result has a node kind of its own (numpy arrays, dtypes and scalars, sets, bytes, torch
tensors). Nothing else maps: a function called by REDUCE is never translated into a call;
it is refused (``Refused``) naming the function. The nodes then go through exactly the audit,
typed-state checks and constructors an ``.amber`` file goes through.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

from amber.container import dtypes
from amber.errors import FormatError
from amber.graph import nodes as k
from amber.graph.names import QualName
from amber.legacy.values import (
    Call,
    Global,
    Opaque,
    PByteArray,
    PDict,
    Persistent,
    PList,
    PSet,
    PTuple,
    Value,
)

MAX_DEPTH = 200
# Node kinds that may carry an "id" (so that a second use of the same pickled value is a ref).
_SHAREABLE = frozenset(
    {k.LIST, k.TUPLE, k.SET, k.FROZENSET, k.DICT, k.BYTES, k.BYTEARRAY, k.NDARRAY}
    | {k.OBJARRAY, k.DTYPE, k.TORCH}
)


class Refused(FormatError):
    """The pickle builds something amber never constructs (a function call, a keyword
    construction, an unsupported numpy or torch form)."""

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


@dataclass(frozen=True)
class StorageRef:
    """A torch storage resolved by a container reader: the container tensor holding its
    bytes (as elements of ``dtype``, a torch dtype name)."""

    tensor: str
    dtype: str
    numel: int


# Spellings of the numpy functions pickles of arrays name, across numpy 1 and 2.
_NUMPY_CORE = ("numpy.core", "numpy._core")
_RECONSTRUCT = {f"{m}.multiarray._reconstruct" for m in _NUMPY_CORE}
_FROMBUFFER = {f"{m}.numeric._frombuffer" for m in _NUMPY_CORE}
_SCALAR = {f"{m}.multiarray.scalar" for m in _NUMPY_CORE}
_TORCH_REBUILD = "torch._utils._rebuild_tensor_v2"
_TORCH_PARAMETER = "torch._utils._rebuild_parameter"


def _is_class_name(name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lstrip("_")
    return bool(last) and last[0].isupper()


class Translator:
    """One translation; ``tensors`` maps the tensor names the nodes use to arrays."""

    def __init__(self, trusted: frozenset[str] = frozenset()) -> None:
        self.trusted = trusted  # names the caller trusts (dotted), as for amber.load
        self.tensors: dict[str, Any] = {}
        self._nodes: dict[int, dict[str, Any]] = {}
        self._keep: list[Any] = []
        self._next_id = 0

    # -- helpers ----------------------------------------------------------------------------

    def _tensor(self, array: Any) -> str:
        name = f"t{len(self.tensors)}"
        self.tensors[name] = array
        return name

    def _name(self, glob: Global) -> str:
        name = f"{glob.module}:{glob.name}"
        try:
            QualName.parse(name)
        except FormatError:
            raise Refused(
                f"pickle: at byte {glob.offset}: {glob.module!r} {glob.name!r} is not an "
                "importable module and name"
            ) from None
        return name

    def _ref(self, value: Value) -> dict[str, Any] | None:
        node = self._nodes.get(id(value))
        if node is None:
            return None
        if "id" not in node:
            node["id"] = self._next_id
            self._next_id += 1
        return {"k": k.REF, "id": node["id"]}

    def _remember(self, value: Value, node: dict[str, Any]) -> dict[str, Any]:
        self._nodes[id(value)] = node
        self._keep.append(value)
        return node

    # -- dispatch ---------------------------------------------------------------------------

    def node(self, value: Any, depth: int = 0) -> Any:
        """The graph node of one inert value."""
        if value is None or value is True or value is False or type(value) is str:
            return value
        if type(value) is int:
            return value if k.INT64_MIN <= value <= k.INT64_MAX else {"k": k.INT, "v": str(value)}
        if type(value) is float:
            return value if math.isfinite(value) else {"k": k.FLOAT, "v": repr(value)}
        if type(value) is bytes:
            return self._bytes(value, k.BYTES)
        if depth > MAX_DEPTH:
            raise Refused(f"pickle: objects nest deeper than {MAX_DEPTH} levels")
        if isinstance(value, Opaque):
            return self.node(value.value, depth)
        ref = self._ref(value) if isinstance(value, Value) else None
        if ref is not None:
            return ref
        d = depth + 1
        if isinstance(value, PList):
            node = self._remember(value, {"k": k.LIST})
            node["v"] = [self.node(v, d) for v in value.items]
            return node
        if isinstance(value, PTuple):
            items = [self.node(v, d) for v in value.items]
            return self._remember(value, {"k": k.TUPLE, "v": items})
        if isinstance(value, PDict):
            node = self._remember(value, {"k": k.DICT})
            node.update(self._dict_body(value.pairs, d))
            return node
        if isinstance(value, PSet):
            kind = k.FROZENSET if value.frozen else k.SET
            if value.frozen:
                return self._remember(
                    value, {"k": kind, "v": [self.node(v, d) for v in value.items]}
                )
            node = self._remember(value, {"k": kind})
            node["v"] = [self.node(v, d) for v in value.items]
            return node
        if isinstance(value, PByteArray):
            return self._remember(value, self._bytes(value.data, k.BYTEARRAY))
        if isinstance(value, Global):
            return self._global(value)
        if isinstance(value, Call):
            return self._call(value, d)
        if isinstance(value, Persistent):
            raise Refused(f"pickle: at byte {value.offset}: a persistent id used as a value")
        if _is_numpy_value(value):
            return self._array_value(value)
        raise Refused(f"pickle: a value of type {type(value).__name__} cannot be translated")

    def _dict_body(self, pairs: list[tuple[Any, Any]], depth: int) -> dict[str, Any]:
        if all(type(key) is str for key, _ in pairs) and len({p[0] for p in pairs}) == len(pairs):
            return {"v": {key: self.node(v, depth) for key, v in pairs}}
        return {"items": [[self.node(key, depth), self.node(v, depth)] for key, v in pairs]}

    def _bytes(self, data: bytes, kind: str) -> dict[str, Any]:
        if len(data) <= k.INLINE_BYTES_MAX:
            return {"k": kind, "b64": base64.b64encode(data).decode("ascii")}
        import numpy as np

        return {"k": kind, "tensor": self._tensor(np.frombuffer(data, dtype=np.uint8))}

    def _global(self, glob: Global) -> dict[str, Any]:
        from amber.graph.trust import REGISTRY

        name = self._name(glob)
        qual = QualName.parse(name)
        if REGISTRY.allows(qual, "type", self.trusted):
            return {"k": k.TYPE, "name": name}
        if REGISTRY.allows(qual, "function", self.trusted):
            return {"k": k.FUNC, "name": name}
        return {"k": k.TYPE if _is_class_name(glob.name) else k.FUNC, "name": name}

    # -- constructions ----------------------------------------------------------------------

    def _call(self, call: Call, depth: int) -> Any:
        func = call.func
        if not isinstance(func, Global):
            raise Refused(
                f"pickle: at byte {call.offset}: {call.opcode} calls a computed value, not a "
                "named class"
            )
        dotted = func.dotted
        special = _SPECIAL.get(dotted)
        if special is None and dotted in _RECONSTRUCT:
            special = Translator._reconstruct
        elif special is None and dotted in _FROMBUFFER:
            special = Translator._frombuffer
        elif special is None and dotted in _SCALAR:
            special = Translator._scalar
        if special is not None and call.opcode == "REDUCE":
            node = special(self, call, depth)
            if node.get("k") != k.OBJECT:
                self._no_extras(call)
                if node.get("k") in _SHAREABLE and id(call) not in self._nodes:
                    self._remember(call, node)
            return node
        if call.kwargs is not None and call.kwargs.pairs:
            raise Refused(
                f"pickle: at byte {call.offset}: {dotted} is created with keyword arguments, "
                "which amber does not replay",
                (dotted,),
            )
        args = list(call.args.items)
        if call.opcode == "NEWOBJ":
            return self._object(call, func, "new", args, depth)
        cython = _cython_target(func, args)
        if cython is not None:
            return self._object(call, cython, "cython", args[1:], depth)
        new_obj = _new_obj_target(func, args)
        if new_obj is not None:
            return self._object(call, new_obj, "new", [], depth)
        if not _is_class_name(func.name) and not self._trusted_type(func):
            raise Refused(
                f"pickle: at byte {call.offset}: the file calls the function {dotted}; amber "
                "never calls functions named by a file",
                (dotted,),
            )
        return self._object(call, func, "call", args, depth)

    def _trusted_type(self, glob: Global) -> bool:
        """Is ``glob`` a class amber (or the caller) trusts? Lower-case classes (partial,
        defaultdict, slice) are told from functions this way, without importing them."""
        from amber.graph.trust import REGISTRY

        return REGISTRY.allows(QualName.parse(self._name(glob)), "type", self.trusted)

    def _object(self, call: Call, cls: Global, mode: str, args: list[Any], depth: int) -> dict:
        from amber.graph.constructors import CONSTRUCTORS

        name = self._name(cls)
        if name == _BSPLINE and mode == "new" and not args:
            # what scipy's BSpline keeps (its pickled __dict__ also holds array-API helpers
            # that its constructor recreates)
            fields = dict(call.state.pairs) if isinstance(call.state, PDict) else {}
            keys = ("t", "c", "k", "extrapolate", "axis")
            pairs = []
            for key in keys:  # t and c are stored as _t and _c by recent scipy
                if (key in fields) == (f"_{key}" in fields):
                    raise Refused(f"pickle: at byte {call.offset}: malformed BSpline")
                pairs.append((key, fields[key] if key in fields else fields[f"_{key}"]))
            state = PDict(pairs)
            return self._adapter(call, name, state, depth)
        if name in CONSTRUCTORS:
            raise Refused(
                f"pickle: at byte {call.offset}: {cls.dotted} is rebuilt by an amber adapter "
                "from its own state; its pickled form is not read yet",
                (cls.dotted,),
            )
        node: dict[str, Any] = {"k": k.OBJECT, "type": name, "mode": mode}
        self._remember(call, node)
        if args:
            node["args"] = [self.node(a, depth) for a in args]
        if call.listitems:
            node["listitems"] = [self.node(v, depth) for v in call.listitems]
        if call.dictitems:
            node["dictitems"] = [
                [self.node(a, depth), self.node(b, depth)] for a, b in call.dictitems
            ]
        if call.has_state and call.state is not None:
            node["state"] = self.node(call.state, depth)
        return node

    def _no_extras(self, call: Call) -> None:
        uses_state = call.func.name in ("_reconstruct", "dtype")
        if call.listitems or call.dictitems or (call.has_state and not uses_state):
            raise Refused(
                f"pickle: at byte {call.offset}: {call.func.dotted} result is modified by "
                "later opcodes, which amber does not replay"
            )

    def _reconstructor(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if (
            len(args) == 3
            and isinstance(args[0], Global)
            and isinstance(args[1], Global)
            and args[1].dotted == "builtins.object"
            and args[2] is None
        ):
            return self._object(call, args[0], "new", [], depth)
        if (
            len(args) == 3
            and isinstance(args[0], Global)
            and isinstance(args[1], Global)
            and args[1].dotted in ("builtins.dict", "builtins.list")
            and isinstance(args[2], (PDict, PList))
        ):
            # protocol 0/1 of a dict or list subclass: base.__new__(cls, v); base.__init__(v)
            if args[1].dotted == "builtins.dict" and isinstance(args[2], PDict):
                call.dictitems[:0] = args[2].pairs
            elif args[1].dotted == "builtins.list" and isinstance(args[2], PList):
                call.listitems[:0] = args[2].items
            else:
                raise Refused(f"pickle: at byte {call.offset}: malformed copyreg._reconstructor")
            return self._object(call, args[0], "new", [], depth)
        raise Refused(
            f"pickle: at byte {call.offset}: copyreg._reconstructor with a base other than "
            "object, dict or list is not supported"
        )

    def _newobj_fn(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if args and isinstance(args[0], Global):
            return self._object(call, args[0], "new", list(args[1:]), depth)
        raise Refused(f"pickle: at byte {call.offset}: copyreg.__newobj__ without a class")

    def _builtin_set(self, call: Call, depth: int) -> dict:
        args = call.args.items
        frozen = call.func.name == "frozenset"
        if args == ():
            items: list[Any] = []
        elif len(args) == 1 and isinstance(args[0], PList):
            items = args[0].items
        else:
            raise Refused(f"pickle: at byte {call.offset}: {call.func.dotted} with odd arguments")
        return self.node(PSet(list(items), frozen=frozen), depth)

    def _builtin_bytes(self, call: Call, depth: int) -> dict:
        data = _bytes_arg(call)
        if call.func.name == "bytearray":
            return self._remember(call, self._bytes(data, k.BYTEARRAY))
        return self._bytes(data, k.BYTES)

    def _builtin_complex(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if len(args) == 2 and all(type(a) is float for a in args):
            return {"k": k.COMPLEX, "v": [self.node(args[0]), self.node(args[1])]}
        raise Refused(f"pickle: at byte {call.offset}: complex() with odd arguments")

    # -- classes amber rebuilds through an adapter, from the state it records --------------

    def _adapter(self, call: Call, name: str, state: Any, depth: int) -> dict:
        if call.listitems or call.dictitems:
            raise Refused(f"pickle: at byte {call.offset}: {name} with items")
        node = self._remember(call, {"k": k.OBJECT, "type": name, "mode": k.MODE_ADAPTER})
        node["state"] = self.node(state, depth)
        return node

    def _bit_generator_state(self, value: Any, offset: int) -> tuple[str, Any]:
        """(class name, state) of ``__bit_generator_ctor(cls)`` built with its state."""
        if (
            isinstance(value, Call)
            and isinstance(value.func, Global)
            and value.func.dotted == _RANDOM + "__bit_generator_ctor"
            and len(value.args.items) == 1
            and isinstance(value.args.items[0], Global)
            and value.has_state
            and not (value.listitems or value.dictitems)
        ):
            state = value.state
            if isinstance(state, PTuple) and len(state.items) == 2:
                state = state.items[0]  # (state, seed sequence): amber keeps the state
            return self._name(value.args.items[0]), state
        raise Refused(f"pickle: at byte {offset}: a random generator without its bit generator")

    def _bit_generator(self, call: Call, depth: int) -> dict:
        name, state = self._bit_generator_state(call, call.offset)
        return self._adapter(call, name, state, depth)

    def _random_state(self, call: Call, depth: int) -> dict:
        if len(call.args.items) != 1 or not call.has_state:
            raise Refused(f"pickle: at byte {call.offset}: malformed RandomState")
        self._bit_generator_state(call.args.items[0], call.offset)
        # RandomState's pickled state is get_state(legacy=False): what its adapter keeps.
        return self._adapter(call, "numpy.random.mtrand:RandomState", call.state, depth)

    def _generator(self, call: Call, depth: int) -> dict:
        if len(call.args.items) != 1 or (call.has_state and call.state is not None):
            raise Refused(f"pickle: at byte {call.offset}: malformed Generator")
        _, state = self._bit_generator_state(call.args.items[0], call.offset)
        return self._adapter(call, "numpy.random._generator:Generator", state, depth)

    def _masked_array(self, call: Call, depth: int) -> dict:
        import numpy as np

        args = call.args.items
        state = call.state.items if isinstance(call.state, PTuple) else ()
        if not (
            len(args) == 4
            and isinstance(args[0], Global)
            and args[0].dotted in ("numpy.ma.core.MaskedArray", "numpy.ma.MaskedArray")
            and isinstance(args[1], Global)
            and args[1].dotted == "numpy.ndarray"
            and len(state) == 7
        ):
            raise Refused(f"pickle: at byte {call.offset}: only plain masked arrays are read")
        _, shape, dtype_value, fortran, raw, mask_raw, fill = state
        dtype = self._dtype_of(dtype_value)
        if dtype.names is not None or dtype.hasobject:
            raise Refused(f"pickle: at byte {call.offset}: masked record arrays are not read")
        shape = shape_of(shape)
        data = self._array(_bytes_value(raw), dtype, shape, bool(fortran), call.offset)
        mask = self._array(
            _bytes_value(mask_raw), np.dtype(bool), shape, bool(fortran), call.offset
        )
        if fill is None:
            fill = np.ma.default_fill_value(data)
        adapter_state = PDict(
            [
                ("data", Opaque(data)),
                ("mask", Opaque(mask)),
                ("fill_value", fill),
                ("hard_mask", False),
                ("shared_mask", True),
            ]
        )
        return self._adapter(call, "numpy.ma:MaskedArray", adapter_state, depth)

    # -- numpy ------------------------------------------------------------------------------

    def _dtype_of(self, value: Any) -> Any:
        if isinstance(value, Opaque):
            value = value.value
        if (
            isinstance(value, Call)
            and isinstance(value.func, Global)
            and value.func.dotted == "numpy.dtype"
            and value.opcode == "REDUCE"
        ):
            return make_dtype(value)
        raise Refused("pickle: an array's dtype is not a numpy dtype")

    def _dtype(self, call: Call, depth: int) -> dict:
        dtype = make_dtype(call)
        return self._remember(call, {"k": k.DTYPE, "v": _descr(dtype)})

    def _reconstruct(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if not (
            len(args) == 3
            and isinstance(args[0], Global)
            and args[0].dotted == "numpy.ndarray"
            and call.has_state
            and isinstance(call.state, PTuple)
            and len(call.state.items) == 5
        ):
            raise Refused(
                f"pickle: at byte {call.offset}: only plain numpy arrays are read "
                "(subclasses such as matrix or masked arrays are not)"
            )
        # _reconstruct(ndarray, (0,), b"b"): its empty array, made as pickle makes it
        empty = (shape_of(args[1]), _bytes_value(args[2]))
        version, shape, dtype_value, fortran, data = call.state.items
        if type(version) is not int or version not in (0, 1) or type(fortran) not in (bool, int):
            raise Refused(f"pickle: at byte {call.offset}: unsupported numpy array state")
        dtype = self._dtype_of(dtype_value)
        shape = shape_of(shape)
        if dtype.hasobject:
            if not isinstance(data, PList) or fortran:
                raise Refused(f"pickle: at byte {call.offset}: malformed object array")
            count = math.prod(shape)
            if count != len(data.items):
                raise Refused(f"pickle: at byte {call.offset}: object array item count")
            _numpy_accepts(call, empty, (version, shape, dtype, False, [None] * count))
            node = self._remember(call, {"k": k.OBJARRAY, "shape": list(shape)})
            node["v"] = [self.node(v, depth) for v in data.items]
            return node
        raw = _bytes_value(data)
        count = math.prod(shape)
        if count * dtype.itemsize != len(raw):
            raise Refused(
                f"pickle: at byte {call.offset}: {len(raw)} bytes cannot hold an array of "
                f"shape {shape} and dtype {dtype}"
            )
        array = _numpy_accepts(call, empty, (version, shape, dtype, bool(fortran), raw))
        return self._remember(call, self._array_value(array))

    def _frombuffer(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if len(args) != 4 or args[3] not in ("C", "F"):
            raise Refused(f"pickle: at byte {call.offset}: malformed numpy buffer")
        buf, dtype_value, shape, order = args
        if isinstance(buf, PByteArray):
            raw = buf.data
        elif type(buf) is bytes:
            raw = buf
        else:
            raise Refused(f"pickle: at byte {call.offset}: numpy buffer is not bytes")
        dtype = self._dtype_of(dtype_value)
        if dtype.hasobject:
            raise Refused(f"pickle: at byte {call.offset}: object array from a raw buffer")
        array = self._array(raw, dtype, shape_of(shape), order == "F", call.offset)
        return self._remember(call, self._array_value(array))

    def _array(self, raw: bytes, dtype: Any, shape: tuple, fortran: bool, offset: int) -> Any:
        import numpy as np

        count = math.prod(shape)
        if count * dtype.itemsize != len(raw):
            raise Refused(
                f"pickle: at byte {offset}: {len(raw)} bytes cannot hold an array of shape "
                f"{shape} and dtype {dtype}"
            )
        array = np.frombuffer(bytearray(raw), dtype=dtype)
        return array.reshape(shape, order="F" if fortran else "C")

    def _array_value(self, array: Any) -> dict:
        import numpy as np

        name = dtypes.from_numpy(array.dtype)
        if name is not None and not array.dtype.isnative and array.dtype.itemsize > 1:
            name = None  # kept in its byte order, as raw bytes with its exact dtype
        if name is not None and array.size == 0:
            return {"k": k.NDARRAY, "dtype": name, "shape": list(array.shape)}
        if name is not None:
            return {"k": k.NDARRAY, "tensor": self._tensor(array)}
        if array.dtype.hasobject:
            raise Refused("pickle: an array of objects read outside the pickle")
        raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        return {
            "k": k.NDARRAY,
            "dtype": {"k": k.DTYPE, "v": _descr(array.dtype)},
            "shape": list(array.shape),
            "tensor": self._tensor(raw),
        }

    def _scalar(self, call: Call, depth: int) -> dict:
        import numpy as np

        args = call.args.items
        if len(args) != 2:
            raise Refused(f"pickle: at byte {call.offset}: malformed numpy scalar")
        dtype = self._dtype_of(args[0])
        if dtype.hasobject:
            raise Refused(f"pickle: at byte {call.offset}: numpy object scalar")
        raw = _bytes_value(args[1])
        if len(raw) != dtype.itemsize:
            raise Refused(f"pickle: at byte {call.offset}: numpy scalar of the wrong size")
        _numpy_scalar(dtype, raw, call.offset)
        value = np.frombuffer(raw, dtype=dtype)
        name = dtypes.from_numpy(dtype)
        if name is None:
            return {"k": k.NPSCALAR, "array": self._array_value(value.reshape(()).copy())}
        little = value.astype(dtype.newbyteorder("<")).tobytes()
        return {"k": k.NPSCALAR, "dtype": name, "b64": base64.b64encode(little).decode("ascii")}

    # -- torch ------------------------------------------------------------------------------

    def _torch_tensor(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if len(args) not in (6, 7) or not isinstance(args[0], Persistent):
            raise Refused(f"pickle: at byte {call.offset}: malformed torch tensor")
        storage, offset, size, stride, grad, hooks = args[:6]
        if not isinstance(storage.pid, StorageRef):
            raise Refused(f"pickle: at byte {call.offset}: tensor storage is not a storage")
        if not _empty_hooks(hooks) or (len(args) == 7 and not _empty_metadata(args[6])):
            raise Refused(
                f"pickle: at byte {call.offset}: tensors with backward hooks or metadata are "
                "not read"
            )
        shape, strides = shape_of(size), shape_of(stride)
        if (
            type(offset) is not int
            or offset < 0
            or len(shape) != len(strides)
            or type(grad) is not bool
        ):
            raise Refused(f"pickle: at byte {call.offset}: malformed torch tensor view")
        node: dict[str, Any] = {
            "k": k.TORCH,
            "tensor": storage.pid.tensor,
            "dtype": storage.pid.dtype,
            "view": {"shape": list(shape), "stride": list(strides), "offset": offset},
        }
        if grad:
            node["grad"] = True
        return self._remember(call, node)

    def _torch_parameter(self, call: Call, depth: int) -> dict:
        args = call.args.items
        if len(args) != 3 or not isinstance(args[0], Call) or type(args[1]) is not bool:
            raise Refused(f"pickle: at byte {call.offset}: malformed torch parameter")
        if not _empty_hooks(args[2]) or args[0].func.dotted != _TORCH_REBUILD:
            raise Refused(f"pickle: at byte {call.offset}: unsupported torch parameter")
        inner = dict(self._torch_tensor(args[0], depth))
        inner.pop("id", None)
        inner["param"] = True
        inner.pop("grad", None)
        if not args[1]:
            inner["grad"] = False
        return self._remember(call, inner)


def _numpy_accepts(call: Call, empty: tuple, state: tuple) -> Any:
    """What ``_reconstruct`` + BUILD make of ``empty`` (shape, dtype code) and ``state``
    (plain data: numbers, a dtype, bytes or placeholders), so that numpy checks them exactly
    as when unpickling."""
    import numpy as np

    try:
        if math.prod(empty[0]) > 0 or len(empty[1]) > 8:
            raise ValueError("the array to reconstruct into must be empty")
        array = np.ndarray.__new__(np.ndarray, empty[0], empty[1])
        array.__setstate__(state)
    except Exception as exc:  # numpy refuses the data in its own ways
        raise Refused(f"pickle: at byte {call.offset}: invalid numpy array ({exc})") from None
    return array


def _numpy_scalar(dtype: Any, raw: bytes, offset: int) -> Any:
    """numpy's own ``scalar(dtype, raw)`` (what pickles of numpy scalars call), on bytes."""
    try:
        from numpy._core.multiarray import scalar  # type: ignore[import-not-found]
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    try:
        return scalar(dtype, raw)
    except Exception as exc:
        raise Refused(f"pickle: at byte {offset}: invalid numpy scalar ({exc})") from None


def _is_numpy_value(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _cython_target(func: Global, args: list[Any]) -> Global | None:
    """``module.__pyx_unpickle_Cls(Cls, checksum, state)``: a Cython class's own unpickler."""
    if func.name.startswith("__pyx_unpickle_") and len(args) == 3 and isinstance(args[0], Global):
        cls = args[0]
        if cls.module == func.module and func.name == f"__pyx_unpickle_{cls.name}":
            return cls
    return None


def _new_obj_target(func: Global, args: list[Any]) -> Global | None:
    """``module.newObj(Cls)``: compiled classes of modules amber lets be created empty."""
    from amber.graph.constructors import NEW_MODE_MODULES

    if (
        func.name == "newObj"
        and func.module in NEW_MODE_MODULES
        and len(args) == 1
        and isinstance(args[0], Global)
    ):
        return args[0]
    return None


def _empty_hooks(value: Any) -> bool:
    if isinstance(value, Call) and isinstance(value.func, Global):
        return (
            value.func.dotted == "collections.OrderedDict"
            and value.args.items == ()
            and not value.dictitems
            and not value.listitems
            and not value.has_state
        )
    return False


def _empty_metadata(value: Any) -> bool:
    return isinstance(value, PDict) and not value.pairs


def shape_of(value: Any) -> tuple[int, ...]:
    if isinstance(value, Opaque):
        value = value.value
    items = value.items if isinstance(value, PTuple) else value
    if not isinstance(items, tuple) or len(items) > 64:
        raise Refused("pickle: an array shape is not a tuple of at most 64 integers")
    for n in items:
        if type(n) is not int or not 0 <= n <= k.INT64_MAX:
            raise Refused("pickle: an array shape holds a value that is not a size")
    return items


def _bytes_value(value: Any) -> bytes:
    """Bytes as pickles spell them: a bytes operand, a bytearray, or (protocols 0-2)
    ``_codecs.encode(text, "latin1")`` and ``bytes()``."""
    if type(value) is bytes:
        return value
    if isinstance(value, PByteArray):
        return value.data
    if (
        isinstance(value, Call)
        and isinstance(value.func, Global)
        and value.func.dotted in ("_codecs.encode", "builtins.bytes")
        and value.opcode == "REDUCE"
        and not (value.has_state or value.listitems or value.dictitems)
    ):
        return _bytes_arg(value)
    if type(value) is str:  # a Python 2 pickle's str data
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            pass
    raise Refused("pickle: array data is not bytes")


def _bytes_arg(call: Call) -> bytes:
    args = call.args.items
    if args == ():
        return b""
    if len(args) == 1 and not isinstance(args[0], (PList, str)):
        return _bytes_value(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            pass
    if (
        len(args) == 1
        and isinstance(args[0], PList)
        and all(type(b) is int and 0 <= b < 256 for b in args[0].items)
    ):
        return bytes(args[0].items)
    raise Refused(f"pickle: at byte {call.offset}: {call.func.dotted} with odd arguments")


def make_dtype(call: Call, depth: int = 0) -> Any:
    """A numpy dtype from ``numpy.dtype(spec, align, copy)`` and its BUILD state, as pickle
    builds it: numpy's own constructor and ``__setstate__``, given plain data only (strings,
    numbers, tuples, dicts and nested dtypes), so numpy validates it exactly as on unpickling
    and no code named by the file runs."""
    import numpy as np

    args = call.args.items
    if (
        depth > 8
        or len(args) != 3
        or type(args[0]) is not str
        or len(args[0]) > 64
        or type(args[1]) not in (bool, int)
        or type(args[2]) not in (bool, int)
        or call.listitems
        or call.dictitems
    ):
        raise Refused(f"pickle: at byte {call.offset}: malformed numpy dtype")
    try:
        dtype = np.dtype(args[0], bool(args[1]), bool(args[2]))
        if call.has_state:
            dtype.__setstate__(_plain(call.state, depth, call.offset))
        canonical = np.dtype(_descr(dtype) if dtype.names is not None else dtype.str)
    except Refused:
        raise
    except Exception as exc:  # numpy refuses the data in its own ways (even SystemError)
        raise Refused(f"pickle: at byte {call.offset}: invalid numpy dtype ({exc})") from None
    odd_flags = dtype.names is None and dtype.flags != canonical.flags  # records: aligned ones
    if dtype != canonical or odd_flags or dtype.metadata is not None:
        # amber stores dtypes by their descriptor: flags or metadata set by hand would be lost
        raise Refused(f"pickle: at byte {call.offset}: numpy dtype with non-standard state")
    return dtype


def _plain(value: Any, depth: int, offset: int) -> Any:
    """The plain Python value of a dtype's state (nested dtypes built by ``make_dtype``)."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, PTuple) and len(value.items) <= 4096:
        return tuple(_plain(v, depth, offset) for v in value.items)
    if isinstance(value, PDict) and len(value.pairs) <= 4096:
        return {_plain(key, depth, offset): _plain(v, depth, offset) for key, v in value.pairs}
    if (
        isinstance(value, Call)
        and isinstance(value.func, Global)
        and value.func.dotted == "numpy.dtype"
        and value.opcode == "REDUCE"
    ):
        return make_dtype(value, depth + 1)
    if isinstance(value, (Call, PByteArray)):  # bytes as protocols 0-2 spell them
        return _bytes_value(value)
    raise Refused(f"pickle: at byte {offset}: a numpy dtype state holds {type(value).__name__}")


def _descr(dtype: Any) -> Any:
    """The descriptor a dtype node holds (as the encoder writes it)."""
    try:
        return _descr_of(dtype)
    except (KeyError, TypeError, ValueError, IndexError):  # a record dtype numpy left odd
        raise Refused(f"pickle: the record dtype {dtype!r} is inconsistent") from None


def _descr_of(dtype: Any) -> Any:
    if dtype.fields is None:
        if dtype.subdtype is not None:
            raise Refused(f"pickle: sub-array dtype {dtype} is not supported")
        return dtype.str
    if dtype.hasobject:
        raise Refused(f"pickle: record dtype {dtype} holding objects is not supported")
    names = list(dtype.names)
    return {
        "names": names,
        "formats": [_descr_of(dtype.fields[n][0]) for n in names],
        "offsets": [dtype.fields[n][1] for n in names],
        "itemsize": dtype.itemsize,
    }


_RANDOM = "numpy.random._pickle."
_BSPLINE = "scipy.interpolate._bsplines:BSpline"

_SPECIAL = {
    _RANDOM + "__randomstate_ctor": Translator._random_state,
    _RANDOM + "__generator_ctor": Translator._generator,
    _RANDOM + "__bit_generator_ctor": Translator._bit_generator,
    "numpy.ma.core._mareconstruct": Translator._masked_array,
    "copyreg._reconstructor": Translator._reconstructor,
    "copyreg.__newobj__": Translator._newobj_fn,
    "builtins.set": Translator._builtin_set,
    "builtins.frozenset": Translator._builtin_set,
    "builtins.bytearray": Translator._builtin_bytes,
    "builtins.bytes": Translator._builtin_bytes,
    "_codecs.encode": Translator._builtin_bytes,
    "builtins.complex": Translator._builtin_complex,
    "numpy.dtype": Translator._dtype,
    _TORCH_REBUILD: Translator._torch_tensor,
    _TORCH_PARAMETER: Translator._torch_parameter,
}
