"""Progress reporting of saves: a callable sees every byte counted up to the total; a bar
on stderr with progress=True; anything else is refused before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.errors import InvalidArgumentError


def test_callback_counts_every_payload_byte(tmp_path: Path) -> None:
    arrays = {"a": np.ones(3_000_000), "b": np.zeros(10, np.int8), "c": np.ones((2, 3))}
    calls: list[tuple[int, int | None]] = []
    info = amber.save(arrays, tmp_path / "m.amber", progress=lambda d, t: calls.append((d, t)))
    total = sum(a.nbytes for a in arrays.values())
    assert calls and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # never goes back
    assert sum(t.nbytes for t in info.tensors) == total


def test_progress_bar_on_stderr() -> None:
    code = (
        "import numpy as np, amber, tempfile, os\n"
        "d = tempfile.mkdtemp()\n"
        "amber.save({'a': np.ones(2**20)}, os.path.join(d, 'm.amber'), progress=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "saving m.amber" in result.stderr and "100%" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("bad", ["yes", 1, [print]])
def test_bad_progress_argument_is_refused(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="progress="):
        amber.save({"a": 1}, tmp_path / "m.amber", progress=bad)
    assert list(tmp_path.iterdir()) == []
