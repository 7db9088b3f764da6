"""Python object -> inert JSON nodes plus a list of numpy tensors."""

from __future__ import annotations

import base64
import math
from typing import Any

from amber.container import dtypes
from amber.errors import SerializationError
from amber.graph import nodes as k

# Python nesting allowed. A level costs two JSON levels (three for a dict with non-string
# keys) and the manifest allows 256.
MAX_DEPTH = 80


class _Path:
    """The location inside the saved object, for error messages and tensor names."""

    __slots__ = ("parent", "part")

    def __init__(self, parent: _Path | None, part: Any) -> None:
        self.parent = parent
        self.part = part

    def parts(self) -> list[Any]:
        out, node = [], self
        while node is not None and node.parent is not None:
            out.append(node.part)
            node = node.parent
        return out[::-1]

    def display(self) -> str:
        return "obj" + "".join(f"[{p!r}]" for p in self.parts())

    def tensor_name(self) -> str:
        return ".".join(str(p) for p in self.parts()) or "tensor"


class Encoder:
    """Encodes one object. ``tensors`` lists (name, array) pairs in first-seen order."""

    def __init__(self) -> None:
        self.tensors: list[tuple[str, Any]] = []
        self._names: set[str] = set()
        # id(obj) -> (node, obj); obj is kept so its id cannot be reused while encoding.
        self._memo: dict[int, tuple[dict[str, Any], Any]] = {}
        self._in_progress: set[int] = set()
        self._next_id = 0

    def encode(self, obj: Any) -> Any:
        return self._encode(obj, _Path(None, None), 0)

    # -- helpers ---------------------------------------------------------------------------

    def _fail(self, path: _Path, message: str) -> SerializationError:
        return SerializationError(f"cannot save {path.display()}: {message}")

    def _tensor_name(self, path: _Path) -> str:
        base = path.tensor_name()
        if len(base.encode("utf-8", "surrogatepass")) > 512:
            base = f"t{len(self.tensors)}"
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}~{n}"
        self._names.add(name)
        return name

    def _add_tensor(self, array: Any, path: _Path) -> str:
        name = self._tensor_name(path)
        self.tensors.append((name, array))
        return name

    def _shared(self, obj: Any, path: _Path) -> dict[str, Any] | None:
        """A ref node when ``obj`` was already encoded, else None."""
        entry = self._memo.get(id(obj))
        if entry is None:
            return None
        node = entry[0]
        if id(obj) in self._in_progress and isinstance(obj, (tuple, frozenset)):
            raise self._fail(
                path, f"a {type(obj).__name__} contains itself; an immutable cycle cannot be saved"
            )
        if "id" not in node:
            node["id"] = self._next_id
            self._next_id += 1
        return {"k": k.REF, "id": node["id"]}

    def _remember(self, obj: Any, node: dict[str, Any]) -> None:
        self._memo[id(obj)] = (node, obj)

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
        handler = _HANDLERS.get(cls)
        if handler is None:
            handler = _numpy_handler(obj)
        if handler is None:
            raise self._fail(
                path,
                f"type {cls.__module__}.{cls.__qualname__} is not supported; amber saves "
                "dict, list, tuple, set, str, int, float, complex, bool, None, bytes, numpy "
                "arrays and numpy scalars",
            )
        return handler(self, obj, path, depth)

    def _container(self, obj: Any, kind: str, items: Any, path: _Path, depth: int) -> dict:
        node: dict[str, Any] = {"k": kind}
        self._remember(obj, node)
        self._in_progress.add(id(obj))
        try:
            node["v"] = [self._encode(v, _Path(path, i), depth + 1) for i, v in enumerate(items)]
        finally:
            self._in_progress.discard(id(obj))
        return node

    def _list(self, obj: list, path: _Path, depth: int) -> dict:
        return self._container(obj, k.LIST, obj, path, depth)

    def _tuple(self, obj: tuple, path: _Path, depth: int) -> dict:
        return self._container(obj, k.TUPLE, obj, path, depth)

    def _set(self, obj: set | frozenset, path: _Path, depth: int) -> dict:
        kind = k.SET if type(obj) is set else k.FROZENSET
        return self._container(obj, kind, obj, path, depth)

    def _dict(self, obj: dict, path: _Path, depth: int) -> dict:
        node: dict[str, Any] = {"k": k.DICT}
        self._remember(obj, node)
        self._in_progress.add(id(obj))
        try:
            if all(type(key) is str for key in obj):
                node["v"] = {
                    key: self._encode(value, _Path(path, key), depth + 1)
                    for key, value in obj.items()
                }
                for key in obj:  # surrogates in keys cannot be JSON-encoded as UTF-8
                    self._encode(key, _Path(path, key), depth + 1)
            else:
                node["items"] = [
                    [
                        self._encode(key, _Path(path, key), depth + 1),
                        self._encode(value, _Path(path, key), depth + 1),
                    ]
                    for key, value in obj.items()
                ]
        finally:
            self._in_progress.discard(id(obj))
        return node

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

    def _ndarray(self, obj: Any, path: _Path, depth: int) -> dict:
        if dtypes.from_numpy(obj.dtype) is None:
            raise self._fail(
                path,
                f"numpy arrays of dtype {obj.dtype} are not supported yet; supported dtypes: "
                + ", ".join(dtypes.ITEMSIZE),
            )
        node: dict[str, Any] = {"k": k.NDARRAY}
        self._remember(obj, node)
        node["tensor"] = self._add_tensor(obj, path)
        return node

    def _npscalar(self, obj: Any, path: _Path, depth: int) -> dict:
        import numpy as np

        name = dtypes.from_numpy(obj.dtype)
        if name is None:
            raise self._fail(path, f"numpy scalars of dtype {obj.dtype} are not supported yet")
        raw = np.asarray(obj).astype(obj.dtype.newbyteorder("<")).tobytes()
        return {"k": k.NPSCALAR, "dtype": name, "b64": base64.b64encode(raw).decode("ascii")}


def _numpy_handler(obj: Any) -> Any:
    """Numpy types are dispatched without importing numpy unless it is already loaded."""
    import sys

    np = sys.modules.get("numpy")
    if np is None:
        return None
    if type(obj) is np.ndarray or type(obj) is np.memmap:
        return Encoder._ndarray
    if isinstance(obj, np.generic) and type(obj).__module__ in ("numpy", "ml_dtypes"):
        return Encoder._npscalar
    return None


_HANDLERS: dict[type, Any] = {
    list: Encoder._list,
    tuple: Encoder._tuple,
    set: Encoder._set,
    frozenset: Encoder._set,
    dict: Encoder._dict,
    bytes: Encoder._bytes,
    bytearray: Encoder._bytes,
}
