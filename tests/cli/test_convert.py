"""`amber convert`: both directions, --force, --framework, one-line errors and exit codes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import amber
from tests.cli.test_main import run


@pytest.fixture
def state_dict_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.amber"
    amber.save(
        {"layer.weight": np.arange(12, dtype=np.float32).reshape(4, 3), "layer.bias": np.zeros(3)},
        path,
        metadata={"owner": "team-a", "epoch": 3},
    )
    return path


def header(value: object) -> bytes:
    raw = json.dumps(value).encode()
    return struct.pack("<Q", len(raw)) + raw


def assert_one_line_error(stderr: str) -> None:
    assert stderr.startswith("error: ")
    assert len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr


def test_help_lists_convert() -> None:
    result = run("--help")
    assert result.returncode == 0 and "convert" in result.stdout
    assert "--force" in run("convert", "--help").stdout


def test_amber_to_safetensors_and_back(tmp_path: Path, state_dict_file: Path) -> None:
    st_path = tmp_path / "model.safetensors"
    result = run("convert", str(state_dict_file), str(st_path))
    assert result.returncode == 0, result.stderr
    assert "(amber) ->" in result.stdout and "(safetensors): 2 tensors" in result.stdout
    loaded = safetensors.numpy.load_file(st_path)
    assert np.array_equal(loaded["layer.weight"], np.arange(12, dtype=np.float32).reshape(4, 3))
    assert loaded["layer.bias"].dtype == np.float64
    with safetensors.safe_open(st_path, framework="np") as f:
        assert f.metadata() == {"owner": "team-a", "epoch": "3"}

    back = tmp_path / "back.amber"
    result = run("convert", str(st_path), str(back))
    assert result.returncode == 0, result.stderr
    obj = amber.load(back)
    assert np.array_equal(obj["layer.weight"], loaded["layer.weight"])
    assert amber.inspect(back).metadata == {"owner": "team-a", "epoch": "3"}


def test_framework_torch(tmp_path: Path) -> None:
    src = tmp_path / "in.safetensors"
    safetensors.numpy.save_file({"w": np.ones((2, 2), np.float32)}, src)
    dst = tmp_path / "out.amber"
    result = run("convert", "--framework", "torch", str(src), str(dst))
    assert result.returncode == 0, result.stderr
    import torch

    loaded = amber.load(dst)["w"]
    assert isinstance(loaded, torch.Tensor) and torch.equal(loaded, torch.ones(2, 2))
    bad = run("convert", "--framework", "jax", str(src), str(tmp_path / "x.amber"))
    assert bad.returncode == 2 and not (tmp_path / "x.amber").exists()  # a usage error


def test_existing_output_needs_force(tmp_path: Path, state_dict_file: Path) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    result = run("convert", str(state_dict_file), str(out))
    assert result.returncode == 1
    assert_one_line_error(result.stderr)
    assert "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = run("convert", "--force", str(state_dict_file), str(out))
    assert result.returncode == 0, result.stderr
    assert set(safetensors.numpy.load_file(out)) == {"layer.weight", "layer.bias"}


def test_content_that_does_not_convert_is_exit_1(tmp_path: Path) -> None:
    src = tmp_path / "nested.amber"
    amber.save({"encoder": {"w": np.ones(2)}}, src)
    out = tmp_path / "out.safetensors"
    result = run("convert", str(src), str(out))
    assert result.returncode == 1
    assert_one_line_error(result.stderr)
    assert "['encoder'] is a nested mapping" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        (b"text, not a model at all", 2, "not a safetensors file or it is damaged"),
        (struct.pack("<Q", 2**63) + b"{}", 2, "exceeds the limit"),
        (struct.pack("<Q", 100) + b'{"__metadata__"', 1, "truncated"),
        (header({"a": {"dtype": "F32", "shape": [3]}}), 2, "missing data_offsets"),
        (header({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}), 1, "truncated"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, content: bytes, code: int, fragment: str
) -> None:
    src = tmp_path / "in.safetensors"
    src.write_bytes(content)
    out = tmp_path / "out.amber"
    result = run("convert", str(src), str(out))
    assert result.returncode == code, result.stderr
    assert_one_line_error(result.stderr)
    assert fragment in result.stderr
    assert not out.exists()


def test_unknown_input_format(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"  # not named .safetensors: its content decides
    src.write_text("text, not a model at all")
    result = run("convert", str(src), str(tmp_path / "out.amber"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "neither an amber nor a safetensors file" in result.stderr


def test_missing_input_and_unknown_output(tmp_path: Path, state_dict_file: Path) -> None:
    missing = run("convert", str(tmp_path / "absent.amber"), str(tmp_path / "o.safetensors"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = run("convert", str(state_dict_file), str(tmp_path / "o.unknown-format"))
    assert unknown.returncode == 2  # a usage error
    assert_one_line_error(unknown.stderr)
    assert "cannot tell the output format" in unknown.stderr
    same = run("convert", str(state_dict_file), str(tmp_path / "o.amber"))
    assert same.returncode == 2 and "cannot convert amber to amber" in same.stderr
