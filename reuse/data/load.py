"""The one entry point that turns a data spec (a file, ``builtin:NAME``, ``images:DIR``) into a checked
:class:`reuse.data.dataset.Dataset`."""

from __future__ import annotations

import os
from pathlib import Path

from reuse.data import builtin, images, readers
from reuse.data.dataset import Dataset, relabel
from reuse.data.formats import data_file_format
from reuse.errors import InvalidInput


def load_data(spec: str | os.PathLike[str], *, label: str | int | None = None, relabel_labels: bool = False,
              class_names: tuple[str, ...] | list[str] | None = None, require_labels: bool = True,
              has_label: bool = True) -> Dataset:
    """Load a data set from a file or a built-in spec.

    Args:
        spec: ``x.npz`` (arrays ``x``, ``y``), ``x.npy`` (features only), ``x.csv`` (one sample per row),
            ``x.h5`` (datasets ``x``, ``y``), ``images:DIR?size=H,W``, or ``builtin:digits`` /
            ``builtin:blobs`` with ``?key=value&...`` filters. Large arrays are not read here: .npy,
            uncompressed .npz members, .h5 datasets and image folders become row sources that passes
            read a batch at a time (:mod:`reuse.data.rows`).
        label: CSV only: the label column, by header name or 0-based index (negative counts from the
            end); default the last column (for training, evaluation and prediction alike).
        relabel_labels: map the labels to 0..k-1 (sorted) and record the originals as class names.
        class_names: map labels through these names (a model's recorded classes) instead.
        require_labels: raise if the set has no labels (False for prediction).
        has_label: CSV only: ``False`` says the file has no label column (every column is a feature);
            not with ``label``.

    Raises:
        InvalidInput: the file is missing, empty, unreadable or malformed; the message names it.
    """
    text = os.fspath(spec)
    if text.startswith(builtin.PREFIX):
        ds = builtin.load(text)
    elif text.startswith(images.PREFIX):
        ds = images.load(text)
    else:
        path = Path(text)
        fmt = data_file_format(path)
        if fmt == "npz":
            ds = readers.read_npz(path)
        elif fmt == "npy":
            ds = readers.read_npy(path)
        elif fmt == "csv":
            ds = readers.read_csv(path, label=label, has_label=has_label)
        else:
            ds = readers.read_h5(path)
    if len(ds) == 0:
        raise InvalidInput(f"{ds.source}: contains no samples")
    if ds.y is None:
        if require_labels:
            raise InvalidInput(f"{ds.source}: has no labels (expected an array 'y' or a label column)")
        return ds
    if len(ds.y) != len(ds):
        raise InvalidInput(f"{ds.source}: {len(ds)} samples but {len(ds.y)} labels")
    if class_names is not None and (relabel_labels or ds.class_names is not None or ds.y.dtype.kind in "USO"):
        return relabel(ds, class_names)
    if relabel_labels or ds.y.dtype.kind in "USO":
        return relabel(ds)
    return ds
