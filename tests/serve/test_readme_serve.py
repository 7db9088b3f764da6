"""The README's serving example runs as written: `amber serve iris@production` over the store
its Python examples build, then the curl line's request and its printed answer."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.serve.helpers import env, server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_serving_example(tmp_path: Path) -> None:
    text = README.read_text()
    # The README's store example builds iris@production (the other examples are not needed).
    (python,) = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "set_alias" in b
    ]
    subprocess.run([sys.executable, "-c", python], cwd=tmp_path, check=True, env=env(), timeout=300)
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "amber serve" in b]
    lines = block.replace("\\\n", " ").splitlines()
    argv = shlex.split(lines[0].split("&")[0])
    assert argv[:2] == ["amber", "serve"]
    curl = shlex.split(lines[1])
    payload = curl[curl.index("-d") + 1]
    path = next(a for a in curl if a.startswith("http://")).split("8080", 1)[1]
    expected = json.loads(lines[2].lstrip("# "))
    with server(tmp_path / ".amber", argv[2:]) as url:
        r = httpx.post(
            url + path, content=payload, headers={"Content-Type": "application/json"}, timeout=30
        )
    assert r.status_code == 200 and r.json() == expected
