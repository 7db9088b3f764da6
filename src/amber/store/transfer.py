"""Moving versions between stores: a standalone .amber file per version, and bundles that
hold a model's whole history in one file.

An exported version is an ordinary .amber file (``amber.load`` reads it) whose manifest has
one more key, ``store``, with the version's name, number, metrics, tags, message, lineage
and signature. A bundle is an .amber container without an object graph: its tensors are the
store objects of every version (raw bytes, named by their BLAKE3 digest, so shared data is
stored once) and its manifest key ``amber_bundle`` lists the version records and aliases.
Imports check everything (container digests, every record, every object digest, every
object graph's node kinds) before writing anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.container.reader import ContainerReader
from amber.container.writer import write
from amber.errors import (
    AmberError,
    CorruptFileError,
    FormatError,
    InvalidArgumentError,
    VersionNotFound,
)
from amber.graph.decode import scan
from amber.store import records
from amber.store.ledger import check_metrics, check_tags, creator, now
from amber.store.names import check_name
from amber.store.objects import (
    StoredTensor,
    decoded_problem,
    hex_of,
    map_object,
    mismatch,
    object_key,
    objects_of,
    put_tensors,
)
from amber.store.reader import VersionReader

if TYPE_CHECKING:
    from amber.store.store import ModelVersion, Store

BUNDLE_KEY = "amber_bundle"
BUNDLE_FORMAT = 1
# Store fields an exported file carries (manifest key "store").
HISTORY = (
    "name",
    "version",
    "created_at",
    "creator",
    "message",
    "parent",
    "metrics",
    "signature",
    "content_digest",
)


def export_version(store: Store, spec: str, path: Path) -> Path:
    record = store.resolve(spec)
    reader = VersionReader(record, store.files, verify="full")
    try:
        # Quantized tensors keep their stored values and blocks (format 1.1); compressed
        # ones are written decoded.
        items = [
            (t.entry.name, reader.array(t.entry.name, bits=True, dequantize=False), t.entry.dtype)
            for t in record.tensors
        ]
        blocks = {
            t.entry.name: t.entry.quantization for t in record.tensors if t.entry.quantization
        }
        history = {key: record.raw.get(key) for key in HISTORY}
        history["tags"] = store.ledger.tags(record)
        history["aliases"] = sorted(
            a for a, v in store.ledger.aliases(record.name).items() if v == record.version
        )
        write(path, items, {**record.manifest, "store": history}, quantized=blocks)
    finally:
        reader.close()
    return path


def _history(manifest: dict[str, Any], source: Path) -> dict[str, Any]:
    history = manifest.get("store")
    if history is None:
        return {}
    if not isinstance(history, dict):
        raise FormatError(f"{source}: manifest key 'store' must be an object")
    return checked_history(history, source)


_TEXT_FIELDS = ("name", "creator", "message", "parent")


def checked_history(fields: dict[str, Any], source: Path) -> dict[str, Any]:
    """The history fields of an imported version, each of the type the store writes;
    FormatError naming the first that is not (a file from elsewhere may say anything)."""
    from datetime import datetime

    out = dict(fields)
    for key in _TEXT_FIELDS:
        if out.get(key) is not None and not isinstance(out[key], str):
            raise FormatError(f"{source}: history field {key!r} must be text")
    if out.get("version") is not None and (type(out["version"]) is not int or out["version"] < 1):
        raise FormatError(f"{source}: history field 'version' must be a positive integer")
    created = out.get("created_at")
    if created is not None:
        try:
            datetime.fromisoformat(created)
        except (TypeError, ValueError):
            raise FormatError(f"{source}: history field 'created_at' is not a time") from None
    if out.get("signature") is not None and not isinstance(out["signature"], dict):
        raise FormatError(f"{source}: history field 'signature' must be an object")
    try:
        out["metrics"] = check_metrics(out.get("metrics"))
        out["tags"] = check_tags(out.get("tags"))
    except InvalidArgumentError as exc:
        raise FormatError(f"{source}: {exc}") from None
    return out


def _check_graph(manifest: dict[str, Any], source: Path) -> None:
    if not isinstance(manifest.get("amber"), dict) or "root" not in manifest:
        raise FormatError(f"{source} holds no amber object graph; nothing to import")
    for key in ("state_dict", "root"):
        if key in manifest:
            scan(manifest[key]).check()  # node kinds and names: imports nothing


def import_file(store: Store, path: Path, name: str | None) -> ModelVersion:
    with ContainerReader(path, verify="full") as reader:
        manifest = reader.manifest
        _check_graph(manifest, path)
        history = _history(manifest, path)
        target = name if name is not None else history.get("name")
        if target is None:
            raise InvalidArgumentError(
                f"{path} was not exported from a store; give the model name: "
                "store.import_file(path, name='...')"
            )
        check_name(target)
        items = [
            (e.name, reader.array(e.name, bits=True, dequantize=False), e.dtype)
            for e in reader.entries.values()
        ]
        blocks = {e.name: e.quantization for e in reader.entries.values() if e.quantization}
        stored, pack, _ = put_tensors(store.backend, items, None, blocks)
        kept = {k: manifest[k] for k in records.MANIFEST_KEYS if k in manifest}
        body = _body(store, target, kept, stored, pack, history)
        record = store.ledger.commit(
            target,
            body,
            objects_of(stored, pack),
            lambda: put_tensors(store.backend, items, None, blocks),
        )
    return store.model_version(record)


def _body(
    store: Store,
    name: str,
    manifest: dict[str, Any],
    stored: list[StoredTensor],
    pack: str | None,
    history: dict[str, Any],
) -> dict[str, Any]:
    origin = None
    if history.get("name") is not None and history.get("version") is not None:
        origin = f"{history['name']}@{history['version']}"
    return {
        "format": records.FORMAT,
        "format_version": records.VERSION,
        "name": name,
        "version": 0,
        "created_at": history.get("created_at") or now(),
        "creator": history.get("creator") or creator(),
        "message": history.get("message"),
        # Lineage names versions of the store it came from: kept as imported_parent, not as
        # a parent here, where that name@N is another version or none at all.
        "parent": None,
        "imported_parent": history.get("parent"),
        "metrics": history.get("metrics") or {},
        "tags": history.get("tags") or {},
        "signature": history.get("signature"),
        "content_digest": records.content_digest(manifest, stored),
        "size": sum(t.entry.nbytes for t in stored),
        "pack": pack,
        "tensors": [t.to_json() for t in stored],
        "manifest": manifest,
        "imported_from": origin,
        "imported_at": now(),
        "imported_by": creator(),
    }


def export_all(store: Store, name: str, path: Path) -> Path:
    check_name(name)
    versions = store.versions(name)  # raises for an unknown model
    bodies, needed = [], {}
    for version in versions:
        record = store.ledger.record(name, version.version)
        if record is None or record.deleted:
            raise VersionNotFound(f"{name}@{version.version} was deleted while exporting")
        raw = dict(record.raw)
        raw["tags"] = store.ledger.tags(record)
        bodies.append(raw)
        for digest_hex in sorted(record.objects()):
            needed[digest_hex] = store.files.path(digest_hex)
    import numpy as np

    items = []
    for digest_hex, file in needed.items():
        size = file.stat().st_size
        buffer = map_object(file, size, use_mmap=True, writable=False)
        items.append((digest_hex, np.frombuffer(buffer, dtype=np.uint8)))
    aliases = store.ledger.aliases(name)
    write(
        path,
        items,
        {
            BUNDLE_KEY: {
                "format": BUNDLE_FORMAT,
                "name": name,
                "versions": bodies,
                "aliases": aliases,
            }
        },
    )
    return path


def _pack_entries(data: Any, source: Path, digest_hex: str) -> dict[str, Any]:
    """The entries of a pack carried in a bundle, every tensor digest checked (the store
    trusts them); CorruptFileError naming the tensor that does not match its digest,
    FormatError for anything else that makes it an invalid pack."""
    with tempfile.TemporaryDirectory(prefix="amber-pack-check-") as tmp:
        scratch = Path(tmp) / "pack.amber"
        scratch.write_bytes(memoryview(data))
        try:
            with ContainerReader(scratch, verify="full", use_mmap=False) as pack:
                return dict(pack.entries)
        except AmberError as exc:
            why = str(exc).removeprefix(f"{scratch}: ")
            kind = CorruptFileError if isinstance(exc, CorruptFileError) else FormatError
            raise kind(f"{source}: pack {digest_hex[:16]}... in the bundle: {why}") from None


def import_bundle(store: Store, path: Path, name: str | None) -> list[ModelVersion]:
    from amber.store.objects import digest_of_buffer

    with ContainerReader(path, verify="full") as reader:
        bundle = reader.manifest.get(BUNDLE_KEY)
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
            raise FormatError(f"{path} is not an amber bundle (store.export_all writes them)")
        source = bundle.get("name")
        target = check_name(name if name is not None else source)
        bodies = bundle.get("versions")
        if not isinstance(bodies, list) or not bodies:
            raise FormatError(f"{path}: the bundle lists no versions")
        # Check everything before writing anything.
        checked: list[records.Record] = []
        for body in bodies:
            if not isinstance(body, dict):
                raise FormatError(f"{path}: a version record is not an object")
            number = body.get("version")
            if type(number) is not int or number < 1:
                raise FormatError(f"{path}: a version record has version {number!r}")
            record = records.decode(
                records.encode(body),
                str(body.get("name")),
                body.get("version"),  # type: ignore[arg-type]
            )
            if record.deleted or record.name != source:
                raise FormatError(f"{path}: the bundle holds a record of another model")
            _check_graph(record.manifest, path)
            checked_history(record.raw, path)
            checked.append(record)
        objects = {}
        for digest_hex in sorted(set().union(*(r.objects() for r in checked))):
            if digest_hex not in reader.entries:
                raise FormatError(f"{path}: object {digest_hex[:16]}... is missing from it")
            data = reader.array(digest_hex)
            if digest_of_buffer(data) != "blake3:" + digest_hex:
                raise FormatError(f"{path}: object {digest_hex[:16]}... does not match its name")
            objects[digest_hex] = data
        packs = {r.pack for r in checked if r.pack}
        entries = {h: _pack_entries(objects[h], path, h) for h in packs}
        sizes = {h: data.nbytes for h, data in objects.items()}
        for record in checked:
            problem = mismatch(record.tensors, sizes, entries.get(record.pack or ""))
            if problem:
                raise FormatError(f"{path}: {record.name}@{record.version}: {problem}")
        # A compressed object must decode to the digest its record claims (diff, dedup and
        # content digests trust it): checked before anything is written.
        decoded: set[tuple[str, str]] = set()
        for record in checked:
            for stored in record.tensors:
                e = stored.entry
                if e.compression is None or (e.stored_digest, e.digest) in decoded:
                    continue
                problem = decoded_problem(e, objects[hex_of(e.stored_digest)])
                if problem:
                    raise CorruptFileError(f"{path}: {record.name}@{record.version}: {problem}")
                decoded.add((e.stored_digest, e.digest))

        def restore(digests: Iterable[str] = objects) -> None:
            for digest_hex in digests:
                key = object_key(digest_hex)
                # touch first: an existing object is refreshed so that gc keeps it
                if not store.backend.touch(key):
                    store.backend.put_if_absent(key, [memoryview(objects[digest_hex])])

        restore()
        renamed: dict[str, str] = {}
        out = []
        for record in sorted(checked, key=lambda r: r.version):
            body = checked_history(record.raw, path)
            body["name"] = target
            body["imported_from"] = f"{record.name}@{record.version}"
            # Recomputed, not trusted: what the data is, whatever the bundle claims.
            body["content_digest"] = records.content_digest(record.manifest, record.tensors)
            body["size"] = sum(t.entry.nbytes for t in record.tensors)
            parent = body.get("parent")
            # A parent imported with it gets its new number; any other parent names a version
            # of the store the bundle came from, kept as imported_parent only.
            body["parent"] = renamed.get(parent) if isinstance(parent, str) else None
            if body["parent"] is None and parent is not None:
                body["imported_parent"] = parent
            needed = record.objects()
            committed = store.ledger.commit(target, body, needed, lambda n=needed: restore(n))
            renamed[f"{record.name}@{record.version}"] = f"{target}@{committed.version}"
            tags = body.get("tags") or {}
            if tags:
                store.ledger.swap_tags(target, committed.version, None, tags)
            out.append(committed)
        aliases = bundle.get("aliases") if isinstance(bundle.get("aliases"), dict) else {}
        existing = store.ledger.aliases(target)
        for alias, version in aliases.items():
            new = renamed.get(f"{source}@{version}")
            if new is not None and alias not in existing:
                try:
                    store.set_alias(new, alias, expected=None)
                except AmberError:
                    pass  # someone set it meanwhile: theirs stands
    return [store.model_version(r) for r in out]
