"""JAX compile of the serving forward pass: ``jax.jit`` over ``stateless_call``, one trace per bucket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def compile_forward(model: Any, on_trace: Callable[[], None]) -> tuple[Callable, bool]:
    """Returns (fn, polymorphic=False): callers pad batches to power-of-two buckets."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(tv, ntv, xs):
        on_trace()
        out, _ = model.stateless_call(tv, ntv, xs if len(xs) > 1 else xs[0], training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def run(arrays: list[np.ndarray]) -> list[Any]:
        return forward(trainable, frozen, list(arrays))

    return run, False
