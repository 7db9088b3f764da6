"""Where a store lives: a local folder or a URL (``s3://bucket/prefix``), and where a
client keeps its derived data for remote stores (index, verified object cache)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from amber.errors import InvalidArgumentError
from amber.store.backend import Backend

SCHEMES = ("s3", "file")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
DEFAULT_CACHE = Path("~/.cache/amber")


@dataclass(frozen=True)
class Remote:
    """An opened remote store: its backend and the client-side folder of its index."""

    backend: Backend
    url: str
    index_file: Path


def cache_root() -> Path:
    """The client's cache folder: ``$AMBER_CACHE``, else ``~/.cache/amber``."""
    return Path(os.environ.get("AMBER_CACHE") or DEFAULT_CACHE).expanduser()


def scheme_of(location: str | os.PathLike[str]) -> str | None:
    """The URL scheme of ``location`` (lower case), None for a plain path."""
    if not isinstance(location, str):
        return None
    match = _URL.match(location)
    return match.group(1).lower() if match else None


def local_path(location: str | os.PathLike[str]) -> Path:
    """The folder of a local location (a path or ``file://`` URL)."""
    if scheme_of(location) == "file":
        parts = urlsplit(str(location))
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgumentError(f"file:// URLs name a local folder, not {parts.netloc}")
        return Path(unquote(parts.path))
    return Path(location)


def open_remote(
    location: str | os.PathLike[str], *, endpoint: str | None = None, **options: Any
) -> Remote | None:
    """The backend of a remote ``location``; None when it is a local folder. An unknown
    scheme is an error naming the known ones."""
    scheme = scheme_of(location)
    if scheme is None or scheme == "file":
        if endpoint is not None or options:
            raise InvalidArgumentError("endpoint and S3 options apply to s3:// stores only")
        return None
    if scheme != "s3":
        raise InvalidArgumentError(
            f"unknown store location scheme {scheme}:// in {location!r}; amber knows local "
            "folders (a path or file://...) and s3://bucket/prefix"
        )
    parts = urlsplit(str(location))
    if parts.query or parts.fragment:
        raise InvalidArgumentError(
            f"{location!r}: give S3 settings as options or AWS_* variables, not in the URL"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise InvalidArgumentError(f"{location!r} names no bucket: use s3://bucket/prefix")
    from amber.store.s3 import S3Backend  # obstore is imported only for s3:// stores

    # No bucket check here: the store lists ``changes/`` right away (a warm open's only
    # request), with the same errors for a missing bucket or refused credentials.
    backend = S3Backend(bucket, prefix, endpoint=endpoint, check_bucket=False, **options)
    url = backend.url
    # One index per store and endpoint: two servers may hold buckets of the same name.
    import hashlib  # local stores (every listing command) do not need it

    ident = hashlib.sha256(f"{url}\n{backend.endpoint or ''}".encode()).hexdigest()[:24]
    return Remote(backend, url, cache_root() / "index" / ident / "index.sqlite")
