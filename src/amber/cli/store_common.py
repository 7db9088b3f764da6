"""Shared pieces of the store commands: choosing and opening the store, exit codes,
progress for long operations, and formatting.

Nothing here imports ``amber.store`` or rich beyond ``output.py`` at module level, so that
``amber --help`` and the listing commands start fast.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from amber.cli.output import (
    EXIT_FAILED,
    EXIT_NOT_AMBER,
    fail,
    human_bytes,
    line,
    safe,
    safe_text,
    stderr,
)
from amber.errors import (
    AmberError,
    FormatError,
    InvalidArgumentError,
    ReadError,
    StoreError,
    VersionNotFound,
)

if TYPE_CHECKING:
    from rich.text import Text

    from amber.store.store import Store

DEFAULT_STORE = ".amber"  # as Store() does
_PROGRESS_DELAY = 1.0  # seconds before a spinner appears

STORE_OPTION: Any = typer.Option(
    None,
    "--store",
    envvar="AMBER_STORE",
    show_default=False,
    help=(
        "The store: a folder or s3://bucket/prefix "
        f"(default: $AMBER_STORE, else ./{DEFAULT_STORE})."
    ),
)
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON for machines.")


def exit_code(exc: AmberError) -> int:
    """2 for bad input and things that do not exist (a malformed spec, an unknown model,
    version or alias, a file that is not an amber file); 1 for everything else."""
    if isinstance(exc, (InvalidArgumentError, VersionNotFound, FormatError, ReadError)):
        return EXIT_NOT_AMBER
    return EXIT_FAILED


def store_fail(exc: AmberError, code: int | None = None) -> NoReturn:
    """One line on stderr, then exit with ``code`` (default: ``exit_code(exc)``)."""
    fail(exc, exit_code(exc) if code is None else code)


def model_name(text: str) -> str:
    """A bare model name (for the commands that take a whole model), or a one-line exit."""
    from amber.store.names import check_name

    if "@" in text:
        store_fail(
            InvalidArgumentError(
                f"expected a model name, not a version: {text!r} (try {text.partition('@')[0]!r})"
            )
        )
    try:
        return check_name(text)
    except InvalidArgumentError as exc:
        store_fail(exc)


def store_location(path: str | None) -> str:
    """What --store / AMBER_STORE / the default name: a folder or a URL (s3://...)."""
    return str(path or os.environ.get("AMBER_STORE") or DEFAULT_STORE)


def is_remote(location: str) -> bool:
    from amber.store.location import scheme_of

    return scheme_of(location) not in (None, "file")


def store_root(path: str | None) -> Path:
    """The local folder of the chosen store (for a remote one, its URL as a path: callers
    check ``is_remote`` first)."""
    location = store_location(path)
    if is_remote(location):
        return Path(location)
    from amber.store.location import local_path

    try:
        return local_path(location)
    except AmberError as exc:
        store_fail(exc)


def open_store(path: str | None, *, create: bool = False) -> Store:
    """Open the store at ``path``. A missing folder is an error unless ``create`` (then it
    is made, as is a store in an empty folder); a file or a folder of other things always
    is. A URL (s3://bucket/prefix) opens a remote store: an empty prefix is an empty
    store."""
    location = store_location(path)
    if is_remote(location):
        from amber.store.store import Store

        try:
            return Store(location)
        except AmberError as exc:
            store_fail(exc)
    from amber.store.local import STORE_MARKS

    root = store_root(path)
    if not root.exists():
        if not create:
            store_fail(
                StoreError(
                    f"no store at {root} (choose one with --store or AMBER_STORE; "
                    "`amber import` creates one)"
                ),
                EXIT_NOT_AMBER,
            )
    elif not root.is_dir() or not (
        any((root / mark).exists() for mark in STORE_MARKS) or (create and not any(root.iterdir()))
    ):
        # An existing file or folder of other things: never turned into a store.
        store_fail(InvalidArgumentError(f"{root} is not an amber store"))
    from amber.store.store import Store

    try:
        return Store(root)
    except AmberError as exc:
        store_fail(exc)


@contextlib.contextmanager
def opened(path: str | None, *, create: bool = False) -> Iterator[Store]:
    """``open_store`` as a context manager that turns amber errors into one-line exits."""
    store = open_store(path, create=create)
    try:
        yield store
    except AmberError as exc:
        store_fail(exc)
    finally:
        store.close()


@contextlib.contextmanager
def progress(description: str, total_bytes: int | None = None) -> Iterator[None]:
    """A transient spinner on stderr (a terminal) that appears only when the block runs
    longer than a second (fast paths pay for one timer thread); then one line with the
    throughput. ``description`` may quote names from a file: it is escaped, never markup."""
    description = safe_text(description)
    lock = threading.Lock()
    shown: list[Any] = []
    finished = False

    def show() -> None:
        with lock:
            if finished:
                return
            shown.append(None)
            if not stderr.is_terminal:
                return
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            )
            size = f" ({human_bytes(total_bytes)})" if total_bytes is not None else ""
            bar.add_task(description + size, total=None)
            bar.start()
            shown[-1] = bar

    timer = threading.Timer(_PROGRESS_DELAY, show)
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        with lock:
            finished = True
            timer.cancel()
            for bar in shown:
                if bar is not None:
                    bar.stop()
        elapsed = time.perf_counter() - start
        if shown and total_bytes:
            rate = human_bytes(int(total_bytes / max(elapsed, 1e-9)))
            stderr.print(
                line(f"{description}: {human_bytes(total_bytes)} in {elapsed:.1f} s ({rate}/s)")
            )


def when(stamp: str | None) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC (as stored), or as given."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def plain(value: object) -> Text:
    """User-provided text as a table cell: escaped, never parsed as rich markup (see
    ``output.safe``)."""
    return safe(value)


def pairs(mapping: dict[str, Any], sep: str = "=") -> str:
    return ", ".join(f"{k}{sep}{number(v)}" for k, v in mapping.items())


def number(value: Any) -> str:
    """Floats with 6 significant digits (``1.0``, not ``1``); anything else as str()."""
    if isinstance(value, float):
        shown = f"{value:.6g}"
        return shown if any(c in shown for c in ".en") else shown + ".0"
    return str(value)
