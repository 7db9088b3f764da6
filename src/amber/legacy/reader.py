"""One entry point over every foreign format: the file's bytes -> amber graph nodes plus
tensors (``parse``), and the object, built by amber's decoder after its audit (``load``)."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.container.reader import open_regular, pread_exact
from amber.errors import AmberError, FormatError, ReadError
from amber.legacy import formats
from amber.legacy.joblib_file import DEFAULT_MAX_OUTPUT, array_hook, decompress
from amber.legacy.numpy_file import read_npy, read_npz
from amber.legacy.pickle_vm import DEFAULT_LIMITS, Limits, PickleError, PickleReader
from amber.legacy.policy import never_constructed
from amber.legacy.torch_file import read_archive, read_legacy
from amber.legacy.translate import Refused, Translator

# Largest file read (they are read whole into memory).
MAX_FILE_BYTES = 64 << 30


@dataclass
class Parsed:
    """A foreign file read into inert nodes: ``root`` and the arrays it names."""

    path: Path
    format: str
    root: Any
    tensors: dict[str, Any] = field(default_factory=dict)


def read_bytes(path: Path) -> bytes:
    """The whole file at ``path``; ReadError when it is missing, not a regular file, too
    large, or cannot be read."""
    fd, size = open_regular(path, "a model file")
    try:
        if size > MAX_FILE_BYTES:
            raise ReadError(27, f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return pread_exact(fd, size, 0, path)
    except OSError as exc:
        if isinstance(exc, ReadError):
            raise
        raise ReadError(exc.errno, f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _whole_pickle(data: bytes, limits: Limits) -> Any:
    """A pickle (joblib's arrays read in place) with nothing after its STOP."""
    reader = PickleReader(data, limits=limits, build_hook=array_hook)
    value = reader.read()
    if reader.pos != len(data):
        raise PickleError(
            f"pickle: at byte {reader.pos}: {len(data) - reader.pos} bytes follow STOP (a "
            "second pickle or appended data); the file was refused"
        )
    return value


def parse_bytes(
    path: Path,
    data: bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    max_output: int = DEFAULT_MAX_OUTPUT,
    trusted: frozenset[str] = frozenset(),
) -> Parsed:
    """Read ``data`` (the content of ``path``) without executing anything."""
    fmt = formats.detect(path, data[:64])
    if fmt not in formats.CONVERTIBLE:
        raise FormatError(
            f"{path}: amber reads pickle, joblib, torch.save and numpy files here"
            + (f"; this is a {fmt} file" if fmt else ", and this is none of them")
        )
    try:
        return _parse(path, data, fmt, limits, max_output, trusted)
    except AmberError:
        raise
    except RecursionError:
        raise FormatError(f"{path}: objects nest too deeply to read; refused") from None
    except _READ_ERRORS as exc:  # a container library's own complaint about the bytes
        raise FormatError(
            f"{path}: not a readable {fmt} file ({type(exc).__name__}: {exc}); refused"
        ) from None


# What the standard library's zip, struct and codec readers raise on damaged input.
_READ_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    EOFError,
    NotImplementedError,
    struct.error,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
)


def _parse(
    path: Path,
    data: bytes,
    fmt: str,
    limits: Limits,
    max_output: int,
    trusted: frozenset[str],
) -> Parsed:
    tensors: dict[str, Any] = {}
    if fmt == formats.JOBLIB:
        value = _whole_pickle(decompress(data, max_output), limits)
    elif fmt == formats.PICKLE:
        value = _whole_pickle(data, limits)
    elif fmt == formats.TORCH:
        value = read_archive(data, tensors, limits)
    elif fmt == formats.TORCH_LEGACY:
        value = read_legacy(data, tensors, limits)
    elif fmt == formats.NPY:
        value = read_npy(data, limits)
    else:
        value = read_npz(data, limits, max_output)
    translator = Translator(trusted)
    translator.tensors.update(tensors)
    root = translator.node(value)
    return Parsed(path, fmt, root, translator.tensors)


def parse(
    path: os.PathLike[str] | str,
    *,
    max_output: int = DEFAULT_MAX_OUTPUT,
    trusted: Iterable[Any] | None = None,
) -> Parsed:
    """Read the foreign file at ``path`` into inert nodes (nothing is imported or run);
    ``trusted`` names classes the caller trusts (they may be called by REDUCE)."""
    import amber.api  # noqa: F401  (the adapters' allowlists tell classes from functions)
    from amber.graph.trust import trusted_set

    path = Path(path)
    data = read_bytes(path)
    return parse_bytes(path, data, max_output=max_output, trusted=trusted_set(trusted))


def build(parsed: Parsed, trusted: Iterable[Any] | None = None) -> Any:
    """The object of ``parsed``: amber's decoder audits every name, then constructs."""
    import amber.api  # noqa: F401  (registers the adapters' names, schemas and constructors)
    from amber.graph.decode import decode, scan
    from amber.graph.trust import REGISTRY, trusted_set

    never = sorted(
        {
            name.dotted
            for kind, name in scan(parsed.root).names
            if never_constructed(name.dotted) and not REGISTRY.allows(name, kind)
        }
    )
    if never:
        raise Refused(
            f"{parsed.path}: it would import {', '.join(never)}, which amber never constructs "
            "from a foreign file (code execution, processes, files or imports)",
            tuple(never),
        )
    tensors = parsed.tensors
    return decode(parsed.root, tensors.__getitem__, tensors.keys(), trusted_set(trusted))


def load(
    path: os.PathLike[str] | str,
    *,
    trusted: Iterable[Any] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> Any:
    """The object a pickle/joblib/torch.save/numpy file holds, rebuilt the way an ``.amber``
    file is: every name audited before anything is imported, typed state checked."""
    return build(parse(path, max_output=max_output, trusted=trusted), trusted)
