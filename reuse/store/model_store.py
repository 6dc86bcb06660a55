"""The model store: named, versioned Keras networks as HDF5 files in one folder.

Layout (docs/store-format.md): ``<root>/<name>/v<version>.h5``, a tombstone ``v<version>.deleted`` for
each deleted version (so its number is never handed out again), and ``<root>/.reuse/`` with the lock
file and the SQLite index. A version is written to a hidden temporary file in its model's folder,
flushed and fsynced, then renamed into place under the store lock, so a crash at any moment leaves
either nothing visible or a complete file. The index is updated under the same lock right after the
rename; readers reconcile it with a directory scan, so a crash between the two is repaired on sight.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from filelock import FileLock, Timeout

from reuse.atomic import fsync_path, put_in_place
from reuse.errors import AlreadyExists, InvalidInput, NotFound, ResourceExhausted, StoreCorrupt
from reuse.store import h5file, keras_io
from reuse.store.check import check_store
from reuse.store.index import IndexRow, IndexUnreadable, Key, StoreIndex
from reuse.store.layout import (
    TOMBSTONE_RE,
    VERSION_FILE_RE,
    sweep_temp_files,
    temp_file,
    tombstone,
    version_file,
)
from reuse.store.meta import VersionMeta, build_meta, check_tags
from reuse.store.names import ModelRef, check_name, is_model_name
from reuse.store.records import (
    CheckReport,
    LayerInfo,
    ModelInfo,
    info_from_meta,
    layers_from_meta,
)

log = logging.getLogger(__name__)

STATE_DIR = ".reuse"
INDEX_FILE = "index.sqlite"


class ModelStore:
    """A folder of named, versioned models. Safe for concurrent writers on one machine.

    Args:
        root: the store folder (created on first write).
        lock_timeout: seconds to wait for the store lock before raising ResourceExhausted.
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 120.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.index = StoreIndex(self.state_dir / INDEX_FILE)
        self._file_lock: FileLock | None = None

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

    def version_path(self, name: str, version: int) -> Path:
        return version_file(self._model_dir(name), version)

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

    def _allocated_max(self, name: str) -> int:
        d = self._model_dir(name)
        if not d.is_dir():
            return 0
        nums = [int(m.group(1)) for p in d.iterdir()
                if (m := VERSION_FILE_RE.fullmatch(p.name) or TOMBSTONE_RE.fullmatch(p.name))]
        return max(nums, default=0)

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        """Turn ``name`` into ``name:latest``; raise NotFound if the model or version is missing."""
        r = ModelRef.parse(ref)
        versions = sorted(v for (_, v) in self._scan([r.name]))
        if not versions:
            raise NotFound(f"no model named {r.name!r} in store {self.root}")
        if r.version is None:
            return ModelRef(r.name, versions[-1])
        if r.version not in versions:
            raise NotFound(f"model {r.name!r} has no version {r.version} (versions: {_ranges(versions)})")
        return r

    def path(self, ref: str | ModelRef) -> Path:
        r = self.resolve(ref)
        return self.version_path(r.name, r.version)

    # -- the index ---------------------------------------------------------------------------
    def row_from_file(self, key: Key, st: os.stat_result) -> IndexRow:
        """An index row from a version file's own metadata (which must agree with where it lies)."""
        name, version = key
        p = self.version_path(name, version)
        with h5file.open_read(p) as f:
            meta = h5file.read_meta(f, p)
        if meta.get("name") != name or meta.get("version") != version:
            raise StoreCorrupt(f"{p}: records itself as {meta.get('name')}:{meta.get('version')}, "
                               f"but lies where {name}:{version} belongs")
        return IndexRow(name, version, st.st_size, st.st_mtime_ns, meta)

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

    def _index_put_locked(self, row: IndexRow) -> None:
        try:
            self.index.apply(put=[row])
        except (IndexUnreadable, sqlite3.Error) as exc:
            # The version file is already in place and is the truth; the next reader reindexes it.
            log.warning("index not updated for %s:%s (%s); it will be rebuilt", row.name, row.version, exc)
            self.index.remove_files()

    # -- writing -----------------------------------------------------------------------------
    def register(self, model: Any, name: str, **given: Any) -> ModelInfo:
        """Write ``model`` as the next version of ``name`` and return its info.

        Args:
            model: a built Keras model (Lambda layers are allowed here: the caller runs that code).
            name: the model name; the version is the next free integer.
            given: the metadata kept with it, by the field names of :class:`reuse.store.meta.VersionMeta`
                (description, tags, class_names, metrics, history, lineage, settings, source).

        Raises:
            InvalidName: a bad name. InvalidInput: not a built model, or metadata that is not JSON.
            TypeError: a keyword that is not a metadata field.
        """
        return self._register(model, name, VersionMeta(**given))

    def _register(self, model: Any, name: str, given: VersionMeta) -> ModelInfo:
        check_name(name)
        meta = build_meta(model, given)
        d = self._model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = temp_file(d)
        try:
            try:
                h5file.save_keras_h5(model, tmp)
            except (ValueError, TypeError, NotImplementedError, AttributeError) as exc:
                raise InvalidInput(f"Keras cannot save model {model.name!r} as HDF5: {exc}") from exc
            with h5py.File(tmp, "r+") as f:
                # From the saved config, so Lambdas nested in inner models are found too.
                meta["unsafe_layers"] = keras_io.find_lambda_layers(
                    json.loads(h5file.raw_model_config(f, tmp)))
                h5file.add_checksums(f, tmp)
                h5file.write_meta(f, tmp, name, meta)
            fsync_path(tmp)
            with self._locked():
                sweep_temp_files(d)  # leftovers of killed writers; ours has a live pid
                version = self._allocated_max(name) + 1
                with h5py.File(tmp, "r+") as f:
                    h5file.set_version(f, version)
                final = version_file(d, version)
                put_in_place(tmp, final)
                st = final.stat()
                self._index_put_locked(IndexRow(name, version, st.st_size, st.st_mtime_ns,
                                                {**meta, "name": name, "version": version}))
        finally:
            tmp.unlink(missing_ok=True)
        return info_from_meta(name, version, final, meta, st.st_size)

    def register_file(self, path: str | os.PathLike[str], name: str, *, unsafe: bool = False,
                      description: str = "", tags: dict[str, str] | None = None) -> ModelInfo:
        """Register a ``.keras``, Keras 3 ``.h5`` or tf.keras 2 ``.h5`` file as the next version of ``name``.

        The file is loaded in Keras safe mode, uncompiled; one with Lambda layers is refused unless
        ``unsafe`` is true. A file from another reuse store keeps its class names, metrics, history,
        training settings and (unless given here) description and tags; its lineage names models of
        that other store, so it is kept under ``source`` rather than as this version's lineage.

        Raises:
            NotFound: no such file. UnsafeModel: Lambda layers without ``unsafe``.
            InvalidInput: not a model file Keras can load, or an unsafe HDF5 layout.
        """
        check_name(name)
        tags = check_tags(tags)
        mf = keras_io.inspect_model_file(Path(path))
        model = keras_io.load_model_file(mf, unsafe=unsafe)
        carried = VersionMeta.carried(_store_file_meta(mf.path) if mf.format == "h5-keras3" else {})
        source = mf.source()
        if carried.lineage:
            source["lineage"] = carried.lineage
        return self._register(model, name, replace(
            carried, description=description or carried.description, tags={**(carried.tags or {}), **tags},
            lineage=None, source=source))

    def delete(self, ref: str | ModelRef) -> ModelInfo:
        """Delete one version (``name:version``, never implicitly the latest); its number is not reused."""
        r = ModelRef.parse(ref)
        if r.version is None:
            raise InvalidInput(f"delete needs an explicit version, NAME:VERSION; received {str(r)!r}")
        info = self.info(r)
        with self._locked():
            if not info.path.is_file():
                raise NotFound(f"model {r.name!r} has no version {r.version} (deleted meanwhile)")
            d = self._model_dir(r.name)
            tombstone(d, r.version).touch()
            info.path.unlink()
            fsync_path(d)
            try:
                self.index.apply(delete=[(r.name, r.version)])
            except (IndexUnreadable, sqlite3.Error) as exc:
                log.warning("index not updated after deleting %s (%s); it will be rebuilt", r, exc)
                self.index.remove_files()
        return info

    def export(self, ref: str | ModelRef, out_path: str | os.PathLike[str], *, overwrite: bool = False,
               safe_mode: bool = True) -> Path:
        """Write a version (latest by default) as a native ``.keras`` file, atomically.

        Raises:
            InvalidInput: ``out_path`` does not end in .keras. AlreadyExists: it exists and not ``overwrite``.
        """
        out = Path(out_path)
        if out.suffix != ".keras":
            raise InvalidInput(f"export path must end in .keras; received {str(out)!r}")
        if out.exists() and not overwrite:
            raise AlreadyExists(f"{out} exists; pass overwrite (--force) to replace it")
        keras_io.write_keras_file(self.load(ref, safe_mode=safe_mode), out, overwrite=overwrite)
        return out

    # -- reading -----------------------------------------------------------------------------
    def info(self, ref: str | ModelRef) -> ModelInfo:
        """The metadata of a version (latest by default), from the index."""
        r = self.resolve(ref)
        rows = self._synced([r.name])
        row = rows.get((r.name, r.version))
        if row is None:  # on disk but not indexable: say why, naming the file
            p = self.version_path(r.name, r.version)
            row = self.row_from_file((r.name, r.version), p.stat())
        return info_from_meta(r.name, r.version, self.version_path(r.name, r.version), row.meta, row.size)

    def names(self) -> list[str]:
        return sorted({name for (name, _) in self._synced()})

    def versions(self, name: str) -> list[ModelInfo]:
        """Every version of ``name``, oldest first."""
        rows = self._synced([check_name(name)])
        if not rows:
            raise NotFound(f"no model named {name!r} in store {self.root}")
        return [info_from_meta(n, v, self.version_path(n, v), row.meta, row.size)
                for (n, v), row in sorted(rows.items())]

    def list(self) -> list[ModelInfo]:
        """The latest version of every model, by name. Reads only the index (and a directory listing)."""
        latest: dict[str, IndexRow] = {}
        for (name, _), row in sorted(self._synced().items()):
            latest[name] = row
        return [info_from_meta(n, r.version, self.version_path(n, r.version), r.meta, r.size)
                for n, r in sorted(latest.items())]

    def layers(self, ref: str | ModelRef) -> list[LayerInfo]:
        """The top-level layers of a version: name, class, output shape, parameters, trainable."""
        r = self.resolve(ref)
        row = self._synced([r.name]).get((r.name, r.version))
        if row is None:
            p = self.version_path(r.name, r.version)
            row = self.row_from_file((r.name, r.version), p.stat())
        return layers_from_meta(row.meta)

    def nested_layers(self, ref: str | ModelRef) -> list[dict[str, Any]]:
        """Rows (path, class, output shape, params, trainable) of the layers inside nested models, from
        the index; empty for versions registered before they were recorded."""
        r = self.resolve(ref)
        row = self._synced([r.name]).get((r.name, r.version))
        if row is None:
            row = self.row_from_file((r.name, r.version), self.version_path(r.name, r.version).stat())
        rows = row.meta.get("nested_layers") or []
        return [x for x in rows if isinstance(x, dict) and isinstance(x.get("path"), str)]

    def model_config(self, ref: str | ModelRef) -> dict[str, Any]:
        """The Keras architecture (the ``model_config`` JSON, checksum verified) without reading any weight."""
        p = self.path(ref)
        with h5file.open_read(p) as f:
            return h5file.model_config(f, p)

    def read_layer_weights(self, ref: str | ModelRef, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """Verified weights of just the named layers; the rest of the file is not read.

        Raises:
            NotFound: a layer name the model does not have. StoreCorrupt: a checksum mismatch.
        """
        p = self.path(ref)
        with h5file.open_read(p) as f:
            return {name: h5file.read_layer_weights(f, name, p) for name in layers}

    def read_weights(self, ref: str | ModelRef, paths: list[str]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Verified weights, with their recorded names, of layers given by path (``backbone/conv1`` for a
        layer inside a nested model); only those layers' datasets are read.

        Raises:
            NotFound: a top-level name the model does not have. StoreCorrupt: a checksum mismatch.
        """
        p = self.path(ref)
        with h5file.open_read(p) as f:
            return {name: h5file.read_path_weights(f, name, p) for name in paths}

    def load(self, ref: str | ModelRef, *, safe_mode: bool = True) -> Any:
        """The Keras model of a version (latest by default), every weight checksum-verified, not compiled.

        Raises:
            NotFound: no such model or version. UnsafeModel: Lambda layers in safe mode.
            StoreCorrupt: the file is damaged (the message names it).
        """
        return keras_io.load_verified(self.path(ref), safe_mode=safe_mode)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every file's checksums and the index against the files; see :mod:`reuse.store.check`."""

        return check_store(self, repair=repair)


def _agrees(disk: dict[Key, os.stat_result], rows: dict[Key, IndexRow]) -> bool:
    if disk.keys() != rows.keys():
        return False
    return all((rows[k].size, rows[k].mtime_ns) == (st.st_size, st.st_mtime_ns) for k, st in disk.items())


def _ranges(versions: list[int]) -> str:
    return ", ".join(str(v) for v in versions[:20]) + (" ..." if len(versions) > 20 else "")


def _store_file_meta(path: Path) -> dict[str, Any]:
    """The metadata of a file written by a reuse store, or {} for any other Keras file."""
    try:
        with h5file.open_read(path) as f:
            return h5file.read_meta(f, path)
    except StoreCorrupt:
        return {}
