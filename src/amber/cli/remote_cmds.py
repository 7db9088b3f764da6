"""Commands for shared stores: `amber push`, `pull` and `copy` move versions between
stores (folders or s3://bucket/prefix); `amber cache ls|prune` manage the client's verified
object cache of remote stores (``$AMBER_CACHE``, default ``~/.cache/amber``; size limit
``$AMBER_CACHE_SIZE``).

Exit codes: 0 on success, 1 when the operation failed, 2 for bad input or something that
does not exist (a malformed spec, an unknown model or version, no store).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import typer

from amber.cli.output import echo_json, human_bytes, stderr, stdout
from amber.cli.store_common import JSON_OPTION, STORE_OPTION, opened, plain, store_fail
from amber.errors import AmberError, InvalidArgumentError

cache_app = typer.Typer(
    name="cache",
    help="The local cache of objects downloaded from remote stores: list, prune.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("copy")(copy)
    cache_app.command("ls")(ls)
    cache_app.command("prune")(prune)
    app.add_typer(cache_app)


def _cache() -> Any:
    from amber.store.cache import ObjectCache
    from amber.store.location import cache_root

    try:
        return ObjectCache(cache_root())
    except AmberError as exc:
        store_fail(exc)


def ls(as_json: bool = JSON_OPTION) -> None:
    """List the cached objects (least recently used first) and their total size.

    Exit 0.
    """
    cache = _cache()
    entries = cache.entries()
    total = sum(e.size for e in entries)
    if as_json:
        echo_json(
            {
                "path": str(cache.root),
                "limit": cache.limit,
                "total": total,
                "objects": [
                    {"digest": e.digest, "size": e.size, "last_used": e.last_used} for e in entries
                ],
            }
        )
        return
    for e in entries:
        stdout.print(plain(f"{e.digest[:16]}  {human_bytes(e.size):>10}"))
    stdout.print(
        plain(
            f"{len(entries)} objects, {human_bytes(total)} in {cache.root} "
            f"(limit {human_bytes(cache.limit)})"
        )
    )


def prune(
    max_size: str = typer.Option(
        None, "--max-size", metavar="SIZE", help="Evict until at most SIZE remains (e.g. 5G)."
    ),
    older_than: float = typer.Option(
        None, "--older-than", metavar="DAYS", min=0, help="Also evict what is unused for DAYS."
    ),
    everything: bool = typer.Option(False, "--all", help="Empty the cache."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Evict least recently used objects: down to the cache's limit, to --max-size, or all.

    Exit 0 on success, 2 for a malformed size.
    """
    from amber.store.cache import parse_size

    cache = _cache()
    try:
        limit = 0 if everything else parse_size(max_size) if max_size else cache.limit
    except InvalidArgumentError as exc:
        store_fail(exc)
    seconds = None if older_than is None else older_than * 86400
    removed, freed = cache.prune(limit, older_than=seconds)
    if as_json:
        echo_json({"removed": removed, "freed": freed})
        return
    stdout.print(plain(f"removed {removed} objects ({human_bytes(freed)})"))


# -- push, pull, copy ------------------------------------------------------------------------

ALL_OPTION: Any = typer.Option(False, "--all", help="Every version of the model.")


@contextlib.contextmanager
def _transfer_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback: a bar with bytes, throughput and ETA on a terminal's stderr;
    nothing elsewhere."""
    if not stderr.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _run_copy(source: Any, dest: Any, spec: str, every: bool, as_json: bool) -> None:
    from amber.store.sync import copy_versions

    start = time.perf_counter()
    with _transfer_bar(f"copying {spec}") as bar:
        report = copy_versions(source, dest, spec, every=every, progress=bar)
    if as_json:
        echo_json(report.to_dict())
        return
    seconds = time.perf_counter() - start
    stdout.print(
        plain(
            f"copied {len(report.copied)} versions ({', '.join(report.copied) or 'none'}): "
            f"{report.objects_sent} objects, {human_bytes(report.bytes_sent)} sent in "
            f"{seconds:.1f} s; {report.objects_present} objects and "
            f"{len(report.skipped)} versions were already there"
        )
    )


def push(
    spec: str = typer.Argument(..., metavar="NAME[@V]", help="What to push."),
    to: str = typer.Option(..., "--to", metavar="STORE", help="Destination folder or URL."),
    every: bool = ALL_OPTION,
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy versions from this store to another (only missing objects travel).

    Exit 0 on success, 1 when the copy failed (run it again: it resumes), 2 for bad input.
    """
    with opened(store) as source, opened(to, create=True) as dest:
        _run_copy(source, dest, spec, every, as_json)


def pull(
    source_store: str = typer.Argument(..., metavar="STORE", help="Source folder or URL."),
    spec: str = typer.Argument(..., metavar="NAME[@V]", help="What to pull."),
    every: bool = ALL_OPTION,
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy versions from another store into this one (only missing objects travel).

    Exit 0 on success, 1 when the copy failed (run it again: it resumes), 2 for bad input.
    """
    with opened(source_store) as source, opened(store, create=True) as dest:
        _run_copy(source, dest, spec, every, as_json)


def copy(
    source_spec: str = typer.Argument(
        ..., metavar="SRC_STORE#NAME[@V]", help="Source store and version, e.g. s3://b/team#m@3"
    ),
    dest_store: str = typer.Argument(..., metavar="DST_STORE", help="Destination store."),
    every: bool = ALL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy versions between two stores, neither of which needs to be the current one.

    Exit 0 on success, 1 when the copy failed (run it again: it resumes), 2 for bad input.
    """
    location, sep, spec = source_spec.rpartition("#")
    if not sep or not location or not spec:
        store_fail(
            InvalidArgumentError(
                f"expected SRC_STORE#NAME[@V] (e.g. s3://bucket/team#churn@3), not {source_spec!r}"
            )
        )
    with opened(location) as source, opened(dest_store, create=True) as dest:
        _run_copy(source, dest, spec, every, as_json)
