"""The layout of one stored model version: a Keras legacy-HDF5 file plus our ``reuse`` group.

Keras writes and reads the model itself (``model_config`` attribute, ``model_weights/<layer>/...``
datasets grouped per layer), so ``keras.models.load_model(path, compile=False)`` opens a store file
directly. We add, in the same file (see docs/store-format.md):

- a ``sha256`` attribute on every weight dataset, verified on every read;
- a group ``reuse`` with ``format_version``, ``name``, ``version`` and ``model_config_sha256``
  attributes and a ``meta`` dataset (JSON text, with its own ``sha256`` attribute). Metadata lives in a
  dataset, not in attributes, because HDF5 caps an object's attributes at 64 KiB and a long training
  history or a big layer table would not fit;
- a ``keras_config`` dataset (with a ``sha256`` attribute): the model's Keras 3 config, which names the
  module of every layer and operation. Keras' legacy ``model_config`` drops those, so an operation node
  (``x + y`` in a functional graph, recorded as ``Add``) cannot be told from the layer of the same name,
  and a class Keras keeps in a private module (ConvNeXt's ``LayerScale``) cannot be found.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reuse.errors import NotFound, StoreCorrupt
from reuse.h5guard import check_dataset, check_tree

META_GROUP = "reuse"
META_DATASET = "meta"
KERAS_CONFIG_DATASET = "keras_config"
WEIGHTS_GROUP = "model_weights"
TOP_LEVEL_WEIGHTS = "top_level_model_weights"
FORMAT_VERSION = 1
MAX_TEXT_BYTES = 64 * 1024**2


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a whole file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_sha256(arr: np.ndarray) -> str:
    """The checksum of an array's values in C order (shape and dtype are checked separately)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


@contextmanager
def quiet_legacy_h5_warning() -> Iterator[None]:
    """Keras logs a 'legacy format' warning on every .h5 save; the format is our choice, not an accident."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def save_keras_h5(model: Any, path: Path) -> None:
    """Let Keras write its legacy HDF5 layout to ``path`` (which must end in .h5), without optimizer."""
    import keras

    with quiet_legacy_h5_warning():
        keras.saving.save_model(model, str(path), overwrite=True, include_optimizer=False)


def as_text(value: Any) -> str:
    """An HDF5 string attribute or scalar (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(values: Any) -> list[str]:
    return [as_text(v) for v in values]


def iter_weight_datasets(f: h5py.File, path: Path) -> list[h5py.Dataset]:
    """Every weight dataset of a store file, links refused and sizes checked."""
    g = f.get(WEIGHTS_GROUP)
    if not isinstance(g, h5py.Group):
        raise StoreCorrupt(f"{path}: no '{WEIGHTS_GROUP}' group")
    return check_tree(g, path, StoreCorrupt)


# -- checksums and metadata -----------------------------------------------------------------------
def add_checksums(f: h5py.File, path: Path) -> None:
    for ds in iter_weight_datasets(f, path):
        ds.attrs["sha256"] = array_sha256(ds[()])


def raw_model_config(f: h5py.File, path: Path) -> str:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise StoreCorrupt(f"{path}: no model_config attribute; not a Keras HDF5 model file")
    text = as_text(raw)
    if len(text) > MAX_TEXT_BYTES:
        raise StoreCorrupt(f"{path}: model_config is {len(text)} bytes; refused")
    return text


def write_meta(f: h5py.File, path: Path, name: str, meta: dict[str, Any]) -> None:
    """Write our group: identity attributes, the model config's checksum and the metadata JSON."""
    g = f.require_group(META_GROUP)
    g.attrs["format_version"] = FORMAT_VERSION
    g.attrs["name"] = name
    g.attrs["model_config_sha256"] = sha256_bytes(raw_model_config(f, path).encode())
    text = json.dumps(meta, sort_keys=True)
    ds = g.create_dataset(META_DATASET, data=text, dtype=h5py.string_dtype("utf-8"))
    ds.attrs["sha256"] = sha256_bytes(text.encode())


def write_keras_config(f: h5py.File, text: str) -> None:
    """Write the model's Keras 3 config (JSON text) into our group, with its checksum."""
    g = f.require_group(META_GROUP)
    ds = g.create_dataset(KERAS_CONFIG_DATASET, data=text, dtype=h5py.string_dtype("utf-8"))
    ds.attrs["sha256"] = sha256_bytes(text.encode())


def keras_config_text(f: h5py.File, path: Path | str) -> str | None:
    """The Keras 3 config text our group holds, checksum verified; None for files without one (written
    before it was recorded, or not by a reuse store)."""
    g = f.get(META_GROUP)
    ds = g.get(KERAS_CONFIG_DATASET) if isinstance(g, h5py.Group) else None
    if ds is None:
        return None
    if not isinstance(ds, h5py.Dataset) or ds.shape != ():
        raise StoreCorrupt(f"{path}: '{META_GROUP}/{KERAS_CONFIG_DATASET}' is not a text dataset")
    text = as_text(ds[()])
    if len(text) > MAX_TEXT_BYTES:
        raise StoreCorrupt(f"{path}: {KERAS_CONFIG_DATASET} is {len(text)} bytes; refused")
    if sha256_bytes(text.encode()) != as_text(ds.attrs.get("sha256", "")):
        raise StoreCorrupt(f"{path}: checksum mismatch in {KERAS_CONFIG_DATASET}; the file is damaged")
    return text


def set_version(f: h5py.File, version: int) -> None:
    f[META_GROUP].attrs["version"] = int(version)


def read_meta(f: h5py.File, path: Path) -> dict[str, Any]:
    """Our metadata, checksum verified, plus ``name`` and ``version`` from the group's attributes."""
    g = f.get(META_GROUP)
    if not isinstance(g, h5py.Group):
        raise StoreCorrupt(f"{path}: no '{META_GROUP}' group; not a reuse store file")
    fmt = g.attrs.get("format_version")
    if fmt is None or int(fmt) > FORMAT_VERSION:
        raise StoreCorrupt(f"{path}: store format version {fmt!r}, this reuse reads up to {FORMAT_VERSION}")
    ds = g.get(META_DATASET)
    if not isinstance(ds, h5py.Dataset) or ds.shape != ():
        raise StoreCorrupt(f"{path}: no '{META_GROUP}/{META_DATASET}' dataset")
    text = as_text(ds[()])
    if sha256_bytes(text.encode()) != as_text(ds.attrs.get("sha256", "")):
        raise StoreCorrupt(f"{path}: checksum mismatch in the metadata; the file is damaged")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise StoreCorrupt(f"{path}: unreadable metadata: {exc}") from exc
    meta["name"] = as_text(g.attrs.get("name", ""))
    version = g.attrs.get("version")
    meta["version"] = int(version) if version is not None else None
    return meta


def read_meta_at(f: h5py.File, path: Path | str, key: tuple[str, int]) -> dict[str, Any]:
    """:func:`read_meta` of the version that lies where ``key`` (name, version) belongs; a file that records
    itself as another version is refused (copied or moved by hand)."""
    meta = read_meta(f, path)  # type: ignore[arg-type]
    if (meta.get("name"), meta.get("version")) != key:
        raise StoreCorrupt(f"{path}: records itself as {meta.get('name')}:{meta.get('version')}, "
                           f"but lies where {key[0]}:{key[1]} belongs")
    return meta


def model_config_text(f: h5py.File, path: Path) -> str:
    """The architecture's JSON text, checksum verified: the Keras 3 config when the file records one (it
    names every class's module), else Keras' legacy ``model_config``."""
    text = raw_model_config(f, path)
    want = f[META_GROUP].attrs.get("model_config_sha256") if META_GROUP in f else None
    if want is None or sha256_bytes(text.encode()) != as_text(want):
        raise StoreCorrupt(f"{path}: checksum mismatch in model_config; the file is damaged")
    keras3 = keras_config_text(f, path)
    return keras3 if keras3 is not None else text


def parse_model_config(text: str, path: Path | str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreCorrupt(f"{path}: model_config is not JSON: {exc}") from exc
    except RecursionError as exc:  # json recurses once per nesting level
        raise StoreCorrupt(f"{path}: model_config is nested too deeply to be a model") from exc


def model_config(f: h5py.File, path: Path) -> dict[str, Any]:
    return parse_model_config(model_config_text(f, path), path)


# -- weights ----------------------------------------------------------------------------------------
def verified_array(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a weight dataset and check it against its stored sha256."""
    check_dataset(ds, path, StoreCorrupt)
    want = ds.attrs.get("sha256")
    if want is None:
        raise StoreCorrupt(f"{path}: weight {ds.name} has no checksum")
    try:
        arr = ds[()]
    except OSError as exc:
        raise StoreCorrupt(f"{path}: weight {ds.name} cannot be read: {exc}") from exc
    if array_sha256(arr) != as_text(want):
        raise StoreCorrupt(f"{path}: checksum mismatch in weight {ds.name}; the file is damaged")
    return arr


def layer_names(f: h5py.File) -> list[str]:
    return _decode(f[WEIGHTS_GROUP].attrs.get("layer_names", []))


def layer_weight_datasets(f: h5py.File, layer: str, path: Path) -> list[h5py.Dataset]:
    """A layer's weight datasets in the order Keras saved them (trainable, then non-trainable)."""
    g = f[WEIGHTS_GROUP].get(layer)
    if not isinstance(g, h5py.Group):
        raise NotFound(f"{path}: no layer named {layer!r} (layers: {', '.join(layer_names(f))})")
    out = []
    for name in _decode(g.attrs.get("weight_names", [])):
        ds = g.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise StoreCorrupt(f"{path}: weight {g.name}/{name} is listed but missing")
        out.append(ds)
    return out


def read_layer_weights(f: h5py.File, layer: str, path: Path) -> list[np.ndarray]:
    """The verified weights of one layer, in the order Keras lists them."""
    return [verified_array(ds, path) for ds in layer_weight_datasets(f, layer, path)]


def _inside(weight_name: str, containers: list[str], leaf: str) -> bool:
    """Whether a nested model's weight (``backbone/conv1/kernel`` or ``conv1/kernel``: Keras records
    the path the variable had when it was made) belongs to its layer ``leaf``."""
    parts = weight_name.split("/")
    for c in containers:
        if len(parts) > 1 and parts[0] == c:
            parts = parts[1:]
    return len(parts) > 1 and parts[0] == leaf


def read_path_weights(f: h5py.File, layer_path: str, path: Path) -> list[tuple[str, np.ndarray]]:
    """The verified weights (recorded name, array) of a layer given by its path (``outer/inner/leaf``).

    A top-level layer's weights are its whole group; a layer inside nested models is stored in the
    outermost model's group, and only its own datasets are read.
    """
    top, *rest = layer_path.split("/")
    datasets = layer_weight_datasets(f, top, path)
    g = f[WEIGHTS_GROUP][top]
    names = _decode(g.attrs.get("weight_names", []))
    if not rest:
        return [(n, verified_array(ds, path)) for n, ds in zip(names, datasets, strict=True)]
    *inner, leaf = rest
    return [(n, verified_array(ds, path)) for n, ds in zip(names, datasets, strict=True)
            if _inside(n, [top, *inner], leaf)]


def verify_all(f: h5py.File, path: Path) -> int:
    """Check every weight dataset's checksum; return the number of bytes read."""
    return sum(verified_array(ds, path).nbytes for ds in iter_weight_datasets(f, path))


def verify_file(local: Path, where: Path | str) -> int:
    """Verify a version file's config and every weight (errors name ``where``); return the bytes read."""
    with open_read(local) as f:
        model_config(f, where)  # type: ignore[arg-type]
        return verify_all(f, where)  # type: ignore[arg-type]


def content_checksum(path: Path) -> str:
    """One hex SHA-256 naming a version's content: its config's, metadata's and weights' stored checksums.

    Reads attributes only (no weights). Files derived from a version (the ONNX cache) are keyed by it,
    so a file replaced on disk under the same name and version gets a new key.
    """
    with open_read(path) as f:
        return content_checksum_of(f, path)


def content_checksum_of(f: h5py.File, path: Path) -> str:
    """:func:`content_checksum` of an open version file."""
    parts = [as_text(f[META_GROUP].attrs.get("model_config_sha256", "")) if META_GROUP in f else ""]
    meta = f.get(f"{META_GROUP}/{META_DATASET}")
    parts.append(as_text(meta.attrs.get("sha256", "")) if isinstance(meta, h5py.Dataset) else "")
    keras3 = f.get(f"{META_GROUP}/{KERAS_CONFIG_DATASET}")
    if isinstance(keras3, h5py.Dataset):
        parts.append(as_text(keras3.attrs.get("sha256", "")))
    parts.extend(f"{ds.name}={as_text(ds.attrs.get('sha256', ''))}" for ds in iter_weight_datasets(f, path))
    return sha256_bytes("\n".join(parts).encode())


# -- files ------------------------------------------------------------------------------------------
def open_read(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: no such file") from exc
    except OSError as exc:
        raise StoreCorrupt(f"{path}: cannot be opened as HDF5: {exc}") from exc
