"""``reuse store check``: verify every version file and the index against the files, and repair.

Verification reads every weight (it is the one operation that does) and runs without the store lock,
since version files never change once written; only the repair takes the lock.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from reuse.errors import NotFound, StoreCorrupt
from reuse.names import is_model_name
from reuse.store import h5file
from reuse.store.index import IndexRow, IndexUnreadable, Key, StoreIndex
from reuse.store.layout import TEMP_FILE_RE, TOMBSTONE_RE, VERSION_FILE_RE, pid_alive
from reuse.store.records import CheckReport, FileCheck


class CheckedStore(Protocol):
    """What the check needs of a :class:`reuse.store.ModelStore` (a Protocol, so this module, which the
    store calls, does not import it back)."""

    root: Path
    index: StoreIndex

    def version_path(self, name: str, version: int) -> Path: ...
    def row_from_file(self, key: Key, st: os.stat_result) -> IndexRow: ...
    def rebuild_index(self) -> int: ...
    def _scan(self) -> dict[Key, os.stat_result]: ...
    def _locked(self) -> AbstractContextManager[None]: ...

# A temp file whose writer is still alive is only treated as abandoned after this long.
TEMP_MAX_AGE_S = 3600.0


def _abandoned(path: Path, pid: int) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return not pid_alive(pid) or age > TEMP_MAX_AGE_S


def scan_extras(store: CheckedStore) -> tuple[list[Path], list[Path]]:
    """Abandoned temp files of dead writers (notes, swept by the next write), and files the store does not
    know (reported, kept)."""
    temps: list[Path] = []
    strays: list[Path] = []
    if not store.root.is_dir():
        return temps, strays
    for entry in sorted(store.root.iterdir()):
        if entry.name == ".reuse":
            continue
        if not (entry.is_dir() and is_model_name(entry.name)):
            strays.append(entry)
            continue
        for p in sorted(entry.iterdir()):
            m = TEMP_FILE_RE.fullmatch(p.name)
            if m:
                if _abandoned(p, int(m.group(1))):
                    temps.append(p)
            elif not (VERSION_FILE_RE.fullmatch(p.name) or TOMBSTONE_RE.fullmatch(p.name)):
                strays.append(p)
    return temps, strays


def _verify_file(store: CheckedStore, key: Key, st: os.stat_result) -> tuple[FileCheck, IndexRow | None]:
    name, version = key
    path = store.version_path(name, version)
    ref = f"{name}:{version}"
    row = None
    try:
        row = store.row_from_file(key, st)
        nbytes = h5file.verify_file(path, path)
    except (StoreCorrupt, NotFound) as exc:
        return FileCheck(ref, str(path), False, str(exc)), row
    return FileCheck(ref, str(path), True, None, nbytes), row


def check_store(store: CheckedStore, *, repair: bool = False) -> CheckReport:
    """Verify every version file's checksums, compare the index with the files, find leftovers.

    Args:
        store: the store to check.
        repair: rebuild the index from the files and delete temp files of writers that are gone.
            Damaged version files are never deleted, only reported.

    Returns:
        A CheckReport; its ``ok`` is false while damage remains (a bad file, an index that disagrees).
        Temp files of writers that are gone are notes, not damage.
    """
    disk = store._scan()
    files: list[FileCheck] = []
    file_rows: dict[Key, IndexRow] = {}
    for key, st in sorted(disk.items()):
        fc, row = _verify_file(store, key, st)
        files.append(fc)
        if row is not None:
            file_rows[key] = row

    unreadable = None
    try:
        index_rows = store.index.read()
    except IndexUnreadable as exc:
        unreadable, index_rows = str(exc), {}
    if index_rows is None:  # derivable, so only a problem when there is something to index
        unreadable = f"{store.index.path}: no index file" if disk else None
        index_rows = {}

    def ref(k: Key) -> str:
        return f"{k[0]}:{k[1]}"

    missing = [ref(k) for k in file_rows if k not in index_rows]
    stale = [ref(k) for k in index_rows if k not in disk]
    mismatched = [
        ref(k) for k, row in index_rows.items()
        if k in file_rows and (row.size, row.mtime_ns, row.meta) != (file_rows[k].size, file_rows[k].mtime_ns,
                                                                     file_rows[k].meta)
    ]
    temps, strays = scan_extras(store)
    removed: list[str] = []
    if repair:
        store.rebuild_index()
        with store._locked():
            for p in scan_extras(store)[0]:
                p.unlink(missing_ok=True)
                removed.append(str(p))
    return CheckReport(
        root=str(store.root),
        files=tuple(files),
        missing_from_index=tuple(missing),
        stale_in_index=tuple(stale),
        mismatched_in_index=tuple(mismatched),
        index_unreadable=unreadable,
        temp_files=tuple(str(p) for p in temps),
        stray_files=tuple(str(p) for p in strays),
        repaired=repair,
        removed_temp_files=tuple(removed),
    )
