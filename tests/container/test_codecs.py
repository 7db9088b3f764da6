"""Per-tensor codecs (format 1.1): every dtype through every codec bit-exact, the version a
file declares, what compress="auto" picks, bounded decoding, and typed errors."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import amber
from amber.container import ContainerReader, codecs, write
from amber.container.zstd_codec import exact_chunks
from amber.errors import FormatError, InvalidArgumentError, MissingDependencyError
from tests.corpus.build import compressed_base, frame_claiming, manifest_of, relaid

MODES = ["auto", "zstd", "zstd-bytegroup"]
DTYPES = [
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
]


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values shaped like weights (small floats, repeated exponents) in ``dtype``."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 0.05
    if dtype == "bool":
        return values > 0
    if dtype.startswith(("int", "uint")):
        return (values * 1000).astype(np.int64).astype(dtype)
    if dtype.startswith("complex"):
        return (values + 1j * values[::-1]).astype(dtype)
    if hasattr(ml_dtypes, dtype):
        return values.astype(getattr(ml_dtypes, dtype))
    return values.astype(dtype)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("mode", MODES)
def test_every_dtype_round_trips_bit_exact(tmp_path: Path, mode: str) -> None:
    tensors = {d: sample(d, (300, 70), i) for i, d in enumerate(DTYPES)}
    path = tmp_path / "all.amber"
    info = amber.save(tensors, path, compress=mode)
    for options in ({}, {"mmap": False}, {"verify": "lazy"}, {"verify": "off"}):
        loaded = amber.load(path, **options)
        for name, array in tensors.items():
            assert same(loaded[name], array), (name, options)
    codecs_used = {t.name: t.codec for t in info.tensors}
    if mode != "auto":  # forced: every tensor, byte groups only for floating point
        for name in DTYPES:
            expected = mode if name in codecs.BYTEGROUP_DTYPES else "zstd"
            assert codecs_used[name] == expected, name
    assert info.format_version == "1.1"


def test_large_tensors_span_several_chunks_on_threads(tmp_path: Path) -> None:
    # 6 MiB each: two chunks of 4 MiB frames; F order, a strided view and big-endian
    # values go through the re-chunking path (pieces that are not whole chunks).
    base = sample("float32", (1536, 1024))
    tensors = {
        "c": base,
        "f": np.asfortranarray(base),
        "strided": sample("float64", (2048, 1200))[:, ::2],
        "big_endian": base.astype(">f4"),
        "odd": sample("float16", (1000003,)),
    }
    path = tmp_path / "large.amber"
    amber.save(tensors, path, compress="zstd-bytegroup")
    entries = {e.name: e for e in ContainerReader(path, verify="off").entries.values()}
    assert len(entries["c"].compression.frames) == 2 * 4
    loaded = amber.load(path)
    for name, array in tensors.items():
        assert np.array_equal(loaded[name], array), name
    assert loaded["f"].flags.f_contiguous
    assert loaded["c"].flags.writeable  # decoded into memory of its own, never a mapping


def test_exact_chunks_recuts_pieces() -> None:
    pieces = [memoryview(bytes(range(7))), memoryview(bytes(10)), memoryview(bytes(5))]
    chunks = [bytes(c) for c in exact_chunks(pieces, 8)]
    assert [len(c) for c in chunks] == [8, 8, 6]
    assert b"".join(chunks) == b"".join(bytes(p) for p in pieces)


def test_uncompressed_files_stay_format_1_0(tmp_path: Path) -> None:
    weights = {"w": sample("float32", (64, 64))}
    assert amber.save(weights, tmp_path / "raw.amber").format_version == "1.0"
    assert ContainerReader(tmp_path / "raw.amber").header.minor == 0
    with ContainerReader(tmp_path / "raw.amber") as reader:
        assert reader.entries["w"].compression is None
    data = (tmp_path / "raw.amber").read_bytes()
    assert b"compression" not in data  # a 1.0 reader sees exactly a 1.0 file


def test_auto_compresses_only_what_pays(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "weights": sample("float32", (256, 256)),
        "noise": rng.integers(0, 256, 1 << 18, dtype=np.uint8),  # incompressible
        "small": sample("float32", (8, 8)),  # under AUTO_MIN_BYTES
        "ids": np.arange(1 << 16, dtype=np.int64),
    }
    info = amber.save(tensors, tmp_path / "auto.amber", compress="auto")
    chosen = {t.name: t.codec for t in info.tensors}
    assert chosen == {"weights": "zstd-bytegroup", "noise": None, "small": None, "ids": "zstd"}
    sizes = {t.name: (t.stored_nbytes, t.nbytes) for t in info.tensors}
    assert sizes["weights"][0] < sizes["weights"][1] / 1.1
    nothing = amber.save({"noise": tensors["noise"]}, tmp_path / "none.amber", compress="auto")
    assert nothing.format_version == "1.0"  # nothing compressed: nothing of 1.1 used


@pytest.mark.parametrize("bad", ["gzip", "ZSTD", True, 3, ["zstd"]])
def test_unknown_compress_value_is_refused_before_writing(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "m.amber"
    with pytest.raises(InvalidArgumentError, match="compress must be one of"):
        amber.save({"w": np.zeros(3)}, path, compress=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        write(path, [("w", np.zeros(3))], compress=bad)  # type: ignore[arg-type]
    assert not path.exists()


def test_without_zstandard_saving_and_loading_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z.amber"
    amber.save({"w": sample("float32", (128, 128))}, path, compress="zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match="pip install zstandard"):
        amber.save({"w": np.zeros(3)}, tmp_path / "other.amber", compress="auto")
    assert not (tmp_path / "other.amber").exists()
    with pytest.raises(MissingDependencyError, match="pip install zstandard"):
        amber.load(path)
    assert amber.inspect(path).tensors[0].codec == "zstd"  # the manifest needs no codec


def test_a_bomb_header_is_refused_before_any_allocation(tmp_path: Path) -> None:
    path = tmp_path / "bomb.amber"
    base = compressed_base()
    path.write_bytes(relaid(base, "embed.weight", [frame_claiming(1 << 40)] + [b"x"] * 3))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="declares 1099511627776 decoded bytes"):
            amber.load(path, verify="off")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_compressed_and_raw_files_share_tensor_digests(tmp_path: Path) -> None:
    # The entry digest is of the decoded bytes: the same tensor has the same digest
    # whether or not it is compressed (the store's dedup and diff rely on it).
    weights = {"w": sample("float32", (256, 256)), "b": sample("float32", (256,))}
    raw = amber.save(weights, tmp_path / "raw.amber")
    packed = amber.save(weights, tmp_path / "packed.amber", compress="zstd")
    assert [t.digest for t in raw.tensors] == [t.digest for t in packed.tensors]
    stored = manifest_of((tmp_path / "packed.amber").read_bytes())["tensors"][0]
    assert stored["compression"]["digest"] != stored["digest"]


def test_torch_module_round_trips_compressed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is a dev dependency")
    model = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.GELU())
    model = model.to(torch.bfloat16)
    path = tmp_path / "m.amber"
    amber.save(model, path, compress="auto")
    loaded = amber.load(path)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_inspect_shows_codec_and_ratio(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from amber.cli.main import app

    path = tmp_path / "m.amber"
    amber.save({"w": sample("float32", (256, 256)), "b": np.zeros(3)}, path, compress="auto")
    result = CliRunner().invoke(app, ["inspect", str(path), "--depth", "0"])
    assert result.exit_code == 0, result.output
    assert "zstd-bytegroup 1.1" in result.output or "zstd-bytegroup 1.2" in result.output
    assert "raw" in result.output
    assert "decoded into memory" in result.output
    as_json = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert '"codec": "zstd-bytegroup"' in as_json.output


def _zero_tensor_file(tmp_path: Path, nbytes: int) -> bytes:
    path = tmp_path / "zeros.amber"
    amber.save({"w": np.zeros(nbytes // 4, np.float32)}, path, compress="zstd")
    return path.read_bytes()


def test_every_frame_header_is_checked_before_any_output_is_allocated(tmp_path: Path) -> None:
    # 256 frames of 64 KiB whose headers are right, then one that is not a zstd frame:
    # refused from the headers alone, before the 16 MiB output or any job exists.
    frames = [frame_claiming(1 << 16)] * 255 + [b"not zstd"]
    path = tmp_path / "late.amber"
    path.write_bytes(relaid(_zero_tensor_file(tmp_path, 16 << 20), "w", frames, frame=1 << 16))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="not a zstd frame"):
            amber.load(path, verify="off")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_decoding_stops_at_the_first_bad_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every header is right but no frame decodes (one 4-byte RLE block each): the run
    # stops after the first failure instead of decoding (and keeping errors for) all 256.
    from amber.container import zstd_codec

    frames = [frame_claiming(1 << 16)] * 256
    path = tmp_path / "bad.amber"
    path.write_bytes(relaid(_zero_tensor_file(tmp_path, 16 << 20), "w", frames, frame=1 << 16))
    started = []
    run = zstd_codec.Job.run
    monkeypatch.setattr(zstd_codec.Job, "run", lambda job: (started.append(1), run(job)))
    with pytest.raises(FormatError, match=r"does not decode|decoded to"):
        amber.load(path, verify="off")
    assert 1 <= len(started) <= 3 * zstd_codec.threads()


def test_a_frame_smaller_than_zstds_densest_encoding_is_refused(tmp_path: Path) -> None:
    # A 64 MiB chunk needs at least 64 MiB / 32768 = 2048 stored bytes (RLE blocks of 4
    # bytes regenerate at most 128 KiB): a 17-byte frame claiming it is refused at open.
    data = _zero_tensor_file(tmp_path, 1 << 26)
    path = tmp_path / "dense.amber"
    path.write_bytes(relaid(data, "w", [frame_claiming(1 << 26)], frame=1 << 26))
    with pytest.raises(FormatError, match=r"it must be an integer in \[2048, "):
        amber.open(path, verify="off")
    assert codecs.frame_floor(1 << 26) == 2048
    assert codecs.frame_floor(1) == 1


def test_a_declared_size_beyond_memory_is_a_typed_error(tmp_path: Path) -> None:
    # 1 TiB declared in 16384 well-formed headers of 2048 bytes each (32 MiB): the
    # allocation fails with a typed error naming the tensor and its size.
    from amber.errors import InsufficientMemoryError
    from tests.corpus.build import edit_manifest

    size, frame = 1 << 40, 1 << 26
    floor = codecs.frame_floor(frame)
    head = frame_claiming(frame)
    frames = [head + bytes(floor - len(head))] * (size // frame)
    data = relaid(_zero_tensor_file(tmp_path, 1 << 16), "w", frames, frame=frame)

    def grow(manifest: dict) -> None:
        manifest["tensors"][0].update(shape=[size // 4], nbytes=size)

    path = tmp_path / "huge.amber"
    path.write_bytes(edit_manifest(data, grow))
    with pytest.raises(InsufficientMemoryError, match=r"not enough memory to decode tensor 'w'"):
        amber.load(path, verify="off")


def test_a_sparse_frame_storing_a_zero_element_is_refused(tmp_path: Path) -> None:
    # Canonical bitmask: an element whose bytes are all zero has its bit clear.
    values = np.arange(1, 25, dtype=np.float32)
    values[3] = 0.0
    mask = np.packbits(np.ones(24, bool), bitorder="little").tobytes()
    path = tmp_path / "sparse.amber"
    path.write_bytes(
        relaid(compressed_base(), "embed.weight", [mask + values.tobytes()], codec="bitmask")
    )
    with pytest.raises(FormatError, match="all-zero element under a set bit"):
        amber.load(path, verify="off")


def test_decoding_holds_at_most_one_frame_per_thread_beyond_the_output(tmp_path: Path) -> None:
    # docs/security.md: the output buffer plus, per decoding thread, one decoded frame.
    from amber.container import zstd_codec

    path = tmp_path / "zeros.amber"
    amber.save({"w": np.zeros(4 << 20, np.float32)}, path, compress="zstd")  # 4 frames
    frame = codecs.DEFAULT_FRAME_BYTES
    tracemalloc.start()
    try:
        with ContainerReader(path, verify="full") as reader:
            array = reader.array("w")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= array.nbytes + zstd_codec.threads() * frame + (1 << 20)
