"""The store commands: every command, --json output, one-line errors and exit codes
(0 ok, 1 operation failed, 2 bad input or not found)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import amber
from amber.cli import output, store_common
from amber.cli.main import app
from amber.store import Store
from tests.cli.test_main import run


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # The consoles are made at import; keep rows on one line whatever the terminal.
    monkeypatch.setattr(output.stdout, "_width", 200)
    monkeypatch.setattr(output.stderr, "_width", 200)
    monkeypatch.delenv("AMBER_STORE", raising=False)


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


def error(code: int, *args: str) -> str:
    """Run a command that must fail with ``code`` and one line on stderr; its message."""
    result = cli(*args)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store with churn@1..3 (lineage, metrics, tags, messages, an alias) and fraud@1."""
    path = tmp_path / "store"
    with Store(path) as s:
        s.save({"w": np.ones(3)}, "churn", metrics={"acc": 0.8}, metadata={"lr": 0.1})
        s.save(
            {"w": np.arange(3.0)}, "churn", metrics={"acc": 0.85}, tags={"team": "a"}, message="v2"
        )
        s.save({"w": np.arange(3.0), "b": np.zeros(2)}, "churn", metrics={"acc": 0.9})
        s.set_alias("churn@2", "production")
        s.save({"x": 1}, "fraud")
    return path


# -- choosing the store ------------------------------------------------------------------


def test_help_lists_the_store_commands() -> None:
    out = ok("--help")
    for command in ("ls", "versions", "show", "diff", "alias", "tag", "rm", "gc", "check"):
        assert f" {command} " in out
    for command in ("export", "import", "store"):
        assert command in out
    assert "AMBER_STORE" in ok("ls", "--help")
    assert "reindex" in ok("store", "--help")


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["versions", "churn"],
        ["show", "churn@1"],
        ["diff", "churn@1", "churn@2"],
        ["alias", "churn@1", "prod"],
        ["tag", "churn@1", "a=b"],
        ["rm", "churn@1"],
        ["gc"],
        ["check"],
        ["export", "churn", "x.amber"],
        ["store", "reindex"],
    ],
)
def test_commands_never_create_a_missing_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nothing"
    message = error(2, *command, "--store", str(missing))
    assert f"no store at {missing}" in message
    assert not missing.exists()


def test_a_folder_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "tmp").mkdir()  # a name a store also uses
    assert "is not an amber store" in error(2, "ls", "--store", str(tmp_path))
    assert "is not an amber store" in error(2, "ls", "--store", str(tmp_path / "notes.txt"))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "tmp"]


def test_amber_store_env_var_and_store_path(root: Path, tmp_path: Path) -> None:
    result = cli("ls", "--json", env={"AMBER_STORE": str(root)})
    assert result.exit_code == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)] == ["churn", "fraud"]
    result = cli("store", "path", env={"AMBER_STORE": str(root)})
    assert result.stdout.strip() == str(root.absolute())
    assert ok("store", "path", "--store", str(root)).strip() == str(root.absolute())
    result = cli("store", "path", "--store", str(tmp_path / "new"))
    assert result.exit_code == 0 and "no store" in result.stderr


# -- listing ------------------------------------------------------------------------------


def test_ls_table_and_json(root: Path) -> None:
    out = ok("ls", "--store", str(root))
    churn = next(line for line in out.splitlines() if "churn" in line)
    for fragment in ("3", "production@2", "88 B"):
        assert fragment in churn
    data = json.loads(ok("ls", "--json", "--store", str(root)))
    assert data[0] == {
        "name": "churn",
        "latest": 3,
        "versions": 3,
        "size": 88,
        "aliases": {"production": 2},
        "updated_at": data[0]["updated_at"],
    }
    assert data[1]["name"] == "fraud" and data[1]["versions"] == 1


def test_ls_of_an_empty_store(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    assert "no models" in ok("ls", "--store", str(tmp_path / "s"))
    assert json.loads(ok("ls", "--json", "--store", str(tmp_path / "s"))) == []


def test_versions_table_json_and_last(root: Path) -> None:
    out = ok("versions", "churn", "--store", str(root))
    second = next(line for line in out.splitlines() if "v2" in line)
    for fragment in ("acc=0.85", "team=a", "production", "churn@1"):
        assert fragment in second
    data = json.loads(ok("versions", "churn", "--json", "--store", str(root)))
    assert [v["version"] for v in data] == [1, 2, 3]
    assert [v["parent"] for v in data] == [None, "churn@1", "churn@2"]
    assert data[1]["aliases"] == ["production"] and data[1]["message"] == "v2"
    assert data[2]["metrics"] == {"acc": 0.9}
    last = json.loads(ok("versions", "churn", "--last", "1", "--json", "--store", str(root)))
    assert [v["version"] for v in last] == [3]


def test_show_table_and_json(root: Path) -> None:
    out = ok("show", "churn@production", "--store", str(root))
    for fragment in ("churn@2", "production", "churn@1", "v2", "acc=0.85", "team=a", "1 (24 B)"):
        assert fragment in out
    data = json.loads(ok("show", "churn", "--json", "--store", str(root)))
    assert data["version"] == 3 and data["tensor_count"] == 2 and data["tensor_bytes"] == 40
    assert json.loads(ok("show", "churn@1", "--json", "--store", str(root)))["metadata"] == {
        "lr": 0.1
    }
    assert "numpy" in data["environment"]["packages"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("churn@", "ends with '@'"),
        ("@7", "has no model name"),
        ("churn@-1", "version numbers start at 1"),
        ("churn@007", "without leading zeros"),
        ("../x", "invalid model name '../x'"),
        ("churn@a/b", "invalid alias"),
        ("churnn@1", "did you mean churn?"),
        ("nothing", "the store has 2 models"),
        ("churn@99", "churn@99 does not exist"),
        ("churn@prod", "did you mean production?"),
    ],
)
def test_bad_or_missing_specs_are_exit_2(root: Path, spec: str, message: str) -> None:
    assert message in error(2, "show", spec, "--store", str(root))


def test_versions_takes_a_model_name(root: Path) -> None:
    assert "not a version" in error(2, "versions", "churn@2", "--store", str(root))
    assert "did you mean churn?" in error(2, "versions", "chrun", "--store", str(root))


def test_diff_table_and_json(root: Path) -> None:
    out = ok("diff", "churn@1", "churn@3", "--store", str(root))
    for fragment in ("churn@1 -> churn@3", "acc", "0.8", "0.9", "lr", "added", "changed"):
        assert fragment in out
    data = json.loads(ok("diff", "churn@1", "churn@3", "--json", "--store", str(root)))
    assert data["metrics"] == {"acc": [0.8, 0.9]}
    assert {t["name"]: t["change"] for t in data["tensors"]} == {"b": "added", "w": "changed"}
    same = json.loads(ok("diff", "churn@2", "churn@production", "--json", "--store", str(root)))
    assert same["same_content"] is True
    assert "did you mean" in error(2, "diff", "churn@1", "chrn@2", "--store", str(root))


# -- editing ------------------------------------------------------------------------------


def test_alias_set_move_expect_and_remove(root: Path) -> None:
    store = ("--store", str(root))
    assert "churn@staging -> 1" in ok("alias", "churn@1", "staging", *store)
    assert "churn@production -> 3 (was 2)" in ok(
        "alias", "churn@3", "production", "--expect", "2", *store
    )
    message = error(1, "alias", "churn@1", "production", "--expect", "2", *store)
    assert "points to 3; expected it to point to 2" in message
    assert "nothing was changed" in error(1, "alias", "churn@1", "new", "--expect", "3", *store)
    ok("alias", "churn@1", "production", "--expect", "2", "--force", *store)
    assert "churn@new -> 1" in ok("alias", "churn@1", "new", "--expect", "none", *store)
    aliases = json.loads(ok("ls", "--json", *store))[0]["aliases"]
    assert aliases == {"production": 1, "staging": 1, "new": 1}
    assert "removed alias churn@new" in ok("alias", "churn", "new", "--remove", *store)
    assert "has no alias 'new'" in error(2, "alias", "churn", "new", "--remove", *store)
    assert "not a version" in error(2, "alias", "churn@1", "staging", "--remove", *store)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["churn@1", "latest"], "maintained by the store"),
        (["churn@1", "7"], "would read as a version number"),
        (["churn@1", "a b"], "invalid alias"),
        (["churn@1", "x", "--expect", "two"], "--expect takes a version number"),
        (["churn@9", "x"], "churn@9 does not exist"),
        (["nope@1", "x"], "no model named 'nope'"),
    ],
)
def test_alias_errors_are_exit_2(root: Path, args: list[str], message: str) -> None:
    assert message in error(2, "alias", *args, "--store", str(root))


def test_tag_set_remove_and_errors(root: Path) -> None:
    store = ("--store", str(root))
    assert "churn@3: owner=me, stage=dev" in ok("tag", "churn@3", "owner=me", "stage=dev", *store)
    data = json.loads(ok("tag", "churn@3", "note=a=b", "--remove", "stage", "--json", *store))
    assert data["tags"] == {"owner": "me", "note": "a=b"}
    assert "no tags" in ok("tag", "churn@3", "--remove", "owner", "--remove", "note", *store)
    assert "key=value" in error(2, "tag", "churn@3", "oops", *store)
    assert "key=value" in error(2, "tag", "churn@3", "=x", *store)
    assert "give tags" in error(2, "tag", "churn@3", *store)
    assert "does not exist" in error(2, "tag", "churn@5", "a=b", *store)


def test_rm_refuses_an_aliased_version_unless_forced(root: Path) -> None:
    store = ("--store", str(root))
    message = error(1, "rm", "churn@2", *store)
    assert "aliased as production" in message and "--force" in message
    assert "like 'churn@3'" in error(2, "rm", "churn", *store)
    assert "like 'churn@3'" in error(2, "rm", "churn@production", *store)
    assert "deleted churn@3" in ok("rm", "churn@3", *store)
    assert "churn@3 was deleted" in error(2, "rm", "churn@3", *store)
    out = ok("rm", "churn@2", "--force", *store)
    assert "deleted churn@2 and its aliases production" in out
    data = json.loads(ok("ls", "--json", *store))[0]
    assert (data["versions"], data["latest"], data["aliases"]) == (1, 1, {})


# -- maintenance --------------------------------------------------------------------------


def test_gc_dry_run_then_collect(root: Path) -> None:
    store = ("--store", str(root))
    ok("rm", "churn@3", *store)  # its tensor "b" and its own "w" object become garbage
    assert "would free 0 B" in ok("gc", "--dry-run", *store)  # within the grace period
    dry = json.loads(ok("gc", "--grace", "0", "--dry-run", "--json", *store))
    assert dry["dry_run"] is True and dry["objects_removed"] >= 1
    done = json.loads(ok("gc", "--grace", "0", "--json", *store))
    assert done["objects_removed"] == dry["objects_removed"]
    assert "freed 0 B" in ok("gc", "--grace", "0", *store)
    usage = cli("gc", "--grace", "-1", *store)  # typer's own usage error
    assert usage.exit_code == 2 and "--grace" in usage.stderr


def test_check_reports_damage_with_exit_1(root: Path) -> None:
    store = ("--store", str(root))
    assert "no problems" in ok("check", *store)
    assert json.loads(ok("check", "--json", *store))["ok"] is True
    with Store(root) as s:
        record = s.resolve("churn@1")
        digest = sorted(record.objects())[0]
    path = next(p for p in (root / "objects").rglob("*") if p.is_file() and digest in p.name)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    result = cli("check", *store)
    assert result.exit_code == 1
    assert "PROBLEMS FOUND" in result.stdout and "damaged churn@1" in result.stdout
    result = cli("check", "--json", *store)
    assert result.exit_code == 1
    assert list(json.loads(result.stdout)["damaged"]) == ["churn@1"]


def test_check_repair_and_reindex_fix_a_drifted_index(root: Path) -> None:
    store = ("--store", str(root))
    with sqlite3.connect(root / "cache" / "index.sqlite") as db:
        db.execute("DELETE FROM versions WHERE name = 'fraud'")
    db.close()
    assert [m["name"] for m in json.loads(ok("ls", "--json", *store))] == ["churn"]
    result = cli("check", *store)
    assert result.exit_code == 1 and "fraud@1 is in storage but not in the index" in result.stdout
    assert "amber check --repair" in result.stdout
    assert "(repaired)" in ok("check", "--repair", *store)
    assert len(json.loads(ok("ls", "--json", *store))) == 2
    with sqlite3.connect(root / "cache" / "index.sqlite") as db:
        db.execute("DELETE FROM versions")
    db.close()
    assert "indexed 4 versions" in ok("store", "reindex", *store)
    assert len(json.loads(ok("ls", "--json", *store))) == 2


# -- transfer -----------------------------------------------------------------------------


def test_export_a_version_and_import_it_elsewhere(root: Path, tmp_path: Path) -> None:
    file = tmp_path / "churn2.amber"
    assert "exported churn@2" in ok("export", "churn@production", str(file), "--store", str(root))
    assert np.array_equal(amber.load(file)["w"], np.arange(3.0))
    assert "exists" in error(1, "export", "churn@1", str(file), "--store", str(root))
    ok("export", "churn@1", str(file), "--force", "--store", str(root))
    assert np.array_equal(amber.load(file)["w"], np.ones(3))

    other = tmp_path / "other"
    result = cli("import", str(file), "--store", str(other))
    assert result.exit_code == 0, result.stderr
    assert "imported 1 version: churn@1" in result.stdout
    assert "created a new store" in result.stderr
    data = json.loads(ok("import", str(file), "--name", "copy", "--json", "--store", str(other)))
    assert [v["name"] for v in data] == ["copy"] and data[0]["metrics"] == {"acc": 0.8}
    assert "not a version" in error(
        2, "export", "churn@1", "x.amber", "--all", "--store", str(root)
    )
    assert "does not exist" in error(2, "export", "churn@7", "x.amber", "--store", str(root))


def test_export_all_and_import_a_bundle_by_content(root: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "history.amber"
    out = ok("export", "churn", str(bundle), "--all", "--store", str(root))
    assert "exported 3 versions of churn" in out
    other = tmp_path / "other"
    out = ok("import", str(bundle), "--name", "churn-copy", "--store", str(other))
    assert "imported 3 versions: churn-copy@1, churn-copy@2, churn-copy@3" in out
    data = json.loads(ok("versions", "churn-copy", "--json", "--store", str(other)))
    assert [v["parent"] for v in data] == [None, "churn-copy@1", "churn-copy@2"]
    assert data[1]["aliases"] == ["production"] and data[1]["tags"] == {"team": "a"}
    ok("import", str(bundle), "--bundle", "--store", str(other))
    assert json.loads(ok("ls", "--json", "--store", str(other)))[0]["name"] == "churn"
    single = tmp_path / "one.amber"
    ok("export", "fraud", str(single), "--store", str(root))
    assert "not an amber bundle" in error(
        2, "import", str(single), "--bundle", "--store", str(other)
    )


def test_import_errors_leave_no_store_behind(tmp_path: Path) -> None:
    target = tmp_path / "new"
    store = ("--store", str(target))
    assert "no such file" in error(2, "import", str(tmp_path / "absent.amber"), *store)
    text = tmp_path / "text.amber"
    text.write_text("not an amber file" * 10)
    assert "not an amber file" in error(2, "import", str(text), *store)
    plain = tmp_path / "plain.amber"
    amber.save({"a": np.ones(2)}, plain)
    assert "--name" in error(2, "import", str(plain), *store)
    assert "invalid model name" in error(2, "import", str(plain), "--name", "a/b", *store)
    assert not target.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    message = error(2, "import", str(plain), "--name", "p", "--store", str(other))
    assert "is not an amber store" in message and os.listdir(other) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    ok("import", str(plain), "--name", "p", "--store", str(empty))
    assert "imported 1 version: plain@1" in ok("import", str(plain), "--name", "plain", *store)


def test_slow_transfers_show_progress_and_throughput(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_common, "_PROGRESS_DELAY", 0.01)
    original = Store.export

    def slow_export(self: Store, spec: str, path: Any) -> Any:
        time.sleep(0.2)
        return original(self, spec, path)

    monkeypatch.setattr(Store, "export", slow_export)
    result = cli("export", "churn@1", str(tmp_path / "x.amber"), "--store", str(root))
    assert result.exit_code == 0, result.stderr
    assert "exporting churn@1: 24 B in 0." in result.stderr and "/s)" in result.stderr
    monkeypatch.undo()
    fast = cli("export", "churn@1", str(tmp_path / "y.amber"), "--store", str(root))
    assert fast.exit_code == 0 and fast.stderr == ""  # no spinner, no throughput line


# -- real processes -------------------------------------------------------------------------


def test_errors_are_one_line_in_a_real_process(root: Path) -> None:
    result = run("show", "churn@", "--store", str(root))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    result = run("rm", "churn@2", "--store", str(root))
    assert result.returncode == 1 and "aliased as production" in result.stderr


def test_listing_commands_import_no_numpy(root: Path) -> None:
    code = (
        "import sys, json\nfrom amber.cli.main import app\n"
        "for args in (['ls'], ['versions', 'churn'], ['show', 'churn@2']):\n"
        f"    try:\n        app([*args, '--store', {str(root)!r}])\n"
        "    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out.strip().splitlines()[-1])}
    assert not {"numpy", "torch", "sklearn", "scipy", "pandas"} & loaded


def test_search_by_metric_tag_name_and_date(root: Path) -> None:
    store = ("--store", str(root))
    found = json.loads(ok("search", "--metric", "acc>=0.85", "--json", *store))
    assert [(v["name"], v["version"]) for v in found] == [("churn", 2), ("churn", 3)]
    assert "churn@2" in ok("search", "--tag", "team=a", *store)
    assert json.loads(ok("search", "fr*", "--json", *store))[0]["name"] == "fraud"
    assert json.loads(ok("search", "--after", "2999-01-01", "--json", *store)) == []
    assert "accuracy>=0.9" in error(2, "search", "--metric", "acc is high", *store)
    assert "key=value" in error(2, "search", "--tag", "team", *store)
