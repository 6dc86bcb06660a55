"""Readers for user files: .npz, .npy, .csv and .h5. Every failure names the file and the problem."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from reuse.data.dataset import Dataset, features_from
from reuse.data.rows import H5Rows, npy_rows, npz_member_offset, read_range, row_nbytes
from reuse.errors import InvalidInput, ResourceExhausted
from reuse.h5guard import check_tree, declared_bytes

# Data files are read by slice, so a dataset may be larger than memory; the h5guard cap then only
# guards against absurd declared shapes.
MAX_DATA_BYTES = 1 << 40
# What a loader may read into memory at once (labels, compressed arrays): this share of what the memory
# budget leaves.
IN_MEMORY_SHARE = 0.25
SMALL_BYTES = 64 * 1024**2  # arrays this small are read whatever the budget (labels, a CSV's values)


def _check_array(path: Path, name: str, arr: Any) -> Any:
    if np.dtype(arr.dtype).kind == "O":
        raise InvalidInput(f"{path}: array {name!r} holds Python objects; expected numbers")
    if len(arr.shape) == 0:
        raise InvalidInput(f"{path}: array {name!r} is a scalar; expected one row per sample")
    return arr


def read_npz(path: Path) -> Dataset:
    """Features and (optionally) labels ``y`` from a NumPy .npz archive; pickled objects are refused.

    The features are the array ``x``, or, for a model with several inputs, every array but ``y``, by
    name (``x_left``, ``x_right``): :func:`reuse.data.check_for_model` matches them to the inputs.
    Arrays stored uncompressed (``np.savez``) are read by rows from the file when a pass needs them
    (:class:`reuse.data.rows.FileRows`), so an archive larger than memory works; compressed ones
    (``np.savez_compressed``) are decompressed into memory when loaded, within the memory budget.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            names = list(members)
            if not [n for n in names if n != "y"]:
                raise InvalidInput(f"{path}: no array 'x' (arrays found: {names or 'none'}); expected 'x', "
                                   "or one array per model input named after it")
            arrays: dict[str, Any] = {}
            y = None
            for name, info in members.items():
                arr = _npz_member(path, zf, name, info)
                if name == "y":
                    y = _check_array(path, "y", _in_memory(arr, path, name))
                elif len(arr.shape) > 0 or name == "x":  # other scalars are metadata, not features
                    arrays[name] = _check_array(path, name, arr)
    except InvalidInput:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(f"{path}: cannot be read as .npz: {exc}") from exc
    return Dataset(x=features_from(str(path), arrays), y=y, source=str(path))


def _npz_member(path: Path, zf: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> Any:
    """One member of an archive: a row source when stored uncompressed, else the decompressed array."""
    if info.compress_type == zipfile.ZIP_STORED:
        try:
            return npy_rows(path, npz_member_offset(path, info), source=f"{path}:{name}")
        except InvalidInput as exc:
            reason = str(exc).removeprefix(f"{path}:{name}: ")
            raise InvalidInput(f"{path}: cannot be read as .npz: array {name!r} {reason}") from exc
    _budget_check(path, name, info.file_size)
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _budget_check(path: Path, name: str, nbytes: int) -> None:
    from reuse.memory import fmt_bytes, process_budget

    budget = process_budget()
    if nbytes > SMALL_BYTES and nbytes > budget.available() * IN_MEMORY_SHARE:
        raise ResourceExhausted(
            f"{path}: array {name!r} is stored compressed and needs {fmt_bytes(nbytes)} in memory, more than "
            f"the memory budget allows ({budget.origin}); save it uncompressed (np.savez, or .npy) so it is "
            "read by rows, or raise --memory-mb")


def _in_memory(arr: Any, path: Path, name: str) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    _budget_check(path, name, len(arr) * row_nbytes(arr))
    return read_range(arr, 0, len(arr))


def read_npy(path: Path) -> Dataset:
    """Features only (no labels) from one .npy file, read by rows when a pass needs them."""
    return Dataset(x=_check_array(path, "x", npy_rows(path)), y=None, source=str(path))


def read_h5(path: Path) -> Dataset:
    """Features and (optionally) labels ``y`` from an HDF5 file's top-level datasets (``x``, or one per
    model input, as :func:`read_npz`); the file is checked by :mod:`reuse.h5guard` first (links at any
    depth, datasets outside the file, shape bombs are refused), other groups are ignored. Numeric
    feature datasets are read by slice when a pass needs them (:class:`reuse.data.rows.H5Rows`);
    labels and text datasets are read into memory."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            check_tree(f, path, InvalidInput, max_bytes=MAX_DATA_BYTES)
            arrays: dict[str, Any] = {}
            for name in f:
                ds = f[name]
                if not isinstance(ds, h5py.Dataset):
                    if name in ("x", "y"):
                        raise InvalidInput(f"{path}: {name!r} is a group; expected a dataset")
                    continue
                if ds.ndim == 0 and name not in ("x", "y"):
                    continue  # a scalar is metadata, not a feature array
                if name != "y" and ds.ndim > 0 and ds.dtype.kind in "biuf":
                    arrays[name] = H5Rows(path, name, ds.shape, ds.dtype, source=f"{path}:{name}")
                    continue
                _budget_check(path, name, declared_bytes(ds))
                arr = ds[()]
                if isinstance(arr, bytes) or (isinstance(arr, np.ndarray) and arr.dtype.kind == "S"):
                    arr = np.char.decode(np.asarray(arr), "utf-8")
                arrays[name] = _check_array(path, name, np.asarray(arr))
            if not [n for n in arrays if n != "y"]:
                raise InvalidInput(f"{path}: no dataset 'x' (found: {sorted(f.keys()) or 'none'}); expected "
                                   "'x', or one dataset per model input named after it")
    except (InvalidInput, ResourceExhausted):
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"{path}: cannot be read as HDF5: {exc}") from exc
    y = arrays.pop("y", None)
    return Dataset(x=features_from(str(path), arrays), y=y, source=str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path: Path, *, label: str | int | None = None, has_label: bool = True) -> Dataset:
    """One sample per row; the label column is ``label`` (name or index), default the last.

    A first row with any non-numeric feature cell is taken as a header. The same rule holds for
    training, evaluation and prediction; ``has_label=False`` says the file has no label column (every
    column is a feature).
    """
    if label is not None and not has_label:
        raise InvalidInput(f"{path}: a label column ({label!r}) was named although the file is said to have "
                           "none; give one or the other")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path}: cannot be read as CSV: {exc}") from exc
    if not rows:
        raise InvalidInput(f"{path}: is empty")
    width = len(rows[0])
    header: list[str] | None = None
    # A header has non-numeric cells where data rows have numbers; a string label column alone does not
    # make a header, so judge by the second row when there is one.
    first_numbers = sum(_is_number(c) for c in rows[0])
    if first_numbers < width and (len(rows) == 1 or sum(_is_number(c) for c in rows[1]) > first_numbers):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise InvalidInput(f"{path}: has a header but no data rows")
    for i, r in enumerate(rows):
        if len(r) != width:
            line = i + (2 if header else 1)
            raise InvalidInput(f"{path}: line {line} has {len(r)} columns; expected {width}")
    col = _label_column(path, label, header, width, has_label)
    table = np.array(rows, dtype=object)
    feature_cols = [j for j in range(width) if j != col]
    if not feature_cols:
        raise InvalidInput(f"{path}: has only a label column; expected feature columns too")
    try:
        x = table[:, feature_cols].astype(np.float64).astype(np.float32)
    except ValueError:
        for i, r in enumerate(rows):
            for j in feature_cols:
                if not _is_number(r[j]):
                    line = i + (2 if header else 1)
                    raise InvalidInput(
                        f"{path}: line {line}, column {j + 1}: {r[j]!r} is not a number") from None
        raise
    y = None
    if col is not None:
        raw = [c.strip() for c in table[:, col].tolist()]
        if all(_is_number(c) for c in raw):
            vals = np.array([float(c) for c in raw])
            y = (
                vals.astype(np.int64)
                if np.all(np.isfinite(vals)) and np.all(vals == np.round(vals))
                else vals
            )
        else:
            y = np.array(raw, dtype=str)
    return Dataset(x=x, y=y, source=str(path))


def _label_column(path: Path, label: str | int | None, header: list[str] | None, width: int,
                  has_label: bool) -> int | None:
    if label is None:
        return width - 1 if has_label else None
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if header is None:
            raise InvalidInput(f"{path}: has no header row, so label column {label!r} cannot be found; "
                               "give its 0-based index instead")
        if label not in header:
            raise InvalidInput(f"{path}: no column named {label!r} (columns: {', '.join(header)})")
        return header.index(label)
    idx = int(label)
    if not -width <= idx < width:
        raise InvalidInput(f"{path}: label column {idx} is out of range for {width} columns")
    return idx % width
