"""The rules for reading an HDF5 file we did not write (a user's model or data file, an upload, a store
file that may have been tampered with): every link anywhere in the file must be a hard link, and every
dataset must live inside the file and declare a sane size before a byte of it is read.

One copy of these rules, used by the store (:mod:`reuse.store.h5file`), the data readers
(:mod:`reuse.data.readers`) and uploads (:mod:`reuse.store.uploads`); each passes the error type its callers
expect.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from reuse.errors import ReuseError

# Refuse datasets that declare more than this ("shape bombs"), or that declare far more bytes than they
# store once past a floor (a compressed or never-written dataset that would expand on read).
MAX_DATASET_BYTES = 8 * 1024**3
BOMB_FLOOR_BYTES = 64 * 1024**2
MAX_EXPANSION = 1000

Where = str | os.PathLike[str]


def declared_bytes(ds: h5py.Dataset) -> int:
    """The bytes a dataset would take in memory once read."""
    return int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize if ds.shape else ds.dtype.itemsize


def check_dataset(ds: h5py.Dataset, where: Where, error: type[ReuseError],
                  max_bytes: int = MAX_DATASET_BYTES) -> None:
    """Refuse a dataset stored outside the file or declaring an absurd size, before reading it.

    Args:
        ds: the dataset. where: how messages name the file. error: the exception type to raise.
        max_bytes: the largest declared size allowed (data files read by slice allow more).
    """
    if ds.is_virtual or ds.external:
        raise error(f"{where}: dataset {ds.name} points outside the file; refused")
    nbytes = declared_bytes(ds)
    if nbytes > max_bytes:
        raise error(f"{where}: dataset {ds.name} declares {nbytes} bytes (limit {max_bytes}); refused")
    if nbytes > BOMB_FLOOR_BYTES and nbytes > MAX_EXPANSION * max(ds.id.get_storage_size(), 1):
        raise error(f"{where}: dataset {ds.name} declares {nbytes} bytes but stores far fewer; refused")


def check_tree(group: h5py.Group, where: Where, error: type[ReuseError],
               max_bytes: int = MAX_DATASET_BYTES) -> list[h5py.Dataset]:
    """Refuse soft and external links at any depth below ``group``; return its datasets, each checked.

    Raises:
        error: naming the first link (``'x' is a link``, its path relative to ``group``) or bad dataset.
    """
    links: list[tuple[str, Any]] = []
    # Collect first: an exception raised inside h5py's visitor callback surfaces as a SystemError.
    group.visititems_links(lambda name, link: links.append((name, link)))
    for name, link in links:
        if not isinstance(link, h5py.HardLink):
            prefix = group.name.strip("/")
            full = f"{prefix}/{name}" if prefix else name
            raise error(f"{where}: {full!r} is a link ({type(link).__name__}); links are refused")
    found: list[h5py.Dataset] = []
    for name, _ in links:
        obj = group.get(name)
        if isinstance(obj, h5py.Dataset):
            check_dataset(obj, where, error, max_bytes)
            found.append(obj)
    return found
