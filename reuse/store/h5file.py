"""The layout of one stored model version: a Keras legacy-HDF5 file plus our ``reuse`` group.

Keras writes and reads the model itself (``model_config`` attribute, ``model_weights/<layer>/...``
datasets grouped per layer), so ``keras.models.load_model(path, compile=False)`` opens a store file
directly. We add, in the same file:

- a ``sha256`` attribute on every weight dataset, verified on every read;
- a group ``reuse`` whose attributes hold our metadata as JSON strings (see docs/store-format.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reuse.errors import StoreCorrupt

META_GROUP = "reuse"
WEIGHTS_GROUP = "model_weights"
FORMAT_VERSION = 1
# Refuse datasets larger than this when reading files users hand us ("shape bombs").
MAX_DATASET_BYTES = 8 * 1024**3


def array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


@contextmanager
def quiet_legacy_h5_warning():
    """Keras logs a 'legacy format' warning on every .h5 save; the format is our choice, not an accident."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def save_keras_h5(model: Any, path: Path) -> None:
    """Let Keras write its legacy HDF5 layout to ``path`` (which must end in .h5)."""
    import keras

    with quiet_legacy_h5_warning():
        keras.saving.save_model(model, str(path), overwrite=True)


def _check_dataset(ds: h5py.Dataset, path: Path) -> None:
    if ds.is_virtual or ds.external:
        raise StoreCorrupt(f"{path}: dataset {ds.name} points outside the file; refused")
    nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
    if nbytes > MAX_DATASET_BYTES:
        raise StoreCorrupt(f"{path}: dataset {ds.name} declares {nbytes} bytes; refused")


def iter_weight_datasets(group: h5py.Group):
    """Yield (name, dataset) for every dataset below ``group``, refusing soft and external links."""
    out: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            raise StoreCorrupt(f"{group.file.filename}: link {group.name}/{name} refused")
        obj = group.get(name)
        if isinstance(obj, h5py.Dataset):
            out.append((name, obj))

    group.visititems_links(visit)
    return out


def add_checksums(f: h5py.File) -> None:
    for _, ds in iter_weight_datasets(f[WEIGHTS_GROUP]):
        ds.attrs["sha256"] = array_sha256(ds[()])


def write_meta(f: h5py.File, meta: dict[str, Any]) -> None:
    g = f.require_group(META_GROUP)
    g.attrs["format_version"] = FORMAT_VERSION
    for key, value in meta.items():
        g.attrs[key] = json.dumps(value)


def read_meta(f: h5py.File, path: Path) -> dict[str, Any]:
    g = f.get(META_GROUP)
    if not isinstance(g, h5py.Group):
        raise StoreCorrupt(f"{path}: no '{META_GROUP}' group; not a reuse store file")
    try:
        return {k: json.loads(v) for k, v in g.attrs.items() if k != "format_version"}
    except (TypeError, ValueError) as exc:
        raise StoreCorrupt(f"{path}: unreadable metadata: {exc}") from exc


def verified_array(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a weight dataset and check it against its stored sha256."""
    _check_dataset(ds, path)
    arr = ds[()]
    want = ds.attrs.get("sha256")
    if want is None:
        raise StoreCorrupt(f"{path}: weight {ds.name} has no checksum")
    if isinstance(want, bytes):
        want = want.decode()
    if array_sha256(arr) != want:
        raise StoreCorrupt(f"{path}: checksum mismatch in weight {ds.name}; the file is damaged")
    return arr


def _decode(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def layer_weight_names(f: h5py.File, layer: str) -> list[str]:
    g = f[WEIGHTS_GROUP].get(layer)
    if not isinstance(g, h5py.Group):
        return []
    return _decode(g.attrs.get("weight_names", []))


def read_layer_weights(f: h5py.File, layer: str, path: Path) -> list[np.ndarray]:
    """The verified weights of one layer, in the order Keras lists them."""
    g = f[WEIGHTS_GROUP].get(layer)
    if not isinstance(g, h5py.Group):
        raise StoreCorrupt(f"{path}: no weights group for layer {layer!r}")
    return [verified_array(g[name], path) for name in layer_weight_names(f, layer)]


def verify_all(f: h5py.File, path: Path) -> int:
    """Check every weight dataset's checksum; return the number of bytes read."""
    total = 0
    for _, ds in iter_weight_datasets(f[WEIGHTS_GROUP]):
        total += verified_array(ds, path).nbytes
    return total


def model_config(f: h5py.File, path: Path) -> dict[str, Any]:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise StoreCorrupt(f"{path}: no model_config attribute")
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StoreCorrupt(f"{path}: model_config is not JSON: {exc}") from exc


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_read(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StoreCorrupt(f"{path}: cannot be opened as HDF5: {exc}") from exc
