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
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from reuse.config import ENV_STATE
from reuse.errors import NotFound, StoreCorrupt
from reuse.names import check_name
from reuse.store import h5file, s3_layout
from reuse.store.index import IndexRow, Key
from reuse.store.model_store import ModelStore
from reuse.store.range_file import RangeFile
from reuse.store.read_cache import ReadCache
from reuse.store.records import CheckReport
from reuse.store.s3_layout import (
    Objects,
    Sidecar,
    group_objects,
    object_key,
    parse_sidecar,
    sidecar_text,
    visible,
)
from reuse.store.s3_objects import Bucket, ObjectInfo

log = logging.getLogger(__name__)
LIST_TTL_S = 1.0


def default_state_dir(bucket: str, prefix: str) -> Path:
    base = Path(os.environ.get(ENV_STATE) or Path.home() / ".cache" / "reuse")
    # One folder per store, never inside another's: "/" (and no prefix) become "+", which no prefix has.
    return base / "s3" / bucket / (prefix.replace("/", "+") or "+")


class S3Store(ModelStore, kind="s3"):
    """Named, versioned models in an S3 bucket. Safe for concurrent writers on any number of machines.

    Args:
        root: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` (normalised by :func:`reuse.config.store_location`).
        lock_timeout: accepted for the common signature; an object store needs no lock.
        cache: the local cache of whole version files (default: ``cache/`` in :attr:`state_dir`, bounded by
            ``REUSE_S3_CACHE_MB``).
        max_sidecar_bytes: the largest sidecar read; a larger one is refused before its body is read.
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 120.0,
                 cache: ReadCache | None = None,
                 max_sidecar_bytes: int = s3_layout.MAX_SIDECAR_BYTES) -> None:
        from reuse.config import store_location

        self.root = str(store_location(root))
        bucket, _, prefix = self.root[len("s3://"):].partition("/")
        self.bucket = Bucket(self.root, bucket, prefix)
        self._state = default_state_dir(bucket, prefix)
        self.cache = cache if cache is not None else ReadCache(self._state / "cache")
        self.max_sidecar_bytes = max_sidecar_bytes
        self._sidecars: dict[str, tuple[str, Sidecar]] = {}  # relative key -> (etag, sidecar)
        self._recent: dict[str, tuple[float, list[Key]]] = {}  # name -> (when listed, visible versions)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.root,))  # a fresh client in the other process

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
        """Visible versions; one model's are reused for ``LIST_TTL_S`` (this process's own writes and
        deletes drop them at once), so a server resolving ``NAME`` per request does not list per request."""
        if names is None or len(names) != 1:
            return [k for k, parts in self.objects(names)[0].items() if visible(parts)]
        hit, now = self._recent.get(names[0]), time.monotonic()
        if hit is not None and now - hit[0] < LIST_TTL_S:
            return hit[1]
        keys = [k for k, parts in self.objects(names)[0].items() if visible(parts)]
        self._recent[names[0]] = (now, keys)
        return keys

    def _sidecar(self, key: Key, info: ObjectInfo | None = None) -> Sidecar:
        """A version's sidecar (memoised by ETag: a sidecar changes only when repaired)."""
        rel = object_key(key, "json")
        if info is not None and (hit := self._sidecars.get(rel)) and hit[0] == info.etag:
            return hit[1]
        text = self.bucket.get(rel, limit=self.max_sidecar_bytes, what="a sidecar")
        side = parse_sidecar(text, key, self.bucket.url_of(rel), limit=self.max_sidecar_bytes)
        if info is not None:
            self._sidecars[rel] = (info.etag, side)
        return side

    def _synced(self, names: list[str] | None = None) -> dict[Key, IndexRow]:
        rows: dict[Key, IndexRow] = {}
        for key, parts in sorted(self.objects(names)[0].items()):
            if not visible(parts):
                continue
            try:
                rows[key] = self._sidecar(key, parts["json"]).row
            except (StoreCorrupt, NotFound) as exc:
                log.warning("not listed: %s (run `reuse store check`)", exc)
        return rows

    def _parts(self, key: Key) -> dict[str, ObjectInfo]:
        """The objects of one version (one listing); NotFound unless it is visible."""
        parts = self.objects([key[0]])[0].get(key, {})
        if not visible(parts):
            raise NotFound(f"model {key[0]!r} has no version {key[1]} in store {self.root}")
        return parts

    def _visible(self, key: Key) -> Sidecar:
        """The sidecar of a visible version whose object is there with the size the sidecar records."""
        parts = self._parts(key)
        side = self._sidecar(key, parts["json"])
        row = side.row
        if "h5" not in parts:
            raise StoreCorrupt(f"{self._where(key)}: the version object is missing (its sidecar is there); "
                               "run `reuse store check`")
        if parts["h5"].size != row.size:
            raise StoreCorrupt(f"{self._where(key)}: {parts['h5'].size} bytes, its sidecar says {row.size}; "
                               "the object is damaged")
        return side

    def _row(self, key: Key) -> IndexRow:
        """A row read from the version object itself (range reads of its metadata)."""
        parts = self.objects([key[0]])[0].get(key, {})
        if "h5" not in parts:
            raise NotFound(f"{self._where(key)}: no such object")
        where = self._where(key)
        with self._open_object(key, parts["h5"].size) as f:
            meta = h5file.read_meta_at(f, where, key)
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
        try:
            return self._publish_claimed(name, tmp, meta)
        finally:
            self._recent.pop(name, None)  # this process sees its own write (or its failure) at once

    def _publish_claimed(self, name: str, tmp: Path, meta: dict[str, Any]) -> IndexRow:
        version = self._claim(name)
        key = (name, version)
        with h5py.File(tmp, "r+") as f:
            h5file.set_version(f, version)
        side = sidecar_text(key, tmp, meta)
        self.bucket.upload(object_key(key, "h5"), tmp)
        if not self.bucket.put(object_key(key, "json"), side, create=True):
            raise StoreCorrupt(f"{self._where(key)}: another writer published version {version}, which this "
                               "writer had claimed; the store's claims were bypassed")
        return IndexRow(name, version, tmp.stat().st_size, time.time_ns(),
                        {**meta, "name": name, "version": version})

    def _remove(self, key: Key) -> None:
        try:
            self._parts(key)
            if not self.bucket.put(object_key(key, "deleted"), b"", create=True):
                raise NotFound(f"model {key[0]!r} has no version {key[1]} (deleted meanwhile)")
            self.bucket.delete(object_key(key, "json"))  # the tombstone already hides it; now free the space
            self.bucket.delete(object_key(key, "h5"))
        finally:
            self._recent.pop(key[0], None)

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
        with self._open_object(key, self._visible(key).row.size) as f:
            yield f

    @contextmanager
    def _whole(self, key: Key) -> Iterator[Path]:
        sha = self._visible(key).sha256
        rel = object_key(key, "h5")
        with self.cache.use(sha, lambda dest: self.bucket.download(rel, dest), self._where(key)) as path:
            yield path

    def content_checksum(self, ref: Any) -> str:
        """The SHA-256 of the version object, from its sidecar (verified whenever the whole is read)."""
        r = self.resolve(ref)
        return self._visible((r.name, r.version or 0)).sha256

    def model_config(self, ref: Any) -> dict[str, Any]:
        """The architecture from the sidecar (checked against the checksum recorded with it), so a layer
        table or a build's plan reads no version object."""
        r = self.resolve(ref)
        key = (r.name, r.version or 0)
        side = self._sidecar(key, self._parts(key)["json"])
        if h5file.sha256_bytes(side.model_config.encode()) != side.model_config_sha256:
            raise StoreCorrupt(f"{self.bucket.url_of(object_key(key, 'json'))}: checksum mismatch in "
                               "model_config; the sidecar is damaged (`reuse store check --repair` "
                               "rewrites it)")
        return h5file.parse_model_config(side.model_config, self._where(key))

    # -- check and repair ------------------------------------------------------------------------
    def sidecar_from_object(self, key: Key, local: Path) -> bytes:
        """The sidecar a version should have, from a local copy of its object."""
        where = self._where(key)
        with h5file.open_read(local) as f:
            meta = h5file.read_meta_at(f, where, key)
        return sidecar_text(key, local, meta)

    def rebuild_index(self) -> int:
        """Rewrite every visible version's sidecar from its version object; return how many there are."""
        from reuse.store.s3_check import rebuild_sidecars

        return rebuild_sidecars(self)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every version object (whole-object checksum and every weight's) against its sidecar."""
        from reuse.store.s3_check import check_s3_store

        return check_s3_store(self, repair=repair)
