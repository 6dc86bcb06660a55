"""A Triton Inference Server model repository for one version, on ONNX Runtime:

    DIR/NAME/config.pbtxt        inputs, outputs, dtypes, max_batch_size, dynamic batching
    DIR/NAME/<version>/model.onnx

The version folder is the store's version number, and the tensor names are those ``reuse serve``
answers with, so the same KServe v2 clients work against Triton (or KServe's Triton runtime). The
ONNX file is checked in ONNX Runtime against Keras before it is put in place; config.pbtxt is written
last, each file atomically.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse.atomic import atomic_path
from reuse.errors import AlreadyExists, InvalidInput
from reuse.export import formats, kserve, onnx_file
from reuse.graph.signature import ModelSignature, TensorSpec
from reuse.store import ModelStore
from reuse.text import echo

TRITON_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
}


@dataclass(frozen=True)
class TritonExport:
    """A written repository entry, and the largest difference from Keras seen when checking it."""

    ref: str
    name: str
    repo: Path
    config: Path
    model: Path
    max_difference: float
    # a KServe InferenceService serving the repository, when a storage URI was given
    kserve_manifest: str = ""


def _tensor(spec: TensorSpec) -> str:
    try:
        data_type = TRITON_TYPES[np.dtype(spec.dtype).name]
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"tensor {spec.name!r} has dtype {spec.dtype}, which Triton has no "
                           "type for") from exc
    dims = ", ".join("-1" if d is None else str(d) for d in spec.row_shape)
    return f'  {{\n    name: "{spec.name}"\n    data_type: {data_type}\n    dims: [ {dims} ]\n  }}'


def config_text(sig: ModelSignature, *, max_batch_size: int, max_delay_us: int) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for the ONNX Runtime backend.

    ``dims`` leave out the batch dimension, as Triton expects when ``max_batch_size`` > 0.
    """
    if max_batch_size < 1:
        raise InvalidInput(f"max_batch_size {max_batch_size}: expected at least 1")
    if max_delay_us < 0:
        raise InvalidInput(f"max batch delay {max_delay_us} µs: expected 0 or more")
    inputs = ",\n".join(_tensor(s) for s in sig.inputs)
    outputs = ",\n".join(_tensor(s) for s in sig.outputs)
    return (f'name: "{sig.name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_delay_us}\n}}\n"
            "version_policy: { latest: { num_versions: 1 } }\n"
            "instance_group [ { kind: KIND_CPU, count: 1 } ]\n")


def write_repo(model: Any, sig: ModelSignature, repo: Path, *, max_batch_size: int = 64,
               max_delay_us: int = 1000, overwrite: bool = False,
               storage_uri: str | None = None) -> TritonExport:
    """Write ``repo/NAME/config.pbtxt`` and ``repo/NAME/<version>/model.onnx`` for one version; with
    ``storage_uri`` (where the repository will be copied), also the KServe manifest that serves it.

    Raises:
        InvalidInput: ``repo`` is a file, a bad batching setting or storage URI. AlreadyExists: that version's
        model.onnx is there and not ``overwrite``. FailedPrecondition: no onnx extra, or the export does
        not run in ONNX Runtime or does not match Keras.
    """
    if repo.exists() and not repo.is_dir():
        raise InvalidInput(f"a Triton model repository is a folder; {echo(str(repo))} is a file")
    text = config_text(sig, max_batch_size=max_batch_size, max_delay_us=max_delay_us)  # validate first
    manifest = kserve.inference_service(sig.name, storage_uri) if storage_uri is not None else ""
    folder = repo / sig.name
    model_path = folder / str(sig.version) / "model.onnx"
    if model_path.exists() and not overwrite:
        raise AlreadyExists(f"{model_path} exists; pass overwrite (--force) to replace it")
    onnx_file.require_packages("A Triton repository (ONNX)")
    made = next((p for p in (folder, model_path.parent) if not p.exists()), None)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(model_path, suffix=".onnx", overwrite=overwrite) as tmp:
            worst = onnx_file.checked_onnx(model, sig, tmp)
    except BaseException:
        if made is not None:  # an empty model or version folder makes Triton refuse the model
            shutil.rmtree(made, ignore_errors=True)
        raise
    config = folder / "config.pbtxt"
    with atomic_path(config) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return TritonExport(sig.ref, sig.name, repo, config, model_path, worst, manifest)


def export_version(store: ModelStore, ref: str, repo: Path, *,
                   unsafe: bool = False, **options: Any) -> TritonExport:
    """:func:`write_repo` for a stored version (loaded in safe mode unless ``unsafe``); ``options`` are
    write_repo's keywords."""
    model, sig = formats.load_source(store, ref, unsafe)
    return write_repo(model, sig, repo, **options)
