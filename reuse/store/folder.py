"""The folder backend: ``<root>/<name>/v<version>.h5`` on a local file system (the default store).

Layout (docs/store-format.md): a tombstone ``v<version>.deleted`` for each deleted version (so its number
is never handed out again), and ``<root>/.reuse/`` with the lock file, the SQLite index and this
machine's state (jobs, uploads, datasets). A version is written to a hidden temporary file in its
model's folder, flushed and fsynced, then renamed into place under the store lock, so a crash at any
moment leaves either nothing visible or a complete file. The index is updated under the same lock right
after the rename; readers reconcile it with a directory scan, so a crash between the two is repaired on
sight.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
from filelock import FileLock, Timeout

from reuse.atomic import fsync_path, put_in_place
from reuse.errors import NotFound, ResourceExhausted, StoreCorrupt
from reuse.names import check_name, is_model_name
from reuse.store import h5file
from reuse.store.check import check_store
from reuse.store.index import IndexRow, IndexUnreadable, Key, StoreIndex
from reuse.store.layout import TOMBSTONE_RE, VERSION_FILE_RE, sweep_temp_files, tombstone, version_file
from reuse.store.model_store import ModelStore
from reuse.store.records import CheckReport

log = logging.getLogger(__name__)

STATE_DIR = ".reuse"
INDEX_FILE = "index.sqlite"
STAMP_DIRS = 4096  # model folders model_stamp remembers


class FolderStore(ModelStore, kind="folder"):
    """A folder of named, versioned models. Safe for concurrent writers on one machine.

    Args:
        root: the store folder (created on first write).
        lock_timeout: seconds to wait for the store lock before raising ResourceExhausted.
    """

    cheap_lookups = True

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 120.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.index = StoreIndex(self.state_dir / INDEX_FILE)
        self._file_lock: FileLock | None = None
        self._stamp_dirs: dict[str, str] = {}  # model name -> its folder, for model_stamp (per request)

    # -- paths and locking -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store lock for the ``with`` block. Re-entrant within one thread of one process."""
        if self._file_lock is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._file_lock = FileLock(str(self.state_dir / "lock"), timeout=self.lock_timeout)
        lock = self._file_lock
        try:
            lock.acquire()
        except Timeout as exc:
            raise ResourceExhausted(f"store {self.root} stayed locked for {self.lock_timeout:.0f} s") from exc
        try:
            yield
        finally:
            lock.release()

    def _model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _where(self, key: Key) -> Path:
        return version_file(self._model_dir(key[0]), key[1])

    def version_path(self, name: str, version: int) -> Path:
        return self._where((name, version))

    def model_stamp(self, name: str) -> int | None:
        folder = self._stamp_dirs.get(name)
        try:
            if folder is None:
                folder = str(self._model_dir(name))
                stamp = os.stat(folder).st_mtime_ns
                if len(self._stamp_dirs) < STAMP_DIRS:  # names of folders that exist, bounded
                    self._stamp_dirs[name] = folder
                return stamp
            return os.stat(folder).st_mtime_ns
        except OSError:
            return None

    def _scan(self, names: Iterable[str] | None = None) -> dict[Key, os.stat_result]:
        """Version files on disk with their stat; a directory listing, no file opened."""
        if names is None:
            if not self.root.is_dir():
                return {}
            names = [p.name for p in self.root.iterdir() if p.is_dir() and is_model_name(p.name)]
        found: dict[Key, os.stat_result] = {}
        for name in names:
            try:
                entries = list(os.scandir(self._model_dir(name)))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                m = VERSION_FILE_RE.fullmatch(entry.name)
                if m and entry.is_file(follow_symlinks=False):
                    found[(name, int(m.group(1)))] = entry.stat(follow_symlinks=False)
        return found

    def _versions(self, names: list[str] | None = None) -> list[Key]:
        return list(self._scan(names))

    def _allocated_max(self, name: str) -> int:
        d = self._model_dir(name)
        if not d.is_dir():
            return 0
        nums = [int(m.group(1)) for p in d.iterdir()
                if (m := VERSION_FILE_RE.fullmatch(p.name) or TOMBSTONE_RE.fullmatch(p.name))]
        return max(nums, default=0)

    # -- the index ---------------------------------------------------------------------------
    def row_from_file(self, key: Key, st: os.stat_result) -> IndexRow:
        """An index row from a version file's own metadata (which must agree with where it lies)."""
        name, version = key
        p = self.version_path(name, version)
        with h5file.open_read(p) as f:
            meta = h5file.read_meta_at(f, p, key)
        return IndexRow(name, version, st.st_size, st.st_mtime_ns, meta)

    def _row(self, key: Key) -> IndexRow:
        return self.row_from_file(key, self._where(key).stat())

    def _synced(self, names: Iterable[str] | None = None) -> dict[Key, IndexRow]:
        """Index rows (for ``names`` if given) after reconciling them with the files on disk."""
        names = None if names is None else sorted(set(names))
        disk = self._scan(names)
        try:
            rows = self.index.read(names)
        except IndexUnreadable:
            rows = None
        if rows is not None and _agrees(disk, rows):
            return rows
        if rows is None and not disk:
            return {}  # nothing to index: don't create a store folder just by looking at it
        with self._locked():
            return self._reconcile_locked(names)

    def _reconcile_locked(self, names: list[str] | None, *, rebuild: bool = False) -> dict[Key, IndexRow]:
        try:
            current = None if rebuild else self.index.read(names)
        except IndexUnreadable as exc:
            log.warning("%s; rebuilding it from the model files", exc)
            self.index.remove_files()
            current = None
        if current is not None:
            return self._index_files_locked(self._scan(names), current, clear=False)
        # No usable index: index every model, then answer for the names asked.
        rows = self._index_files_locked(self._scan(), {}, clear=True)
        return rows if names is None else {k: r for k, r in rows.items() if k[0] in names}

    def _index_files_locked(self, disk: dict[Key, os.stat_result], rows: dict[Key, IndexRow], *,
                            clear: bool) -> dict[Key, IndexRow]:
        """Bring ``rows`` in line with ``disk``: index new or changed files, drop rows whose file is gone."""
        put: list[IndexRow] = []
        drop = [k for k in rows if k not in disk]
        for key, st in sorted(disk.items()):
            row = rows.get(key)
            if row is None or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns):
                try:
                    put.append(self.row_from_file(key, st))
                except (StoreCorrupt, NotFound) as exc:
                    log.warning("not indexed: %s (run `reuse store check`)", exc)
                    if row is not None:
                        drop.append(key)
        self.index.apply(put=put, delete=drop, clear=clear)
        result = {k: r for k, r in rows.items() if k not in set(drop)}
        result.update((r.key, r) for r in put)
        return result

    def rebuild_index(self) -> int:
        """Rebuild the whole index from the files; return the number of versions indexed."""
        with self._locked():
            if not self._index_readable():
                self.index.remove_files()
            return len(self._reconcile_locked(None, rebuild=True))

    def _index_readable(self) -> bool:
        try:
            self.index.read([])
        except IndexUnreadable:
            return False
        return True

    def _index_locked(self, put: list[IndexRow], delete: list[Key], what: str) -> None:
        try:
            self.index.apply(put=put, delete=delete)
        except (IndexUnreadable, sqlite3.Error) as exc:
            # The version files are the truth; the next reader reindexes them.
            log.warning("index not updated %s (%s); it will be rebuilt", what, exc)
            self.index.remove_files()

    # -- writing -----------------------------------------------------------------------------
    def _staging(self, name: str) -> Path:
        d = self._model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _publish(self, name: str, tmp: Path, meta: dict[str, Any]) -> IndexRow:
        d = self._model_dir(name)
        fsync_path(tmp)
        with self._locked():
            sweep_temp_files(d)  # leftovers of killed writers; ours has a live pid
            version = self._allocated_max(name) + 1
            with h5py.File(tmp, "r+") as f:
                h5file.set_version(f, version)
            final = version_file(d, version)
            put_in_place(tmp, final)
            st = final.stat()
            row = IndexRow(name, version, st.st_size, st.st_mtime_ns,
                           {**meta, "name": name, "version": version})
            self._index_locked([row], [], f"for {name}:{version}")
        return row

    def _remove(self, key: Key) -> None:
        name, version = key
        path = self._where(key)
        with self._locked():
            if not path.is_file():
                raise NotFound(f"model {name!r} has no version {version} (deleted meanwhile)")
            d = self._model_dir(name)
            tombstone(d, version).touch()
            path.unlink()
            fsync_path(d)
            self._index_locked([], [key], f"after deleting {name}:{version}")

    # -- reading -----------------------------------------------------------------------------
    @contextmanager
    def _open(self, key: Key) -> Iterator[h5py.File]:
        with h5file.open_read(self._where(key)) as f:
            yield f

    @contextmanager
    def _whole(self, key: Key) -> Iterator[Path]:
        yield self._where(key)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every file's checksums and the index against the files; see :mod:`reuse.store.check`."""
        return check_store(self, repair=repair)


def _agrees(disk: dict[Key, os.stat_result], rows: dict[Key, IndexRow]) -> bool:
    if disk.keys() != rows.keys():
        return False
    return all((rows[k].size, rows[k].mtime_ns) == (st.st_size, st.st_mtime_ns) for k, st in disk.items())
