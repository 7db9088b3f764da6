"""The README's examples really run: Python blocks in order, then every `$ amber` line."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
AMBER = Path(sys.executable).with_name("amber")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert _blocks("python"), "README lost its Python example"
    assert any("$ amber" in block for block in _blocks("console"))


def test_python_examples_run(tmp_path: Path) -> None:
    script = "\n".join(_blocks("python"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "net.amber").exists()


def test_cli_examples_run(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", "\n".join(_blocks("python"))], cwd=tmp_path, check=True)
    commands = [
        shlex.split(line[2:], comments=True)
        for block in _blocks("console")
        for line in block.splitlines()
        if line.startswith("$ amber")
    ]
    assert len(commands) >= 4
    for argv in commands:
        result = subprocess.run(
            [str(AMBER), *argv[1:]], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        assert result.stdout.strip(), argv


DOCS = sorted((README.parent / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_documentation_examples_run(page: Path, tmp_path: Path) -> None:
    """Every page of docs/: its Python blocks run in order as one script, then every
    `$ amber` line of its console blocks runs in the same folder and exits 0."""
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    if blocks:
        result = subprocess.run(
            [sys.executable, "-c", "\n".join(blocks)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (page.name, result.stderr[-3000:])
    consoles = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    for line in (line for block in consoles for line in block.splitlines()):
        if not line.startswith("$ amber"):
            continue
        argv = shlex.split(line[2:], comments=True)
        result = subprocess.run(
            [str(AMBER), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (page.name, line, result.stdout, result.stderr)
