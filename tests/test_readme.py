"""The README's examples really run: Python blocks in order, then every `$ amber` line."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

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


def test_documentation_examples_run(tmp_path: Path) -> None:
    """The Python examples of the user guide and the security page run as written."""
    docs = README.parent / "docs"
    pages = ("saving-models.md", "security.md", "pytorch.md", "interop.md", "store.md")
    for page in (*pages, "boosters.md", "batch.md"):
        blocks = re.findall(r"```python\n(.*?)```", (docs / page).read_text(), flags=re.S)
        assert blocks, page
        folder = tmp_path / page
        folder.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", "\n".join(blocks)], cwd=folder, capture_output=True, text=True
        )
        assert result.returncode == 0, (page, result.stderr)
