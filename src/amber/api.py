"""save / load / inspect / open: the glue between the graph layer and the container."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber import (
    adapters,  # noqa: F401  (registers the adapters' names and constructors)
    environment,
    modules,
)
from amber import progress as progress_module
from amber._version import __version__
from amber.container import ContainerReader, TensorEntry, write
from amber.container.reader import Verify, check_verify_mode
from amber.container.writer import check_compress
from amber.errors import (
    FormatError,
    InvalidArgumentError,
    SerializationError,
    UnsupportedVersionError,
    UntrustedTypeError,
)
from amber.gcpause import gc_paused
from amber.graph import GRAPH_PROTOCOL, Encoder
from amber.graph.decode import decode, scan
from amber.graph.names import QualName
from amber.graph.outline import Outline
from amber.graph.outline import outline as make_outline
from amber.graph.trust import REGISTRY, Kind, trusted_set
from amber.legacy.formats import not_foreign
from amber.progress import Progress

if TYPE_CHECKING:
    import numpy as np

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    order: str
    digest: str
    # Format 1.1: the codec the payload is stored with (None: raw, mmap-able) and the
    # bytes it takes in the file (``nbytes`` is always the decoded size).
    codec: str | None = None
    stored_nbytes: int | None = None
    # Format 1.1: the quantization scheme of the stored values (loaded = stored x scale).
    quantization: str | None = None


@dataclass(frozen=True)
class FileInfo:
    """What an .amber file holds, read from its manifest alone (no payload is touched)."""

    path: Path
    format_version: str
    size: int
    manifest_digest: str
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, Any]
    environment: dict[str, Any]
    created_at: str | None
    amber_version: str | None
    object_type: str
    graph_protocol: int | None = None
    # Classes and functions the file names that the default allowlist does not trust.
    untrusted_types: tuple[str, ...] = ()
    # Every class and function the file names (dotted), trusted or not.
    referenced_types: tuple[str, ...] = ()
    # Why the object graph is malformed, if it is (loading would raise FormatError).
    graph_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view (what ``amber inspect --json`` prints)."""
        return {
            "path": str(self.path),
            "format_version": self.format_version,
            "size": self.size,
            "manifest_digest": self.manifest_digest,
            "object_type": self.object_type,
            "created_at": self.created_at,
            "amber_version": self.amber_version,
            "graph_protocol": self.graph_protocol,
            "referenced_types": list(self.referenced_types),
            "untrusted_types": list(self.untrusted_types),
            "graph_error": self.graph_error,
            "tensor_count": len(self.tensors),
            "tensor_bytes": self.tensor_bytes,
            "tensors": [
                {
                    "name": t.name,
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "nbytes": t.nbytes,
                    "order": t.order,
                    "digest": t.digest,
                    "codec": t.codec,
                    "quantization": t.quantization,
                    "stored_nbytes": t.nbytes if t.stored_nbytes is None else t.stored_nbytes,
                }
                for t in self.tensors
            ],
            "metadata": self.metadata,
            "environment": self.environment,
            **self.extra,
        }


def _describe_root(node: Any) -> str:
    """A one-line description of the saved object, from its (unvalidated) root node."""
    if isinstance(node, dict):
        kind = node.get("k")
        items = node.get("v", node.get("items"))
        count = len(items) if isinstance(items, (list, dict)) else None
        if kind == "dict" and count is not None:
            return f"dict ({count} keys)"
        if kind in ("list", "tuple", "set", "frozenset") and count is not None:
            return f"{kind} ({count} items)"
        if kind == "object" and isinstance(node.get("type"), str):
            return node["type"].replace(":", ".")
        return str(kind)
    return type(node).__name__ if node is not None else "None"


def _names(root: Any) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """(referenced, untrusted, graph error) for a root node; imports nothing."""
    if root is None:
        return (), (), None
    try:
        names = scan(root).names
    except FormatError as exc:
        return (), (), str(exc)
    return (*_name_lists(names), None)


def _name_lists(names: Iterable[tuple[Kind, QualName]]) -> tuple[tuple[str, ...], ...]:
    """(every name, the names the default allowlist refuses), dotted, sorted, unique."""
    unique = set(names)
    referenced = tuple(sorted({n.dotted for _, n in unique}))
    untrusted = tuple(sorted({n.dotted for kind, n in unique if not REGISTRY.allows(n, kind)}))
    return referenced, untrusted


def _info(reader: ContainerReader, *, audit_names: bool = True) -> FileInfo:
    """The summary of an open file; ``audit_names`` adds the referenced/untrusted names
    (a walk of the whole graph, which ``load`` does anyway and skips here)."""
    m = reader.manifest
    referenced, untrusted, graph_error = _names(m.get("root")) if audit_names else ((), (), None)
    amber_section = m.get("amber") if isinstance(m.get("amber"), dict) else {}
    return FileInfo(
        path=reader.path,
        format_version=f"{reader.header.major}.{reader.header.minor}",
        size=reader.size,
        manifest_digest="blake3:" + reader.manifest_digest.hex(),
        tensors=tuple(_tensor_info(e) for e in reader.entries.values()),
        metadata=m.get("metadata") if isinstance(m.get("metadata"), dict) else {},
        environment=m.get("environment") if isinstance(m.get("environment"), dict) else {},
        created_at=m.get("created_at") if isinstance(m.get("created_at"), str) else None,
        amber_version=amber_section.get("version"),
        object_type=_describe_root(m.get("root")),
        graph_protocol=amber_section.get("graph_protocol"),
        referenced_types=referenced,
        untrusted_types=untrusted,
        graph_error=graph_error,
        # History of a version exported from a model store (docs/store.md §6).
        extra={"store": m["store"]} if isinstance(m.get("store"), dict) else {},
    )


def _tensor_info(e: TensorEntry) -> TensorInfo:
    codec = None if e.compression is None else e.compression.codec
    scheme = None if e.quantization is None else e.quantization.scheme
    return TensorInfo(
        e.name, e.dtype, e.shape, e.nbytes, e.order, e.digest, codec, e.stored_nbytes, scheme
    )


def check_metadata(metadata: Any) -> dict[str, Any]:
    """A private copy of user ``metadata`` (a JSON object); SerializationError if it is not
    one. Shared with ``Store.save``."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise SerializationError("metadata must be a dict with string keys (JSON object)")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"metadata must be JSON-serializable without NaN/Infinity: {exc}; "
            "store arrays and other values in the object itself"
        ) from None
    # A private copy, so later changes by the caller cannot reach the written manifest.
    return json.loads(json.dumps(metadata))


def encode(obj: Any, metadata: dict[str, Any]) -> tuple[Encoder, dict[str, Any]]:
    """Encode ``obj``: the encoder (its tensors and names) and the manifest keys of the
    file (or store version) that holds it."""
    encoder = Encoder()
    sections: dict[str, Any] = {}
    if modules.is_module(obj):
        obj = modules.unwrap_compiled(obj)  # the module, not torch.compile's wrapper
        # The state dict first: load(into=) reads it without the module's class.
        sections["state_dict"], root = encoder.encode_all([obj.state_dict(), obj])
    else:
        root = encoder.encode(obj)
    extra = {
        "amber": {"version": __version__, "graph_protocol": GRAPH_PROTOCOL},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment.current(n.top_package for _, n in encoder.names),
        "metadata": metadata,
        **sections,
        "root": root,
    }
    return encoder, extra


def save(
    obj: Any,
    path: PathLike,
    *,
    metadata: dict[str, Any] | None = None,
    progress: Progress = None,
    compress: str | None = None,
    quantize: Any = None,
    prune: Any = None,
) -> FileInfo:
    """Save ``obj`` to ``path`` atomically; returns what was written.

    ``compress`` (docs/compression.md): None (the default) stores tensors raw, loaded
    zero-copy; ``"auto"`` compresses each tensor that shrinks by at least 5%;
    ``"zstd"`` / ``"zstd-bytegroup"`` compress every tensor. Compressed tensors are decoded
    into memory when loaded (no mmap). Needs the zstandard package.

    ``quantize`` (docs/compression.md): "int8", "int4", "fp16", "bf16" or
    ``amber.Quantize(...)``: the weight matrices (torch Linear/Conv/Embedding, scikit-learn
    MLP ``coefs_``) are stored quantized with their scales; loading dequantizes them.
    ``prune`` (a fraction, or ``amber.Prune(...)``): the same weights lose their smallest
    magnitudes and are stored sparse (bitmask and values), before any quantization.

    ``progress=True`` draws a bar on stderr (bytes, throughput, time left) while tensors
    are written; a callable receives ``(done_bytes, total_bytes)`` instead.

    Raises SerializationError (with the path inside ``obj``) before anything is written
    when part of ``obj`` cannot be saved, and WriteError when the file cannot be written;
    in both cases nothing appears at ``path`` and an existing file there is untouched.
    """
    from amber import pruning, quantization  # save-only: kept off the load and CLI paths

    _check_save_arguments(obj, path)
    check_compress(compress)
    spec = quantization.as_spec(quantize)
    pruning_spec = pruning.as_spec(prune)
    progress_module.check(progress)
    user_metadata = check_metadata(metadata)
    encoder, extra = encode(obj, user_metadata)
    root = extra["root"]
    tensors, blocks, sparse = encoder.tensors, None, set()
    if pruning_spec is not None:
        tensors, sparse = pruning.plan(obj, tensors, pruning_spec)
    if spec is not None:
        tensors, blocks = quantization.plan(obj, tensors, spec)
    with progress_module.reporting(progress, f"saving {Path(path).name}") as report:
        result = write(
            path,
            tensors,
            extra,
            progress=report,
            compress=compress,
            quantized=blocks,
            sparse=sparse,
        )
    referenced, untrusted = _name_lists(encoder.names)
    return FileInfo(
        path=result.path,
        format_version=_format_version(
            any(e.compression or e.quantization for e in result.tensors)
        ),
        size=result.size,
        manifest_digest="blake3:" + result.manifest_digest.hex(),
        tensors=tuple(_tensor_info(e) for e in result.tensors),
        metadata=user_metadata,
        environment=extra["environment"],
        created_at=extra["created_at"],
        amber_version=__version__,
        object_type=_describe_root(root),
        graph_protocol=GRAPH_PROTOCOL,
        referenced_types=referenced,
        untrusted_types=untrusted,
    )


def _check_save_arguments(obj: Any, path: Any) -> None:
    """``amber.save(model, path)``: the object first. Swapped or wrong arguments get an
    amber error before anything is encoded."""
    import os

    if isinstance(path, (str, os.PathLike)):
        return
    if isinstance(obj, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"amber.save takes the object first and the path second: "
            f"amber.save(model, {str(obj)!r}); the arguments look swapped"
        )
    raise InvalidArgumentError(
        f"amber.save needs a file path (str or os.PathLike) as its second argument, "
        f"not {type(path).__name__}"
    )


def _format_version(compressed: bool) -> str:
    """The version a new file declares: the lowest that has its features."""
    from amber.container.format import FORMAT_MAJOR
    from amber.container.manifest import COMPRESSION_MINOR

    return f"{FORMAT_MAJOR}.{COMPRESSION_MINOR if compressed else 0}"


def _root(reader: ContainerReader) -> Any:
    m = reader.manifest
    section = m.get("amber")
    if not isinstance(section, dict) or "root" not in m:
        raise FormatError(
            f"{reader.path}: the file holds tensors but no amber object graph; "
            "read its tensors with amber.open(path)"
        )
    protocol = section.get("graph_protocol")
    if type(protocol) is not int or protocol < 1:
        raise FormatError(
            f"{reader.path}: manifest 'amber.graph_protocol' must be a positive integer"
        )
    if protocol > GRAPH_PROTOCOL:
        raise UnsupportedVersionError(
            f"{reader.path}: object graph protocol {protocol} is newer than this amber reads "
            f"({GRAPH_PROTOCOL}); upgrade amber to load it"
        )
    return m["root"]


def load(
    path: PathLike,
    *,
    verify: Verify = "full",
    mmap: bool = True,
    writable: bool = True,
    trusted: Iterable[Any] | None = None,
    strict: bool = False,
    device: Any = None,
    into: Any = None,
    keys: Iterable[str] | None = None,
    dequantize: bool = True,
) -> Any:
    """Load the object saved at ``path``.

    ``verify``: "full" checks every tensor digest before building anything; "lazy" checks
    each tensor as it is materialized; "off" checks only the structure and the manifest
    digest. With ``mmap`` (default) arrays are zero-copy views of the file, private and
    copy-on-write: writing to one copies only the pages written, never changes the file,
    and lets a loaded estimator keep training. ``writable=False`` gives read-only views
    instead (writes raise); ``mmap=False`` reads every array into its own memory.

    Every class and function the file names is audited before anything is imported:
    ``trusted`` adds classes/functions (objects or dotted names) to the default allowlist
    for this call. A different minor version of python or of a saved package warns with
    EnvironmentMismatchWarning; ``strict=True`` raises EnvironmentMismatch instead.

    PyTorch: ``device`` ("cuda:0", a torch.device) places every torch tensor there (one
    copy per stored tensor; shared storage stays shared). ``into=module`` loads a saved
    module's or state dict's weights into an existing ``torch.nn.Module`` after checking
    every key, shape and dtype (StateDictMismatch lists all problems; the module is then
    unchanged), and returns the module. ``keys`` loads only these entries of a saved dict
    (a state dict), reading and checking only their tensors.

    Quantized tensors (saved with ``quantize=``) load dequantized, in their original dtype.
    ``dequantize=False`` returns instead a dict of the file's tensors by name, each
    quantized one as an ``amber.QuantizedTensor`` (stored values and scales).
    """
    check_flags(mmap, writable)
    if dequantize is not True:
        if dequantize is not False or into is not None or keys is not None or device:
            raise InvalidArgumentError(
                "dequantize must be True or False, and dequantize=False takes no into=, "
                "keys= or device="
            )
        from amber import quantization

        return quantization.stored_tensors(path, verify=verify)
    return load_from(
        lambda mode: not_foreign(
            path, lambda: ContainerReader(path, verify=mode, use_mmap=mmap, writable=writable)
        ),
        verify=verify,
        trusted=trusted,
        strict=strict,
        device=device,
        into=into,
        keys=keys,
    )


def load_from(
    open_reader: Callable[[Verify], Any],
    *,
    verify: Verify,
    trusted: Iterable[Any] | None,
    strict: bool,
    device: Any,
    into: Any,
    keys: Iterable[str] | None,
) -> Any:
    """``load`` over any source: ``open_reader(verify_mode)`` returns an object with
    ContainerReader's interface (a file, or a version in a store)."""
    check_verify_mode(verify)
    key_list = _check_keys(keys)
    if into is not None:
        modules.check_target(into)
    if key_list is not None and verify == "full":
        verify = "lazy"  # each selected tensor is checked before it is used; others unread
    with gc_paused(), AmberFile.over(open_reader(verify)) as f:
        return f.load(trusted=trusted, strict=strict, device=device, into=into, keys=key_list)


def check_flags(mmap: Any, writable: Any) -> None:
    """InvalidArgumentError unless ``mmap`` and ``writable`` are booleans."""
    if not isinstance(mmap, bool) or not isinstance(writable, bool):
        raise InvalidArgumentError("mmap and writable must be True or False")


def _check_keys(keys: Iterable[str] | None) -> list[str] | None:
    if keys is None:
        return None
    if isinstance(keys, (str, bytes)):
        raise InvalidArgumentError("keys must be a list of strings (entry names)")
    keys = list(keys)  # a generator is read once
    if not all(isinstance(k, str) for k in keys):
        raise InvalidArgumentError("keys must be a list of strings (entry names)")
    return list(dict.fromkeys(keys))


def inspect(path: PathLike) -> FileInfo:
    """Summary of a file from its manifest: tensors, metadata, environment, format version.

    Checks the structure and the manifest digest but reads no payload (see ``verify``).
    """
    with not_foreign(path, lambda: ContainerReader(path, verify="off", use_mmap=False)) as reader:
        return _info(reader)


def outline(path: PathLike, *, max_depth: int = 6) -> Outline:
    """The saved object as a tree of type names and keys, untrusted names marked; reads the
    manifest only and imports nothing the file names."""
    with AmberFile(path, verify="off", mmap=False) as f:
        return f.outline(max_depth=max_depth)


def verify(path: PathLike, *, quick: bool = False) -> FileInfo:
    """Check a file without loading a model: structure and manifest digest, then (unless
    ``quick``) every tensor digest. Raises CorruptFileError naming the first bad tensor."""
    mode: Verify = "off" if quick else "full"
    with not_foreign(path, lambda: ContainerReader(path, verify=mode, use_mmap=True)) as reader:
        return _info(reader, audit_names=False)


class AmberFile:
    """An open .amber file with lazy per-tensor access.

    ``f["layer.weight"]`` reads (and, with ``verify="lazy"``, checks) one tensor without
    touching the others; ``f.load()`` builds the whole object.
    """

    def __init__(
        self, path: PathLike, *, verify: Verify = "lazy", mmap: bool = True, writable: bool = True
    ) -> None:
        check_verify_mode(verify)
        check_flags(mmap, writable)
        self._reader: Any = not_foreign(
            path, lambda: ContainerReader(path, verify=verify, use_mmap=mmap, writable=writable)
        )
        self._info: FileInfo | None = None

    @classmethod
    def over(cls, reader: Any) -> AmberFile:
        """An AmberFile over another source with ContainerReader's interface (``manifest``,
        ``entries``, ``array``, ``path``): a stored version."""
        self = cls.__new__(cls)
        self._reader = reader
        self._info = None
        return self

    @property
    def info(self) -> FileInfo:
        """The file's summary (as ``amber.inspect`` gives it), computed on first use."""
        if self._info is None:
            self._info = _info(self._reader)
        return self._info

    def names(self) -> list[str]:
        return list(self._reader.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._reader.entries)

    def __len__(self) -> int:
        return len(self._reader.entries)

    def __contains__(self, name: object) -> bool:
        return name in self._reader.entries

    def __getitem__(self, name: str) -> np.ndarray:
        return self._reader.array(name)

    def load(
        self,
        *,
        trusted: Iterable[Any] | None = None,
        strict: bool = False,
        device: Any = None,
        into: Any = None,
        keys: Iterable[str] | None = None,
    ) -> Any:
        """Build the saved object (tensors as views of the file when mmap is on); see
        ``amber.load`` for the options."""
        key_list = _check_keys(keys)
        root = _root(self._reader)
        prelude = self._reader.manifest.get("state_dict")
        if into is not None:
            modules.check_target(into)
            if prelude is not None:  # a saved module: its weights, without its class
                root = prelude
            from amber.checkpoint import is_checkpoint  # only into= needs it

            if is_checkpoint(root):  # a training checkpoint: its model's weights
                state = self._decode(root, trusted, strict, None, ["model"], None)["model"]
                if key_list is not None and isinstance(state, Mapping):
                    state = {k: state[k] for k in key_list if k in state}
            else:
                state = self._decode(root, trusted, strict, None, key_list, None)
            return modules.load_into(into, state, str(self._reader.path), key_list)
        if key_list is not None and prelude is not None:  # entries of a module's state dict
            root, prelude = prelude, None
        try:
            return self._decode(
                root, trusted, strict, modules.check_device(device), key_list, prelude
            )
        except UntrustedTypeError as exc:
            if prelude is None:
                raise
            raise UntrustedTypeError(
                f"{exc}. To load only the weights into a model you build, use "
                "amber.load(path, into=model)"
            ) from None

    def _decode(
        self,
        root: Any,
        trusted: Iterable[Any] | None,
        strict: bool,
        device: Any,
        keys: list[str] | None,
        prelude: Any,
    ) -> Any:
        saved_env = self._reader.manifest.get("environment")

        def check_environment() -> None:
            if isinstance(saved_env, dict):
                environment.check(saved_env, strict=strict, source=str(self._reader.path))

        return decode(
            root,
            self._reader.array,
            self._reader.entries,
            trusted_set(trusted),
            before_construct=check_environment,
            bits=lambda name: self._reader.array(name, bits=True),
            device=device,
            keys=keys,
            prelude=prelude,
        )

    def outline(self, *, max_depth: int = 6) -> Outline:
        """The saved object as a tree of type names and keys (see ``amber.api.outline``)."""
        return make_outline(self._reader.manifest.get("root"), self._reader.entries, max_depth)

    def verify(self) -> None:
        """Check every tensor digest now."""
        self._reader.verify_all()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.metadata

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> AmberFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(
    path: PathLike, *, verify: Verify = "lazy", mmap: bool = True, writable: bool = True
) -> AmberFile:
    """Open a file for lazy access to individual tensors (see AmberFile)."""
    return AmberFile(path, verify=verify, mmap=mmap, writable=writable)
