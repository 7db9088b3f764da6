"""`amber cache ls|prune`: the client's verified object cache of remote stores
(``$AMBER_CACHE``, default ``~/.cache/amber``; size limit ``$AMBER_CACHE_SIZE``).

Exit codes: 0 on success, 1 when the cache cannot be read or changed, 2 for bad input.
"""

from __future__ import annotations

from typing import Any

import typer

from amber.cli.output import echo_json, human_bytes, stdout
from amber.cli.store_common import JSON_OPTION, plain, store_fail
from amber.errors import AmberError, InvalidArgumentError

cache_app = typer.Typer(
    name="cache",
    help="The local cache of objects downloaded from remote stores: list, prune.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
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
