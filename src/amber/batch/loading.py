"""How a batch job gets its model: resolved once on the driver to one immutable version,
loaded once per worker process on the executors, never pickled.

The driver turns a spec (``"churn@production"``) into a ``ModelRef``: plain strings naming
the version (``churn@7``), its content digest and how executors reach it, either

- ``ship="file"``: the version exported (and fully verified) into one standalone ``.amber``
  file that the engine copies to every node (Spark: ``SparkContext.addFile``); the executor
  checks the copy's BLAKE3 digest against the driver's before loading it; or
- ``ship="store"``: a store every node can reach (a shared folder, or an ``s3://`` store);
  the executor opens it, checks that ``churn@7`` still has the driver's content digest,
  and loads it through the store's verified, content-addressed cache (for ``s3://``: the
  node's object cache under ``$AMBER_CACHE``, shared by the node's workers).

No credentials travel: a reference names the store's URL and, for an S3-compatible server,
its endpoint; executors authenticate with their own environment (``AWS_*`` variables, an
instance role, a mounted web-identity token).

Either way the executor loads with amber's audited loader (``amber.load`` / ``Store.load``)
and keeps the model in a per-process cache keyed by digest, so a Python worker that runs
many tasks loads it once; arrays are memory-mapped, so the workers of one node share pages.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.batch import calling, columns
from amber.errors import CorruptFileError, InvalidArgumentError, StoreError

SHIP_MODES = ("auto", "file", "store")


@dataclass(frozen=True)
class ModelRef:
    """What travels to executors: names and digests only (a few hundred bytes)."""

    version: str
    content_digest: str
    method: str
    signature: dict[str, Any] | None
    store: str | None = None
    endpoint: str | None = None  # the S3-compatible server of an s3:// store, never secret
    file: str | None = None
    file_digest: str | None = None
    trusted: tuple[Any, ...] = field(default=())


@dataclass
class Prepared:
    """A model ready in this process: the object, the input plan and the bound method."""

    model: Any
    plan: columns.Plan
    call: Any


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def open_store(url: str | os.PathLike[str], *, endpoint: str | None = None) -> Any:
    """The store at ``url``: a local path (or ``file://`` URL) that must already be a
    store, or ``s3://bucket/prefix`` (``endpoint``: an S3-compatible server; credentials
    come from this process's environment). Driver and executors open stores here."""
    from amber.store.store import Store

    text = os.fspath(url)
    if _is_remote(text):
        return Store(text, endpoint=endpoint)  # unknown schemes are refused there
    if endpoint is not None:
        raise InvalidArgumentError("endpoint= applies to s3:// stores, not to a folder")
    path = Path(text.removeprefix("file://"))
    if not path.is_dir():
        raise StoreError(f"no store at {path}: give a folder that every node can read")
    return Store(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a whole file, hex (read in 8 MiB pieces)."""
    import blake3

    hasher = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def resolve(
    spec: str,
    store: Any,
    *,
    method: str,
    ship: str = "auto",
    trusted: Iterable[Any] | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> tuple[ModelRef, Prepared, Path | None]:
    """On the driver: resolve ``spec`` once, load and verify that version (a damaged object
    fails here, before any task), and describe it for executors. Returns the reference,
    the driver's prepared model, and the file to ship (``ship="file"``)."""
    from amber.store.store import Store

    if ship not in SHIP_MODES:
        raise InvalidArgumentError(f"ship must be one of {', '.join(SHIP_MODES)}, not {ship!r}")
    if not isinstance(spec, str):
        raise InvalidArgumentError(
            f"give a store spec such as 'churn@production', not a {type(spec).__name__}: "
            "executors load a stored version, never a pickled object"
        )
    handle = (
        store
        if isinstance(store, Store)
        else open_store(store or os.environ.get("AMBER_STORE", ".amber"))
    )
    owned = handle is not store
    trusted_t = tuple(trusted or ())
    try:
        version = handle.get(spec)  # one immutable version for the whole job
        url = _store_url(handle)
        endpoint = getattr(handle.backend, "endpoint", None) if url and _is_remote(url) else None
        if ship == "auto":
            ship = "store" if url is not None and _is_remote(url) else "file"
        model = handle.load(version.spec, verify="full", trusted=trusted_t or None)
        shipped: Path | None = None
        digest = None
        if ship == "file":
            folder = Path(workdir) if workdir is not None else _shipping_dir()
            name = f"{version.name}-{version.version}-{version.content_digest[:32]}.amber"
            shipped = folder / name
            if not shipped.is_file():  # one export per version and process (its own folder)
                handle.export(version.spec, shipped)
            digest = file_digest(shipped)
        elif url is None:
            raise InvalidArgumentError(
                "ship='store' needs a store that executors can open by URL or path; "
                "this one has neither (use ship='file')"
            )
    finally:
        if owned:
            handle.close()
    ref = ModelRef(
        version=version.spec,
        content_digest=version.content_digest,
        method=method,
        signature=version.signature,
        store=url if ship == "store" else None,
        endpoint=endpoint if ship == "store" else None,
        file=shipped.name if shipped is not None else None,
        file_digest=digest,
        trusted=trusted_t,
    )
    return ref, prepare(model, ref), shipped


_SHIPPING: list[str] = []


def _shipping_dir() -> Path:
    """This process's private folder of exported versions, removed at exit (executors fetch
    shipped files when their tasks start, so they live as long as the driver)."""
    if not _SHIPPING:
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix="amber-batch-")
        atexit.register(shutil.rmtree, folder, True)
        _SHIPPING.append(folder)
    return Path(_SHIPPING[0])


def _store_url(store: Any) -> str | None:
    root = getattr(store.backend, "root", None)
    if root is not None:
        return str(Path(root).resolve())
    url = getattr(store.backend, "url", None)
    return url if isinstance(url, str) else None


def prepare(model: Any, ref: ModelRef) -> Prepared:
    """The plan and bound method for a loaded model."""
    plan = columns.plan_for(ref.signature, model)
    return Prepared(model, plan, calling.method_of(model, ref.method))


_CACHE: dict[tuple[str, str, str], Prepared] = {}
_LOCK = threading.Lock()


def cached(ref: ModelRef, locate: Any = None) -> Prepared:
    """On an executor: the model of ``ref``, loaded at most once per process.

    ``locate(name)`` gives the local path of a shipped file (Spark: ``SparkFiles.get``)."""
    key = (ref.content_digest, ref.file_digest or "", ref.method)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = prepare(_load(ref, locate), ref)
            _CACHE[key] = hit
        return hit


def loaded_count() -> int:
    """How many models this process holds (for tests and diagnostics)."""
    return len(_CACHE)


def _load(ref: ModelRef, locate: Any) -> Any:
    import amber

    trusted = ref.trusted or None
    if ref.file is not None:
        path = Path(locate(ref.file) if locate is not None else ref.file)
        if not path.is_file():
            raise StoreError(f"{ref.version}: the shipped file {ref.file} is not on this node")
        got = file_digest(path)
        if got != ref.file_digest:
            raise CorruptFileError(
                f"{ref.version}: the shipped file {ref.file} differs from the driver's "
                f"(BLAKE3 {got[:16]}..., expected {str(ref.file_digest)[:16]}...); "
                "re-run the job"
            )
        return amber.load(path, trusted=trusted)
    if ref.store is None:
        raise InvalidArgumentError(f"{ref.version}: the reference names no file and no store")
    store = open_store(ref.store, endpoint=ref.endpoint)
    try:
        version = store.get(ref.version)
        if version.content_digest != ref.content_digest:
            raise StoreError(
                f"{ref.version} in {ref.store} is not the version the driver resolved "
                "(its content digest differs): the store was changed during the job"
            )
        return store.load(ref.version, trusted=trusted)
    finally:
        store.close()
