"""Where the store meets Keras: describing a model, loading a store file with its weights verified, and
reading model files that users hand us (``.keras``, Keras 3 ``.h5``, tf.keras 2 ``.h5``).

Only the public Keras 3 API is used, so this runs on any Keras backend.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reuse.atomic import atomic_path
from reuse.errors import InvalidInput, NotFound, StoreCorrupt, UnsafeModel
from reuse.h5guard import check_tree
from reuse.store import h5file, keras_graph
from reuse.trust import check_config

# Errors Keras raises for a file or config it cannot turn into a model.
KERAS_LOAD_ERRORS = (ValueError, TypeError, KeyError, OSError, AttributeError, NotImplementedError,
                     IndexError)
MAX_CONFIG_BYTES = h5file.MAX_TEXT_BYTES
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _shape(shape: Any) -> Any:
    if shape is None:
        return None
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [_shape(s) for s in shape]
    if isinstance(shape, dict):
        return {k: _shape(v) for k, v in shape.items()}
    return [None if d is None else int(d) for d in shape]


def _layer_output_shape(layer: Any) -> Any:
    try:
        out = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None  # a layer never called symbolically (subclassed models) has no recorded output
    if isinstance(out, (list, tuple)):
        return [_shape(o.shape) for o in out]
    return _shape(out.shape)


def describe_model(model: Any) -> dict[str, Any]:
    """Shapes, parameter counts and the layer table of a Keras model, as JSON-ready values.

    Raises:
        InvalidInput: ``model`` is not a built Keras model.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise InvalidInput(f"expected a keras.Model, received {type(model).__name__}")
    try:
        input_shape, output_shape = _shape(model.input_shape), _shape(model.output_shape)
    except (AttributeError, ValueError) as exc:
        raise InvalidInput(f"model {model.name!r} is not built (call it on data or give it an "
                           f"Input): {exc}") from exc
    layers = [
        {
            "name": layer.name,
            "class_name": type(layer).__name__,
            "output_shape": _layer_output_shape(layer),
            "params": int(sum(int(np.prod(w.shape)) for w in layer.weights)),
            "trainable": bool(layer.trainable),
        }
        for layer in model.layers
    ]
    return {
        "input_shape": input_shape,
        "output_shape": output_shape,
        "layers": layers,
        "nested_layers": _nested_rows(model, ""),
        "params": int(sum(int(np.prod(w.shape)) for w in model.weights)),
    }


def _nested_rows(model: Any, prefix: str) -> list[dict[str, Any]]:
    """Rows for the layers inside nested models, named by path (``backbone/conv1``)."""
    import keras

    rows: list[dict[str, Any]] = []
    for layer in model.layers:
        if not isinstance(layer, keras.Model):
            continue
        outer = f"{prefix}{layer.name}/"
        for inner in layer.layers:
            if isinstance(inner, keras.layers.InputLayer):
                continue
            rows.append({"path": outer + inner.name, "class_name": type(inner).__name__,
                         "output_shape": _layer_output_shape(inner),
                         "params": int(sum(int(np.prod(w.shape)) for w in inner.weights)),
                         "trainable": bool(inner.trainable)})
        rows.extend(_nested_rows(layer, outer))
    return rows


def find_lambda_layers(config: Any) -> list[str]:
    """Names of the layers in a Keras model config that carry Python code (``Lambda`` layers, lambdas)."""
    found: list[str] = []

    def walk(node: Any, owner: str) -> None:
        if isinstance(node, dict):
            cls, cfg = node.get("class_name"), node.get("config")
            here = (
                cfg["name"] if cls and isinstance(cfg, dict) and isinstance(cfg.get("name"), str) else owner
            )
            if cls in ("Lambda", "__lambda__"):
                found.append(here)
            for value in node.values():
                walk(value, here)
        elif isinstance(node, list):
            for value in node:
                walk(value, owner)

    walk(config, "?")
    return list(dict.fromkeys(found))


def refuse_unsafe(lambdas: list[str], what: str) -> None:
    if lambdas:
        raise UnsafeModel(
            f"{what} contains Lambda layer(s) {', '.join(repr(n) for n in lambdas)} whose Python code would "
            "run on load; refused in safe mode (pass --unsafe / unsafe=True only if you trust its source)"
        )


# -- loading a store file -------------------------------------------------------------------------
def _expected_weights(f: h5py.File, path: Path) -> dict[str, list[h5py.Dataset]]:
    h5file.iter_weight_datasets(f, path)  # refuses links and absurd datasets anywhere in the group
    return {name: h5file.layer_weight_datasets(f, name, path) for name in h5file.layer_names(f)}


def _keras_with_our_layers() -> Any:
    """Keras, with our registered layers (e.g. Maxout heads) known to the deserialiser."""
    import keras

    import reuse.layers  # noqa: F401  (registration is the side effect we need)

    return keras


def load_verified(path: Path, *, safe_mode: bool) -> Any:
    """Load a store file with Keras and check every weight Keras set against the file's checksums.

    Keras reads the weights from disk once; we hash the values it put into the model, so the check
    covers exactly what the caller gets. Raises StoreCorrupt naming the file on any mismatch, UnsafeModel
    for Lambda layers in safe mode, UntrustedClass for a class no trusted module defines.
    """
    keras = _keras_with_our_layers()

    with h5file.open_read(path) as f:
        h5file.read_meta(f, path)
        keras3 = h5file.keras_config_text(f, path)
        config = h5file.model_config(f, path)
        lambdas = find_lambda_layers(config)
        if safe_mode:
            refuse_unsafe(lambdas, str(path))
        check_config(config, str(path))
        expected = {
            layer: [(ds.name, h5file.as_text(ds.attrs.get("sha256", "")), ds.shape, ds.dtype) for ds in dss]
            for layer, dss in _expected_weights(f, path).items()
        }
        top = f[h5file.WEIGHTS_GROUP].get(h5file.TOP_LEVEL_WEIGHTS)
        if isinstance(top, h5py.Group):
            for ds in check_tree(top, path, StoreCorrupt):
                h5file.verified_array(ds, path)
    try:
        model = _keras_load(path, keras3, safe_mode=safe_mode)
    except KERAS_LOAD_ERRORS as exc:
        raise StoreCorrupt(f"{path}: Keras cannot load it: {exc}") from exc
    for layer in model.layers:
        weights = layer.trainable_weights + layer.non_trainable_weights
        saved = expected.pop(layer.name, [])
        if len(saved) != len(weights):
            raise StoreCorrupt(f"{path}: layer {layer.name!r} has {len(weights)} weights, the file "
                               f"{len(saved)}")
        for var, (ds_name, sha, shape, dtype) in zip(weights, saved, strict=True):
            arr = keras.ops.convert_to_numpy(var)
            if arr.shape != shape or arr.dtype != dtype or h5file.array_sha256(arr) != sha:
                raise StoreCorrupt(f"{path}: checksum mismatch in weight {ds_name}; the file is damaged")
    leftover = [name for name, dss in expected.items() if dss]
    if leftover:
        raise StoreCorrupt(f"{path}: weights for layers the model does not have: {leftover}")
    return model


def _keras_load(path: Path, keras3: str | None, *, safe_mode: bool) -> Any:
    """The model of an HDF5 model file, uncompiled. Keras' legacy loader rebuilds it, unless it has
    operation nodes or layers Keras keeps in private modules: then it is rebuilt from the Keras 3 config a
    reuse store kept with it (:func:`reuse.store.keras_graph.rebuild`)."""
    keras = _keras_with_our_layers()

    config = h5file.parse_model_config(keras3, path) if keras3 is not None else None
    with h5file.quiet_legacy_h5_warning():
        if config is None or not keras_graph.needs_keras3(config):
            return keras.models.load_model(str(path), compile=False, safe_mode=safe_mode)
        return keras_graph.rebuild(path, config, safe_mode=safe_mode)


# -- files users hand us --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFile:
    """What we found in a user's model file before letting Keras load it."""

    path: Path
    format: str  # "keras", "h5-keras3" or "h5-tf-keras2"
    keras_version: str | None
    lambda_layers: tuple[str, ...]
    sha256: str
    config: Any = field(default=None, compare=False, repr=False)  # the architecture Keras will read
    keras3: str | None = field(default=None, compare=False, repr=False)  # a reuse store file's Keras 3 config

    def source(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "keras_version": self.keras_version,
                "sha256": self.sha256}


def _json(data: str | bytes, path: Path, what: str) -> Any:
    try:
        return json.loads(data)
    except RecursionError as exc:  # json recurses once per nesting level
        raise InvalidInput(f"{path}: {what} is nested too deeply to be a model") from exc


def _inspect_keras_zip(path: Path) -> tuple[Any, str | None]:
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise InvalidInput(f"{path}: config.json is {info.file_size} bytes; refused")
            config = _json(z.read(info), path, "config.json")
            meta = (
                _json(z.read("metadata.json"), path, "metadata.json")
                if "metadata.json" in z.namelist()
                else {}
            )
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidInput(f"{path}: not a Keras .keras archive: {exc}") from exc
    return config, meta.get("keras_version") if isinstance(meta, dict) else None


def _inspect_h5(path: Path) -> tuple[Any, str | None, str | None]:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidInput(f"{path}: not a readable HDF5 file: {exc}") from exc
    with f:
        try:
            check_tree(f, path, StoreCorrupt)
            text = h5file.raw_model_config(f, path)
            keras3 = h5file.keras_config_text(f, path)  # a reuse store's file: the config that names modules
        except StoreCorrupt as exc:
            raise InvalidInput(str(exc)) from exc
        if not isinstance(f.get(h5file.WEIGHTS_GROUP), h5py.Group):
            raise InvalidInput(f"{path}: no '{h5file.WEIGHTS_GROUP}' group; not a whole-model Keras .h5 file")
        version = f.attrs.get("keras_version")
    try:
        return (
            _json(keras3 or text, path, "model_config"),
            h5file.as_text(version) if version is not None else None,
            keras3,
        )
    except ValueError as exc:
        raise InvalidInput(f"{path}: model_config is not JSON: {exc}") from exc


def inspect_model_file(path: Path) -> ModelFile:
    """Identify a user's model file and find Lambda layers, without running any of its code.

    Raises:
        NotFound: no such file.
        InvalidInput: an unknown extension, contents that do not match it, or an unsafe HDF5 layout.
    """
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    suffix = path.suffix.lower()
    with path.open("rb") as fh:
        head = fh.read(8)
    if suffix == ".keras":
        if not head.startswith(b"PK"):
            raise InvalidInput(f"{path}: named .keras but is not a zip archive")
        config, version = _inspect_keras_zip(path)
        keras3 = None
        fmt = "keras"
    elif suffix in (".h5", ".hdf5"):
        if head != HDF5_SIGNATURE:
            raise InvalidInput(f"{path}: named {suffix} but is not an HDF5 file")
        config, version, keras3 = _inspect_h5(path)
        fmt = "h5-tf-keras2" if version and version.split(".")[0] in ("1", "2") else "h5-keras3"
    else:
        raise InvalidInput(f"{path}: unsupported model file type {suffix or '(none)'!r}; "
                           "expected .keras, .h5 or .hdf5")
    return ModelFile(path.resolve(), fmt, version, tuple(find_lambda_layers(config)),
                     h5file.file_sha256(path), config, keras3)


def load_model_file(mf: ModelFile, *, unsafe: bool) -> Any:
    """Load an inspected file with Keras (safe mode unless ``unsafe``), uncompiled, after checking that
    every class it names is Keras' own, ours or a trusted module's (:func:`reuse.trust.check_config`)."""
    keras = _keras_with_our_layers()

    if not unsafe:
        refuse_unsafe(list(mf.lambda_layers), str(mf.path))
    if mf.config is not None:
        check_config(mf.config, str(mf.path))
    try:
        if mf.format == "keras":
            return keras.models.load_model(str(mf.path), compile=False, safe_mode=not unsafe)
        return _keras_load(mf.path, mf.keras3, safe_mode=not unsafe)
    except KERAS_LOAD_ERRORS as exc:
        hint = "" if mf.format == "keras" or mf.keras3 is not None else (
            " (if the model has operation nodes, such as x + y or ops.* calls, save it as .keras: Keras' "
            ".h5 format cannot rebuild them)")
        raise InvalidInput(f"{mf.path}: Keras cannot load it as a model{hint}: {exc}") from exc


# -- writing .keras files -------------------------------------------------------------------------
def write_keras_file(model: Any, out: Path, *, overwrite: bool) -> None:
    """Save ``model`` as ``out`` (a .keras path) atomically: a temp file beside it, fsync, then rename.

    Raises:
        AlreadyExists: ``out`` exists (or appears meanwhile) and not ``overwrite``.
    """
    import keras

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".keras", overwrite=overwrite) as tmp:
        keras.saving.save_model(model, str(tmp))
