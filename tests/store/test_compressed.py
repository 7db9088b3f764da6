"""Compressed versions (store.save(compress=...)): objects named by their stored bytes,
unchanged tensors shared with raw versions, every verification mode, export, S3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import amber
from amber.container.manifest import TensorEntry
from amber.errors import CorruptFileError, InvalidArgumentError
from amber.store import Store, records


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((512, 512)) * 0.02).astype(np.float32),
        "w2": (rng.standard_normal((512, 256)) * 0.02).astype(np.float32),
        "ids": np.arange(1 << 15, dtype=np.int64),
        "bias": np.zeros(16, dtype=np.float32),  # small: in the version's pack
    }


def object_files(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "objects").rglob("*") if p.is_file()}


def entries(store: Store, name: str, version: int) -> dict[str, TensorEntry]:
    """The tensor entries the version's record holds (as the store reads them)."""
    raw = store.backend.get(records.version_key(name, version))
    assert raw is not None
    return {t.entry.name: t.entry for t in records.decode(raw, name, version).tensors}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_compressed_version_round_trips_in_every_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = weights()
    store.save(model, "net", compress="zstd")
    for options in ({}, {"verify": "lazy"}, {"verify": "off"}, {"mmap": False}):
        assert same(store.load("net", **options), model), options
    tensors = entries(store, "net", 1)
    assert tensors["w1"].compression is not None
    assert tensors["bias"].compression is None  # the pack stays raw
    # Each object is named by the BLAKE3 of its bytes, compressed or not: check agrees.
    assert "no problems" in str(store.check())


def test_compressing_a_version_shares_unchanged_tensors(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = Store(root)
    v1 = weights()
    store.save(v1, "net")
    before = object_files(root)
    v2 = dict(v1, w2=v1["w2"] * 2)  # one tensor changed
    store.save(v2, "net", compress="auto")
    after = object_files(root)
    added = {k: v for k, v in after.items() if k not in before}
    # Only the changed tensor, compressed: w1, ids and the pack (same small tensors) are
    # shared with version 1.
    assert len(added) == 1
    assert next(iter(added.values())) < v2["w2"].nbytes / 1.1
    stored = entries(store, "net", 2)
    assert stored["w1"].compression is None and stored["w2"].compression is not None
    assert same(store.load("net@2"), v2)
    # Same decoded content, so the versions compare equal on what did not change.
    assert "w1" not in str(store.diff("net@1", "net@2"))
    # Saving the same compressed version again writes nothing new.
    store.save(v2, "net", compress="auto")
    assert object_files(root) == after
    assert "same content" in str(store.diff("net@2", "net@3"))


def test_corrupt_compressed_object_is_found(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = Store(root)
    store.save(weights(), "net", compress="zstd")
    entry = entries(store, "net", 1)["w1"]
    hex_digest = entry.compression.digest.removeprefix("blake3:")
    path = root / "objects" / hex_digest[:2] / hex_digest
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        store.load("net")
    assert "w1" in str(store.check()) or hex_digest[:12] in str(store.check())


def test_export_of_a_compressed_version_is_a_plain_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = weights()
    store.save(model, "net", compress="zstd-bytegroup")
    out = store.export("net", tmp_path / "net.amber")
    assert same(amber.load(out), model)


def test_unknown_compress_value_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(InvalidArgumentError, match="compress must be one of"):
        store.save(weights(), "net", compress="brotli")
    assert store.models() == []


def test_compressed_version_on_s3(s3_url: str) -> None:
    store = Store(s3_url)
    v1 = weights()
    store.save(v1, "net")
    store.save(dict(v1, w2=v1["w2"] + 1), "net", compress="auto")
    assert same(store.load("net@2"), dict(v1, w2=v1["w2"] + 1))
    assert same(store.load("net@2", verify="lazy"), dict(v1, w2=v1["w2"] + 1))


def test_quantized_version_loads_dequantized(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = {
        "enc.weight": (np.random.default_rng(0).standard_normal((256, 128)) * 0.05).astype(
            np.float32
        ),
        "small.weight": np.ones((4, 4), np.float32),  # in the pack, its scale too
    }
    store.save(model, "q", quantize="int8", compress="auto")
    stored = entries(store, "q", 1)
    assert stored["enc.weight"].quantization is not None
    assert stored["small.weight"].quantization is not None
    expected = amber.load(Path(amber.save(model, tmp_path / "q.amber", quantize="int8").path))
    for options in ({}, {"verify": "lazy"}, {"mmap": False}):
        loaded = store.load("q", **options)
        for name in model:
            assert np.array_equal(loaded[name], expected[name]), (name, options)
    assert "no problems" in str(store.check())


def test_pruned_and_quantized_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = weights()
    options = {
        "prune": amber.Prune(fraction=0.5, include=["w?"]),
        "quantize": amber.Quantize("int8", include=["w?"]),
    }
    store.save(model, "p", compress="auto", **options)
    stored = entries(store, "p", 1)
    assert stored["w1"].compression.codec == "bitmask-zstd"
    assert stored["w1"].quantization.scheme == "int8"
    expected = amber.load(amber.save(model, tmp_path / "p.amber", **options).path)
    loaded = store.load("p")
    assert same(loaded, expected)
    assert (loaded["w1"] == 0).mean() == pytest.approx(0.5, abs=1e-3)


def test_export_and_import_keep_quantized_tensors(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = {"enc.weight": np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)}
    store.save(model, "q", quantize="int4", compress="auto")
    exported = store.export("q", tmp_path / "q.amber")
    assert amber.inspect(exported).format_version == "1.1"
    assert {t.name: t.quantization for t in amber.inspect(exported).tensors}["enc.weight"] == "int4"
    other = Store(tmp_path / "other")
    other.import_file(exported)
    expected = store.load("q")
    assert same(amber.load(exported), expected)
    assert same(other.load("q"), expected)


def test_pack_entries_with_a_quantization_block_are_refused(tmp_path: Path) -> None:
    """Packs are raw: a pack whose entry carries a quantization block would be dequantized
    on top of the record's block (or turn a raw int8 record into float32). Refused."""
    import json

    from blake3 import blake3

    root = tmp_path / "s"
    store = Store(root)
    model = {"fc.weight": np.arange(64, dtype=np.float32).reshape(8, 8) / 10}
    store.save(model, "pq", quantize="int8")
    record = json.loads((root / "versions" / "pq" / "1").read_bytes())
    assert record["pack"]
    # A hostile pack: same tensors and digests, the quantized entry with its block.
    hostile = amber.save(model, tmp_path / "hostile.amber", quantize="int8").path
    data = Path(hostile).read_bytes()
    name = blake3(data).hexdigest()
    (root / "objects" / name[:2]).mkdir(parents=True, exist_ok=True)
    (root / "objects" / name[:2] / name).write_bytes(data)
    quantized_record = dict(record, pack=name, version=2)
    raw_record = json.loads(json.dumps(quantized_record))
    raw_record["version"] = 3
    for tensor in raw_record["tensors"]:
        tensor.pop("quantization", None)
    (root / "versions" / "pq" / "2").write_text(json.dumps(quantized_record))
    (root / "versions" / "pq" / "3").write_text(json.dumps(raw_record))
    store.reindex()
    for version in ("pq@2", "pq@3"):
        with pytest.raises(CorruptFileError, match="packs hold raw tensors only"):
            store.load(version)
    assert set(store.check().damaged) == {"pq@2", "pq@3"}
    assert np.array_equal(store.load("pq@1")["fc.weight"], amber.load(hostile)["fc.weight"])


def test_a_compressed_object_must_decode_to_its_recorded_digest(tmp_path: Path) -> None:
    """A record claiming another decoded digest for an authentic compressed object (one
    object: the single-object path of verify_all) is caught by every reader: load,
    verify_all, check, diff (never "no change") and import_bundle (nothing written)."""
    import json

    from amber.store.reader import VersionReader

    root = tmp_path / "s"
    store = Store(root)
    store.save({"w": np.arange(1 << 16, dtype=np.float32)}, "m", compress="zstd")
    store.save({"w": np.ones(1 << 16, np.float32)}, "o")
    record = json.loads((root / "versions" / "m" / "1").read_bytes())
    other = json.loads((root / "versions" / "o" / "1").read_bytes())
    record["tensors"][0]["digest"] = other["tensors"][0]["digest"]
    (root / "versions" / "m" / "2").write_text(json.dumps(dict(record, version=2)))
    store.reindex()
    with pytest.raises(CorruptFileError, match="does not match"):
        store.load("m@2")
    reader = VersionReader(store.resolve("m@2"), store.files, verify="lazy")
    try:
        with pytest.raises(CorruptFileError, match="does not match"):
            reader.verify_all()
    finally:
        reader.close()
    assert list(store.check().damaged) == ["m@2"]
    assert "decodes to other bytes" in store.check().damaged["m@2"][0]
    with pytest.raises(CorruptFileError, match="does not match"):
        store.diff("m@2", "o@1")
    assert store.diff("m@1", "o@1").tensors[0].change == "changed"
    bundle = store.export_all("m", tmp_path / "m.bundle")
    fresh = Store(tmp_path / "fresh")
    with pytest.raises(CorruptFileError, match=r"m@2: tensor 'w'.*decodes to other bytes"):
        fresh.import_bundle(bundle)
    for folder in ("versions", "objects"):  # nothing written
        assert not any(p.is_file() for p in (tmp_path / "fresh" / folder).rglob("*"))
