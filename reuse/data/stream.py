"""Reading a pass's batches ahead of the computation: the next batch is read (decoded, for images) on a
background thread while the current one is computed, so decoding and the forward pass overlap."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from reuse.data.rows import read_range, read_rows

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
