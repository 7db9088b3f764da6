"""Version records: the immutable JSON document of one ``name@N``.

A record holds what an .amber manifest holds (the object graph, environment, metadata), the
list of the version's tensors with their digests (and whether they live in the pack), and
the store's own fields: metrics, lineage, message, creator, signature, content digest and
size. It is written once, with create-if-absent, as the last step of a save: a version
exists exactly when its record does. Deleting a version replaces its record by a
tombstone, so that its number is never handed out again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from amber.container.digest import hasher
from amber.container.format import DIGEST_PREFIX
from amber.container.manifest import (
    TensorEntry,
    check_scales,
    is_digest,
    parse,
    validate_entry,
)
from amber.errors import FormatError, StoreError
from amber.store.objects import StoredTensor, objects_of

FORMAT = "amber.store.version"
VERSION = 1
# Parts of an .amber manifest that a record keeps (the rest is the container's own).
MANIFEST_KEYS = ("amber", "created_at", "environment", "metadata", "state_dict", "root")


def version_key(name: str, version: int) -> str:
    return f"versions/{name}/{version}"


def content_digest(manifest: dict[str, Any], tensors: list[StoredTensor]) -> str:
    """A digest of what the model is: its object graph and its tensors' contents, not when
    or where it was saved (two saves of the same model have the same content digest)."""
    content = {
        "root": manifest.get("root"),
        "state_dict": manifest.get("state_dict"),
        "tensors": [
            [t.entry.name, t.entry.dtype, list(t.entry.shape), t.entry.order, t.entry.digest]
            for t in tensors
        ],
    }
    raw = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
    h = hasher(len(raw))
    h.update(raw)
    return DIGEST_PREFIX + h.hexdigest()


def encode(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"version record cannot be written as JSON: {exc}") from None
    return text.encode("utf-8")


@dataclass(frozen=True)
class Record:
    """A parsed, validated version record."""

    name: str
    version: int
    raw: dict[str, Any]
    tensors: list[StoredTensor] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def deleted(self) -> bool:
        return bool(self.raw.get("deleted"))

    @property
    def pack(self) -> str | None:
        return self.raw.get("pack")

    @property
    def manifest(self) -> dict[str, Any]:
        return self.raw.get("manifest", {})

    def objects(self) -> set[str]:
        """Hex digests of every object this version needs."""
        return objects_of(self.tensors, self.pack)


def _fail(name: str, version: int, problem: str) -> FormatError:
    return FormatError(f"version record {name}@{version} is malformed: {problem}")


def decode(raw: bytes, name: str, version: int) -> Record:
    """Parse and check a record read from storage (it may be damaged or hostile)."""
    doc = parse(raw)
    if doc.get("format") != FORMAT or type(doc.get("format_version")) is not int:
        raise _fail(name, version, "not an amber store version record")
    if doc["format_version"] > VERSION:
        raise StoreError(
            f"{name}@{version} was written by a newer amber (record format "
            f"{doc['format_version']}); upgrade amber to read it"
        )
    if doc.get("name") != name or doc.get("version") != version:
        raise _fail(name, version, f"it names {doc.get('name')!r}@{doc.get('version')!r}")
    if doc.get("deleted") is True:
        return Record(name, version, doc)
    manifest = doc.get("manifest")
    if not isinstance(manifest, dict) or set(manifest) - set(MANIFEST_KEYS):
        raise _fail(name, version, "'manifest' must be an object of amber manifest keys")
    pack = doc.get("pack")
    if pack is not None and not is_digest(DIGEST_PREFIX + str(pack)):
        raise _fail(name, version, "'pack' must be a BLAKE3 hex digest")
    entries = doc.get("tensors")
    if not isinstance(entries, list):
        raise _fail(name, version, "'tensors' must be a list")
    tensors = []
    seen = set()
    for i, item in enumerate(entries):
        if not isinstance(item, dict):
            raise _fail(name, version, f"tensor #{i} must be an object")
        in_pack = item.get("pack", False)
        if type(in_pack) is not bool or (in_pack and pack is None):
            raise _fail(name, version, f"tensor #{i}: 'pack' must be true only with a pack")
        fields = {k: v for k, v in item.items() if k != "pack"}
        entry: TensorEntry = validate_entry({**fields, "offset": 0}, i)
        if entry.name in seen:
            raise _fail(name, version, f"tensor name {entry.name!r} appears twice")
        seen.add(entry.name)
        tensors.append(StoredTensor(entry, in_pack))
    try:
        check_scales({t.entry.name: t.entry for t in tensors})
    except FormatError as exc:
        raise _fail(name, version, str(exc)) from None
    for key, kind in (("metrics", dict), ("metadata", dict), ("tags", dict)):
        if not isinstance(doc.get(key, {}), kind):
            raise _fail(name, version, f"{key!r} must be a JSON object")
    return Record(name, version, doc, tensors)
