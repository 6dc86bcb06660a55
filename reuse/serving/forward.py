"""A compiled, backend-neutral forward pass for serving.

``CompiledForward`` calls the Keras model in inference mode. The backend-specific compile lives in a
small module per backend: TensorFlow traces once with a batch-polymorphic signature
(:mod:`reuse.serving._tf_forward`); JAX compiles once per power-of-two bucket
(:mod:`reuse.serving._jax_forward`); any other backend runs the model eagerly on bucket-padded batches.
Either way a new batch size never triggers a new trace beyond its bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Fn = Callable[[list[np.ndarray]], list[Any]]


def bucket(rows: int) -> int:
    """The power of two at or above ``rows`` (the padded batch size for shape-specialising backends)."""
    return 1 << max(0, rows - 1).bit_length()


def _eager(model: Any) -> Fn:
    def run(arrays: list[np.ndarray]) -> list[Any]:
        out = model(arrays if len(arrays) > 1 else arrays[0], training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return run


class CompiledForward:
    """``model(x, training=False)`` compiled once, for numpy batches of any row count.

    Attributes:
        polymorphic: True when one compiled function serves every batch size (no padding needed).
        traces: how many times the backend traced the function (for tests and stats).
    """

    def __init__(self, model: Any) -> None:
        import keras

        self.model = model
        self.traces = 0
        backend = keras.backend.backend()
        if backend == "tensorflow":
            from reuse.serving._tf_forward import compile_forward
        elif backend == "jax":
            from reuse.serving._jax_forward import compile_forward
        else:
            compile_forward = None
        if compile_forward is None:
            self._fn, self.polymorphic = _eager(model), False
        else:
            self._fn, self.polymorphic = compile_forward(model, self._count_trace)

    def _count_trace(self) -> None:
        self.traces += 1

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run the model on row-aligned ``arrays``; return numpy outputs with the same row count."""
        rows = arrays[0].shape[0]
        if not self.polymorphic:
            padded = bucket(rows)
            if padded != rows:
                arrays = [np.concatenate([a, np.zeros((padded - rows, *a.shape[1:]), a.dtype)]) for a in arrays]
        outs = self._fn(arrays)
        return [np.asarray(o)[:rows] for o in outs]
