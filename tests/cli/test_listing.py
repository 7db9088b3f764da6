"""Store listings at 80 columns and in pipes: the values asked for are never cut.

At a (forced) terminal of 80 columns, `ls`, `versions`, `search` and `show` keep every
model name, version, alias and metric whole, dropping (and naming) less important columns
instead; piped, they print tab-separated rows with every digit; `show` prints the content
digest on one line; unknown metric and tag names are reported with the known ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

AMBER = Path(sys.executable).with_name("amber")
NAME = "customer-churn-gradient-boosting-eu-west"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from amber.store import Store

    root = tmp_path_factory.mktemp("listing") / "store"
    s = Store(root)
    for i, accuracy in enumerate((0.9733333333333334, 0.96, 0.8733333333333333)):
        s.save(
            {"w": [float(i)]},
            NAME,
            metrics={"accuracy": accuracy, "f1_macro_weighted_long_metric": 0.93},
            tags={"team": "risk", "dataset": "customers-2026-12"},
            message=f"run {i}: a fairly long message that a narrow terminal must fold",
        )
    s.set_alias(f"{NAME}@2", "production")
    s.close()
    return root


def run(store: Path, *args: str, terminal: bool = True, columns: int = 80) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "AMBER_STORE": str(store)}
    env.pop("TTY_COMPATIBLE", None)
    if terminal:
        env["TTY_COMPATIBLE"] = "1"  # rich lays out for a terminal although stdout is a pipe
    result = subprocess.run(
        [str(AMBER), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return ANSI.sub("", result.stdout)


def _cells(text: str) -> list[list[str]]:
    """The rows of a rendered table, each cell's folded lines joined (spaces dropped)."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if "│" not in line:
            continue
        parts = [part.strip().replace(" ", "") for part in line.split("│")]
        if parts[0] or not rows:
            rows.append(parts)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], parts, strict=True)]
    return rows


def _fits(text: str, width: int = 80) -> None:
    assert all(len(line.rstrip()) <= width for line in text.splitlines()), text


def test_ls_at_80_columns(store: Path) -> None:
    out = run(store, "ls")
    _fits(out)
    assert NAME in out and "production@2" in out and "…" not in out


@pytest.mark.parametrize("command", [["versions", NAME], ["search", "--metric", "accuracy>0"]])
def test_version_listings_at_80_columns_keep_metrics_whole(store: Path, command: list) -> None:
    out = run(store, *command)
    _fits(out)
    assert "…" not in out
    cells = [cell for row in _cells(out) for cell in row]
    joined = "|".join(cells)
    for value in ("accuracy=0.973333", "accuracy=0.96", "f1_macro_weighted_long_metric=0.93"):
        assert value in joined, value
    assert "production" in cells
    assert "1" in cells or f"{NAME}@1" in cells  # versions and specs whole
    assert "more column" in out  # what was left out is named


def test_wide_terminal_shows_every_column(store: Path) -> None:
    out = run(store, "versions", NAME, columns=250)
    assert "more column" not in out
    for header in ("created (UTC)", "creator", "metrics", "tags", "aliases", "parent", "message"):
        assert header in out


def test_piped_listing_is_tab_separated_with_every_digit(store: Path) -> None:
    out = run(store, "versions", NAME, terminal=False)
    header, *rows = out.splitlines()
    assert header.split("\t") == [
        "version", "created (UTC)", "creator", "metrics", "tags", "aliases", "parent", "message",
    ]  # fmt: skip
    assert len(rows) == 3 and all(len(row.split("\t")) == 8 for row in rows)
    assert "accuracy=0.9733333333333334" in rows[0]
    assert rows[1].split("\t")[5] == "production"


def test_show_prints_the_digest_whole(store: Path) -> None:
    out = run(store, "show", f"{NAME}@production")
    content = [line for line in out.splitlines() if line.startswith("content")]
    assert len(content) == 1 and re.search(r"blake3:[0-9a-f]{64}\s*$", content[0])


def test_search_names_unknown_metrics_and_tags(store: Path) -> None:
    env = {**os.environ, "AMBER_STORE": str(store)}
    for args, fragment in (
        (["--metric", "acc>=0.5"], "known metrics: accuracy, f1_macro_weighted_long_metric"),
        (["--tag", "owner=x"], "known tags: dataset, team"),
    ):
        result = subprocess.run(
            [str(AMBER), "search", *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 2 and fragment in result.stderr, result.stderr


def test_store_path_json(store: Path) -> None:
    import json

    data = json.loads(run(store, "store", "path", "--json", terminal=False))
    assert data == {"store": str(store.absolute()), "remote": False, "exists": True}


def test_python_store_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    from amber.errors import StoreError
    from amber.store import Store

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an amber store and holds other files"):
        Store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created
    Store(tmp_path, create=True).close()  # asked for explicitly
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store(tmp_path / "file")


def test_gc_says_what_it_kept_and_why_and_rm_is_true(tmp_path: Path) -> None:
    from amber.store import Store

    root = tmp_path / "store"
    import numpy as np

    with Store(root) as s:
        s.save({"w": np.ones(100)}, "m")
        s.save({"w": np.zeros(100)}, "m")
    env = {**os.environ, "AMBER_STORE": str(root)}

    def amber(*args: str) -> str:
        result = subprocess.run(
            [str(AMBER), *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return " ".join(result.stdout.split())

    assert "freed by `amber gc` once older than the grace period" in amber("rm", "m@1")
    kept = amber("gc")
    assert "freed 0 B: 0 objects" in kept and "kept 1 object that versions use" in kept
    assert "also kept 1 unused object" in kept and "younger than the grace period (1 hour)" in kept
    freed = amber("gc", "--grace", "0")
    assert "1 object and" in freed and "also kept" not in freed
