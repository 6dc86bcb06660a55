"""A compiled forward pass over numpy batches of any row count, for evaluation, prediction and serving.

The active backend compiles (:func:`reuse.backend.active`): TensorFlow traces once per input signature
with the batch dimension left open; JAX compiles once per batch shape, so batches are padded up to a
power-of-two :func:`bucket` and a new batch size never costs a new trace beyond its bucket.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reuse.backend import active
from reuse.backend.spec import Forward, bucket


class CompiledForward:
    """``model(x, training=False)`` compiled once, for row-aligned numpy arrays (one per input).

    It reads the model's current weights on every call, so it stays valid while the model trains.
    ``max_rows`` caps the padded size for callers that never pass more rows than that.

    Attributes:
        polymorphic: True when one compiled function serves every batch size (no padding needed).
        traces: how many times the backend traced the function (for tests and stats).
    """

    def __init__(self, model: Any, *, max_rows: int | None = None, forward: Forward | None = None) -> None:
        self.model = model
        self.max_rows = max_rows
        self.traces = 0
        self._fn, self.polymorphic = active().compile_forward(forward or Forward(model), self._count_trace)

    def _count_trace(self) -> None:
        self.traces += 1

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run the model on row-aligned ``arrays``; return numpy outputs with the same row count."""
        rows = arrays[0].shape[0]
        if not self.polymorphic:
            padded = bucket(rows, self.max_rows)
            if padded != rows:
                arrays = [np.concatenate([a,
                                          np.zeros((padded - rows, *a.shape[1:]), a.dtype)]) for a in arrays]
        return [np.asarray(o)[:rows] for o in self._fn(list(arrays))]
