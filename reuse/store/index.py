"""The store's index: one SQLite row per version, so listing never opens a model file.

The index is derived data. Every row can be rebuilt from the version files' own metadata, so a missing,
stale or unreadable index is repaired, never trusted over the files (see ``ModelStore._synced``).
Writers hold the store's file lock; readers rely on SQLite's own locking and open read-write without
creating, so a missing index file is noticed rather than silently created empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.errors import StoreCorrupt

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    created  TEXT    NOT NULL,
    meta     TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);
"""

Key = tuple[str, int]


class IndexUnreadable(StoreCorrupt):
    """The index file exists but SQLite cannot read it, or it has another schema."""


@dataclass(frozen=True)
class IndexRow:
    name: str
    version: int
    size: int
    mtime_ns: int
    meta: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.name, self.version)


class StoreIndex:
    """Rows of ``(name, version) -> size, mtime, metadata`` in ``<root>/.reuse/index.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        mode = "rwc" if create else "rw"
        try:
            con = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=30,
                                  isolation_level=None)
        except sqlite3.Error as exc:
            raise IndexUnreadable(f"{self.path}: cannot open the index: {exc}") from exc
        with closing(con):
            try:
                if create:
                    con.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
                (ver,) = con.execute("PRAGMA user_version").fetchone()
                if ver != SCHEMA_VERSION:
                    raise IndexUnreadable(f"{self.path}: index schema {ver}, expected {SCHEMA_VERSION}")
                yield con
            except sqlite3.DatabaseError as exc:
                raise IndexUnreadable(f"{self.path}: the index is unreadable: {exc}") from exc

    def read(self, names: Iterable[str] | None = None) -> dict[Key, IndexRow] | None:
        """The rows (for ``names`` only, if given), or None when there is no index file yet."""
        if not self.exists():
            return None
        sql = "SELECT name, version, size, mtime_ns, meta FROM versions"
        with self._connect() as con:
            if names is None:
                cur = con.execute(sql)
            else:
                wanted = sorted(set(names))
                marks = ",".join("?" * len(wanted))
                cur = con.execute(f"{sql} WHERE name IN ({marks})", wanted)
            rows = {}
            for name, version, size, mtime_ns, meta in cur.fetchall():
                try:
                    parsed = json.loads(meta)
                except ValueError as exc:
                    raise IndexUnreadable(f"{self.path}: bad row {name}:{version}: {exc}") from exc
                rows[(name, version)] = IndexRow(name, version, size, mtime_ns, parsed)
            return rows

    def apply(self, put: Iterable[IndexRow] = (), delete: Iterable[Key] = (), *,
              clear: bool = False) -> None:
        """Insert or replace ``put`` and remove ``delete`` in one transaction (``clear`` empties first).

        The caller must hold the store lock.
        """
        with self._connect(create=True) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if clear:
                    con.execute("DELETE FROM versions")
                con.executemany("DELETE FROM versions WHERE name = ? AND version = ?", list(delete))
                con.executemany(
                    "INSERT OR REPLACE INTO versions (name, version, size, mtime_ns, created, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.name, r.version, r.size, r.mtime_ns, str(r.meta.get("created", "")),
                      json.dumps(r.meta, sort_keys=True)) for r in put],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def remove_files(self) -> None:
        """Delete an unreadable index (and its journal); the caller holds the lock and rebuilds it."""
        for suffix in ("-journal", "-wal", "-shm", ""):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
