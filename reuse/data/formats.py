"""The data file formats, in one table: each format's name, the file endings that select it and the
first bytes a file of it starts with (checked on uploads). Readers (:mod:`reuse.data.readers`), uploads
and the remote client all look formats up here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reuse.errors import InvalidInput
from reuse.text import ECHO_LIMIT, cut

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class DataFormat:
    name: str
    suffixes: tuple[str, ...]
    magic: bytes | None  # None: plain text, nothing to check


FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    DataFormat("npz", (".npz",), ZIP_MAGIC),
    DataFormat("npy", (".npy",), NPY_MAGIC),
    DataFormat("csv", (".csv",), None),
    DataFormat("h5", (".h5", ".hdf5"), HDF5_MAGIC),
)}


def data_file_format(path: Path) -> str:
    """The format of an existing data file, by its ending.

    Raises:
        InvalidInput: no such file, not a file, or an ending no format has.
    """
    if not path.exists():
        raise InvalidInput(f"{cut(str(path), ECHO_LIMIT)}: no such data file")
    if not path.is_file():
        raise InvalidInput(f"{cut(str(path), ECHO_LIMIT)}: not a file")
    fmt = format_of(path)
    if fmt is None:
        raise InvalidInput(f"{path}: unknown data format {path.suffix.lower() or '(no suffix)'!r}; "
                           "expected .npz, .npy, .csv, .h5, images:DIR?size=H,W or builtin:digits / "
                           "builtin:blobs")
    return fmt


def format_of(path: str | os.PathLike[str]) -> str | None:
    """The format a data file's ending selects (case-insensitive), or None."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return next((f.name for f in FORMATS.values() if suffix in f.suffixes), None)
