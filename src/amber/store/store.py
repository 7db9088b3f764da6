"""The model store: named versions, aliases, tags, metadata and metrics over one backend.

Storage is the source of truth (see ``backend.py`` for its keys):

- ``objects/..``: content-addressed payloads and packs (``objects.py``), written once;
- ``versions/NAME/N``, ``refs/NAME/ALIAS``, ``tags/NAME/N``: records, aliases and tags,
  read and written only through ``ledger.py``, where the commit protocol lives.

The SQLite index (``index.py``) is derived from them for listings and searches.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from amber.container.writer import check_compress
from amber.errors import (
    AliasConflict,
    AmberError,
    InvalidArgumentError,
    StoreError,
    StoreIndexError,
    StoreIndexWarning,
    VersionNotFound,
)
from amber.gcpause import gc_paused
from amber.store import records
from amber.store.backend import Backend
from amber.store.index import Index, files_of, row_of
from amber.store.ledger import Ledger, check_metrics, check_tags, creator, now
from amber.store.local import CACHE, LocalBackend, check_store_folder, store_error
from amber.store.location import cache_root, local_path, open_remote
from amber.store.names import LATEST, Spec, check_alias, check_name, closest, parse_spec
from amber.store.objects import ObjectFiles, objects_of, put_tensors
from amber.store.prefetch import Prefetch
from amber.store.reader import VersionReader

DEFAULT_PATH = ".amber"
_UNSET: Any = object()


@dataclass(frozen=True)
class ModelVersion:
    """What the store knows about one version (no tensor is read to build it)."""

    name: str
    version: int
    created_at: str
    creator: str
    size: int
    content_digest: str
    message: str | None = None
    parent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    signature: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    # For a version brought in by an import: the name@N (and its parent) it had there.
    imported_from: str | None = None
    imported_parent: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "creator": self.creator,
            "size": self.size,
            "content_digest": self.content_digest,
            "message": self.message,
            "parent": self.parent,
            "metadata": self.metadata,
            "metrics": self.metrics,
            "tags": self.tags,
            "aliases": list(self.aliases),
            "signature": self.signature,
            "environment": self.environment,
            "imported_from": self.imported_from,
            "imported_parent": self.imported_parent,
        }


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest: int
    versions: int
    size: int
    aliases: dict[str, int]
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest": self.latest,
            "versions": self.versions,
            "size": self.size,
            "aliases": self.aliases,
            "updated_at": self.updated_at,
        }


class Store:
    """A model store. ``Store()`` opens (or creates) the local store at ``$AMBER_STORE`` or
    ``./.amber``; ``Store(path)`` a local folder (created when missing or empty; a folder
    holding other files is refused unless ``create=True``); ``Store("s3://bucket/prefix")``
    a shared one (``endpoint=`` an S3-compatible server, ``profile=`` an AWS CLI profile
    whose keys and region win over the environment's); ``Store(backend=...)`` any backend
    (its index then lives in ``index_path``, or in memory)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: Backend | None = None,
        index_path: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        profile: str | None = None,
        create: bool = False,
    ) -> None:
        if backend is not None and path is not None:
            raise InvalidArgumentError("give a path or a backend, not both")
        if profile is not None and (not isinstance(profile, str) or not profile):
            given = "an empty name" if profile == "" else f"a {type(profile).__name__}"
            raise InvalidArgumentError(f"profile must be an AWS profile name, not {given}")
        s3_options = {} if profile is None else {"profile": profile}
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        remote = None
        if backend is None:
            location = path if path is not None else os.environ.get("AMBER_STORE", DEFAULT_PATH)
            remote = open_remote(location, endpoint=endpoint, **s3_options)
        elif endpoint is not None or profile is not None:
            raise InvalidArgumentError(
                "endpoint and profile apply to s3:// locations, not to a backend"
            )
        if remote is not None:
            # A remote store: this client's index and verified object cache live under
            # $AMBER_CACHE; the index is brought up to date from storage on open.
            backend = remote.backend
            index_file: Path | None = remote.index_file
            cache = cache_root()
            try:
                remote.index_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise store_error("create the cache folder", cache, exc) from None
        elif backend is None:
            root = local_path(location)
            check_store_folder(root, create=create)
            backend = LocalBackend(root)
            index_file = root / CACHE / "index.sqlite"
            cache = root / CACHE
        else:
            index_file = Path(index_path) if index_path is not None else None
            self._scratch = tempfile.TemporaryDirectory(prefix="amber-store-cache-")
            cache = Path(self._scratch.name)
        self.backend = backend
        self._remote = remote is not None
        # Clients of a remote store keep their own index: changes are announced to them.
        announce = getattr(backend, "list_etags", None) is not None
        self.ledger = Ledger(backend, committed=self._index_committed, journal=announce)
        self._index_file = index_file
        self.files = ObjectFiles(backend, cache)
        try:
            self.index = Index(index_file)
        except StoreError:
            if index_file is None or not any(os.path.lexists(f) for f in files_of(index_file)):
                raise
            self.index = self._fresh_index(index_file)
        if remote is not None:
            self.refresh()  # other clients write too: storage is the truth
        elif index_file is not None and not self._index_initialized():
            self.reindex()

    def __repr__(self) -> str:
        return f"Store({self.backend.describe()})"

    def close(self) -> None:
        self.index.close()
        self.files.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- storage helpers -------------------------------------------------------------------

    def _index_initialized(self) -> bool:
        return bool(self.index.query("SELECT 1 FROM versions LIMIT 1")) or not any(
            True for _ in self.backend.list("versions/")
        )

    def _live_record(self, name: str, version: int) -> records.Record:
        record = self.ledger.record(name, version)
        if record is None or record.deleted:
            live = self.index.query(
                "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,)
            )
            numbers = [str(n) for (n,) in live]
            hint = f"; it has versions {', '.join(numbers[-10:])}" if numbers else ""
            state = "was deleted" if record is not None else "does not exist"
            raise VersionNotFound(f"{name}@{version} {state}{hint}")
        return record

    def _missing_model(self, name: str) -> VersionNotFound:
        names = self.ledger.names()
        near = closest(name, names)
        hint = (
            f"; did you mean {', '.join(near)}?"
            if near
            else (f"; the store has {len(names)} models" if names else "; the store is empty")
        )
        return VersionNotFound(f"no model named {name!r} in {self.backend.describe()}{hint}")

    def _guess(self, name: str, alias: str | None = None) -> int | None:
        """The version the index expects ``name`` (or its ``alias``) to resolve to, on a
        remote store only: its record is then read while storage is asked (``prefetch``)."""
        if not self._remote:
            return None
        if alias is None:
            sql, params = "SELECT MAX(version) FROM versions WHERE name = ?", (name,)
        else:
            sql, params = "SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)
        try:
            found = self.index.query(sql, params)
        except AmberError:
            return None  # a damaged index only loses the head start
        return found[0][0] if found else None

    def _latest(self, name: str, numbers: list[int] | None = None) -> records.Record:
        """The newest live version; ``numbers``: the allocated ones, when already listed."""
        with Prefetch(
            self.ledger, name, None if numbers is not None else self._guess(name)
        ) as early:
            numbers = self.ledger.numbers(name) if numbers is None else numbers
            if not numbers:
                raise self._missing_model(name)
            record = early.take(numbers[-1])
        if record is None or record.deleted:
            record = self.ledger.latest(name, numbers)
        if record is None:
            raise VersionNotFound(f"every version of {name!r} was deleted")
        return record

    def resolve(self, spec: str | Spec) -> records.Record:
        """The record a spec names (latest, a number or an alias), read from storage."""
        parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
        if parsed.version is not None:
            record = self.ledger.record(parsed.name, parsed.version)
            if record is not None and not record.deleted:
                return record
            if not self.ledger.numbers(parsed.name):
                raise self._missing_model(parsed.name)
            return self._live_record(parsed.name, parsed.version)
        if parsed.alias is not None:
            with Prefetch(
                self.ledger, parsed.name, self._guess(parsed.name, parsed.alias)
            ) as early:
                _, version = self.ledger.ref(parsed.name, parsed.alias)
                record = early.take(version) if version is not None else None
            if record is not None and not record.deleted:
                return record
            if version is None:
                if not self.ledger.numbers(parsed.name):
                    raise self._missing_model(parsed.name)
                aliases = sorted(self.ledger.aliases(parsed.name))
                near = closest(parsed.alias, aliases)
                hint = (
                    f"; did you mean {', '.join(near)}?"
                    if near
                    else f"; its aliases are: {', '.join(aliases) or 'none'}"
                )
                raise VersionNotFound(f"{parsed.name} has no alias {parsed.alias!r}{hint}")
            return self._live_record(parsed.name, version)
        return self._latest(parsed.name)

    def model_version(
        self, record: records.Record, aliases: dict[str, int] | None = None
    ) -> ModelVersion:
        """What the store knows of a version whose record ``resolve`` returned: its
        current tags and aliases are read from storage (``aliases``: when already read)."""
        raw = record.raw
        if aliases is None:
            aliases = self.ledger.aliases(record.name)
        return ModelVersion(
            name=record.name,
            version=record.version,
            created_at=raw.get("created_at", ""),
            creator=raw.get("creator", ""),
            size=raw.get("size", 0),
            content_digest=raw.get("content_digest", ""),
            message=raw.get("message"),
            parent=raw.get("parent"),
            metadata=record.manifest.get("metadata") or {},
            metrics=raw.get("metrics") or {},
            tags=self.ledger.tags(record),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == record.version)),
            signature=raw.get("signature"),
            environment=record.manifest.get("environment") or {},
            imported_from=raw.get("imported_from"),
            imported_parent=raw.get("imported_parent"),
        )

    # -- saving ----------------------------------------------------------------------------

    def save(
        self,
        model: Any,
        name: str,
        *,
        metadata: dict[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent: str | None = _UNSET,
        message: str | None = None,
        signature: dict[str, Any] | None = None,
        input_example: Any = None,
        compress: str | None = None,
        quantize: Any = None,
        prune: Any = None,
    ) -> ModelVersion:
        """Save ``model`` as the next version of ``name``; returns the new version.

        ``compress``, ``quantize`` and ``prune`` as for ``amber.save``
        (docs/compression.md): tensors a version already holds raw are shared, not
        compressed again.

        ``parent`` (lineage) defaults to the latest version of ``name``; pass a spec
        (``"churn@4"``, ``"other@2"``) or None. ``signature`` is inferred from
        ``input_example`` when given (column names and dtypes of a DataFrame, dtype and
        shape of an array, and the same for the model's ``predict`` output); a Keras or
        ONNX model's is read from its declared inputs and outputs.
        """
        from amber.api import check_metadata, encode
        from amber.store.signature import declared, infer

        check_name(name)
        check_compress(compress)
        from amber import pruning, quantization  # only saves that ask for them

        spec = quantization.as_spec(quantize)
        pruning_spec = pruning.as_spec(prune)
        numbers = self.ledger.numbers(name)
        if not numbers:
            self._check_case(name)
        user_metadata = check_metadata(metadata)
        metric_values = check_metrics(metrics)
        tag_values = check_tags(tags)
        if message is not None and not isinstance(message, str):
            raise InvalidArgumentError("message must be a string")
        lineage = self._parent(name, parent, numbers)
        if signature is None:  # a Keras or ONNX model declares its inputs and outputs
            signature = declared(model)
        if signature is None and input_example is not None:
            signature = infer(model, input_example)
        if signature is not None:
            try:
                json.dumps(signature, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"signature must be plain JSON: {exc}") from None
        encoder, manifest = encode(model, user_metadata)
        tensors, blocks, sparse = encoder.tensors, None, set()
        if pruning_spec is not None:
            tensors, sparse = pruning.plan(model, tensors, pruning_spec)
        if spec is not None:
            tensors, blocks = quantization.plan(model, tensors, spec)
        stored, pack, _ = put_tensors(self.backend, tensors, compress, blocks, sparse)
        body = {
            "format": records.FORMAT,
            "format_version": records.VERSION,
            "name": name,
            "version": 0,
            "created_at": now(),
            "creator": creator(),
            "message": message,
            "parent": lineage,
            "metrics": metric_values,
            "tags": tag_values,
            "signature": signature,
            "content_digest": records.content_digest(manifest, stored),
            "size": sum(t.entry.nbytes for t in stored),
            "pack": pack,
            "tensors": [t.to_json() for t in stored],
            "manifest": manifest,
        }
        needed = objects_of(stored, pack)
        record = self.ledger.commit(
            name, body, needed, lambda: _restore(self.backend, tensors, compress, blocks, sparse)
        )
        return self.model_version(record)

    def _check_case(self, name: str) -> None:
        """Names are case-sensitive, but on macOS and Windows folders are not: ``Churn`` and
        ``churn`` would share one folder there. A new name may not differ from an existing
        one by case alone."""
        for other in self.ledger.names():
            if other != name and other.lower() == name.lower():
                raise InvalidArgumentError(
                    f"model {name!r} differs from the existing {other!r} only by case; use "
                    f"{other!r} or another name"
                )

    def _parent(self, name: str, parent: Any, numbers: list[int]) -> str | None:
        if parent is _UNSET:
            try:
                return f"{name}@{self._latest(name, numbers).version}"
            except VersionNotFound:
                return None
        if parent is None:
            return None
        record = self.resolve(parent)
        return f"{record.name}@{record.version}"

    def _index_committed(self, record: records.Record, tags: dict[str, str]) -> None:
        row = row_of(record, tags)
        self._follow(record, lambda db: self.index.add_version(db, row))

    def _index_alias(self, db: Any, name: str, alias: str) -> None:
        # Read inside the index transaction: index updates are serialized, so the last one
        # writes what storage holds last, whatever order the swaps happened in.
        self.index.set_alias(db, name, alias, self.ledger.ref(name, alias)[1])

    def _follow(self, record: records.Record, change: Any) -> None:
        """Apply ``change(db)`` to the index after a committed change to storage. The
        change stands even when the index fails (it is derived data): warn instead."""
        try:
            with self.index.transaction() as db:
                change(db)
        except StoreError as exc:
            warnings.warn(
                f"{record.name}@{record.version} is saved, but the index could not be "
                f"updated ({exc}); listings may miss it until `amber store reindex`",
                StoreIndexWarning,
                stacklevel=3,
            )

    # -- loading and reading ---------------------------------------------------------------

    def load(
        self,
        spec: str,
        *,
        verify: str = "full",
        mmap: bool = True,
        writable: bool = True,
        trusted: Iterable[Any] | None = None,
        strict: bool = False,
        device: Any = None,
        into: Any = None,
        keys: Iterable[str] | None = None,
    ) -> Any:
        """Load a version (``"churn"``: latest, ``"churn@7"``, ``"churn@production"``) with
        the options of ``amber.load``; tensors are zero-copy views of the store's files."""
        from amber.api import check_flags, load_from

        check_flags(mmap, writable)
        with gc_paused():  # the version record's JSON as well as the load (amber.gcpause)
            record = self.resolve(spec)
            return load_from(
                lambda mode: VersionReader(
                    record, self.files, verify=mode, use_mmap=mmap, writable=writable
                ),
                verify=verify,  # type: ignore[arg-type]
                trusted=trusted,
                strict=strict,
                device=device,
                into=into,
                keys=keys,
            )

    def onnx_session(
        self, spec: str, *, verify: str = "full", providers: Any = None, sess_options: Any = None
    ) -> Any:
        """An onnxruntime ``InferenceSession`` for a version holding an ONNX model, its
        initializers handed over from the store's mapped files (like ``amber.onnx_session``)."""
        from amber.adapters.onnx import session_from_state
        from amber.container.reader import check_verify_mode
        from amber.interop.onnx_file import session_state

        check_verify_mode(verify)
        record = self.resolve(spec)
        reader = VersionReader(record, self.files, verify=verify, use_mmap=True)  # type: ignore[arg-type]
        try:
            state = session_state(reader, f"{record.name}@{record.version}")
        finally:
            reader.close()
        return session_from_state(state, providers, sess_options)

    def get(self, spec: str) -> ModelVersion:
        """A version's metadata, metrics, lineage... without loading it."""
        return self.model_version(self.resolve(spec))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every live version of ``name``, oldest first (from the index)."""
        check_name(name)
        rows = self.index.query(
            "SELECT name, version, created_at, creator, message, parent, size, "
            "content_digest, metadata, metrics, tags FROM versions WHERE name = ? "
            "ORDER BY version",
            (name,),
        )
        if not rows:
            raise self._missing_model(name)
        aliases = self._index_aliases(name)
        return [self._from_row(row, aliases) for row in rows]

    def _index_aliases(self, name: str) -> dict[str, int]:
        return dict(self.index.query("SELECT alias, version FROM aliases WHERE name = ?", (name,)))

    @staticmethod
    def _from_row(row: tuple, aliases: dict[str, int]) -> ModelVersion:
        name, version = row[0], row[1]
        return ModelVersion(
            name=name,
            version=version,
            created_at=row[2],
            creator=row[3] or "",
            message=row[4],
            parent=row[5],
            size=row[6],
            content_digest=row[7],
            metadata=json.loads(row[8]),
            metrics=json.loads(row[9]),
            tags=json.loads(row[10]),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        )

    def models(self) -> list[ModelSummary]:
        """Every model: latest version, number of versions, aliases, total size."""
        rows = self.index.query(
            "SELECT name, MAX(version), COUNT(*), SUM(size), MAX(created_at) FROM versions "
            "GROUP BY name ORDER BY name"
        )
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in self.index.query("SELECT name, alias, version FROM aliases"):
            aliases.setdefault(name, {})[alias] = version
        return [
            ModelSummary(name, latest, count, size or 0, aliases.get(name, {}), updated)
            for name, latest, count, size, updated in rows
        ]

    def search(
        self,
        name: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        metrics: Iterable[str] | None = None,
        after: str | datetime | None = None,
        before: str | datetime | None = None,
    ) -> list[ModelVersion]:
        """Versions matching every condition: ``name`` (exact, or a prefix ending in
        ``*``), ``tags`` (each key equal), ``metrics`` (conditions like ``"accuracy>=0.9"``
        with ``<``, ``<=``, ``>``, ``>=``, ``=``), created ``after``/``before`` (ISO dates
        or datetimes)."""
        from amber.store.search import build_query

        sql, params = build_query(name, tags, metrics, after, before)
        rows = self.index.query(sql, params)
        aliases: dict[str, dict[str, int]] = {}
        for model, alias, version in self.index.query("SELECT name, alias, version FROM aliases"):
            aliases.setdefault(model, {})[alias] = version
        return [self._from_row(row, aliases.get(row[0], {})) for row in rows]

    # -- aliases and tags ------------------------------------------------------------------

    def set_alias(
        self, spec: str, alias: str, *, expected: int | None = _UNSET, force: bool = False
    ) -> ModelVersion:
        """Point ``alias`` at the version ``spec`` names, atomically.

        The move is a compare-and-swap from the alias's current version: if another move
        lands in between, this one fails with AliasConflict instead of silently replacing
        it (``force=True`` retries on top). ``expected`` (a version number, or None for
        "no alias yet") states the version the alias must point to now.
        """
        check_alias(alias)
        record = self.resolve(spec)
        for _ in range(1000):
            current, version = self.ledger.ref(record.name, alias)
            if expected is not _UNSET and version != expected and not force:
                now = "is not set" if version is None else f"points to {version}"
                wanted = "to be unset" if expected is None else f"to point to {expected}"
                raise AliasConflict(
                    f"{record.name}@{alias} {now}; expected it {wanted}; nothing was changed"
                )
            written = self.ledger.swap_alias(record.name, alias, current, record.version)
            if written is not None:
                latest = self.ledger.record(record.name, record.version)
                if latest is None or latest.deleted:
                    # Deleted while the alias moved: put the alias back as it was.
                    self.ledger.restore_alias(record.name, alias, written, current)
                    raise VersionNotFound(
                        f"{record.name}@{record.version} was deleted while setting "
                        f"{alias}; the alias was not changed"
                    )
                self._follow(record, lambda db: self._index_alias(db, record.name, alias))
                return self.model_version(record)
            if not force:
                raise AliasConflict(
                    f"{record.name}@{alias} was moved by someone else while setting it; "
                    "nothing was changed; check it and retry (or pass force=True)"
                )
        raise AliasConflict(f"{record.name}@{alias} keeps changing; try again")

    def remove_alias(self, name: str, alias: str) -> None:
        check_name(name)
        check_alias(alias)
        current, _ = self.ledger.ref(name, alias)
        if current is None:
            raise VersionNotFound(f"{name} has no alias {alias!r}")
        if not self.ledger.remove_alias(name, alias, current):
            raise AliasConflict(f"{name}@{alias} changed while removing it; nothing was changed")
        with self.index.transaction() as db:
            self._index_alias(db, name, alias)

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of a model, ``latest`` included."""
        check_name(name)
        out = self.ledger.aliases(name)
        out[LATEST] = self._latest(name).version
        return out

    def set_tags(
        self, spec: str, tags: Mapping[str, str], *, remove: Iterable[str] = ()
    ) -> ModelVersion:
        """Add or change tags of a version (and drop the keys in ``remove``)."""
        changes = check_tags(tags)
        remove = list(remove)  # a generator would be used up by the first try
        record = self.resolve(spec)
        for _ in range(1000):
            current_raw = self.ledger.tags_document(record.name, record.version)
            try:
                current = self.ledger.tags(record)
            except StoreError:
                current = {}  # damaged: replaced by the tags given now
            updated = {**current, **changes}
            for gone in remove:
                updated.pop(gone, None)
            if self.ledger.swap_tags(record.name, record.version, current_raw, updated):
                self._follow(  # storage read inside the transaction, as for aliases
                    record,
                    lambda db: self.index.set_tags(
                        db, record.name, record.version, self.ledger.tags(record)
                    ),
                )
                return self.model_version(record)
        raise StoreError(f"tags of {record.name}@{record.version} keep changing; try again")

    # -- deleting --------------------------------------------------------------------------

    def delete(self, spec: str, *, force: bool = False) -> None:
        """Delete a version (its number is never reused). Refused while an alias points
        to it, unless ``force`` (which removes those aliases). Its data is reclaimed by
        ``gc`` once no other version uses it."""
        parsed = parse_spec(spec)
        if parsed.version is None:
            raise InvalidArgumentError(
                f"delete takes one version, like '{parsed.name}@3'; got {spec!r}"
            )
        record = self.resolve(parsed)
        pointing = sorted(
            a for a, v in self.ledger.aliases(record.name).items() if v == record.version
        )
        if pointing and not force:
            raise StoreError(
                f"{record.name}@{record.version} is aliased as {', '.join(pointing)}; move "
                "the alias first, or delete with force=True"
            )
        for alias in pointing:
            current, _ = self.ledger.ref(record.name, alias)
            if current is not None:
                self.ledger.remove_alias(record.name, alias, current)
            self._follow(record, lambda db, alias=alias: self._index_alias(db, record.name, alias))
        if not self.ledger.tombstone(record):
            raise StoreError(f"{record.name}@{record.version} changed while deleting it")
        self.ledger.drop_tags(record.name, record.version)
        self._follow(record, lambda db: self.index.remove_version(db, record.name, record.version))

    # -- maintenance, transfer, comparison (in their own modules) ---------------------------

    def reindex(self) -> int:
        """Rebuild the index from storage; returns the number of versions indexed. A
        damaged index file is moved aside (``index.sqlite.damaged-*``) and replaced."""
        from amber.store.maintenance import reindex

        try:
            return reindex(self)
        except StoreIndexError:
            if self._index_file is None:
                raise
            self.index.close()
            self.index = self._fresh_index(self._index_file)
            return reindex(self)

    def refresh(self) -> int:
        """Bring the index up to date with storage, reading only what changed since the
        last refresh where the backend can tell (s3://); else a full reindex. Returns the
        number of documents read."""
        from amber.store.refresh import refresh

        try:
            return refresh(self)
        except StoreIndexError:
            if self._index_file is None:
                raise
            self.reindex()  # a damaged index is moved aside and rebuilt
            return refresh(self)

    @staticmethod
    def _fresh_index(path: Path) -> Index:
        """Move a damaged index aside and start an empty one (the caller rebuilds it)."""
        aside = path.with_name(f"{path.name}.damaged-{int(time.time() * 1000)}")
        try:
            if os.path.lexists(path):
                os.replace(path, aside)  # a link is moved itself, never followed
            for file in files_of(path)[1:]:
                file.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(
                f"the store index {path} is damaged and cannot be moved aside ({exc}); "
                "delete it by hand: it is rebuilt from storage on the next open"
            ) from None
        warnings.warn(
            f"the store index {path} was damaged; it was moved to {aside.name} and is "
            "rebuilt from storage (nothing is lost: the index is derived data)",
            StoreIndexWarning,
            stacklevel=3,
        )
        return Index(path)

    def gc(self, *, grace: float = 3600.0, dry_run: bool = False) -> Any:
        """Remove objects that no version references (and temporary files of dead
        writers) older than ``grace`` seconds; returns a GcReport with the bytes freed."""
        from amber.store.maintenance import gc

        return gc(self, grace=grace, dry_run=dry_run)

    def check(self, *, repair: bool = False) -> Any:
        """Re-hash every object, validate every record, compare the index with storage;
        ``repair`` rebuilds a drifted index. Returns a CheckReport."""
        from amber.store.maintenance import check

        return check(self, repair=repair)

    def export(self, spec: str, path: str | os.PathLike[str]) -> Path:
        """Write a standalone .amber file of a version (``amber.load`` reads it) that
        carries its metadata, metrics, tags and lineage (manifest key ``store``)."""
        from amber.store.transfer import export_version

        return export_version(self, spec, Path(path))

    def import_file(self, path: str | os.PathLike[str], *, name: str | None = None) -> ModelVersion:
        """Save the model of an .amber file as a new version of ``name`` (default: the name
        it was exported under), keeping its metrics, tags, message and lineage."""
        from amber.store.transfer import import_file

        return import_file(self, Path(path), name)

    def export_all(self, name: str, path: str | os.PathLike[str]) -> Path:
        """Write every version of ``name`` (and its aliases) into one bundle file."""
        from amber.store.transfer import export_all

        return export_all(self, name, Path(path))

    def import_bundle(
        self, path: str | os.PathLike[str], *, name: str | None = None
    ) -> list[ModelVersion]:
        """Bring a bundle's versions in as new versions, oldest first, lineage rewired."""
        from amber.store.transfer import import_bundle

        return import_bundle(self, Path(path), name)

    def push(
        self,
        spec: str,
        to: str | os.PathLike[str] | Store,
        *,
        all_versions: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Copy the version ``spec`` names (every version of the model with
        ``all_versions``) to another store: a Store, a folder or a URL (s3://bucket/prefix).
        Only objects missing there travel; history and lineage are kept; a version already
        there is skipped, so a second run finishes an interrupted one. Returns a CopyReport;
        ``progress(sent, total)`` is called as bytes go out."""
        from amber.store.sync import copy_versions

        with _opened(to) as dest:
            return copy_versions(self, dest, spec, every=all_versions, progress=progress)

    def pull(
        self,
        source: str | os.PathLike[str] | Store,
        spec: str,
        *,
        all_versions: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Copy versions from ``source`` (a Store, a folder or a URL) into this store; as
        ``push`` the other way."""
        from amber.store.sync import copy_versions

        with _opened(source) as src:
            return copy_versions(src, self, spec, every=all_versions, progress=progress)

    def diff(self, a: str, b: str) -> Any:
        """What changed from version ``a`` to ``b`` (see amber.store.diff.Diff)."""
        from amber.store.diff import diff

        return diff(self, a, b)

    def compare(
        self, specs: list[str], X: Any, y: Any, metrics: Iterable[Any] | None = None
    ) -> Any:
        """Load each version and evaluate it on the same data; returns a Comparison."""
        from amber.store.diff import compare

        return compare(self, specs, X, y, metrics)


@contextlib.contextmanager
def _opened(store: str | os.PathLike[str] | Store) -> Iterator[Store]:
    """``store`` itself, or the store at a location (closed afterwards)."""
    if isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


def _restore(
    backend: Backend, tensors: Any, compress: str | None, blocks: Any, sparse: Any
) -> None:
    """Write again the objects of a save after a concurrent gc removed some: raw objects
    (a compressed save may refer to raw objects it found), then, when compressing, the
    compressed ones; objects no record needs are collected by the next gc."""
    put_tensors(backend, tensors, None, blocks)
    if compress is not None or sparse:
        put_tensors(backend, tensors, compress, blocks, sparse)
