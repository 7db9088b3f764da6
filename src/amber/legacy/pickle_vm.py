"""A pickle reader that never imports or calls anything: its own opcode loop, protocols 0-5.

Each opcode only moves constants and the inert records of ``legacy.values`` around. Limits
bound what a file can make it do: opcodes, stack and memo sizes, string and bytes lengths
(always checked against the bytes actually left before anything is sliced or allocated).
Whatever it does not support, or finds malformed, is refused with a ``PickleError`` naming
the byte offset: unknown opcodes, EXT codes, out-of-band buffers, memo misuse, operands that
are not constants, bytes after STOP, opcodes straddling a frame.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amber.errors import FormatError
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


class PickleError(FormatError):
    """A pickle stream that amber refuses to read: malformed, truncated or unsupported."""


@dataclass(frozen=True)
class Limits:
    """What one pickle may make the reader do."""

    max_opcodes: int = 50_000_000
    max_stack: int = 1_000_000
    max_memo: int = 5_000_000
    max_string: int = 1 << 34  # bytes of one str/bytes operand (also bounded by the file)
    max_long_bytes: int = 1024  # LONG1/LONG4 operand: ~2,500 decimal digits
    max_marks: int = 100_000


DEFAULT_LIMITS = Limits()

# Names of Python 2 pickles, as pickle.load(fix_imports=True) maps them (protocols < 3).
_OLD_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}

# After a BUILD, a container reader may consume bytes that follow in the stream (joblib's
# arrays) and give the value that replaces the built object: hook(obj, reader) -> value or
# None (not its concern).
BuildHook = Callable[[Call, "PickleReader"], Any]
PersistentHook = Callable[[Any, int], Any]


# The integer spellings every unpickler reads alike (no hex, octal, leading zeros or "_").
_DECIMAL = re.compile(rb"[+-]?(0|[1-9][0-9]*)")


class _Mark:
    """MARK's place on the stack (a separate list of positions, as pickle does)."""


def _fail(offset: int, message: str) -> PickleError:
    return PickleError(f"pickle: at byte {offset}: {message}; the file was refused")


class PickleReader:
    """Reads one pickle from ``data`` starting at ``pos``; ``read()`` returns the inert value
    and leaves ``pos`` just after STOP."""

    def __init__(
        self,
        data: bytes | memoryview,
        pos: int = 0,
        *,
        limits: Limits = DEFAULT_LIMITS,
        build_hook: BuildHook | None = None,
        persistent: PersistentHook | None = None,
    ) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.pos = pos
        self.limits = limits
        self.build_hook = build_hook
        self.persistent = persistent
        self.protocol = 0
        self._stack: list[Any] = []
        self._marks: list[int] = []
        self._memo: dict[int, Any] = {}
        self._frame_end: int | None = None
        self._op_offset = pos

    # -- raw reads, bounded by the bytes that exist -----------------------------------------

    def take(self, n: int, what: str = "operand") -> bytes:
        """The next ``n`` bytes; refused when fewer remain (nothing is allocated first)."""
        if n < 0:
            raise _fail(self._op_offset, f"negative length for {what}")
        end = self.pos + n
        if end > len(self.data):
            raise _fail(
                self._op_offset,
                f"{what} needs {n} bytes but only {len(self.data) - self.pos} remain (truncated)",
            )
        if self._frame_end is not None and end > self._frame_end and self._in_frame_op:
            raise _fail(self._op_offset, "an opcode straddles the end of its frame")
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def raw(self, n: int, what: str) -> bytes:
        """For container readers: ``n`` bytes written outside the pickle's frames (joblib's
        array data follows a committed frame)."""
        if self._frame_end is not None:
            if self.pos != self._frame_end:
                raise _fail(self.pos, f"{what} starts inside a pickle frame")
            self._frame_end = None
        self._in_frame_op = False
        return self.take(n, what)

    def _line(self) -> bytes:
        """Text up to a newline (protocol 0 operands), at most 64 KiB."""
        limit = min(len(self.data), self.pos + 65536)
        if self._frame_end is not None and self._in_frame_op:
            limit = min(limit, self._frame_end)
        data = self.data
        end = self.pos
        while end < limit and data[end] != 10:
            end += 1
        if end >= limit:
            raise _fail(self._op_offset, "a text operand has no end of line (truncated)")
        out = bytes(data[self.pos : end])
        self.pos = end + 1
        return out

    def _length(self, fmt: str, size: int, what: str) -> int:
        (n,) = struct.unpack(fmt, self.take(size, what))
        if n > self.limits.max_string:
            raise _fail(self._op_offset, f"{what} of {n} bytes exceeds the limit")
        return n

    # -- stack ------------------------------------------------------------------------------

    def _push(self, value: Any) -> None:
        if len(self._stack) >= self.limits.max_stack:
            raise _fail(self._op_offset, f"stack exceeds {self.limits.max_stack} items")
        self._stack.append(value)

    def _pop(self) -> Any:
        if len(self._stack) <= (self._marks[-1] if self._marks else 0):
            raise _fail(self._op_offset, "stack underflow (an opcode has no operand)")
        return self._stack.pop()

    def _top(self) -> Any:
        if len(self._stack) <= (self._marks[-1] if self._marks else 0):
            raise _fail(self._op_offset, "stack underflow (an opcode has no operand)")
        return self._stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self._marks:
            raise _fail(self._op_offset, "an opcode needs a MARK that was never set")
        start = self._marks.pop()
        items = self._stack[start:]
        del self._stack[start:]
        return items

    def _memo_put(self, index: int) -> None:
        if index in self._memo:
            raise _fail(self._op_offset, f"memo slot {index} is written twice")
        if len(self._memo) >= self.limits.max_memo:
            raise _fail(self._op_offset, f"memo exceeds {self.limits.max_memo} entries")
        self._memo[index] = self._top()

    def _memo_get(self, index: int) -> None:
        if index not in self._memo:
            raise _fail(self._op_offset, f"memo slot {index} is read before it is written")
        self._push(self._memo[index])

    # -- the loop ---------------------------------------------------------------------------

    def read(self) -> Any:
        """Run the opcodes up to STOP; the single value left is the result."""
        count = 0
        data = self.data
        self._in_frame_op = False
        while True:
            if self._frame_end is not None and self.pos == self._frame_end:
                self._frame_end = None
            self._op_offset = self.pos
            if self.pos >= len(data):
                raise _fail(self.pos, "the stream ends before STOP (truncated)")
            count += 1
            if count > self.limits.max_opcodes:
                raise _fail(self.pos, f"more than {self.limits.max_opcodes} opcodes")
            self._in_frame_op = self._frame_end is not None
            op = data[self.pos]
            self.pos += 1
            handler = _DISPATCH.get(op)
            if handler is None:
                raise _fail(self._op_offset, f"unknown or unsupported opcode 0x{op:02x}")
            if handler(self):
                break
        if self._marks or len(self._stack) != 1:
            raise _fail(self._op_offset, "STOP with an unbalanced stack")
        if self._frame_end is not None and self.pos != self._frame_end:
            raise _fail(self._op_offset, "STOP inside a frame that declares more bytes")
        return self._stack.pop()

    # -- opcodes ----------------------------------------------------------------------------

    def _proto(self) -> None:
        (proto,) = self.take(1)
        if proto > 5:
            raise _fail(self._op_offset, f"pickle protocol {proto} is not supported (0-5)")
        if self._op_offset != 0 and self.protocol:
            raise _fail(self._op_offset, "PROTO appears twice")
        self.protocol = proto

    def _frame(self) -> None:
        if self._frame_end is not None:
            raise _fail(self._op_offset, "FRAME inside a frame")
        (size,) = struct.unpack("<Q", self.take(8, "FRAME length"))
        if size > len(self.data) - self.pos:
            raise _fail(self._op_offset, f"FRAME of {size} bytes runs past the end (truncated)")
        self._frame_end = self.pos + size

    def _stop(self) -> bool:
        return True

    def _mark(self) -> None:
        if len(self._marks) >= self.limits.max_marks:
            raise _fail(self._op_offset, "too many nested MARKs")
        self._marks.append(len(self._stack))

    def _pop_op(self) -> None:
        if self._marks and len(self._stack) == self._marks[-1]:
            self._marks.pop()  # POP of a MARK, as pickle allows
            return
        self._pop()

    def _pop_mark_op(self) -> None:
        self._pop_mark()

    def _dup(self) -> None:
        self._push(self._top())

    # constants

    def _none(self) -> None:
        self._push(None)

    def _newtrue(self) -> None:
        self._push(True)

    def _newfalse(self) -> None:
        self._push(False)

    def _int(self) -> None:
        text = self._line()
        if text == b"01":
            self._push(True)
        elif text == b"00":
            self._push(False)
        else:
            self._push(self._parse_int(text))

    def _parse_int(self, text: bytes) -> int:
        if len(text) > 4300 or not _DECIMAL.fullmatch(text):
            raise _fail(self._op_offset, "INT/LONG operand is not a decimal integer")
        return int(text)

    def _long(self) -> None:
        text = self._line()
        if text.endswith(b"L"):
            text = text[:-1]
        self._push(self._parse_int(text))

    def _binint(self) -> None:
        self._push(struct.unpack("<i", self.take(4))[0])

    def _binint1(self) -> None:
        self._push(self.take(1)[0])

    def _binint2(self) -> None:
        self._push(struct.unpack("<H", self.take(2))[0])

    def _long1(self) -> None:
        n = self.take(1)[0]
        self._push(int.from_bytes(self.take(n), "little", signed=True))

    def _long4(self) -> None:
        (n,) = struct.unpack("<i", self.take(4))
        if n < 0 or n > self.limits.max_long_bytes:
            raise _fail(self._op_offset, f"LONG4 of {n} bytes is refused")
        self._push(int.from_bytes(self.take(n), "little", signed=True))

    def _float(self) -> None:
        text = self._line()
        try:
            self._push(float(text.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            raise _fail(self._op_offset, "FLOAT operand is not a number") from None

    def _binfloat(self) -> None:
        self._push(struct.unpack(">d", self.take(8))[0])

    def _text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise _fail(self._op_offset, "a string operand is not valid UTF-8") from None

    def _binunicode(self) -> None:
        self._push(self._text(self.take(self._length("<I", 4, "BINUNICODE"))))

    def _short_binunicode(self) -> None:
        self._push(self._text(self.take(self.take(1)[0])))

    def _binunicode8(self) -> None:
        self._push(self._text(self.take(self._length("<Q", 8, "BINUNICODE8"))))

    def _unicode(self) -> None:
        raw = self._line()
        try:
            self._push(raw.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise _fail(self._op_offset, "UNICODE operand is malformed") from None

    def _string(self) -> None:
        raw = self._line()
        if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
            raise _fail(self._op_offset, "STRING operand is not quoted")
        try:
            value = raw[1:-1].decode("ascii").encode("latin-1").decode("unicode-escape")
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise _fail(self._op_offset, "STRING operand is malformed") from None
        self._push(value)  # pickle.load's default encoding="ASCII" makes str of it

    def _binstring(self) -> None:
        (n,) = struct.unpack("<i", self.take(4))
        self._push(self._ascii(self.take(n)))

    def _short_binstring(self) -> None:
        self._push(self._ascii(self.take(self.take(1)[0])))

    def _ascii(self, raw: bytes) -> str:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _fail(self._op_offset, "a Python 2 string is not ASCII") from None

    def _binbytes(self) -> None:
        self._push(self.take(self._length("<I", 4, "BINBYTES")))

    def _short_binbytes(self) -> None:
        self._push(self.take(self.take(1)[0]))

    def _binbytes8(self) -> None:
        self._push(self.take(self._length("<Q", 8, "BINBYTES8")))

    def _bytearray8(self) -> None:
        self._push(PByteArray(self.take(self._length("<Q", 8, "BYTEARRAY8"))))

    def _refused(self) -> None:
        op = self.data[self._op_offset]
        names = {0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x97: "NEXT_BUFFER"}
        names[0x98] = "READONLY_BUFFER"
        raise _fail(
            self._op_offset,
            f"{names.get(op, hex(op))} is not supported (extension registry codes and "
            "out-of-band buffers name nothing amber can audit)",
        )

    # containers

    def _empty_list(self) -> None:
        self._push(PList())

    def _empty_tuple(self) -> None:
        self._push(PTuple())

    def _empty_dict(self) -> None:
        self._push(PDict())

    def _empty_set(self) -> None:
        self._push(PSet())

    def _list(self) -> None:
        self._push(PList(self._pop_mark()))

    def _tuple(self) -> None:
        self._push(PTuple(tuple(self._pop_mark())))

    def _tupleN(self, n: int) -> None:
        items = [self._pop() for _ in range(n)][::-1]
        self._push(PTuple(tuple(items)))

    def _tuple1(self) -> None:
        self._tupleN(1)

    def _tuple2(self) -> None:
        self._tupleN(2)

    def _tuple3(self) -> None:
        self._tupleN(3)

    def _dict(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise _fail(self._op_offset, "DICT needs key/value pairs")
        self._push(PDict(list(zip(items[::2], items[1::2], strict=True))))

    def _frozenset(self) -> None:
        self._push(PSet(self._pop_mark(), frozen=True))

    def _append(self) -> None:
        value = self._pop()
        self._extend(self._top(), [value])

    def _appends(self) -> None:
        items = self._pop_mark()
        self._extend(self._top(), items)

    def _extend(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, PList):
            target.items.extend(items)
        elif isinstance(target, Call):
            target.listitems.extend(items)
        else:
            raise _fail(self._op_offset, f"APPEND(S) to {_what(target)}")

    def _setitem(self) -> None:
        value = self._pop()
        key = self._pop()
        self._setitems_into(self._top(), [(key, value)])

    def _setitems(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise _fail(self._op_offset, "SETITEMS needs key/value pairs")
        self._setitems_into(self._top(), list(zip(items[::2], items[1::2], strict=True)))

    def _setitems_into(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, PDict):
            target.pairs.extend(pairs)
        elif isinstance(target, Call):
            target.dictitems.extend(pairs)
        else:
            raise _fail(self._op_offset, f"SETITEM(S) on {_what(target)}")

    def _additems(self) -> None:
        items = self._pop_mark()
        target = self._top()
        if not isinstance(target, PSet) or target.frozen:
            raise _fail(self._op_offset, f"ADDITEMS on {_what(target)}")
        target.items.extend(items)

    # memo

    def _put(self) -> None:
        text = self._line()
        self._memo_put(self._parse_int(text))

    def _binput(self) -> None:
        self._memo_put(self.take(1)[0])

    def _long_binput(self) -> None:
        self._memo_put(struct.unpack("<I", self.take(4))[0])

    def _memoize(self) -> None:
        self._memo_put(len(self._memo))

    def _get(self) -> None:
        self._memo_get(self._parse_int(self._line()))

    def _binget(self) -> None:
        self._memo_get(self.take(1)[0])

    def _long_binget(self) -> None:
        self._memo_get(struct.unpack("<I", self.take(4))[0])

    # names and constructions: recorded, never resolved

    def _global_name(self, module: Any, name: Any) -> Global:
        if type(module) is not str or type(name) is not str:
            raise _fail(
                self._op_offset,
                "a global's module and name must be constant strings, not "
                f"{_what(module)} and {_what(name)}",
            )
        if self.protocol < 3:
            module = _OLD_MODULES.get(module, module)
        return Global(module, name, self._op_offset)

    def _global(self) -> None:
        module = self._text(self._line())
        name = self._text(self._line())
        self._push(self._global_name(module, name))

    def _stack_global(self) -> None:
        name = self._pop()
        module = self._pop()
        self._push(self._global_name(module, name))

    def _reduce(self) -> None:
        args = self._pop()
        func = self._pop()
        if not isinstance(args, PTuple):
            raise _fail(self._op_offset, f"REDUCE arguments must be a tuple, not {_what(args)}")
        self._push(Call(func, args, "REDUCE", self._op_offset))

    def _newobj(self) -> None:
        args = self._pop()
        cls = self._pop()
        if not isinstance(args, PTuple):
            raise _fail(self._op_offset, f"NEWOBJ arguments must be a tuple, not {_what(args)}")
        self._push(Call(cls, args, "NEWOBJ", self._op_offset))

    def _newobj_ex(self) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        if not isinstance(args, PTuple) or not isinstance(kwargs, PDict):
            raise _fail(self._op_offset, "NEWOBJ_EX needs a tuple and a dict")
        self._push(Call(cls, args, "NEWOBJ", self._op_offset, kwargs=kwargs))

    def _inst(self) -> None:
        module = self._text(self._line())
        name = self._text(self._line())
        args = self._pop_mark()
        cls = self._global_name(module, name)
        self._push(Call(cls, PTuple(tuple(args)), "INST", self._op_offset))

    def _obj(self) -> None:
        items = self._pop_mark()
        if not items:
            raise _fail(self._op_offset, "OBJ without a class")
        self._push(Call(items[0], PTuple(tuple(items[1:])), "OBJ", self._op_offset))

    def _build(self) -> None:
        state = self._pop()
        target = self._top()
        if not isinstance(target, Call):
            raise _fail(self._op_offset, f"BUILD on {_what(target)}")
        if target.has_state:
            raise _fail(self._op_offset, "BUILD applied twice to one object")
        target.state = state
        target.has_state = True
        if self.build_hook is not None:
            replaced = self.build_hook(target, self)
            if replaced is not None:
                self._stack[-1] = Opaque(replaced)

    def _persid(self) -> None:
        raw = self._line()
        self._persistent(self._ascii(raw))

    def _binpersid(self) -> None:
        self._persistent(self._pop())

    def _persistent(self, pid: Any) -> None:
        if self.persistent is None:
            raise _fail(
                self._op_offset,
                "a persistent id outside a torch.save archive (this reader knows none)",
            )
        self._push(Persistent(self.persistent(pid, self._op_offset), self._op_offset))


def _what(value: Any) -> str:
    if isinstance(value, Global):
        return f"the global {value.dotted}"
    if isinstance(value, Value):
        return {
            "PList": "a list",
            "PTuple": "a tuple",
            "PDict": "a dict",
            "PSet": "a set",
            "Call": "a constructed object",
            "Persistent": "a persistent id",
        }.get(type(value).__name__, "a value")
    return f"a {type(value).__name__}"


_OPS: dict[bytes, Callable[[PickleReader], Any]] = {
    b"(": PickleReader._mark,
    b".": PickleReader._stop,
    b"0": PickleReader._pop_op,
    b"1": PickleReader._pop_mark_op,
    b"2": PickleReader._dup,
    b"F": PickleReader._float,
    b"I": PickleReader._int,
    b"J": PickleReader._binint,
    b"K": PickleReader._binint1,
    b"L": PickleReader._long,
    b"M": PickleReader._binint2,
    b"N": PickleReader._none,
    b"P": PickleReader._persid,
    b"Q": PickleReader._binpersid,
    b"R": PickleReader._reduce,
    b"S": PickleReader._string,
    b"T": PickleReader._binstring,
    b"U": PickleReader._short_binstring,
    b"V": PickleReader._unicode,
    b"X": PickleReader._binunicode,
    b"a": PickleReader._append,
    b"b": PickleReader._build,
    b"c": PickleReader._global,
    b"d": PickleReader._dict,
    b"}": PickleReader._empty_dict,
    b"e": PickleReader._appends,
    b"g": PickleReader._get,
    b"h": PickleReader._binget,
    b"i": PickleReader._inst,
    b"j": PickleReader._long_binget,
    b"l": PickleReader._list,
    b"]": PickleReader._empty_list,
    b"o": PickleReader._obj,
    b"p": PickleReader._put,
    b"q": PickleReader._binput,
    b"r": PickleReader._long_binput,
    b"s": PickleReader._setitem,
    b"t": PickleReader._tuple,
    b")": PickleReader._empty_tuple,
    b"u": PickleReader._setitems,
    b"G": PickleReader._binfloat,
    b"\x80": PickleReader._proto,
    b"\x81": PickleReader._newobj,
    b"\x82": PickleReader._refused,
    b"\x83": PickleReader._refused,
    b"\x84": PickleReader._refused,
    b"\x85": PickleReader._tuple1,
    b"\x86": PickleReader._tuple2,
    b"\x87": PickleReader._tuple3,
    b"\x88": PickleReader._newtrue,
    b"\x89": PickleReader._newfalse,
    b"\x8a": PickleReader._long1,
    b"\x8b": PickleReader._long4,
    b"B": PickleReader._binbytes,
    b"C": PickleReader._short_binbytes,
    b"\x8c": PickleReader._short_binunicode,
    b"\x8d": PickleReader._binunicode8,
    b"\x8e": PickleReader._binbytes8,
    b"\x8f": PickleReader._empty_set,
    b"\x90": PickleReader._additems,
    b"\x91": PickleReader._frozenset,
    b"\x92": PickleReader._newobj_ex,
    b"\x93": PickleReader._stack_global,
    b"\x94": PickleReader._memoize,
    b"\x95": PickleReader._frame,
    b"\x96": PickleReader._bytearray8,
    b"\x97": PickleReader._refused,
    b"\x98": PickleReader._refused,
}
_DISPATCH: dict[int, Callable[[PickleReader], Any]] = {op[0]: f for op, f in _OPS.items()}


def read_pickle(
    data: bytes | memoryview,
    *,
    limits: Limits = DEFAULT_LIMITS,
    persistent: PersistentHook | None = None,
) -> Any:
    """The inert value of a whole-file pickle; bytes after STOP are refused (a second,
    hidden pickle or a polyglot)."""
    reader = PickleReader(data, limits=limits, persistent=persistent)
    value = reader.read()
    if reader.pos != len(reader.data):
        raise _fail(
            reader.pos,
            f"{len(reader.data) - reader.pos} bytes follow STOP (a second pickle or appended data)",
        )
    return value
