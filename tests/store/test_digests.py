"""The store trusts tensor digests (content addressing, dedup, ``diff``'s "same content"),
so none may enter it unchecked: a file or bundle whose tensor digests were copied from the
production model, with other bytes behind them and every other digest made to agree, is
refused naming the tensor, and the store is left as it was. A forged pack that is already
in a store (imported by an amber that did not check it) is found by ``check`` and refused
by ``load``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blake3 import blake3

from amber.container.writer import write
from amber.errors import CorruptFileError
from amber.store import Store, records
from amber.store.objects import object_key
from tests.container.test_digests import forged_copy
from tests.corpus.build import manifest_of, with_manifest
from tests.store.test_bad_input import contents, refused

NAME = "churn"
GENUINE = np.linspace(0.0, 1.0, 16)
OTHER = np.linspace(1.0, 0.0, 16)  # same dtype and shape, other weights


def model(weights: np.ndarray) -> dict[str, Any]:
    return {"w": weights, "bias": np.zeros(3), "threshold": 0.5}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store") as s:
        s.save(model(GENUINE), NAME)
        s.set_alias(f"{NAME}@1", "production")
        yield s


@pytest.fixture
def attacker(tmp_path: Path) -> Store:
    with Store(tmp_path / "attacker") as s:
        s.save(model(OTHER), NAME)
        yield s


def forged_pack(pack: bytes, digests: dict[str, str]) -> bytes:
    """A pack (an .amber container) whose tensor digests claim ``digests``: its bytes and
    data digest unchanged, the manifest re-sealed."""
    manifest = manifest_of(pack)
    for entry in manifest["tensors"]:
        entry["digest"] = digests.get(entry["name"], entry["digest"])
    return with_manifest(pack, json.dumps(manifest, separators=(",", ":")).encode())


def genuine_digests(store: Store) -> dict[str, str]:
    return {t.entry.name: t.entry.digest for t in store.resolve(f"{NAME}@1").tensors}


def forged_bundle(store: Store, attacker: Store, path: Path) -> Path:
    """The attacker's model as a bundle that claims the production tensors' digests: the
    pack is re-sealed and renamed by its new bytes, the record points to it, the bundle
    container is written afresh, so every container and object-name check agrees."""
    claimed = genuine_digests(store)
    manifest, items = contents(attacker.export_all(NAME, path.with_suffix(".orig")))
    body = manifest["amber_bundle"]["versions"][0]
    old = body["pack"]
    pack = forged_pack(dict(items)[old].tobytes(), claimed)
    new = blake3(pack).hexdigest()
    items = [(new, np.frombuffer(pack, np.uint8)) if n == old else (n, a) for n, a in items]
    body["pack"] = new
    for tensor in body["tensors"]:
        tensor["digest"] = claimed.get(tensor["name"], tensor["digest"])
    write(path, items, manifest)
    return path


def test_a_bundle_with_copied_tensor_digests_is_refused(
    store: Store, attacker: Store, tmp_path: Path
) -> None:
    path = forged_bundle(store, attacker, tmp_path / "forged.bundle")
    error = refused(store, lambda: store.import_bundle(path))
    assert isinstance(error, CorruptFileError), repr(error)
    assert "tensor 'w' is corrupt" in str(error)
    assert store.check().ok


def test_a_file_with_copied_tensor_digests_is_refused(
    store: Store, attacker: Store, tmp_path: Path
) -> None:
    genuine = store.export(f"{NAME}@1", tmp_path / "genuine.amber")
    other = attacker.export(f"{NAME}@1", tmp_path / "other.amber")
    path = forged_copy(genuine, other, tmp_path / "forged.amber", ["w"])
    for name in (None, "other"):
        error = refused(store, lambda name=name: store.import_file(path, name=name))
        assert isinstance(error, CorruptFileError), repr(error)
        assert "tensor 'w' is corrupt" in str(error)


def test_a_forged_pack_already_in_the_store_is_found_and_refused(store: Store) -> None:
    """As an older amber would have imported it: the pack and a record naming it."""
    genuine = store.resolve(f"{NAME}@1")
    with Store(Path(store.backend.root).parent / "other") as other:  # type: ignore[attr-defined]
        other.save(model(OTHER), NAME)
        theirs = other.resolve(NAME)
        pack = other.backend.get(object_key(theirs.pack))
    assert pack is not None
    pack = forged_pack(pack, genuine_digests(store))
    new = blake3(pack).hexdigest()
    store.backend.put_if_absent(object_key(new), pack)
    body = {**genuine.raw, "version": 2, "pack": new}
    store.backend.put_if_absent(records.version_key(NAME, 2), records.encode(body))
    store.reindex()
    assert store.get(f"{NAME}@2").content_digest == store.get(f"{NAME}@1").content_digest
    with pytest.raises(CorruptFileError, match="tensor 'w' is corrupt"):
        store.diff(f"{NAME}@1", f"{NAME}@2")  # not "same content": it reads the pack
    with pytest.raises(CorruptFileError, match="tensor 'w' is corrupt"):
        store.load(f"{NAME}@2")
    with pytest.raises(CorruptFileError, match="tensor 'w' is corrupt"):
        store.export(f"{NAME}@2", Path(store.backend.root).parent / "x.amber")  # type: ignore[attr-defined]
    report = store.check()
    assert not report.ok
    assert list(report.damaged) == [f"{NAME}@2"]
    assert "tensor 'w' is corrupt" in " ".join(report.damaged[f"{NAME}@2"])
    loaded = store.load(f"{NAME}@1")
    assert np.array_equal(loaded["w"], GENUINE)
