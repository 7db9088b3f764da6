"""The SQLite index: a query cache derived from the records, refs and tags in storage.

Everything here can be rebuilt from storage (``Store.reindex``); a deleted or damaged index
loses nothing. Writers update it after their change is committed to storage; a writer that
dies in between leaves the index behind storage, which ``Store.check`` reports and repairs.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amber.errors import StoreIndexError

if TYPE_CHECKING:
    from amber.store.records import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    creator TEXT,
    message TEXT,
    parent TEXT,
    size INTEGER NOT NULL,
    content_digest TEXT NOT NULL,
    metadata TEXT NOT NULL,
    metrics TEXT NOT NULL,
    tags TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE INDEX IF NOT EXISTS versions_created ON versions (created_at);
"""
COLUMNS = (
    "name",
    "version",
    "created_at",
    "creator",
    "message",
    "parent",
    "size",
    "content_digest",
    "metadata",
    "metrics",
    "tags",
)


def row_of(record: Record, tags: dict[str, str]) -> dict[str, Any]:
    """The index row of a version: its record's fields and its current ``tags``."""
    raw = record.raw
    return {
        "name": record.name,
        "version": record.version,
        "created_at": raw.get("created_at", ""),
        "creator": raw.get("creator"),
        "message": raw.get("message"),
        "parent": raw.get("parent"),
        "size": raw.get("size", 0),
        "content_digest": raw.get("content_digest", ""),
        "metadata": record.manifest.get("metadata") or {},
        "metrics": raw.get("metrics") or {},
        "tags": tags,
    }


def files_of(path: Path) -> list[Path]:
    """The database file and the files SQLite keeps beside it."""
    return [path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))]


class Index:
    """One SQLite database (WAL mode, so readers never wait for a writer)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self._memory: sqlite3.Connection | None = None
        if path is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._memory.executescript(SCHEMA)
        else:
            with self._connection() as db:
                db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        db = getattr(self._local, "db", None)
        if db is None:
            assert self.path is not None
            for file in files_of(self.path):  # SQLite would follow a link planted there
                if file.is_symlink():
                    raise StoreIndexError(
                        f"the store index file {file} is a symbolic link; amber follows no "
                        "links inside a store: delete it (the index is rebuilt from storage)"
                    )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except (sqlite3.Error, OSError) as exc:
                raise StoreIndexError(
                    f"cannot open the store index {self.path}: {exc}; delete it and run "
                    "`amber store reindex` to rebuild it"
                ) from None
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise StoreIndexError(
                f"the store index {self.path or ':memory:'} failed ({exc}); run "
                "`amber store reindex` (or Store.reindex()) to rebuild it from storage"
            ) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writes -----------------------------------------------------------------------------

    def add_version(self, db: sqlite3.Connection, row: dict[str, Any]) -> None:
        values = [
            json.dumps(row[c]) if c in ("metadata", "metrics", "tags") else row[c] for c in COLUMNS
        ]
        db.execute(
            f"INSERT OR REPLACE INTO versions ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            values,
        )
        db.execute(
            "DELETE FROM metrics WHERE name = ? AND version = ?", (row["name"], row["version"])
        )
        db.executemany(
            "INSERT INTO metrics (name, version, key, value) VALUES (?, ?, ?, ?)",
            [
                (row["name"], row["version"], key, float(value))
                for key, value in row["metrics"].items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            ],
        )

    def remove_version(self, db: sqlite3.Connection, name: str, version: int) -> None:
        db.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, version))
        db.execute("DELETE FROM metrics WHERE name = ? AND version = ?", (name, version))

    def set_tags(self, db: sqlite3.Connection, name: str, version: int, tags: dict) -> None:
        db.execute(
            "UPDATE versions SET tags = ? WHERE name = ? AND version = ?",
            (json.dumps(tags), name, version),
        )

    def set_alias(self, db: sqlite3.Connection, name: str, alias: str, version: int | None) -> None:
        if version is None:
            db.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            db.execute(
                "INSERT OR REPLACE INTO aliases (name, alias, version) VALUES (?, ?, ?)",
                (name, alias, version),
            )

    def clear(self, db: sqlite3.Connection) -> None:
        for table in ("versions", "metrics", "aliases"):
            db.execute(f"DELETE FROM {table}")

    # -- reads ------------------------------------------------------------------------------

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._connection() as db:
            return db.execute(sql, params).fetchall()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
