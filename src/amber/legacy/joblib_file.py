"""joblib files: whole-file compression (output capped) and arrays written after their
``NumpyArrayWrapper`` in the pickle stream (16-byte aligned; object arrays as nested pickles)."""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from typing import Any

from amber.errors import FormatError, MissingDependencyError
from amber.legacy import formats
from amber.legacy.pickle_vm import PickleReader
from amber.legacy.translate import Refused, make_dtype, shape_of
from amber.legacy.values import Call, Global, PDict

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
# Decompressed bytes one file may produce, unless the caller allows more.
DEFAULT_MAX_OUTPUT = 8 << 30
_CHUNK = 1 << 24


def decompress(data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """The decompressed content of a compressed joblib file; FormatError when it is damaged
    or would exceed ``max_output`` bytes (checked while decompressing, never after)."""
    kind = formats.compression(data[:8])
    if kind is None:
        return data
    if kind == "lz4":
        try:
            import lz4.frame as lz4_frame  # type: ignore[import-not-found]
        except ImportError:
            raise MissingDependencyError(
                "this joblib file is lz4-compressed; install lz4 to read it"
            ) from None
        engine: Any = lz4_frame.LZ4FrameDecompressor()
    elif kind == "zlib":
        engine = zlib.decompressobj()
    elif kind == "gzip":
        engine = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif kind == "bz2":
        engine = bz2.BZ2Decompressor()
    else:
        engine = lzma.LZMADecompressor()
    out = bytearray()
    pending = data
    try:
        while True:
            room = max_output - len(out)
            chunk = engine.decompress(pending, max_length=min(_CHUNK, room + 1))
            # zlib hands back the input it has not consumed yet; bz2/lzma keep it inside.
            pending = getattr(engine, "unconsumed_tail", b"")
            out += chunk
            if len(out) > max_output:
                raise FormatError(
                    f"joblib: the {kind} stream decompresses to more than {max_output} bytes; "
                    "refused (pass a larger max_output if the file is trusted to be that big)"
                )
            if getattr(engine, "eof", False):
                break
            if not chunk and getattr(engine, "needs_input", True):
                raise FormatError(f"joblib: the {kind} stream is truncated")
    except (zlib.error, OSError, EOFError, lzma.LZMAError, RuntimeError) as exc:
        raise FormatError(f"joblib: the {kind} stream is damaged ({exc})") from None
    if getattr(engine, "unused_data", b""):
        raise FormatError(f"joblib: bytes follow the end of the {kind} stream; refused")
    return bytes(out)


def array_hook(call: Call, reader: PickleReader) -> Any:
    """After the BUILD of a ``NumpyArrayWrapper``: read the array that follows it."""
    func = call.func
    if not isinstance(func, Global) or func.dotted != WRAPPER:
        return None
    state = call.state
    if not isinstance(state, PDict) or call.args.items:
        raise Refused(f"joblib: at byte {call.offset}: malformed array wrapper")
    fields = dict(state.pairs)
    subclass = fields.get("subclass")
    if not isinstance(subclass, Global) or subclass.dotted not in (
        "numpy.ndarray",
        "numpy.memmap",
    ):
        raise Refused(f"joblib: at byte {call.offset}: only plain numpy arrays are read")
    order = fields.get("order")
    dtype_call = fields.get("dtype")
    if order not in ("C", "F") or not isinstance(dtype_call, Call):
        raise Refused(f"joblib: at byte {call.offset}: malformed array wrapper")
    dtype = make_dtype(dtype_call)
    shape = shape_of(fields.get("shape"))
    if dtype.hasobject:
        reader.raw(0, "object array")
        nested = PickleReader(
            reader.data, reader.pos, limits=reader.limits, persistent=None, build_hook=None
        )
        value = nested.read()
        reader.pos = nested.pos
        return value
    alignment = fields.get("numpy_array_alignment_bytes")
    if alignment is not None:
        if alignment not in (8, 16, 32, 64):
            raise Refused(f"joblib: at byte {call.offset}: odd array alignment {alignment!r}")
        padding = reader.raw(1, "array padding")[0]
        if padding > alignment:
            raise Refused(f"joblib: at byte {reader.pos}: padding longer than the alignment")
        reader.raw(padding, "array padding")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    data = reader.raw(nbytes, f"array data of shape {shape} and dtype {dtype}")
    import numpy as np

    array = np.frombuffer(bytearray(data), dtype=dtype)
    array = array.reshape(shape[::-1]).transpose() if order == "F" else array.reshape(shape)
    if not dtype.isnative and dtype.names is None and dtype.itemsize > 1:
        array = array.byteswap().view(dtype.newbyteorder("="))  # joblib.load does the same
    return array
