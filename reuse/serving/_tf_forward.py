"""TensorFlow compile of the serving forward pass: one trace for every batch size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


def compile_forward(model: Any, on_trace: Callable[[], None]) -> tuple[Callable, bool]:
    """Trace the model once with a batch dimension of None and keep the concrete function.

    Calling the concrete function directly skips ``tf.function``'s per-call argument dispatch, which
    costs as much as the forward pass itself for small batches.

    Returns:
        (fn, polymorphic=True): fn maps a list of numpy arrays to a list of numpy arrays.
    """
    signature = [tf.TensorSpec((None, *t.shape[1:]), t.dtype) for t in model.inputs]

    @tf.function(input_signature=signature, autograph=False)
    def forward(*xs):
        on_trace()  # Python side effect: runs only while tracing
        out = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    concrete = forward.get_concrete_function()

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [t.numpy() for t in concrete(*(tf.constant(a) for a in arrays))]

    return run, True
