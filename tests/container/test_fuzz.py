"""Property tests of the reader: whatever the bytes, a load returns exactly what was saved or
raises an ``AmberError`` subclass; nothing else escapes and nothing crashes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import amber
from amber.errors import AmberError
from tests.corpus import samples
from tests.corpus.build import HEADER_SIZE, edit_manifest, manifest_of, relaid, zstd_frame
from tests.corpus.probe import read_every_way

FUZZ = settings(max_examples=300, deadline=None)
VALID = {name: (samples.VALID_DIR / f"{name}.amber").read_bytes() for name in samples.SAMPLES}
EXPECTED = {name: samples.expected(name) for name in samples.SAMPLES}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def written(directory: Path, data: bytes) -> Iterator[Path]:
    """``data`` in a file for one example. Unlinked after it, so the next example gets a new
    inode: a mapping an earlier load left alive never sees the file change under it."""
    path = directory / "example.amber"
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.unlink()


# -- arbitrary bytes ----------------------------------------------------------------------------

_header = VALID["weights"][:HEADER_SIZE]
arbitrary_files = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=2048).map(lambda body: _header + body),
    # Past the header and the trailer magic, onto the trailer's offsets and digest.
    st.tuples(st.binary(max_size=1024), st.binary(min_size=56, max_size=56)).map(
        lambda parts: _header + parts[0] + parts[1] + b"AMBEREND"
    ),
)


@FUZZ
@given(data=arbitrary_files)
def test_arbitrary_bytes_are_refused(scratch: Path, data: bytes) -> None:
    with written(scratch, data) as path:
        outcomes = read_every_way(path)
    assert all(isinstance(error, AmberError) for error in outcomes.values())


# -- mutations of valid files -------------------------------------------------------------------


def _position(draw: st.DrawFn, size: int) -> int:
    """Anywhere, with extra weight on the header and the trailer."""
    last = size - 1
    return draw(
        st.integers(0, last) | st.integers(0, min(last, 63)) | st.integers(max(0, size - 64), last)
    )


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to three random flips, overwrites, cuts, insertions or appends."""
    for _ in range(draw(st.integers(1, 3))):
        ops = ["insert", "append"] + (["flip", "overwrite", "truncate", "delete"] if data else [])
        op = draw(st.sampled_from(ops))
        at = _position(draw, len(data)) if data else 0
        if op == "flip":
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif op == "overwrite":
            new = draw(st.binary(min_size=1, max_size=8))
            data = data[:at] + new + data[at + len(new) :]
        elif op == "truncate":
            data = data[:at]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 64)) :]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        else:
            data += draw(st.binary(min_size=1, max_size=80))
    return data


def _load(path: Path, verify: str) -> Any:
    try:
        return amber.load(path, verify=verify)
    except AmberError as exc:
        return exc


@pytest.mark.parametrize("verify", ["full", "lazy"])
@pytest.mark.parametrize("name", sorted(VALID))
@FUZZ
@given(st.data())
def test_mutated_file_loads_exactly_or_is_refused(
    scratch: Path, name: str, verify: str, data: st.DataObject
) -> None:
    # "lazy" checks each tensor as it is materialized; load materializes all of them.
    with written(scratch, data.draw(mutated(VALID[name]))) as path:
        result = _load(path, verify)
    event(type(result).__name__)  # --hypothesis-show-statistics: how often each outcome
    assert isinstance(result, AmberError) or samples.identical(result, EXPECTED[name])


# -- re-sealed manifests: past the digest, into validation and the object graph ----------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside parsed JSON, the root excluded."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    found = []
    for key, child in children:
        found.append((*prefix, key))
        if isinstance(child, (dict, list)):
            found.extend(_paths(child, (*prefix, key)))
    return found


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for child in value.values() for leaf in _leaves(child)]
    if isinstance(value, list):
        return [leaf for child in value for leaf in _leaves(child)]
    return [value]


_edges = st.sampled_from([-1, 0, 1, 63, 64, 2**31, 2**63 - 1, 2**63, 2**64, 1.5, True])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _edges | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def resealed(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to three values of its manifest replaced or deleted, re-sealed."""
    manifest = manifest_of(data)
    # Values that already occur (offsets, names, kinds, dtypes) make near-valid manifests.
    values = json_values | st.sampled_from(_leaves(manifest))
    paths = st.sampled_from(_paths(manifest))
    edits = [
        (draw(paths), draw(st.sampled_from(["replace"] * 3 + ["delete"])), draw(values))
        for _ in range(draw(st.integers(1, 3)))
    ]

    def apply(m: dict[str, Any]) -> None:
        for path, op, value in edits:
            parent = m
            for key in path[:-1]:
                parent = parent[key]
            if op == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value

    try:
        return edit_manifest(data, apply)
    except (KeyError, IndexError, TypeError):  # an earlier edit removed or replaced the path
        return data


@pytest.mark.parametrize("name", sorted(VALID))
@FUZZ
@given(st.data())
def test_resealed_manifest_never_escapes(scratch: Path, name: str, data: st.DataObject) -> None:
    # Loads may return other data here (the manifest changed); only the error type matters.
    with written(scratch, data.draw(resealed(VALID[name]))) as path:
        outcomes = read_every_way(path)
    event(type(outcomes["load"]).__name__)


# -- compressed payloads: authentic (re-hashed) frames of any content --------------------------


@st.composite
def hostile_frame(draw: st.DrawFn) -> bytes:
    """Random bytes, or a real zstd frame of random content and size, maybe damaged."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=1, max_size=80))
    content = draw(st.binary(max_size=64) | st.integers(0, 4096).map(bytes))
    frame = zstd_frame(content, content_size=draw(st.booleans()))
    cut = draw(st.integers(0, 3))
    if cut and len(frame) > cut:
        frame = frame[:-cut]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(frame) - 1))
        frame = frame[:at] + bytes([frame[at] ^ 0xFF]) + frame[at + 1 :]
    return frame


COMPRESSED = VALID["weights_zstd"]


@FUZZ
@given(
    frames=st.lists(hostile_frame(), min_size=1, max_size=4),
    codec=st.sampled_from(["zstd-bytegroup", "zstd", "bitmask", "bitmask-zstd"]),
)
def test_hostile_frames_never_escape(scratch: Path, frames: list[bytes], codec: str) -> None:
    # Every digest is recomputed, so only the codec's own checks stand between these
    # bytes and the decoder: each read is exact or refused with an AmberError.
    data = relaid(COMPRESSED, "embed.weight", frames, codec=codec)
    with written(scratch, data) as path:
        outcomes = read_every_way(path)
    event(type(outcomes["load_unverified"]).__name__)
    assert all(error is None or isinstance(error, AmberError) for error in outcomes.values())
