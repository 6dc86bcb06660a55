"""Frozen-prefix features shared between training runs on the same data.

:func:`reuse.train.train` computes the output of a network's frozen, deterministic leading layers once
per run. Several runs that start from the same frozen layers (the seeds of one candidate, or the frozen
and fine-tuned variants of one reuse depth in the advisor) can share that output through a
:class:`FeatureCache`. An entry is found only for the same data objects and prefix layers with the same
names *and* the same weight values, so a run whose frozen layers hold other weights never reads another
run's features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Key = tuple[Any, ...]


def weights_digest(layers: Sequence[Any]) -> str:
    """A digest of the names, shapes and values of every variable of ``layers``."""
    from keras import ops

    h = hashlib.blake2b(digest_size=16)
    for layer in layers:
        h.update(layer.name.encode())
        for v in layer.variables:
            arr = np.ascontiguousarray(ops.convert_to_numpy(v.value))
            h.update(str((v.path, arr.shape, arr.dtype.str)).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


class FeatureCache:
    """Outputs of frozen prefixes for (training data, validation data) pairs, kept in memory.

    The data objects are held while cached, so their identities stay unique. ``hits`` and ``misses``
    count lookups.
    """

    def __init__(self) -> None:
        self._entries: dict[Key, tuple[np.ndarray, np.ndarray | None]] = {}
        self._held: dict[int, Any] = {}
        self.hits = 0
        self.misses = 0

    def _key(self, prefix: Sequence[Any], data: Any, val: Any, split: tuple[Any, ...]) -> Key:
        return (id(data), id(val), split, tuple(x.name for x in prefix), weights_digest(prefix))

    def features(self, prefix: Sequence[Any], data: Any, val: Any, split: tuple[Any, ...],
                 compute: Callable[[], tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
        """The cached (x, x_val) features of ``prefix`` on ``data``/``val``, computed on first use.

        Args:
            prefix: the frozen layers whose output is cached.
            data, val: the data objects given to ``train`` (``val`` may be ``None``).
            split: whatever else decides the rows (a validation split fraction and its seed).
            compute: returns the features when they are not cached yet.
        """
        key = self._key(prefix, data, val, split)
        got = self._entries.get(key)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        got = compute()
        self._entries[key] = got
        for obj in (data, val):
            if obj is not None:
                self._held[id(obj)] = obj
        return got

    def clear(self) -> None:
        self._entries.clear()
        self._held.clear()

    def __len__(self) -> int:
        return len(self._entries)
