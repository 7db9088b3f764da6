"""The S3 backend: a store kept under a prefix of an S3-compatible bucket, through obstore.

How each backend operation maps onto S3 (the commit protocol is in docs/store.md, "Shared
stores"):

- ``put_if_absent`` of a version record, ref or tag: one PUT with ``If-None-Match: *``.
  Content-addressed objects (keys under ``objects/``) go up as plain, multipart, parallel
  uploads after a HEAD: the key names the bytes, so two writers racing on one key write the
  same bytes and overwriting is harmless.
- ``compare_and_swap``: GET (content and ETag), compare, PUT with ``If-Match: <etag>``
  (``If-None-Match: *`` when absent). S3 has no conditional delete that obstore can send,
  so swapping to "absent" writes a *tombstone*: a fixed document that every read treats as
  absent and every listing skips.
- ``touch`` / ``delete_if_older``: S3 cannot change an object's LastModified without
  rewriting it, and a delete cannot be made conditional on it. So every object key has a
  small *marker* document under ``locks/`` moved by compare-and-swap: ``touch`` writes
  ``{"touched": time}`` into it (the object's modification time from then on), and gc
  first swaps it to ``{"gc": time}``, deletes the object, then tombstones the marker. Both
  swap the same document, so exactly one of a racing touch and gc wins; a touch that finds
  a gc in progress waits for it to finish (or for its lease to expire, if it died).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from amber.errors import InvalidArgumentError, MissingDependencyError, StoreError
from amber.store.backend import Backend, Data, Stat, check_key

try:
    import obstore
    from obstore.exceptions import (
        AlreadyExistsError,
        PermissionDeniedError,
        PreconditionError,
        UnauthenticatedError,
    )
    from obstore.store import S3Store
except ImportError:  # pragma: no cover - exercised by a test that hides obstore
    obstore = None

LOCKS = "locks"  # markers of touch and gc; never a key of the store
_RESERVED = (LOCKS, "tmp", "cache")
TOMBSTONE = b"\x00amber-s3: deleted by compare_and_swap\x00"
MARKER_LIMIT = 4096  # a marker document is a few dozen bytes
GC_LEASE = 30.0  # seconds after which a gc marker left by a dead collector is ignored
_OBJECTS = "objects/"
_CHUNK = 8 << 20  # multipart part size for objects
READ_ATTEMPTS = 4
T = TypeVar("T")


_first_pid: int | None = None  # the process that started obstore's runtime


def require_obstore() -> None:
    """MissingDependencyError without obstore; StoreError in a process forked after its
    parent used obstore (its runtime's threads are not copied: every request would hang)."""
    global _first_pid
    if obstore is None:
        raise MissingDependencyError(
            "s3:// stores need the obstore package: pip install 'amber[s3]'"
        )
    if _first_pid is None:
        _first_pid = os.getpid()
    elif _first_pid != os.getpid():
        raise StoreError(
            "this process was forked after its parent used an s3:// store, which obstore "
            "does not support; start it with multiprocessing's 'spawn' or 'forkserver'"
        )


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_MAX_CLIENTS = 16
_PLAIN = (str, bool, int, float, timedelta, type(None))


def _client(
    bucket: str, prefix: str | None, client: dict[str, Any], options: dict[str, Any]
) -> Any:
    """An obstore client for these settings, made once per process: building one costs
    ~7 ms (its TLS roots are loaded), as much as a warm load's requests. The key holds every
    setting and every ``AWS_*`` variable, which obstore reads when it builds the client, so
    a changed key or region gets a new one. Settings that are not plain values (a
    credential provider) are never shared."""
    retry = {"max_retries": 4, "retry_timeout": timedelta(seconds=30)}

    def build() -> Any:
        return S3Store(
            bucket,
            prefix=prefix,
            client_options=client,
            retry_config=retry,  # type: ignore[arg-type]
            **options,
        )

    if not all(isinstance(v, _PLAIN) for v in [*client.values(), *options.values()]):
        return build()
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (bucket, prefix, *(tuple(sorted(d.items())) for d in (client, options)), environment)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = build()
            if len(_CLIENTS) >= _MAX_CLIENTS:
                _CLIENTS.pop(next(iter(_CLIENTS)))  # the oldest made
            _CLIENTS[key] = found
        return found


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


class S3Backend(Backend):
    """A store under ``prefix`` in ``bucket``. ``endpoint``: the URL of an S3-compatible
    server (MinIO, Ceph, R2, moto), else ``$AWS_ENDPOINT_URL``, else AWS. Credentials and
    region come from the usual environment variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``...) or the instance's
    role, or from the AWS CLI profile ``profile`` (default ``$AWS_PROFILE``), or are given
    in ``options`` (obstore's S3 settings). Plain ``http://`` endpoints are accepted on
    loopback only."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        check_bucket: bool = True,
        profile: str | None = None,
        **options: Any,
    ) -> None:
        require_obstore()
        # An AWS CLI profile: given here, or $AWS_PROFILE when no keys are in the
        # environment (the AWS SDKs' order). Options given here win over the profile's.
        if profile is None and not os.environ.get("AWS_ACCESS_KEY_ID"):
            profile = os.environ.get("AWS_PROFILE") or None
        if profile is not None:
            from amber.store.aws_profile import profile_options

            settings = profile_options(profile)
            if os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"):
                settings.pop("region", None)  # the environment wins, as for the AWS CLI
            if endpoint is None and "endpoint" in settings and not _env_endpoint():
                endpoint = settings["endpoint"]
            settings.pop("endpoint", None)
            options = {**settings, **options}
        if not bucket or "/" in bucket:
            raise InvalidArgumentError(f"invalid bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint or _env_endpoint()
        client: dict[str, Any] = {"timeout": "60s", "connect_timeout": "10s"}
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidArgumentError(
                    f"invalid S3 endpoint {self.endpoint!r}: give an http(s):// URL"
                )
            if parts.scheme == "http":
                if not _is_loopback(parts.hostname):
                    raise InvalidArgumentError(
                        f"plain http:// endpoints are allowed on loopback only, not "
                        f"{parts.hostname}; use https://"
                    )
                client["allow_http"] = True
            options.setdefault("endpoint", self.endpoint)
        options.setdefault("region", _env_region())
        try:
            self._store = _client(bucket, prefix or None, client, options)
        except Exception as exc:  # a bad option: obstore's own message says which
            raise InvalidArgumentError(
                f"cannot configure the S3 store: {_first_line(exc)}"
            ) from None
        if check_bucket:
            self._check_bucket()

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return where + (f" at {self.endpoint}" if self.endpoint else "")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    # -- errors ----------------------------------------------------------------------------

    def _error(self, action: str, key: str, exc: Exception, *, changed: str) -> StoreError:
        code = _s3_code(exc)
        if code in _BAD_CREDENTIALS:
            return StoreError(
                f"could not {action} {key} in {self.describe()}: the server refused the "
                f"credentials ({code}), so this request changed nothing; check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for this endpoint"
            )
        if code == "AccessDenied" or _forbidden(exc):
            return StoreError(
                f"could not {action} {key} in {self.describe()}: access denied (HTTP 403), "
                "so this request changed nothing; the credentials need permission on the "
                "bucket: listing and reading (s3:ListBucket, s3:GetObject) for loads, writing "
                "(s3:PutObject) for saves, aliases and tags, deleting (s3:DeleteObject) for "
                "gc and rm"
            )
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            hint = "check the credentials (AWS_ACCESS_KEY_ID...) and the bucket's permissions"
        elif "invalid path" in str(exc):
            hint = (
                "a key under the store's prefix has a '..' or empty segment (planted by "
                "another tool): the S3 client cannot list past it; delete that key"
            )
        elif _bucket_missing(exc):
            hint = f"the bucket {self.bucket!r} does not exist; create it first"
        else:
            hint = "check the endpoint and the network, then retry"
        return StoreError(
            f"could not {action} {key} in {self.describe()}: {_first_line(exc)}; {changed}; {hint}"
        )

    def _check_bucket(self) -> None:
        try:
            _reading(lambda: next(iter(obstore.list(self._store, prefix=None, chunk_size=1)), None))
        except Exception as exc:
            raise self._error("list", "the store", exc, changed="nothing was changed") from None

    # -- primitive requests ----------------------------------------------------------------

    def _head(self, key: str) -> Any | None:
        """The object's metadata (size, ETag, last_modified), None if absent or a
        tombstone."""
        try:
            meta = _reading(lambda: obstore.head(self._store, key))
        except FileNotFoundError as exc:
            if _bucket_missing(exc):
                raise self._error("inspect", key, exc, changed="nothing was changed") from None
            return None
        except Exception as exc:
            raise self._error("inspect", key, exc, changed="nothing was changed") from None
        if meta["size"] == len(TOMBSTONE) and self._read(key)[0] is None:
            return None
        return meta

    def _fetch(self, key: str, start: int = 0, end: int | None = None) -> tuple[Any, bytes] | None:
        """One GET of ``key`` (bytes ``start`` to ``end`` when given, fewer at the end of
        the blob): (metadata of the whole blob, bytes), None when absent."""
        try:
            return _reading(lambda: _get(self._store, key, start, end))
        except FileNotFoundError as exc:
            if _bucket_missing(exc):
                raise self._error("read", key, exc, changed="nothing was changed") from None
            return None
        except Exception as exc:
            raise self._error("read", key, exc, changed="nothing was changed") from None

    def _read(self, key: str, limit: int | None = None) -> tuple[bytes | None, str | None]:
        """(content, ETag): (None, None) when absent, (None, etag) for a tombstone. With
        ``limit``, at most ``limit + 1`` bytes are read (a longer blob is cut there)."""
        found = self._fetch(key, 0, None if limit is None else limit + 1)
        if found is None:
            return None, None
        meta, data = found
        return (None if self._is_tombstone(key, meta, data) else data), meta["e_tag"]

    def _is_tombstone(self, key: str, meta: Any, data: bytes, offset: int = 0) -> bool:
        if meta["size"] != len(TOMBSTONE):
            return False
        if offset == 0 and len(data) == len(TOMBSTONE):
            return data == TOMBSTONE
        return self._raw(key) == TOMBSTONE

    def _raw(self, key: str, limit: int | None = None) -> bytes | None:
        """The bytes at ``key`` as stored (a tombstone too; at most ``limit + 1`` of them
        with ``limit``), None if absent."""
        found = self._fetch(key, 0, None if limit is None else limit + 1)
        return None if found is None else found[1]

    def _write(self, key: str, etag: str | None, data: bytes) -> str | None:
        """PUT ``data`` only if the key holds ``etag`` (None: only if absent); the new ETag,
        or None if the condition failed."""
        mode: Any = "create" if etag is None else {"e_tag": etag}
        try:
            result = obstore.put(self._store, key, data, mode=mode, use_multipart=False)
        except (AlreadyExistsError, PreconditionError) as exc:
            # After a retry, the condition may have failed on our own first attempt, whose
            # answer was lost: the key then holds exactly our bytes. (Documents amber
            # writes carry times and writers, so another writer's are never identical.)
            if _retried(exc) and self._raw(key, len(data)) == data:
                return "retried"
            return None
        except Exception as exc:
            raise self._error(
                "write", key, exc, changed=f"{key} may or may not have been written"
            ) from None
        return result["e_tag"]

    def _swap(self, key: str, expected: bytes | None, new: bytes, *, tries: int = 5) -> bool:
        """Replace the document at ``key`` by ``new`` if its content is ``expected``."""
        for _ in range(tries):
            # Never more than the expected document is read: a longer one differs anyway.
            current, etag = self._read(key, len(expected or TOMBSTONE))
            if current != expected:
                return False
            if self._write(key, etag, new) is not None:
                return True
        return False

    # -- Backend ---------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        if key.split("/", 1)[0] in _RESERVED:
            raise StoreError(f"key {key!r} is reserved by the S3 backend")
        return key

    def get(self, key: str) -> bytes | None:
        return self._read(self._key(key))[0]

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        self._key(key)
        if offset < 0 or length < 0:
            raise InvalidArgumentError("offset and length must be >= 0")
        if length == 0:
            return None if self._head(key) is None else b""
        # One GET: the blob's size and ETag come with the bytes (no HEAD first, which a
        # concurrent swap could make disagree with them).
        found = self._fetch(key, offset, offset + length)
        if found is None:
            return None
        meta, data = found
        return None if self._is_tombstone(key, meta, data, offset) else data

    def put_if_absent(self, key: str, data: Data) -> bool:
        self._key(key)
        try:
            if key.startswith(_OBJECTS):
                return self._put_object(key, data)
            content = _materialize(data)
            if content == TOMBSTONE:
                raise InvalidArgumentError("this content is reserved by the S3 backend")
            if self._write(key, None, content) is not None:
                return True
            current, etag = self._read(key, len(TOMBSTONE))
            # A tombstone counts as absent: replace it, conditionally on its ETag.
            return (
                current is None and etag is not None and self._write(key, etag, content) is not None
            )
        finally:
            if isinstance(data, Path):
                data.unlink(missing_ok=True)

    def _put_object(self, key: str, data: Data) -> bool:
        if self._head(key) is not None:
            return False
        source: Any = data
        if not isinstance(data, (bytes, Path)):
            source = (memoryview(chunk).cast("B") for chunk in data)
        try:
            obstore.put(self._store, key, source, chunk_size=_CHUNK, max_concurrency=8)
        except Exception as exc:
            raise self._error(
                "upload", key, exc, changed="no object was made visible (uploads are atomic)"
            ) from None
        return True

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        self._key(key)
        if new == TOMBSTONE or expected == TOMBSTONE:
            raise InvalidArgumentError("this content is reserved by the S3 backend")
        if new is None:
            current, _ = self._read(key, len(expected or TOMBSTONE))
            if current is None:
                return expected is None
            return self._swap(key, expected, TOMBSTONE)
        return self._swap(key, expected, new)

    def _listing(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Metadata of every key that starts with ``prefix`` (tombstones included)."""
        # obstore lists whole path segments: list the folder the prefix names and filter.
        folder = prefix.rpartition("/")[0]

        def listing() -> list[dict[str, Any]]:
            out = []
            for chunk in obstore.list(self._store, prefix=folder or None, chunk_size=1000):
                out.extend(chunk)
            return out

        try:
            found = _reading(listing)  # whole, so that a retry starts over cleanly
        except Exception as exc:
            raise self._error(
                "list", prefix or "the store", exc, changed="nothing was changed"
            ) from None
        for meta in found:
            key = meta["path"]
            if key.startswith(prefix) and key.split("/", 1)[0] not in _RESERVED and _valid(key):
                yield meta  # a key no store writes (``..``, odd characters) is never used

    def foreign_entries(self) -> list[str]:
        """Keys under the prefix that are no valid storage key (``Store.check`` lists
        them): planted by hand or by another tool, never read or written by amber."""
        try:
            found = _reading(
                lambda: [m["path"] for c in obstore.list(self._store, prefix=None) for m in c]
            )
        except Exception as exc:
            raise self._error("list", "the store", exc, changed="nothing was changed") from None
        return [
            f"{key!r} in {self.describe()} is not a valid store key; amber ignores it: remove "
            "it if you did not put it there on purpose"
            for key in sorted(found)
            if not _valid(key)
        ]

    def list(self, prefix: str = "") -> Iterator[str]:
        for meta in self._listing(prefix):
            key = meta["path"]
            if meta["size"] == len(TOMBSTONE) and self._read(key)[0] is None:
                continue
            yield key

    def list_etags(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(key, ETag) of every key under ``prefix``, tombstones included: what changed
        since a previous listing, without reading any document."""
        for meta in self._listing(prefix):
            yield meta["path"], str(meta.get("e_tag") or meta["last_modified"])

    def delete(self, key: str) -> bool:
        self._key(key)
        if self._head(key) is None:
            return False
        self._remove(key)
        marker, _ = self._read(_marker(key), MARKER_LIMIT)
        if marker is not None:
            self._swap(_marker(key), marker, TOMBSTONE)
        return True

    def _remove(self, key: str) -> None:
        try:
            obstore.delete(self._store, key)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error(
                "delete", key, exc, changed=f"{key} may or may not have been deleted"
            ) from None

    def _marker_state(self, key: str) -> tuple[dict[str, float] | None, str | None]:
        """The marker's state (None: none or a tombstone) and its ETag (None: no marker
        document at all). Swaps of markers are conditional on that ETag, not on content:
        a marker that went absent -> claimed -> tombstone meanwhile must not look unchanged."""
        raw, etag = self._read(_marker(key), MARKER_LIMIT)
        if raw is None:
            return None, etag
        try:
            state = json.loads(raw)
            if not isinstance(state, dict) or not all(
                k in ("touched", "gc") and isinstance(v, (int, float)) for k, v in state.items()
            ):
                raise ValueError
        except ValueError:
            raise StoreError(
                f"the marker of {key} in {self.describe()} is damaged; delete "
                f"{LOCKS}/{key} from the bucket"
            ) from None
        return state, etag

    def stat(self, key: str) -> Stat | None:
        self._key(key)
        meta = self._head(key)
        if meta is None:
            return None
        state, _ = self._marker_state(key)
        mtime = _timestamp(meta["last_modified"])
        if state is not None and "touched" in state:
            mtime = state["touched"]
        return Stat(meta["size"], mtime)

    def touch(self, key: str) -> bool:
        self._key(key)
        deadline = time.monotonic() + GC_LEASE + 10
        while time.monotonic() < deadline:
            state, etag = self._marker_state(key)
            if self._head(key) is None:
                return False
            if state is not None and "gc" in state and time.time() - state["gc"] < GC_LEASE:
                time.sleep(0.02)  # a collector is deleting it: wait for its verdict
                continue
            if self._write(_marker(key), etag, _doc({"touched": time.time()})) is not None:
                return True
        raise StoreError(f"could not refresh {key} in {self.describe()}: a gc holds it; retry")

    def delete_if_older(self, key: str, limit: float) -> int | None:
        self._key(key)
        state, etag = self._marker_state(key)
        if state is not None and "gc" in state and time.time() - state["gc"] < GC_LEASE:
            return None  # another collector is at it
        meta = self._head(key)
        if meta is None:
            return None
        mtime = _timestamp(meta["last_modified"])
        if state is not None and "touched" in state:
            mtime = state["touched"]
        if mtime >= limit:
            return None
        claim = _doc({"gc": time.time()})
        if self._write(_marker(key), etag, claim) is None:
            return None  # touched (or claimed) meanwhile: kept
        self._remove(key)
        self._swap(_marker(key), claim, TOMBSTONE)
        return int(meta["size"])

    def set_mtime(self, key: str, mtime: float) -> None:
        """For tests: pretend a blob was last written or touched at ``mtime``."""
        _, etag = self._marker_state(self._key(key))
        if self._write(_marker(key), etag, _doc({"touched": mtime})) is None:
            raise StoreError(f"could not set the time of {key}")


def _valid(key: str) -> bool:
    try:
        check_key(key)
    except InvalidArgumentError:
        return False
    return True


_BAD_CREDENTIALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")


def _s3_code(exc: BaseException) -> str | None:
    """The error code of the S3 answer quoted in obstore's message, if any."""
    match = re.search(r"<Code>([A-Za-z]{1,64})</Code>", str(exc))
    return match.group(1) if match else None


def _forbidden(exc: BaseException) -> bool:
    return isinstance(exc, (PermissionDeniedError, UnauthenticatedError)) or (
        "403 Forbidden" in str(exc)
    )


def _retried(exc: BaseException) -> bool:
    """Whether obstore's error says the request was sent more than once."""
    return any(int(n) > 0 for n in re.findall(r"(?<![_a-z])retries: (\d+)", str(exc)))


def _get(store: Any, key: str, start: int = 0, end: int | None = None) -> tuple[Any, bytes]:
    """(metadata of the whole blob, its bytes from ``start`` to ``end``)."""
    if start == 0 and end is None:
        result = obstore.get(store, key)
        return result.meta, bytes(result.bytes())
    try:
        if end is None:
            result = obstore.get(store, key, options={"range": {"offset": start}})
        else:
            result = obstore.get(store, key, options={"range": (start, end)})
    except Exception as exc:
        if "Range Not Satisfiable" not in str(exc) and "InvalidRange" not in str(exc):
            raise
        # Range Not Satisfiable: the blob ends before ``start`` (or is empty).
        return obstore.head(store, key), b""
    return result.meta, bytes(result.bytes())


def _reading(call: Callable[[], T]) -> T:
    """Run a read-only request, again after a failure obstore did not retry itself (a
    connection dropped while a body was read): reads are idempotent."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return call()
        except (FileNotFoundError, PermissionDeniedError, UnauthenticatedError):
            raise
        except Exception as exc:
            if attempt == READ_ATTEMPTS - 1 or _forbidden(exc):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _marker(key: str) -> str:
    return f"{LOCKS}/{key}"


def _doc(state: dict[str, float]) -> bytes:
    return json.dumps(state).encode()


def _timestamp(value: datetime) -> float:
    return value.timestamp()


def _materialize(data: Data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, Path):
        return data.read_bytes()
    return b"".join(bytes(memoryview(chunk).cast("B")) for chunk in data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:300]


def _bucket_missing(exc: BaseException) -> bool:
    return "NoSuchBucket" in str(exc)


def _env_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _env_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
