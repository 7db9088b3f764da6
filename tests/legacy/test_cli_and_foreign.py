"""``amber scan`` and ``amber convert`` on foreign files, and what ``amber.load``,
``amber.inspect``, ``amber.verify`` (and their commands) say about a file that is not amber."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import amber
from amber.cli.main import app
from amber.errors import FormatError, UntrustedTypeError, WriteError
from amber.legacy import formats
from amber.legacy.scan import NEEDS_TRUST, REFUSED, SAFE, scan_file
from tests.graph.user_models import Color, Config
from tests.legacy.hostile_corpus import EVIL

CONFIG = "tests.graph.user_models.Config"
COLOR = "tests.graph.user_models.Color"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    X = np.arange(20.0).reshape(10, 2)
    y = np.array([0, 1] * 5)
    out = {
        "safe": tmp_path / "model.pkl",
        "user": tmp_path / "user.pkl",
        "evil": tmp_path / "evil.pkl",
        "truncated": tmp_path / "truncated.pkl",
    }
    out["safe"].write_bytes(pickle.dumps(LogisticRegression().fit(X, y)))
    out["user"].write_bytes(pickle.dumps(Config(lr=0.5, layers=[1, 2])))
    out["evil"].write_bytes(EVIL)
    out["truncated"].write_bytes(out["safe"].read_bytes()[:-40])
    return out


def test_scan_verdicts_and_exit_codes(files: dict[str, Path]) -> None:
    assert scan_file(files["safe"]).verdict == SAFE
    user = scan_file(files["user"])
    assert user.verdict == NEEDS_TRUST
    assert user.untrusted == [COLOR, CONFIG]
    assert scan_file(files["user"], trusted=[COLOR, CONFIG]).verdict == SAFE
    assert scan_file(files["evil"]).verdict == REFUSED
    truncated = scan_file(files["truncated"])
    assert truncated.verdict == REFUSED and "truncated" in truncated.reason
    assert _run("scan", str(files["safe"]))[0] == 0
    code, output = _run("scan", str(files["user"]))
    assert code == 1 and "NEEDS TRUST" in output and "--trusted" in output
    assert _run("scan", str(files["user"]), "--trusted", COLOR, "--trusted", CONFIG)[0] == 0
    assert _run("scan", str(files["evil"]))[0] == 2
    assert _run("scan", str(files["safe"]), str(files["user"]))[0] == 1
    assert _run("scan", str(files["safe"]), str(files["evil"]))[0] == 2


def test_scan_json_lists_every_name(files: dict[str, Path]) -> None:
    code, output = _run("scan", "--json", str(files["safe"]), str(files["evil"]))
    assert code == 2
    safe, evil = json.loads(output)
    assert safe["verdict"] == SAFE and safe["format"] == "pickle"
    assert {n["name"] for n in safe["names"]} == {
        "sklearn.linear_model._logistic.LogisticRegression"
    }
    assert all(n["trusted"] for n in safe["names"])
    assert evil["verdict"] == REFUSED and evil["untrusted"] == ["os.system"]


def test_scan_of_a_missing_or_odd_file_is_refused(tmp_path: Path) -> None:
    assert scan_file(tmp_path / "nope.pkl").verdict == REFUSED
    (tmp_path / "dir.pkl").mkdir()
    assert scan_file(tmp_path / "dir.pkl").verdict == REFUSED
    (tmp_path / "text.pkl").write_text("hello")
    assert scan_file(tmp_path / "text.pkl").verdict == REFUSED


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    # Opening a FIFO blocks until a writer comes: every reader of a named file must refuse
    # it instead. Run in a child so that a regression fails on the timeout instead of hanging.
    fifo = tmp_path / "model.pkl"
    os.mkfifo(fifo)
    code = (
        "import sys, amber\n"
        "from amber.errors import ReadError\n"
        "from amber.legacy.scan import scan_file\n"
        f"path = {str(fifo)!r}\n"
        "assert scan_file(path).verdict == 'REFUSED'\n"
        "for call in (lambda: amber.convert(path, path + '.amber'), lambda: amber.load(path)):\n"
        "    try:\n"
        "        call()\n"
        "    except ReadError as exc:\n"
        "        assert 'not a regular file' in str(exc), exc\n"
        "    else:\n"
        "        sys.exit('a FIFO was accepted')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert not (tmp_path / "model.pkl.amber").exists()


def test_convert_cli(files: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "model.amber"
    code, output = _run("convert", str(files["safe"]), str(dst))
    assert code == 0 and "(pickle)" in output
    assert isinstance(amber.load(dst), LogisticRegression)
    code, output = _run("convert", str(files["user"]), str(tmp_path / "user.amber"))
    assert code == 1 and CONFIG in output
    assert not (tmp_path / "user.amber").exists()
    code, _ = _run(
        "convert",
        str(files["user"]),
        str(tmp_path / "user.amber"),
        "--trusted",
        CONFIG,
        "--trusted",
        COLOR,
    )
    assert code == 0
    loaded = amber.load(tmp_path / "user.amber", trusted=[Config, Color])
    assert loaded == Config(lr=0.5, layers=[1, 2])
    code, output = _run("convert", str(files["evil"]), str(tmp_path / "evil.amber"))
    assert code == 2 and "os.system" in output and not (tmp_path / "evil.amber").exists()


def test_convert_keeps_an_existing_output(files: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out.amber"
    dst.write_bytes(b"before")
    with pytest.raises(WriteError):
        amber.convert(files["safe"], dst)
    with pytest.raises(UntrustedTypeError):
        amber.convert(files["user"], dst, force=True)
    assert dst.read_bytes() == b"before"


def _foreign(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    paths["pickle"] = tmp_path / "m.pkl"
    paths["pickle"].write_bytes(pickle.dumps({"a": 1}))
    paths["joblib"] = tmp_path / "m.joblib"
    joblib.dump({"a": 1}, paths["joblib"], compress=3)
    paths["torch"] = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, paths["torch"])
    paths["torch-legacy"] = tmp_path / "old.pt"
    torch.save({"w": torch.ones(2)}, paths["torch-legacy"], _use_new_zipfile_serialization=False)
    paths["npy"] = tmp_path / "a.npy"
    np.save(paths["npy"], np.ones(2))
    paths["npz"] = tmp_path / "a.npz"
    np.savez(paths["npz"], a=np.ones(2))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    paths["safetensors"] = tmp_path / "w.safetensors"
    paths["safetensors"].write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    paths["onnx"] = tmp_path / "m.onnx"
    paths["onnx"].write_bytes(b"\x08\x07\x12\x04test")
    paths["keras"] = tmp_path / "m.keras"
    import zipfile

    with zipfile.ZipFile(paths["keras"], "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return paths


EXPECTED = {
    "pickle": "a Python pickle",
    "joblib": "a compressed joblib file",
    "torch": "a torch.save archive",
    "torch-legacy": "a legacy torch.save file",
    "npy": "a numpy .npy file",
    "npz": "a numpy .npz archive",
    "safetensors": "a safetensors file",
    "onnx": "an ONNX model",
    "keras": "a Keras .keras archive",
}


@pytest.mark.parametrize("fmt", list(EXPECTED))
def test_foreign_files_are_named_with_the_next_step(fmt: str, tmp_path: Path) -> None:
    path = _foreign(tmp_path)[fmt]
    assert formats.detect(path, formats.read_head(path)) == fmt
    for call in (amber.load, amber.inspect, amber.verify):
        with pytest.raises(FormatError) as info:
            call(path)
        message = str(info.value)
        assert f"{path} is {EXPECTED[fmt]}" in message and "not an amber file" in message
        if fmt in formats.CONVERTIBLE:
            assert f"amber scan {path}" in message
            assert f"amber convert {path} {path.with_suffix('.amber')}" in message
    for command in ("inspect", "verify"):
        code, output = _run(command, str(path))
        assert code == 2 and EXPECTED[fmt] in output


def test_unknown_files_keep_the_magic_bytes_message(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FormatError, match="magic bytes"):
        amber.load(path)


def test_migrating_guide_examples_run(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "migrating.md").read_text()
    script = "\n".join(re.findall(r"```python\n(.*?)```", page, flags=re.S))
    assert script
    env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "SAFE TO CONVERT" in result.stdout
    for line in re.findall(r"^\$ (amber .*?)\s+#", page, flags=re.M)[:2]:
        argv = line.replace("model.amber", "out.amber")
        proc = subprocess.run(
            [sys.executable, "-m", "amber.cli.main", *argv.split()[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
