"""A corpus of hostile pickle, joblib, torch.save and numpy files, built from opcodes.

Each case is a file that, loaded by ``pickle.load``/``joblib.load``/``torch.load``/
``numpy.load(allow_pickle=True)``, would import or run something it should not, or that
exercises a known scanner bypass (computed or memo-shuffled STACK_GLOBAL operands, INST/OBJ,
BUILD on modules, dotted names through innocent modules, stacked pickles, FRAME straddling,
EXT codes, zip tricks, compressed joblib payloads, payloads after an array, nested loaders,
gadget functions). ``build(directory)`` writes them all and returns ``[(name, path)]``.
Used by ``tests/legacy/test_hostile.py`` and ``benchmarks/scanners.py``. Nothing here is
ever loaded by a real unpickler.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

PROTO = b"\x80\x04"
STOP = b"."


def s(text: str) -> bytes:
    """SHORT_BINUNICODE (or BINUNICODE) of ``text``."""
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def b(data: bytes) -> bytes:
    return (
        b"C" + bytes([len(data)]) + data
        if len(data) < 256
        else b"B" + struct.pack("<I", len(data)) + data
    )


def g(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0 spelling)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL with constant operands."""
    return s(module) + s(name) + b"\x93"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` by REDUCE."""
    return func + tup(*args) + b"R"


def pickle_of(body: bytes, proto: bytes = PROTO) -> bytes:
    return proto + body + STOP


def gadget(module: str, name: str, *args: bytes, stack_global: bool = True) -> bytes:
    f = sg(module, name) if stack_global else g(module, name)
    return pickle_of(call(f, *args))


CMD = s("echo amber-hostile > /dev/null")


def _gadgets() -> dict[str, bytes]:
    out = {
        "os_system": gadget("os", "system", CMD),
        "posix_system": gadget("posix", "system", CMD, stack_global=False),
        "nt_system": gadget("nt", "system", CMD),
        "subprocess_popen": gadget("subprocess", "Popen", b"]" + CMD + b"a"),
        "subprocess_check_output": gadget("subprocess", "check_output", b"]" + CMD + b"a"),
        "builtins_eval": gadget("builtins", "eval", s("__import__('os').system('true')")),
        "builtins_exec": gadget("builtins", "exec", s("import os")),
        "builtins_compile": gadget("builtins", "compile", s("1"), s("f"), s("eval")),
        "builtins_open": gadget("builtins", "open", s("/etc/passwd")),
        "builtins_import": gadget("builtins", "__import__", s("os")),
        "py2_builtin_eval": pickle_of(call(g("__builtin__", "eval"), s("1")), b"\x80\x02"),
        "getattr_chain": pickle_of(
            call(
                sg("builtins", "getattr"), call(sg("builtins", "__import__"), s("os")), s("system")
            )
            + tup(CMD)
            + b"R"
        ),
        "builtins_type": gadget("builtins", "type", s("X"), b")", b"}"),
        "pkgutil_resolve_name": gadget("pkgutil", "resolve_name", s("os:system")),
        "importlib_import_module": gadget("importlib", "import_module", s("os")),
        "pydoc_locate": gadget("pydoc", "locate", s("os.system")),
        "operator_attrgetter": gadget("operator", "attrgetter", s("system")),
        "operator_methodcaller": gadget("operator", "methodcaller", s("system"), CMD),
        "marshal_function": pickle_of(
            call(sg("types", "FunctionType"), call(sg("marshal", "loads"), b(b"\xe3" * 8)), b"}")
        ),
        "runpy_run_code": gadget("runpy", "_run_code", s("import os"), b"}"),
        "runpy_run_path": gadget("runpy", "run_path", s("/tmp/x.py")),
        "pty_spawn": gadget("pty", "spawn", s("/bin/sh")),
        "pip_main": gadget("pip", "main", b"]" + s("install") + b"a"),
        "ensurepip_bootstrap": gadget("ensurepip", "bootstrap"),
        "interpreters_run_string": gadget("_interpreters", "run_string", b"K\x01", s("1")),
        "asyncio_subprocess": gadget("asyncio.subprocess", "create_subprocess_shell", CMD),
        "asyncio_base_events": gadget("asyncio.unix_events", "_UnixSubprocessTransport"),
        "cprofile_run": gadget("cProfile", "run", s("import os")),
        "profile_run": gadget("profile", "run", s("import os")),
        "timeit_timeit": gadget("timeit", "timeit", s("import os")),
        "codecs_open": gadget("codecs", "open", s("/tmp/amber-hostile"), s("w")),
        "logging_filehandler": gadget("logging", "FileHandler", s("/tmp/amber-hostile")),
        "shutil_rmtree": gadget("shutil", "rmtree", s("/tmp/amber-hostile-dir")),
        "webbrowser_open": gadget("webbrowser", "open", s("http://127.0.0.1:1/")),
        "ctypes_cdll": gadget("ctypes", "CDLL", s("libc.so.6")),
        "socket_connection": gadget("socket", "create_connection", tup(s("127.0.0.1"), b"K\x01")),
        "code_interpreter": gadget("code", "InteractiveInterpreter"),
        "nested_pickle_loads": gadget("pickle", "loads", b(b"\x80\x04N.")),
        "nested_c_pickle_loads": gadget("_pickle", "loads", b(b"\x80\x04N.")),
        "nested_torch_load": gadget("torch", "load", s("/tmp/x.pt")),
        "nested_torch_serialization": gadget("torch.serialization", "load", s("/tmp/x.pt")),
        "nested_numpy_load": gadget("numpy", "load", s("/tmp/x.npy"), b"\x88"),
        "numpy_runstring": gadget("numpy.testing._private.utils", "runstring", s("1"), b"}"),
        "torch_hub_load": gadget("torch.hub", "load", s("x/y"), s("m")),
        "partial_of_system": pickle_of(call(sg("functools", "partial"), sg("os", "system"), CMD)),
        "defaultdict_factory": pickle_of(
            call(sg("collections", "defaultdict"), sg("os", "system"))
        ),
        "reconstructor_of_popen": pickle_of(
            call(
                sg("copyreg", "_reconstructor"),
                sg("subprocess", "Popen"),
                sg("builtins", "object"),
                b"N",
            )
        ),
        "newobj_popen": pickle_of(sg("subprocess", "Popen") + tup(b"]" + CMD + b"a") + b"\x81"),
        "newobj_ex_popen": pickle_of(
            sg("subprocess", "Popen") + tup(CMD) + b"}" + s("shell") + b"\x88s" + b"\x92"
        ),
    }
    return out


def _bypasses() -> dict[str, bytes]:
    memo_shuffled = (
        PROTO
        + s("system")
        + b"\x94"  # memo 0 = "system"
        + s("os")
        + b"\x94"  # memo 1 = "os"
        + b"0"  # pop
        + b"0"
        + b"h\x01"  # "os"
        + b"h\x00"  # "system"
        + b"\x93"
        + tup(CMD)
        + b"R."
    )
    computed = (
        PROTO
        + call(sg("builtins", "str"), s("os"))  # a computed module name
        + s("system")
        + b"\x93"
        + tup(CMD)
        + b"R."
    )
    inst = b"(" + CMD + b"ios\nsystem\n."
    obj = PROTO + b"(" + sg("os", "system") + CMD + b"o."
    build_on_module = PROTO + sg("sys", "modules") + b"}" + s("x") + b"K\x01s" + b"b."
    build_module = PROTO + g("os", "path") + b"}" + s("sep") + s("x") + b"sb."
    dotted = gadget("collections", "_sys.modules")
    dotted_numpy = gadget("numpy", "os.system", CMD)
    dotted_torch = gadget("torch", "serialization.pickle.loads", b(b"N."))
    benign = PROTO + b"}" + s("a") + b"K\x01s."
    stacked = benign + gadget("os", "system", CMD)
    after = benign + b"\x00" * 8 + gadget("os", "system", CMD)
    frame_body = call(sg("os", "system"), CMD) + STOP
    straddle = PROTO + b"\x95" + struct.pack("<Q", 5) + frame_body
    frame_lie = PROTO + b"\x95" + struct.pack("<Q", 1 << 40) + frame_body
    ext1 = PROTO + b"\x82\x01" + tup(CMD) + b"R."
    ext2 = PROTO + b"\x83\x01\x00" + tup(CMD) + b"R."
    ext4 = PROTO + b"\x84\x01\x00\x00\x00" + tup(CMD) + b"R."
    next_buffer = b"\x80\x05\x97."
    persid = PROTO + s("os.system") + b"Q."
    memo_get_missing = PROTO + b"h\x07."
    memo_put_twice = PROTO + b"N\x94" + b"0N" + b"q\x00."
    huge_bytes = PROTO + b"\x8e" + struct.pack("<Q", 1 << 60) + b"xx."
    huge_long = PROTO + b"\x8b" + struct.pack("<i", 1 << 30) + b"\x00."
    unknown_opcode = PROTO + b"\xff."
    truncated = gadget("os", "system", CMD)[:-6]
    deep = PROTO + b"]" * 100_000 + b"a" * 99_999 + b"."
    proto_6 = b"\x80\x06N."
    reduce_non_tuple = PROTO + sg("os", "system") + CMD + b"R."
    setstate_special = (
        PROTO
        + call(
            sg("copyreg", "_reconstructor"),
            sg("sklearn.linear_model._logistic", "LogisticRegression"),
            sg("builtins", "object"),
            b"N",
        )
        + b"}"
        + s("__class__")
        + sg("os", "system")
        + b"sb."
    )
    rebuild_hooks = pickle_of(
        call(
            sg("torch._utils", "_rebuild_tensor_v2"),
            sg("os", "system"),
            b"K\x00",
            tup(b"K\x01"),
            tup(b"K\x01"),
            b"\x89",
            call(sg("collections", "OrderedDict")),
        )
    )
    ndarray_subclass = pickle_of(
        call(
            sg("numpy._core.multiarray", "_reconstruct"), sg("os", "system"), tup(b"K\x00"), b(b"b")
        )
    )
    return {
        "stack_global_memo_shuffled": memo_shuffled,
        "stack_global_computed": computed,
        "inst_opcode": inst,
        "obj_opcode": obj,
        "build_on_sys_modules": build_on_module,
        "build_sets_module_attribute": build_module,
        "dotted_through_collections": dotted,
        "dotted_through_numpy": dotted_numpy,
        "dotted_through_torch": dotted_torch,
        "stacked_pickles": stacked,
        "pickle_after_padding": after,
        "frame_straddling": straddle,
        "frame_length_lie": frame_lie,
        "ext1": ext1,
        "ext2": ext2,
        "ext4": ext4,
        "next_buffer": next_buffer,
        "persistent_id_in_plain_pickle": persid,
        "memo_get_missing": memo_get_missing,
        "memo_put_twice": memo_put_twice,
        "huge_bytes_claim": huge_bytes,
        "huge_long": huge_long,
        "unknown_opcode": unknown_opcode,
        "truncated": truncated,
        "deep_nesting": deep,
        "protocol_6": proto_6,
        "reduce_args_not_tuple": reduce_non_tuple,
        "state_sets_class": setstate_special,
        "torch_rebuild_with_gadget": rebuild_hooks,
        "ndarray_subclass_gadget": ndarray_subclass,
    }


# -- containers -----------------------------------------------------------------------------

EVIL = gadget("os", "system", CMD)


def _zip(members: list[tuple[str, bytes]], compress: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", compression=compress) as archive:
        warnings.simplefilter("ignore")  # duplicate names are one of the cases
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def _torch_members(data_pkl: bytes = EVIL) -> list[tuple[str, bytes]]:
    return [
        ("archive/data.pkl", data_pkl),
        ("archive/version", b"3\n"),
        ("archive/byteorder", b"little"),
    ]


def _mismatched_local_name() -> bytes:
    raw = bytearray(_zip(_torch_members(pickle_of(b"N"))))
    local = raw.find(b"archive/data.pkl")  # first occurrence: the local header's name
    raw[local : local + 16] = b"archive/evil.pkl"
    return bytes(raw)


def _encrypted_flag() -> bytes:
    raw = bytearray(_zip(_torch_members()))
    central = raw.find(b"PK\x01\x02")
    raw[central + 8] |= 0x1
    raw[6] |= 0x1
    return bytes(raw)


def _joblib_array_then_payload() -> bytes:
    import joblib
    import numpy as np

    out = io.BytesIO()
    joblib.dump(np.arange(4.0), out)
    return out.getvalue() + EVIL


def _joblib_array_with_payload_inside() -> bytes:
    """A joblib wrapper whose object array is a nested hostile pickle."""
    import joblib
    import numpy as np

    out = io.BytesIO()
    joblib.dump(np.array([1, "x"], dtype=object), out)
    raw = out.getvalue()
    nested = raw.find(b"\x80\x05", 4)  # the nested pickle of the object array
    return raw[:nested] + EVIL + raw[nested:]


def _npy_object(payload: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def _torch_legacy(payload: bytes) -> bytes:
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    version = b"\x80\x02M\xe9\x03."
    info = b"\x80\x02}."
    return magic + version + info + payload + b"\x80\x02]."


def _containers() -> dict[str, tuple[str, bytes]]:
    evil_joblib = EVIL
    return {
        "joblib_zlib_payload": (".joblib", zlib.compress(evil_joblib)),
        "joblib_gzip_payload": (".joblib", gzip.compress(evil_joblib)),
        "joblib_bz2_payload": (".joblib", bz2.compress(evil_joblib)),
        "joblib_xz_payload": (".joblib", lzma.compress(evil_joblib)),
        "joblib_lzma_payload": (".joblib", lzma.compress(evil_joblib, format=lzma.FORMAT_ALONE)),
        "joblib_zlib_bomb": (".joblib", zlib.compress(b"\x80\x04(" + b"N" * (64 << 20))),
        "joblib_payload_after_array": (".joblib", _joblib_array_then_payload()),
        "joblib_object_array_payload": (".joblib", _joblib_array_with_payload_inside()),
        "torch_zip_payload": (".pt", _zip(_torch_members())),
        "torch_zip_traversal_name": (".pt", _zip([("../data.pkl", EVIL)])),
        "torch_zip_absolute_name": (".pt", _zip([("/archive/data.pkl", EVIL)])),
        "torch_zip_two_tops": (
            ".pt",
            _zip([("a/data.pkl", pickle_of(b"N")), ("b/data.pkl", EVIL)]),
        ),
        "torch_zip_extra_pickle": (
            ".pt",
            _zip([*_torch_members(pickle_of(b"N")), ("archive/constants.pkl", EVIL)]),
        ),
        "torch_zip_non_pickle_extension": (
            ".pt",
            _zip([*_torch_members(pickle_of(b"N")), ("archive/data/payload.bin", EVIL)]),
        ),
        "torch_zip_deflated": (".pt", _zip(_torch_members(), zipfile.ZIP_DEFLATED)),
        "torch_zip_duplicate_member": (
            ".pt",
            _zip([*_torch_members(pickle_of(b"N")), ("archive/data.pkl", EVIL)]),
        ),
        "torch_zip_local_central_mismatch": (".pt", _mismatched_local_name()),
        "torch_zip_encrypted_flag": (".pt", _encrypted_flag()),
        "torch_zip_in_zip": (".pt", _zip([("archive/model.zip", _zip(_torch_members()))])),
        "torch_zip_data_pkl_is_zip": (".pt", _zip(_torch_members(_zip(_torch_members())))),
        "torch_zip_persistent_gadget": (
            ".pt",
            _zip(
                _torch_members(
                    pickle_of(
                        tup(s("storage"), sg("os", "system"), s("0"), s("cpu"), b"K\x01") + b"Q"
                    )
                )
            ),
        ),
        "torch_legacy_payload": (".pt", _torch_legacy(EVIL)),
        "npy_object_payload": (".npy", _npy_object(EVIL)),
        "npz_object_payload": (".npz", _zip([("x.npy", _npy_object(EVIL))])),
        "npz_non_npy_member": (".npz", _zip([("x.npy", _npy_object(EVIL)), ("y.pkl", EVIL)])),
    }


# Cases whose bytes run, import or open nothing under one pickle.load / torch.load /
# joblib.load (it raises first, the stream holds no payload, the payload only builds a
# harmless object, or it sits after the first STOP): amber refuses them as unreadable or
# unsupported; a scanner calling one of them clean has missed no payload. Every other case
# would run code, import a module, touch files, processes or the network, or exhaust memory.
NO_PAYLOAD = frozenset(
    {
        "ext1",
        "ext2",
        "ext4",
        "next_buffer",
        "memo_get_missing",
        "memo_put_twice",
        "huge_bytes_claim",
        "huge_long",
        "unknown_opcode",
        "truncated",
        "deep_nesting",
        "protocol_6",
        "persistent_id_in_plain_pickle",
        "reduce_args_not_tuple",
        "frame_length_lie",
        "stacked_pickles",
        "pickle_after_padding",
        "dotted_through_collections",
        "builtins_type",
        "code_interpreter",
        "asyncio_base_events",
        "marshal_function",
        "operator_attrgetter",
        "operator_methodcaller",
        "interpreters_run_string",
        "torch_zip_local_central_mismatch",
        "torch_zip_in_zip",
        "torch_zip_data_pkl_is_zip",
    }
)


def cases() -> dict[str, tuple[str, bytes]]:
    """Every case: name -> (suffix, bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    for name, data in {**_gadgets(), **_bypasses()}.items():
        out[name] = (".pkl", data)
    out.update(_containers())
    return out


def build(
    directory: Path, select: Callable[[str], bool] = lambda name: True
) -> list[tuple[str, Path]]:
    """Write every case under ``directory``; returns ``[(name, path)]``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (suffix, data) in cases().items():
        if not select(name):
            continue
        path = directory / f"{name}{suffix}"
        path.write_bytes(data)
        out.append((name, path))
    return out
