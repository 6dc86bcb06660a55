"""Data on its way to a pass: batches read ahead of the computation (the next batch is read, or decoded,
on a background thread while the current one is computed), and data handed to other processes as row
sources over files instead of copies (:func:`shared`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from reuse.data.dataset import Dataset
from reuse.data.rows import is_lazy, read_range, read_rows

T = TypeVar("T")


def ahead(read: Callable[[Any], T], keys: Iterable[Any], depth: int = 1) -> Iterator[T]:
    """``read(key)`` for each key in order, up to ``depth`` reads running ahead on a thread.

    An exception from a read is raised where that batch is taken; reads not yet taken are abandoned
    (their results dropped) when the consumer stops early.
    """
    keys = iter(keys)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reuse-read") as pool:
        pending: list[Future[T]] = []
        try:
            for key in keys:
                pending.append(pool.submit(read, key))
                if len(pending) > depth:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()


def read_inputs(x: Any, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of one array/source, or of each of a tuple of them (a model's several inputs)."""
    if isinstance(x, tuple):
        return tuple(read_range(a, lo, hi) for a in x)
    return read_range(x, lo, hi)


def take_inputs(x: Any, index: Any) -> Any:
    """The rows ``index`` of one array/source, or of each of a tuple of them."""
    if isinstance(x, tuple):
        return tuple(read_rows(a, index) for a in x)
    return read_rows(x, index)


def shared(ds: Dataset, path: Path) -> Dataset:
    """``ds`` with every feature array a row source over a file, to hand to another process: sources
    already over files (an image folder, an .npy, an .h5, their checked or split views) stay as they are
    (a pickle of them holds paths and row numbers, not data); arrays in memory are written once to
    ``path`` (an uncompressed .npz) and read from it. Labels travel as they are (one value per row).
    """
    from reuse.data.readers import read_npz

    arrays = ds.arrays
    in_memory = {k: np.ascontiguousarray(a) for k, a in arrays.items() if not is_lazy(a)}
    if not in_memory:
        return ds
    np.savez(path, **in_memory)
    stored = read_npz(path).arrays
    x = {k: (stored[k] if k in in_memory else a) for k, a in arrays.items()}
    return replace(ds, x=x if ds.named else x["x"])
