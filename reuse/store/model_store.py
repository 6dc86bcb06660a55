"""The model store: named, versioned Keras networks, one HDF5 file per version (docs/store-format.md).

One interface, two backends. :class:`ModelStore` holds everything that does not depend on where the
version files live: validating and describing a model before it is written, resolving ``name`` to its
latest version, turning metadata into records, reading the architecture and chosen layers' weights, and
loading whole models, every read checksum-verified. A backend supplies the few operations below the
seam (the abstract methods): list the versions, read their metadata without opening them, publish a
finished temp file as the next version, tombstone one, and open a version for partial or whole reads.

- :class:`reuse.store.folder.FolderStore`: a local folder (the default); file lock, SQLite index.
- :class:`reuse.store.s3_store.S3Store`: ``s3://BUCKET/PREFIX``; conditional writes, sidecar metadata,
  range reads, a local read cache.

``ModelStore(location)`` gives the backend the location names (each backend registers its kind when
``reuse.store`` is imported), so every caller (commands, the server, jobs, the advisor's worker
processes) opens either kind the same way.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reuse.config import store_location
from reuse.errors import AlreadyExists, InvalidInput, NotFound, StoreCorrupt
from reuse.names import ModelRef, check_name
from reuse.store import h5file, keras_graph, keras_io
from reuse.store.index import IndexRow, Key
from reuse.store.meta import VersionMeta, build_meta, check_tags
from reuse.store.records import CheckReport, LayerInfo, ModelInfo, info_from_meta, layers_from_meta
from reuse.trust import unsafe_code_allowed

Where = Path | str  # a version's location: a file path, or an object URL


class ModelStore(ABC):
    """Named, versioned models; safe for concurrent writers (see each backend for how far).

    Args:
        root: a folder path, or ``s3://BUCKET/PREFIX``; any other ``SCHEME://`` is refused.
        lock_timeout: (folders) seconds to wait for the store lock before raising ResourceExhausted.
    """

    root: Where
    # Whether resolving a name and checking it is current costs no more than a local file-system call
    # (a folder), so a server may do it on its event loop; an object store makes network calls.
    cheap_lookups: bool = False

    _backends: dict[str, type[ModelStore]] = {}

    def __init_subclass__(cls, *, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ModelStore._backends[kind] = cls  # "folder", or a URL scheme

    def __new__(cls, root: str | os.PathLike[str], **kwargs: Any) -> ModelStore:
        if cls is ModelStore:
            where = store_location(root)
            cls = ModelStore._backends["folder" if isinstance(where, Path) else where.partition(":")[0]]
        return super().__new__(cls)

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (str(self.root),), {}

    # -- below the seam: what a backend provides -------------------------------------------------
    @property
    @abstractmethod
    def state_dir(self) -> Path:
        """The local folder of this machine's state for the store: job records, uploads, datasets."""

    @abstractmethod
    def _versions(self, names: list[str] | None = None) -> list[Key]:
        """The visible versions (of ``names`` if given); a listing, no version opened."""

    @abstractmethod
    def _synced(self, names: list[str] | None = None) -> dict[Key, IndexRow]:
        """Metadata rows of the visible versions, reconciled with the listing (derived data repaired)."""

    @abstractmethod
    def _row(self, key: Key) -> IndexRow:
        """One version's row read from the version itself (raises the reason it cannot be read)."""

    @abstractmethod
    def _where(self, key: Key) -> Where:
        """Where a version lies (for records and messages)."""

    @abstractmethod
    def _staging(self, name: str) -> Path:
        """A local folder for the temp file of a new version of ``name`` (created)."""

    @abstractmethod
    def _publish(self, name: str, tmp: Path, meta: dict[str, Any]) -> IndexRow:
        """Make the complete file ``tmp`` the next free version of ``name``, atomically; return its row."""

    @abstractmethod
    def _remove(self, key: Key) -> None:
        """Tombstone a version (its number is never handed out again), then remove it."""

    @abstractmethod
    def _open(self, key: Key) -> AbstractContextManager[h5py.File]:
        """The version opened for reading parts of it (architecture, chosen layers)."""

    @abstractmethod
    def _whole(self, key: Key) -> AbstractContextManager[Path]:
        """The whole version as a local file, for Keras to load."""

    @abstractmethod
    def rebuild_index(self) -> int:
        """Rebuild the derived metadata from the versions; return the number indexed."""

    @abstractmethod
    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every version's checksums and the derived metadata; with ``repair``, rebuild it."""

    def model_stamp(self, name: str) -> int | None:
        """A value that changes whenever versions of ``name`` appear or go, when the backend has a cheap
        one (a folder's mtime); None means ask :meth:`resolve` every time."""
        return None

    # -- naming and resolving --------------------------------------------------------------------
    def version_path(self, name: str, version: int) -> Where:
        return self._where((check_name(name), version))

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        """Turn ``name`` into ``name:latest``; raise NotFound if the model or version is missing."""
        r = ModelRef.parse(ref)
        versions = sorted(v for (_, v) in self._versions([r.name]))
        if not versions:
            raise NotFound(f"no model named {r.name!r} in store {self.root}")
        if r.version is None:
            return ModelRef(r.name, versions[-1])
        if r.version not in versions:
            raise NotFound(f"model {r.name!r} has no version {r.version} (versions: {_ranges(versions)})")
        return r

    def path(self, ref: str | ModelRef) -> Where:
        r = self.resolve(ref)
        return self._where((r.name, r.version))

    # -- writing -----------------------------------------------------------------------------------
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
        from reuse.store.layout import temp_file

        check_name(name)
        model, model_class = keras_graph.as_graph_model(model)
        meta = build_meta(model, given)
        if model_class is not None:
            meta["model_class"] = model_class
        keras3 = keras_graph.keras_config_text(model)
        tmp = temp_file(self._staging(name))
        try:
            try:
                h5file.save_keras_h5(model, tmp)
            except (ValueError, TypeError, NotImplementedError, AttributeError) as exc:
                raise InvalidInput(f"Keras cannot save model {model.name!r} as HDF5: {exc}") from exc
            with h5py.File(tmp, "r+") as f:
                h5file.write_keras_config(f, keras3)
                # From the saved config, so Lambdas nested in inner models are found too.
                meta["unsafe_layers"] = keras_io.find_lambda_layers(json.loads(keras3))
                h5file.add_checksums(f, tmp)
                h5file.write_meta(f, tmp, name, meta)
            row = self._publish(name, tmp, meta)
        finally:
            tmp.unlink(missing_ok=True)
        return info_from_meta(name, row.version, self._where(row.key), meta, row.size)

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
        keras_graph.check_graph(mf.config, str(mf.path))
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
        self._remove((r.name, r.version))
        return info

    def export(self, ref: str | ModelRef, out_path: str | os.PathLike[str], *, overwrite: bool = False,
               safe_mode: bool | None = None) -> Path:
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

    # -- reading metadata --------------------------------------------------------------------------
    def _meta_row(self, r: ModelRef) -> IndexRow:
        key = (r.name, r.version or 0)
        row = self._synced([r.name]).get(key)
        return row if row is not None else self._row(key)  # visible but not indexable: say why

    def _info(self, row: IndexRow) -> ModelInfo:
        return info_from_meta(row.name, row.version, self._where(row.key), row.meta, row.size)

    def info(self, ref: str | ModelRef) -> ModelInfo:
        """The metadata of a version (latest by default), without opening it."""
        return self._info(self._meta_row(self.resolve(ref)))

    def names(self) -> list[str]:
        return sorted({name for (name, _) in self._synced()})

    def versions(self, name: str) -> list[ModelInfo]:
        """Every version of ``name``, oldest first."""
        rows = self._synced([check_name(name)])
        if not rows:
            raise NotFound(f"no model named {name!r} in store {self.root}")
        return [self._info(row) for _, row in sorted(rows.items())]

    def list(self) -> list[ModelInfo]:
        """The latest version of every model, by name. Reads only metadata, never a version file."""
        latest: dict[str, IndexRow] = {}
        for (name, _), row in sorted(self._synced().items()):
            latest[name] = row
        return [self._info(r) for _, r in sorted(latest.items())]

    def layers(self, ref: str | ModelRef) -> list[LayerInfo]:
        """The top-level layers of a version: name, class, output shape, parameters, trainable."""
        return layers_from_meta(self._meta_row(self.resolve(ref)).meta)

    def nested_layers(self, ref: str | ModelRef) -> list[dict[str, Any]]:
        """Rows (path, class, output shape, params, trainable) of the layers inside nested models, from
        the metadata; empty for versions registered before they were recorded."""
        rows = self._meta_row(self.resolve(ref)).meta.get("nested_layers") or []
        return [x for x in rows if isinstance(x, dict) and isinstance(x.get("path"), str)]

    # -- reading parts and wholes ------------------------------------------------------------------
    def _opened(self, ref: str | ModelRef) -> tuple[AbstractContextManager[h5py.File], Where]:
        r = self.resolve(ref)
        key = (r.name, r.version or 0)
        return self._open(key), self._where(key)

    def model_config(self, ref: str | ModelRef) -> dict[str, Any]:
        """The Keras architecture (the ``model_config`` JSON, checksum verified) without reading any
        weight."""
        opened, where = self._opened(ref)
        with opened as f:
            return h5file.model_config(f, where)

    def read_layer_weights(self, ref: str | ModelRef, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """Verified weights of just the named layers; the rest of the version is not read.

        Raises:
            NotFound: a layer name the model does not have. StoreCorrupt: a checksum mismatch.
        """
        opened, where = self._opened(ref)
        with opened as f:
            return {name: h5file.read_layer_weights(f, name, where) for name in layers}

    def read_weights(self, ref: str | ModelRef, paths: list[str]) -> dict[str, list[tuple[str, np.ndarray]]]:
        """Verified weights, with their recorded names, of layers given by path (``backbone/conv1`` for a
        layer inside a nested model); only those layers' datasets are read.

        Raises:
            NotFound: a top-level name the model does not have. StoreCorrupt: a checksum mismatch.
        """
        opened, where = self._opened(ref)
        with opened as f:
            return {name: h5file.read_path_weights(f, name, where) for name in paths}

    def content_checksum(self, ref: str | ModelRef) -> str:
        """One hex SHA-256 naming a version's content, for keying files derived from it (the ONNX cache);
        reads checksums only, no weights."""
        opened, where = self._opened(ref)
        with opened as f:
            return h5file.content_checksum_of(f, where)  # type: ignore[arg-type]

    def load(self, ref: str | ModelRef, *, safe_mode: bool | None = None) -> Any:
        """The Keras model of a version (latest by default), every weight checksum-verified, not compiled.

        ``safe_mode`` None: safe unless this process allows Lambda code (``reuse.trust.allow_unsafe_code``,
        the commands' ``--unsafe``).

        Raises:
            NotFound: no such model or version. UnsafeModel: Lambda layers in safe mode.
            UntrustedClass: a class no trusted module defines. StoreCorrupt: the version is damaged.
        """
        r = self.resolve(ref)
        safe = not unsafe_code_allowed() if safe_mode is None else safe_mode
        with self._whole((r.name, r.version or 0)) as path:
            return keras_io.load_verified(path, safe_mode=safe)


def _ranges(versions: list[int]) -> str:
    return ", ".join(str(v) for v in versions[:20]) + (" ..." if len(versions) > 20 else "")


def _store_file_meta(path: Path) -> dict[str, Any]:
    """The metadata of a file written by a reuse store, or {} for any other Keras file."""
    try:
        with h5file.open_read(path) as f:
            return h5file.read_meta(f, path)
    except StoreCorrupt:
        return {}
