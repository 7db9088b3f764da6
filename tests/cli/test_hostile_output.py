"""Text from a file or a store never acts on the terminal (security rule R7).

Hostile files and stores are written with the real writers (``amber.save``, ``Store``) or,
for what the writers refuse, by re-sealing a hand-edited manifest
(``tests.corpus.build.edit_manifest``). Every command must print their strings with control
and format characters escaped (``\\x1b``, ``\\u202e``) and rich markup shown literally, and
``--json`` must keep them as escapes that parse back to the same values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import amber
from amber.cli import output
from amber.cli.main import app
from amber.cli.output import json_text, line, safe, safe_text
from amber.store import Store
from tests.corpus.build import base_file, edit_manifest

AMBER = Path(sys.executable).with_name("amber")

# Clears the screen, homes the cursor, rings, backspaces, returns the carriage, uses 8-bit
# CSI, DEL, a bidi override and isolate, a zero-width joiner, a line separator, a tab.
CONTROLS = "\x1b[2J\x1b[H\x07\x08\r\x9b\x7f\u202e\u2066\u200d\u2028\t"
MARKUP = "[red]untrusted  none[/red]"
LINK = "[link=http://x]click[/link]"
EMOJI = ":skull:"
HOSTILE = CONTROLS + "x"  # short enough for a table cell on one line
UNSAFE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.stdout, "_width", 400)
    monkeypatch.setattr(output.stderr, "_width", 400)
    monkeypatch.delenv("AMBER_STORE", raising=False)


def assert_clean(text: str) -> None:
    """No control or format character but the newlines between lines and, in piped
    listings (tab-separated), the tabs between cells: every line of such a listing has as
    many tabs as its header, so no value brought one of its own."""
    bad = sorted({c for c in text if c not in "\n\t" and unicodedata.category(c) in UNSAFE})
    assert not bad, (bad, text)
    lines = text.splitlines()
    if lines and "\t" in lines[0]:
        assert all(line.count("\t") == lines[0].count("\t") for line in lines), text
    else:
        assert "\t" not in text, text


def cli(*args: str, code: int = 0) -> tuple[str, str]:
    """Run a command in process; its stdout and stderr, both checked clean."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    assert_clean(result.stdout)
    assert_clean(result.stderr)
    return result.stdout, result.stderr


# -- the shared helpers ---------------------------------------------------------------------


def test_safe_text_escapes_every_control_and_format_character() -> None:
    assert safe_text(CONTROLS) == (
        "\\x1b[2J\\x1b[H\\x07\\x08\\r\\x9b\\x7f\\u202e\\u2066\\u200d\\u2028\\t"
    )
    assert safe_text("a\nb\ud800\ue000\U000f0000\u2029") == "a\\nb\\ud800\\ue000\\U000f0000\\u2029"
    for kept in ("café", "日本語", "a b\u00a0c", MARKUP, "C:\\models", "🙂", ""):
        assert safe_text(kept) == kept
    assert safe_text(None) == "" and safe_text(3) == "3"
    every = "".join(map(chr, range(0x20))) + "".join(map(chr, range(0x7F, 0xA0)))
    assert_clean(safe_text(every + "\n"))


def test_markup_and_emoji_are_never_parsed() -> None:
    text = line(safe("ok", "green"), f" {MARKUP} {LINK} {EMOJI}")
    assert text.plain == f"ok {MARKUP} {LINK} {EMOJI}"
    assert not output.stdout._markup and not output.stderr._emoji  # even for a plain str
    with output.stdout.capture() as captured:
        output.stdout.print(f"{MARKUP} {EMOJI}")
    assert captured.get() == f"{MARKUP} {EMOJI}\n"


def test_json_text_escapes_what_json_dumps_leaves_raw() -> None:
    value = {"k" + CONTROLS: ["v\ud800\ue000\U000f0000" + MARKUP, "café 日本"]}
    raw = json.dumps(value, ensure_ascii=False)
    assert "\x9b" in raw and "\u202e" in raw  # what --json printed before
    for indent in (2, None):
        text = json_text(value, indent=indent)
        assert_clean(text)
        assert json.loads(text) == value
        assert "\\u202e" in text and "\\udb80\\udc00" in text and "café 日本" in text


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    """A file written by amber.save whose tensor names, keys and metadata are hostile."""
    path = tmp_path / "hostile.amber"
    amber.save(
        {
            "\x1b[2J\x1b[Hfake": np.zeros(2),
            HOSTILE: np.ones(1),
            MARKUP: np.ones(3),
            LINK: 1,
            "nested": {EMOJI + "\r": np.zeros(1)},
        },
        path,
        metadata={"k" + HOSTILE: "v" + HOSTILE, "note": MARKUP + LINK},
    )
    return path


def test_inspect_escapes_names_keys_and_metadata(hostile_file: Path) -> None:
    out, _ = cli("inspect", "--all", str(hostile_file))
    assert "\\x1b[2J\\x1b[Hfake" in out  # the tensor table and the tree
    assert "\\u202e" in out and "\\x9b" in out
    assert MARKUP in out and LINK in out and EMOJI in out
    # No line of its own says "untrusted": the file's text stays inside its cell.
    assert not any(row.lstrip().startswith("untrusted") for row in out.splitlines())
    data = json.loads(cli("inspect", "--json", str(hostile_file))[0])
    assert {t["name"] for t in data["tensors"]} >= {"\x1b[2J\x1b[Hfake", HOSTILE, MARKUP}
    assert data["metadata"]["k" + HOSTILE] == "v" + HOSTILE


def test_verify_and_convert_escape_hostile_paths(hostile_file: Path, tmp_path: Path) -> None:
    named = tmp_path / f"m{CONTROLS.replace(chr(0x7F), '')}{MARKUP.replace('/', '')}.amber"
    named.write_bytes(hostile_file.read_bytes())
    out, _ = cli("verify", str(named))
    assert out.startswith("ok ") and "\\x1b[2J" in out and "[red]untrusted  none[red]" in out
    state = tmp_path / "state.amber"
    amber.save({HOSTILE: np.ones(2), MARKUP: np.zeros(1)}, state)
    target = tmp_path / f"out{CONTROLS[:5]}.safetensors"
    out, _ = cli("convert", str(state), str(target))
    assert "\\x1b[2J" in out and "2 tensors" in out
    back = tmp_path / "back.amber"
    cli("convert", str(target), str(back))
    assert set(amber.load(back)) == {HOSTILE, MARKUP}


def _edited(tmp_path: Path, name: str, edit: Any) -> Path:
    path = tmp_path / f"{name}.amber"
    path.write_bytes(edit_manifest(base_file(), edit))
    return path


def test_inspect_escapes_a_hand_made_manifest(tmp_path: Path) -> None:
    """What the writer never writes: hostile environment, dates, versions, store history,
    node kinds, state keys and private-use characters (the reader refuses lone
    surrogates)."""

    def edit(m: dict[str, Any]) -> None:
        m["created_at"] = HOSTILE
        m["amber"]["version"] = MARKUP
        m["environment"] = {"python": HOSTILE, "platform": LINK, "packages": {HOSTILE: EMOJI}}
        m["metadata"] = {"s\ue000": "p\U000f0000" + HOSTILE}
        m["store"] = {"name": HOSTILE, "version": MARKUP, "message": HOSTILE, "tags": {}}
        m["root"]["v"]["obj"] = {
            "k": "object",
            "type": "collections:OrderedDict",
            "state": {"k": "dict", "v": {HOSTILE + MARKUP: {"k": "list", "v": []}}},
        }
        m["root"]["v"]["arr"] = {"k": "ndarray", "dtype": HOSTILE, "shape": [MARKUP]}
        m["root"]["v"]["odd"] = {"k": CONTROLS + MARKUP}

    path = _edited(tmp_path, "manifest", edit)
    out, _ = cli("inspect", str(path))
    for shown in ("created", "environment", "from store", "invalid", "metadata"):
        assert shown in out
    assert MARKUP in out and LINK in out and EMOJI in out
    assert "\\ue000" in out and "\\udb80\\udc00" in out  # in the metadata's JSON
    data = json.loads(cli("inspect", "--json", str(path))[0])
    assert data["metadata"] == {"s\ue000": "p\U000f0000" + HOSTILE}
    assert data["store"]["message"] == HOSTILE


def test_graph_errors_are_escaped(tmp_path: Path) -> None:
    path = _edited(tmp_path, "kind", lambda m: m.update(root={"k": CONTROLS + MARKUP}))
    out, _ = cli("inspect", str(path))
    invalid = [row for row in out.splitlines() if row.startswith("invalid")]
    assert len(invalid) == 1 and "unknown node kind" in invalid[0] and MARKUP in invalid[0]


def test_error_messages_quoting_the_file_are_escaped(tmp_path: Path) -> None:
    path = _edited(tmp_path, "dtype", lambda m: m["tensors"][0].update(dtype=HOSTILE + MARKUP))
    for command in ("inspect", "verify"):
        _, err = cli(command, str(path), code=2)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "unknown tensor dtype" in err and "[red]untrusted" in err
    damaged = tmp_path / "damaged.amber"
    amber.save({HOSTILE + MARKUP: np.ones(4)}, damaged)
    raw = bytearray(damaged.read_bytes())
    raw[64] ^= 0xFF  # the first payload byte
    damaged.write_bytes(bytes(raw))
    _, err = cli("verify", str(damaged), code=1)
    assert "corrupt" in err and MARKUP in err and len(err.strip().splitlines()) == 1


def test_a_real_terminal_gets_only_the_consoles_own_styles(tmp_path: Path) -> None:
    """With colours on, the only escape sequences are rich's styles (SGR ``...m``)."""
    import re

    path = tmp_path / "m.amber"
    amber.save({HOSTILE: np.ones(1), "\x1b[31mred": 2}, path, metadata={"k": HOSTILE})
    kind = _edited(tmp_path, "kind", lambda m: m.update(root={"k": "\x1b]0;title\x07"}))
    env = {**os.environ, "COLUMNS": "200", "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    for file in (path, kind):
        result = subprocess.run(
            [str(AMBER), "inspect", str(file)], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        assert "\x1b[" in result.stdout  # colours are on
        assert_clean(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))
        assert "\\x1b" in result.stdout


# -- stores ----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """hostile@1..2: messages, tags, metrics, metadata and a signature with hostile text;
    an alias; tensor names that differ between the versions."""
    path = tmp_path / "store"
    with Store(path) as s:
        s.save(
            {"w": np.ones(3)},
            "hostile",
            metrics={"acc" + HOSTILE: 0.8},
            metadata={"k" + HOSTILE: "v" + MARKUP},
            tags={"t" + HOSTILE: "v" + HOSTILE},
            message="first" + HOSTILE + MARKUP,
        )
        s.save(
            {"w" + HOSTILE: np.ones(3), LINK: np.zeros(1)},
            "hostile",
            metadata={"k" + HOSTILE: "changed\r" + EMOJI},
            signature={"in" + HOSTILE: MARKUP},
            message="second\nuntrusted  none\n" + LINK,
        )
        s.set_alias("hostile@1", "prod")
    return path


def test_store_listings_escape_versions_text(store: Path) -> None:
    at = ("--store", str(store))
    out, _ = cli("ls", *at)
    assert "hostile" in out and "prod@1" in out
    for command in (["versions", "hostile"], ["search"], ["search", "hostile*"]):
        out, _ = cli(*command, *at)
        assert "\\x1b[2J" in out and "second\\nuntrusted  none\\n" + LINK in out
        assert "\\u202e" in out
    out, _ = cli("show", "hostile@1", *at)
    assert "first\\x1b[2J" in out and MARKUP in out and "\\u202e" in out
    out, _ = cli("show", "hostile", *at)
    assert "signature" in out and MARKUP in out and LINK in out
    for command in (["versions", "hostile"], ["show", "hostile@1"], ["search"]):
        text, _ = cli(*command, "--json", *at)
        assert "\\u001b[2J" in text and "\\u202e" in text
    versions = json.loads(cli("versions", "hostile", "--json", *at)[0])
    assert versions[0]["message"] == "first" + HOSTILE + MARKUP
    assert versions[1]["metadata"] == {"k" + HOSTILE: "changed\r" + EMOJI}


def test_store_diff_and_edits_escape_versions_text(store: Path) -> None:
    at = ("--store", str(store))
    out, _ = cli("diff", "hostile@1", "hostile@2", *at)
    assert "acc\\x1b[2J" in out and "w\\x1b[2J" in out and LINK in out and EMOJI in out
    assert json.loads(cli("diff", "hostile@1", "hostile@2", "--json", *at)[0])
    out, _ = cli("tag", "hostile@1", "extra=" + MARKUP, *at)
    assert "t\\x1b[2J" in out and "extra=" + MARKUP in out
    tags = json.loads(cli("tag", "hostile@1", "more=1", "--json", *at)[0])["tags"]
    assert tags["t" + HOSTILE] == "v" + HOSTILE
    out, _ = cli("alias", "hostile@2", "prod", *at)
    assert out.strip() == "hostile@prod -> 2 (was 1)"
    out, _ = cli("check", *at)
    assert "no problems" in out
    cli("check", "--json", *at)
    out, _ = cli("rm", "hostile@1", *at)
    assert out.startswith("deleted hostile@1")


def test_export_and_import_escape_store_history(store: Path, tmp_path: Path) -> None:
    at = ("--store", str(store))
    file = tmp_path / f"export{CONTROLS[:5]}.amber"
    out, _ = cli("export", "hostile@1", str(file), *at)
    assert out.startswith("ok exported hostile@1 -> ") and "\\x1b[2J" in out
    out, _ = cli("inspect", str(file))
    history = [row for row in out.splitlines() if row.startswith("from store")]
    assert len(history) == 1 and "first\\u001b[2J" in history[0] and MARKUP in history[0]
    other = ("--store", str(tmp_path / "other"))
    out, err = cli("import", str(file), *other)
    assert "imported 1 version: hostile@1" in out and "created a new store" in err
    data = json.loads(cli("import", str(file), "--name", "copy", "--json", *other)[0])
    assert data[0]["message"] == "first" + HOSTILE + MARKUP
    bundle = tmp_path / "bundle.amber"
    cli("export", "hostile", str(bundle), "--all", *at)
    out, _ = cli("import", str(bundle), "--name", "again", *other)
    assert "again@1, again@2" in out


def test_warnings_quoting_the_store_are_escaped(store: Path, tmp_path: Path) -> None:
    """A damaged index is moved aside with a warning that names the store's folder."""
    folder = tmp_path / f"s{CONTROLS[:9]}{MARKUP.replace('/', '')}"
    store.rename(folder)
    (folder / "cache" / "index.sqlite").write_bytes(b"garbage" * 100)
    out, err = cli("ls", "--store", str(folder))
    assert "hostile" in out
    assert err.startswith("warning: StoreIndexWarning: the store index ")
    assert "\\x1b[2J" in err and "[red]untrusted  none[red]" in err
