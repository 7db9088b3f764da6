"""Shared printing helpers: one-line errors and exit codes for amber's exceptions, and the
one way the commands print text that came from a file or a store.

A file or a store is untrusted input, and so is everything the commands print from it:
tensor and type names, dict keys, metadata, environments, version messages, tags, paths,
and exception messages that quote any of these. Printed raw, such a string could clear the
screen or move the cursor (``\\x1b[2J``, ``\\r``, ``\\b``), reorder what a reviewer reads
(bidi overrides such as U+202E), or, parsed as rich markup (``[red]...[/]``,
``[link=...]``) or emoji codes, draw text that is not in the file. So:

- ``safe_text`` escapes every control and format character visibly (``\\x1b``,
  ``\\u202e``), the way Python's ``repr`` does;
- ``safe`` and ``line`` build rich ``Text`` from it, styled by the command, never parsed;
- ``json_text`` / ``echo_json`` print JSON with the same characters as ``\\uXXXX`` escapes;
- the consoles never parse markup or emoji codes, even in a plain string printed by
  mistake;
- ``fail`` prints an exception's message through ``safe_text``, and
  ``sanitized_warnings`` does the same for warnings raised while a command runs.
"""

from __future__ import annotations

import contextlib
import json
import unicodedata
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from amber.errors import AmberError, CorruptFileError

EXIT_OK = 0
EXIT_FAILED = 1  # the file is an amber file but damaged, or the operation failed
EXIT_NOT_AMBER = 2  # not an amber file, unreadable, or an unsupported version

# Markup and emoji codes are never parsed: every styled piece is a rich Text (see ``safe``).
stdout = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

# Unicode categories escaped by ``safe_text``: controls (C0, DEL, C1), format characters
# (bidi embeddings, overrides and isolates, zero-width joiners, ...), surrogates, private
# use, unassigned code points, and the line and paragraph separators.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(value: object) -> str:
    """``str(value)`` with every control or format character escaped visibly (``\\x1b``,
    ``\\r``, ``\\u202e``, ...): safe to print to a terminal. Other text, markup-like
    brackets included, is kept as it is (print it as ``Text``, never as markup)."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the fast path: printable means none of the categories above
        return text
    return "".join(_escape(c) if unicodedata.category(c) in UNSAFE_CATEGORIES else c for c in text)


def safe(value: object, style: str = "") -> Text:
    """Untrusted text as a rich ``Text`` (a table cell, a tree label, a line): escaped by
    ``safe_text``, never parsed as markup; ``style`` is the command's own."""
    return Text(safe_text(value), style=style)


def line(*parts: str | Text) -> Text:
    """One line from pieces: a ``str`` is untrusted text (escaped, never markup), a
    ``Text`` is kept as it is (build styled pieces with ``safe``)."""
    out = Text()
    for part in parts:
        out.append(part if isinstance(part, Text) else safe_text(part))
    return out


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON that is safe to print: non-ASCII text is kept readable, but the
    characters ``safe_text`` escapes become ``\\uXXXX`` escapes (``json.dumps`` leaves
    DEL, C1 controls, bidi overrides and separators raw unless ``ensure_ascii``). They can
    only occur inside JSON strings, so the result parses to the same value."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    if text.replace("\n", "").isprintable():  # the newlines of ``indent`` are JSON's own
        return text
    return "".join(
        _json_escape(c) if c != "\n" and unicodedata.category(c) in UNSAFE_CATEGORIES else c
        for c in text
    )


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (see ``json_text``)."""
    typer.echo(json_text(value))


def fail(exc: AmberError, code: int | None = None, *, as_json: bool = False) -> NoReturn:
    """Print ``exc`` as one line (as a JSON object with ``as_json``: ``{"error": {"type",
    "message", "exit_code"}}``) on stderr and exit with ``code``, by default the one that
    matches its class for commands that read a file."""
    if code is None:
        code = EXIT_FAILED if isinstance(exc, CorruptFileError) else EXIT_NOT_AMBER
    if as_json:
        error = {"type": type(exc).__name__, "message": str(exc), "exit_code": code}
        typer.echo(json_text({"error": error}, indent=None), err=True)
        raise typer.Exit(code)
    # Messages quote paths, names and user text from files: escaped, never markup.
    stderr.print(line(safe("error:", "bold red"), " ", str(exc)))
    raise typer.Exit(code)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    source: str | None = None,
) -> None:
    stderr.print(line(safe("warning:", "yellow"), f" {category.__name__}: {message}"))


@contextlib.contextmanager
def sanitized_warnings() -> Iterator[None]:
    """While a command runs, print each warning as one escaped line on stderr (warning
    messages quote file and store text too)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 tensor``, ``2 tensors`` (``nouns`` when the plural is not ``noun + "s"``)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
