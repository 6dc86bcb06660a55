"""The S3 backend: ``s3://BUCKET/PREFIX`` on any S3-compatible object store (docs/store-format.md).

Objects under the prefix, per model ``NAME/`` and version number N:

- ``vN.claim``: the writer's claim on number N, created with ``If-None-Match: *`` (only one writer can
  create it, on any machine), so two writers never share a number; the loser tries N+1.
- ``vN.h5``: the version file, uploaded whole (in parts past 64 MiB, visible only once completed).
- ``vN.json``: the sidecar, the metadata row (checksum, size, the ``reuse/meta`` JSON), created last and
  conditionally. It is what makes the version exist: listing, ``show`` and ``layers`` read only
  sidecars, never a version file.
- ``vN.deleted``: the tombstone of a deleted version; numbers are never handed out again.

A writer killed at any point leaves at most a claim and an unfinished or orphan ``vN.h5`` without a
sidecar: invisible, and removed by ``store check --repair``. Reads of parts of a version use HTTP range
requests (:mod:`reuse.store.range_file`); whole reads go through a local cache keyed by checksum
(:mod:`reuse.store.read_cache`). This machine's state (jobs, uploads, datasets, the cache) lives in a
local folder, :attr:`S3Store.state_dir`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from reuse.config import ENV_STATE
from reuse.errors import NotFound, StoreCorrupt
from reuse.store import h5file
from reuse.store.index import IndexRow, Key
from reuse.store.model_store import ModelStore
from reuse.store.names import check_name, is_model_name
from reuse.store.range_file import RangeFile
from reuse.store.read_cache import ReadCache, file_sha256
from reuse.store.records import CheckReport
from reuse.store.s3_objects import Bucket, ObjectInfo

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
OBJECT_RE = re.compile(r"([^/]+)/v([1-9][0-9]{0,17})\.(h5|json|claim|deleted)")
Objects = dict[Key, dict[str, ObjectInfo]]  # (name, N) -> {"h5"|"json"|"claim"|"deleted": object}


def object_key(key: Key, kind: str) -> str:
    return f"{key[0]}/v{key[1]}.{kind}"


def group_objects(objs: dict[str, ObjectInfo]) -> tuple[Objects, list[str]]:
    """The store's objects by version, and the keys that are no part of the layout (strays)."""
    grouped: Objects = {}
    strays = []
    for rel, info in objs.items():
        m = OBJECT_RE.fullmatch(rel)
        if m and is_model_name(m.group(1)):
            grouped.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = info
        else:
            strays.append(rel)
    return grouped, sorted(strays)


def visible(parts: dict[str, ObjectInfo]) -> bool:
    return "json" in parts and "deleted" not in parts


def default_state_dir(bucket: str, prefix: str) -> Path:
    base = Path(os.environ.get(ENV_STATE) or Path.home() / ".cache" / "reuse")
    return base / "s3" / bucket / (prefix or "_")


def sidecar_text(name: str, version: int, size: int, sha256: str, meta: dict[str, Any]) -> bytes:
    body = {"format": SIDECAR_FORMAT, "name": name, "version": version, "size": size, "sha256": sha256,
            "mtime_ns": time.time_ns(), "meta": {**meta, "name": name, "version": version}}
    return json.dumps(body, sort_keys=True).encode()


class S3Store(ModelStore, kind="s3"):
    """Named, versioned models in an S3 bucket. Safe for concurrent writers on any number of machines.

    Args:
        root: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` (normalised by :func:`reuse.config.store_location`).
        lock_timeout: accepted for the common signature; an object store needs no lock.
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 120.0) -> None:
        from reuse.config import store_location

        self.root = str(store_location(root))
        bucket, _, prefix = self.root[len("s3://"):].partition("/")
        self.bucket = Bucket(self.root, bucket, prefix)
        self._state = default_state_dir(bucket, prefix)
        self.cache = ReadCache(self._state / "cache")
        self._sidecars: dict[str, tuple[str, IndexRow]] = {}  # relative key -> (etag, row)

    @property
    def state_dir(self) -> Path:
        return self._state

    def _where(self, key: Key) -> str:
        return self.bucket.url_of(object_key((check_name(key[0]), key[1]), "h5"))

    # -- listing and sidecars --------------------------------------------------------------------
    def objects(self, names: list[str] | None = None) -> tuple[Objects, list[str]]:
        """One listing of the store (or of ``names``' folders), grouped by version."""
        if names is None:
            return group_objects(self.bucket.list(""))
        found: dict[str, ObjectInfo] = {}
        for name in sorted(set(names)):
            found.update(self.bucket.list(f"{check_name(name)}/"))
        return group_objects(found)

    def _versions(self, names: list[str] | None = None) -> list[Key]:
        return [k for k, parts in self.objects(names)[0].items() if visible(parts)]

    def _sidecar(self, key: Key, info: ObjectInfo | None = None) -> IndexRow:
        """The row in a version's sidecar (memoised by ETag: a sidecar changes only when repaired)."""
        rel = object_key(key, "json")
        if info is not None and (hit := self._sidecars.get(rel)) and hit[0] == info.etag:
            return hit[1]
        url = self.bucket.url_of(rel)
        try:
            body = json.loads(self.bucket.get(rel))
            row = IndexRow(key[0], key[1], int(body["size"]), int(body.get("mtime_ns", 0)), dict(body["meta"]))
            sha = body["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"{url}: unreadable sidecar metadata: {exc}") from exc
        if (row.meta.get("name"), row.meta.get("version")) != key or not isinstance(sha, str):
            raise StoreCorrupt(f"{url}: the sidecar names {row.meta.get('name')}:{row.meta.get('version')}, "
                               f"but lies where {key[0]}:{key[1]} belongs")
        row.meta["_sha256"] = sha
        if info is not None:
            self._sidecars[rel] = (info.etag, row)
        return row

    def _synced(self, names: list[str] | None = None) -> dict[Key, IndexRow]:
        rows: dict[Key, IndexRow] = {}
        for key, parts in sorted(self.objects(names)[0].items()):
            if not visible(parts):
                continue
            try:
                rows[key] = self._public(self._sidecar(key, parts["json"]))
            except (StoreCorrupt, NotFound) as exc:
                log.warning("not listed: %s (run `reuse store check`)", exc)
        return rows

    @staticmethod
    def _public(row: IndexRow) -> IndexRow:
        return IndexRow(row.name, row.version, row.size, row.mtime_ns,
                        {k: v for k, v in row.meta.items() if k != "_sha256"})

    def _parts(self, key: Key) -> dict[str, ObjectInfo]:
        """The objects of one version (one listing); NotFound unless it is visible."""
        parts = self.objects([key[0]])[0].get(key, {})
        if not visible(parts):
            raise NotFound(f"model {key[0]!r} has no version {key[1]} in store {self.root}")
        return parts

    def _visible_row(self, key: Key) -> tuple[IndexRow, str]:
        parts = self._parts(key)
        row = self._sidecar(key, parts["json"])
        if "h5" not in parts:
            raise StoreCorrupt(f"{self._where(key)}: the version object is missing (its sidecar is there); "
                               "run `reuse store check`")
        if parts["h5"].size != row.size:
            raise StoreCorrupt(f"{self._where(key)}: {parts['h5'].size} bytes, its sidecar says {row.size}; "
                               "the object is damaged")
        return row, row.meta["_sha256"]

    def _row(self, key: Key) -> IndexRow:
        """A row read from the version object itself (range reads of its metadata)."""
        parts = self.objects([key[0]])[0].get(key, {})
        if "h5" not in parts:
            raise NotFound(f"{self._where(key)}: no such object")
        where = self._where(key)
        with self._open_object(key, parts["h5"].size) as f:
            meta = h5file.read_meta(f, where)  # type: ignore[arg-type]
        if (meta.get("name"), meta.get("version")) != key:
            raise StoreCorrupt(f"{where}: records itself as {meta.get('name')}:{meta.get('version')}, "
                               f"but lies where {key[0]}:{key[1]} belongs")
        return IndexRow(key[0], key[1], parts["h5"].size, parts["h5"].mtime_ns, meta)

    # -- writing ---------------------------------------------------------------------------------
    def _staging(self, name: str) -> Path:
        d = self._state / "staging"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _claim(self, name: str) -> int:
        """Create ``vN.claim`` for the lowest free N (conditional create; a lost race tries N+1)."""
        grouped, _ = self.objects([name])
        n = max((v for (_, v) in grouped), default=0) + 1
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}).encode()
        for _ in range(10_000):
            if self.bucket.put(object_key((name, n), "claim"), body, create=True):
                return n
            n += 1
        raise StoreCorrupt(f"{self.root}: could not claim a version number of {name!r} after 10000 tries")

    def _publish(self, name: str, tmp: Path, meta: dict[str, Any]) -> IndexRow:
        version = self._claim(name)
        key = (name, version)
        with h5py.File(tmp, "r+") as f:
            h5file.set_version(f, version)
        size, sha = tmp.stat().st_size, file_sha256(tmp)
        self.bucket.upload(object_key(key, "h5"), tmp)
        if not self.bucket.put(object_key(key, "json"), sidecar_text(name, version, size, sha, meta), create=True):
            raise StoreCorrupt(f"{self._where(key)}: another writer published version {version}, which this "
                               "writer had claimed; the store's claims were bypassed")
        return IndexRow(name, version, size, time.time_ns(), {**meta, "name": name, "version": version})

    def _remove(self, key: Key) -> None:
        self._parts(key)
        if not self.bucket.put(object_key(key, "deleted"), b"", create=True):
            raise NotFound(f"model {key[0]!r} has no version {key[1]} (deleted meanwhile)")
        self.bucket.delete(object_key(key, "json"))  # the tombstone already hides it; now free the space
        self.bucket.delete(object_key(key, "h5"))

    # -- reading ---------------------------------------------------------------------------------
    @contextmanager
    def _open_object(self, key: Key, size: int) -> Iterator[h5py.File]:
        raw = RangeFile(self.bucket, object_key(key, "h5"), size)
        try:
            f = h5py.File(raw, "r")
        except OSError as exc:
            raise StoreCorrupt(f"{self._where(key)}: cannot be opened as HDF5: {exc}") from exc
        with f:
            yield f

    @contextmanager
    def _open(self, key: Key) -> Iterator[h5py.File]:
        row, _ = self._visible_row(key)
        with self._open_object(key, row.size) as f:
            yield f

    @contextmanager
    def _whole(self, key: Key) -> Iterator[Path]:
        _, sha = self._visible_row(key)
        rel = object_key(key, "h5")
        yield self.cache.get(sha, lambda dest: self.bucket.download(rel, dest), self._where(key))

    def content_checksum(self, ref: Any) -> str:
        """The SHA-256 of the version object, from its sidecar (verified whenever the whole is read)."""
        r = self.resolve(ref)
        return self._visible_row((r.name, r.version or 0))[1]

    # -- check and repair ------------------------------------------------------------------------
    def sidecar_from_object(self, key: Key, local: Path) -> bytes:
        """The sidecar a version should have, from a local copy of its object."""
        where = self._where(key)
        with h5file.open_read(local) as f:
            meta = h5file.read_meta(f, where)  # type: ignore[arg-type]
        if (meta.get("name"), meta.get("version")) != key:
            raise StoreCorrupt(f"{where}: records itself as {meta.get('name')}:{meta.get('version')}, "
                               f"but lies where {key[0]}:{key[1]} belongs")
        return sidecar_text(key[0], key[1], local.stat().st_size, file_sha256(local), meta)

    def rebuild_index(self) -> int:
        """Rewrite every visible version's sidecar from its version object; return how many there are."""
        from reuse.store.s3_check import rebuild_sidecars

        return rebuild_sidecars(self)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every version object (whole-object checksum and every weight's) against its sidecar."""
        from reuse.store.s3_check import check_s3_store

        return check_s3_store(self, repair=repair)
