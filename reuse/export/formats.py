"""A stored version as a file another engine loads: ``keras`` (a native .keras file, the default),
``onnx`` (checked in ONNX Runtime against Keras) or ``savedmodel`` (a TensorFlow SavedModel folder,
checked by loading it back). Every export is written beside its target and moved into place only once
complete and checked, so a reader never sees half of one."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.atomic import atomic_path, fsync_path, temp_beside
from reuse.errors import AlreadyExists, FailedPrecondition, InvalidInput
from reuse.export import onnx_file
from reuse.graph.signature import ModelSignature, signature_of
from reuse.store import ModelStore
from reuse.text import echo

FORMATS = ("keras", "onnx", "savedmodel")


@dataclass(frozen=True)
class ExportResult:
    """What was written: the version, the format, the path, and the largest difference from Keras seen
    when the file was checked (None where the format is Keras' own)."""

    ref: str
    format: str
    path: Path
    max_difference: float | None = None


def format_for(out: Path, given: str | None) -> str:
    """The format asked for, else the one the path's suffix names (.onnx), else ``keras``.

    Raises:
        InvalidInput: an unknown format.
    """
    if given is None:
        return "onnx" if out.suffix == ".onnx" else "keras"
    if given not in FORMATS:
        raise InvalidInput(f"export format {echo(given)}: expected one of {', '.join(FORMATS)}")
    return given


def load_source(store: ModelStore, ref: str, unsafe: bool = False) -> tuple[Any, ModelSignature]:
    """The stored version's Keras model (safe mode unless ``unsafe``) and its signature."""
    r = store.resolve(ref)
    model = store.load(r, safe_mode=False if unsafe else None)
    return model, signature_of(model, r.name, r.version or 0)


def export_version(store: ModelStore, ref: str, out: Path, *, format: str | None = None,
                   overwrite: bool = False, unsafe: bool = False) -> ExportResult:
    """Export a stored version to ``out`` as ``format`` (see :func:`format_for`).

    Raises:
        InvalidInput: an unknown format or a path that does not fit it. AlreadyExists: ``out`` exists and
        not ``overwrite``. NotFound: no such version. FailedPrecondition: the onnx extra is missing, or
        the written file does not match Keras.
    """
    fmt = format_for(out, format)
    if fmt == "keras":
        r = store.resolve(ref)
        safe = False if unsafe else None
        return ExportResult(str(r), "keras", store.export(r, out, overwrite=overwrite, safe_mode=safe))
    if fmt == "onnx":
        _check_onnx_path(out, overwrite)
    model, sig = load_source(store, ref, unsafe)
    write = export_onnx if fmt == "onnx" else export_savedmodel
    return write(model, sig, out, overwrite=overwrite)


def _check_onnx_path(out: Path, overwrite: bool) -> None:
    if out.suffix != ".onnx":
        raise InvalidInput(f"an ONNX export path must end in .onnx; received {echo(str(out))}")
    _refuse_existing(out, overwrite)


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise AlreadyExists(f"{out} exists; pass overwrite (--force) to replace it")


def export_onnx(model: Any, sig: ModelSignature, out: Path, *, overwrite: bool = False) -> ExportResult:
    """Write ``out`` (.onnx) and check it against Keras before it is put in place."""
    _check_onnx_path(out, overwrite)
    onnx_file.require_packages("ONNX export")
    with atomic_path(out, suffix=".onnx", overwrite=overwrite) as tmp:
        worst = onnx_file.checked_onnx(model, sig, tmp)
    return ExportResult(sig.ref, "onnx", out, worst)


def export_savedmodel(model: Any, sig: ModelSignature, out: Path, *, overwrite: bool = False) -> ExportResult:
    """Write a SavedModel folder at ``out`` (serving signature ``serve``), checked by loading it back."""
    from reuse.backend import savedmodel

    _refuse_existing(out, overwrite)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"a SavedModel is a folder; {echo(str(out))} is a file")
    tmp = temp_beside(out)
    try:
        xs = onnx_file.probe_inputs(sig)
        want = onnx_file.keras_outputs(model, xs)  # also makes a loaded model "called", which export needs
        worst, problem = onnx_file.difference(savedmodel.write_and_reload(model, tmp, xs), want)
        if problem:
            raise FailedPrecondition(f"the SavedModel export of {sig.ref} does not match Keras: {problem}")
        _put_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(sig.ref, "savedmodel", out, worst)


def _put_folder(tmp: Path, out: Path) -> None:
    """Move a complete folder into place; an old one at ``out`` is renamed away first, then removed."""
    old = temp_beside(out) if out.exists() else None
    if old is not None:
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_path(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
