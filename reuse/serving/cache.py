"""Loaded models kept in memory under a byte cap, least recently used evicted first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar

from reuse.errors import ResourceExhausted


class Sized(Protocol):
    nbytes: int

    def close(self) -> None: ...


T = TypeVar("T", bound=Sized)


class ModelCache(Generic[T]):
    """A thread-safe LRU of loaded entries keyed by ``name:version``, capped by their ``nbytes``.

    Concurrent requests for an entry that is not loaded yet wait on one load instead of loading it
    several times. Evicted entries are closed; callers holding one may finish with it.
    """

    def __init__(self, loader: Callable[[str], T], limit_bytes: int) -> None:
        self._loader = loader
        self.limit_bytes = int(limit_bytes)
        self._entries: OrderedDict[str, T] = OrderedDict()
        self._loading: dict[str, Future[T]] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def peek(self, key: str) -> T | None:
        """The entry if loaded (marking it recently used), else None; never loads."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get(self, key: str) -> T:
        """The entry for ``key``, loading it on a miss.

        Raises:
            ResourceExhausted: the entry alone is larger than the cap.
            Whatever the loader raises (e.g. NotFound, StoreCorrupt).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            pending = self._loading.get(key)
            owner = pending is None
            if owner:
                pending = self._loading[key] = Future()
        if not owner:
            return pending.result()
        try:
            entry = self._loader(key)
            if entry.nbytes > self.limit_bytes:
                entry.close()
                raise ResourceExhausted(f"model {key} needs {entry.nbytes / 2**20:.1f} MiB; the model cache "
                                        f"holds at most {self.limit_bytes / 2**20:.1f} MiB (--cache-mb)")
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        evicted: list[T] = []
        with self._lock:
            del self._loading[key]
            self._entries[key] = entry
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.limit_bytes:
                _, old = self._entries.popitem(last=False)
                total -= old.nbytes
                evicted.append(old)
        for old in evicted:
            old.close()
        pending.set_result(entry)
        return entry

    def discard(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            entry.close()

    def clear(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for e in entries:
            e.close()
