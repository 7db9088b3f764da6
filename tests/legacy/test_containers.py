"""Malformed containers around pickles: joblib compression, torch.save archives, numpy
files. Each is refused with a typed error saying what is wrong; nothing is allocated from a
size the file claims before it is checked."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from amber.errors import FormatError
from amber.legacy.joblib_file import decompress
from amber.legacy.reader import load, parse, parse_bytes


def test_decompression_is_capped_while_it_runs() -> None:
    bomb = zlib.compress(b"\x00" * 5_000_000)
    with pytest.raises(FormatError, match="more than 100000 bytes"):
        decompress(bomb, max_output=100_000)
    assert len(decompress(bomb, max_output=5_000_000)) == 5_000_000


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (gzip.compress(b"\x80\x04N.")[:-6], "truncated"),
        (gzip.compress(b"\x80\x04N.") + b"junk", "follow the end"),
        (b"\x78\x9c" + b"\xff" * 20, "damaged"),
    ],
)
def test_damaged_compressed_joblib_files(data: bytes, fragment: str) -> None:
    with pytest.raises(FormatError, match=fragment):
        parse_bytes(Path("m.joblib"), data)


def test_joblib_array_claiming_more_bytes_than_the_file_has(tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "a.joblib"
    joblib.dump(np.arange(1000.0), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 4000])
    with pytest.raises(FormatError, match="truncated"):
        parse(path)


def _torch_zip(tmp_path: Path, edit: dict[str, bytes | None]) -> Path:
    source = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, source)
    src = zipfile.ZipFile(io.BytesIO(source.getvalue()))
    out = tmp_path / "edited.pt"
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            name = info.filename.split("/", 1)[1]
            data = edit.get(name, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    return out


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ({"data/0": None}, "missing from the archive"),
        ({"data/0": bytes(12)}, "not 4 float32 elements"),
        ({"data.pkl": None}, "not one torch.save writes|no data.pkl"),
        ({"byteorder": b"big"}, "big-endian"),
    ],
)
def test_damaged_torch_archives(edit: dict, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=fragment):
        load(_torch_zip(tmp_path, edit))


def test_legacy_torch_file_with_a_bad_storage_table(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"w": torch.arange(4.0)}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    path.write_bytes(raw[:-8])
    with pytest.raises(FormatError, match="storage"):
        load(path)
    path.write_bytes(raw + b"\x00")
    with pytest.raises(FormatError, match="follow the last storage"):
        load(path)


def _npy(header: str, payload: bytes) -> bytes:
    text = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + payload


@pytest.mark.parametrize(
    ("header", "payload", "fragment"),
    [
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", bytes(16), "holds 16"),
        ("{'descr': __import__('os').getcwd(), 'shape': (1,), }", bytes(8), "not one numpy"),
        ("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", bytes(4), "not"),
        ("{'descr': '<q9', 'fortran_order': False, 'shape': (1,), }", bytes(8), "dtype"),
    ],
)
def test_malformed_npy_headers(header: str, payload: bytes, fragment: str) -> None:
    with pytest.raises(FormatError, match=fragment):
        parse_bytes(Path("a.npy"), _npy(header, payload))


def test_npz_members_must_be_npy_files(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "x.npy", _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", bytes(8))
        )
        archive.writestr("x.npy.txt", b"hello")
    with pytest.raises(FormatError):
        load(path)
