"""The model store: named, versioned Keras networks as HDF5 files in one folder.

Layout: ``<root>/<name>/v<version>.h5``. A version is written to a hidden temporary file in the same
folder, flushed and fsynced, then renamed into place under the store lock, so a crash at any moment
leaves either nothing or a complete file.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from reuse.errors import NotFound, StoreCorrupt
from reuse.store import h5file
from reuse.store.names import ModelRef, check_name

VERSION_FILE_RE = re.compile(r"v([1-9][0-9]*)\.h5")
STATE_DIR = ".reuse"


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _shape(shape: Any) -> Any:
    if isinstance(shape, list):
        return [_shape(s) for s in shape]
    return list(shape) if shape is not None else None


@dataclass(frozen=True)
class ModelInfo:
    """What the store knows of one version, without loading its weights."""

    name: str
    version: int
    path: Path
    created: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    input_shape: Any = None
    output_shape: Any = None
    class_names: list[str] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    keras_version: str | None = None
    backend: str | None = None
    tensorflow_version: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        return d


META_KEYS = [k for k in ModelInfo.__dataclass_fields__ if k not in ("name", "version", "path")]


class ModelStore:
    """A folder of named, versioned models. Safe for concurrent writers on one machine."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- paths and locking -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def _lock(self) -> FileLock:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.state_dir / "lock"))

    def _model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _existing_versions(self, name: str) -> list[int]:
        d = self._model_dir(name)
        if not d.is_dir():
            return []
        found = (VERSION_FILE_RE.fullmatch(p.name) for p in d.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        """Turn ``name`` into ``name:latest``; raise NotFound if the model or version is missing."""
        r = ModelRef.parse(ref)
        versions = self._existing_versions(r.name)
        if not versions:
            raise NotFound(f"no model named {r.name!r} in store {self.root}")
        if r.version is None:
            return ModelRef(r.name, versions[-1])
        if r.version not in versions:
            raise NotFound(f"model {r.name!r} has no version {r.version} (versions: {versions})")
        return r

    def path(self, ref: str | ModelRef) -> Path:
        r = self.resolve(ref)
        return self._model_dir(r.name) / f"v{r.version}.h5"

    # -- writing -----------------------------------------------------------------------------
    def register(
        self,
        model: Any,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        class_names: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
        history: dict[str, list[float]] | None = None,
        lineage: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> ModelInfo:
        """Write ``model`` as the next version of ``name`` and return its info."""
        import keras

        d = self._model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{uuid.uuid4().hex}.h5"
        meta = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "description": description,
            "tags": dict(tags or {}),
            "input_shape": _shape(model.input_shape),
            "output_shape": _shape(model.output_shape),
            "class_names": list(class_names) if class_names is not None else None,
            "metrics": dict(metrics or {}),
            "history": {k: [float(x) for x in v] for k, v in (history or {}).items()},
            "lineage": dict(lineage or {}),
            "settings": dict(settings or {}),
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "tensorflow_version": _pkg_version("tensorflow"),
        }
        try:
            h5file.save_keras_h5(model, tmp)
            import h5py

            with h5py.File(tmp, "r+") as f:
                h5file.add_checksums(f)
                h5file.write_meta(f, {**meta, "name": name})
            h5file.fsync_file(tmp)
            with self._lock():
                version = (self._existing_versions(name) or [0])[-1] + 1
                with h5py.File(tmp, "r+") as f:
                    f[h5file.META_GROUP].attrs["version"] = str(version)
                h5file.fsync_file(tmp)
                final = d / f"v{version}.h5"
                os.replace(tmp, final)
                h5file.fsync_dir(d)
        finally:
            tmp.unlink(missing_ok=True)
        return ModelInfo(name=name, version=version, path=final, **meta)

    # -- reading -----------------------------------------------------------------------------
    def info(self, ref: str | ModelRef) -> ModelInfo:
        r = self.resolve(ref)
        p = self.path(r)
        with h5file.open_read(p) as f:
            meta = h5file.read_meta(f, p)
        return ModelInfo(name=r.name, version=r.version, path=p, **{k: meta.get(k) for k in META_KEYS
                                                                        if k in meta})

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and self._existing_versions(p.name))

    def versions(self, name: str) -> list[ModelInfo]:
        vs = self._existing_versions(name)
        if not vs:
            raise NotFound(f"no model named {name!r} in store {self.root}")
        return [self.info(ModelRef(name, v)) for v in vs]

    def list(self) -> list[ModelInfo]:
        """The latest version of every model."""
        return [self.info(n) for n in self.names()]

    def model_config(self, ref: str | ModelRef) -> dict[str, Any]:
        """The Keras architecture (the ``model_config`` JSON) without reading any weight."""
        p = self.path(ref)
        with h5file.open_read(p) as f:
            return h5file.model_config(f, p)

    def read_layer_weights(self, ref: str | ModelRef, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """Verified weights of just the named layers; the rest of the file is not read."""
        p = self.path(ref)
        with h5file.open_read(p) as f:
            return {name: h5file.read_layer_weights(f, name, p) for name in layers}

    def load(self, ref: str | ModelRef, *, safe_mode: bool = True) -> Any:
        """The Keras model of a version (latest by default), checksums verified, not compiled."""
        import keras

        p = self.path(ref)
        with h5file.open_read(p) as f:
            h5file.read_meta(f, p)
            h5file.verify_all(f, p)
        try:
            return keras.models.load_model(str(p), compile=False, safe_mode=safe_mode)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreCorrupt(f"{p}: Keras cannot load it: {exc}") from exc
