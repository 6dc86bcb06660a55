"""The one seam between the core and a Keras backend: what training, evaluation and serving need from it.

A backend is a module (:mod:`reuse.backend.tf`, :mod:`reuse.backend.jax`) that satisfies
:class:`Backend`: it compiles a forward pass and runs a training loop. Everything TensorFlow- or
JAX-specific lives in those modules (and :mod:`reuse.backend.tf_updates`); :func:`active` is the one
place that picks one, from ``keras.backend.backend()``. Around them, backend-neutral:
:mod:`reuse.backend.spec` (what a backend is handed) and :mod:`reuse.backend.compiled` (a compiled
forward pass over numpy batches, padded to buckets where the backend needs fixed shapes).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reuse.backend.spec import ChunkResult, Forward, LoopSpec
from reuse.errors import FailedPrecondition

SUPPORTED = ("tensorflow", "jax")

# A compiled forward pass: row-aligned numpy arrays (one per input) to outputs (one per output).
ForwardFn = Callable[[list[np.ndarray]], list[Any]]


class LoopRunner(Protocol):
    """One training run of a :class:`LoopSpec`, compiled; its state stays on the backend between calls."""

    def run(self, stop: int) -> ChunkResult:
        """Run from the current epoch up to ``stop`` (exclusive) or until the run stops."""
        ...

    def finish(self) -> int | None:
        """Leave the trained (or best) values in the Keras variables; return the best epoch (0-based)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """What a backend module provides.

    Attributes:
        NAME: the ``keras.backend.backend()`` name it serves.
        EAGER_ONE_SHOT: whether a single pass over data (caching features, final metrics) is cheaper
            run eagerly than compiled.
    """

    NAME: str
    EAGER_ONE_SHOT: bool

    def compile_forward(self, forward: Forward, on_trace: Callable[[], None] | None = None
                        ) -> tuple[ForwardFn, bool]:
        """``forward(x, training=False)`` compiled; it reads the variables' current values on each call.

        ``on_trace`` is called each time the backend traces. Returns ``(fn, polymorphic)``: when
        ``polymorphic`` is False every new batch size is a new trace, so callers pad to
        :func:`reuse.backend.compiled.bucket` sizes.
        """
        ...

    def limit_threads(self, threads: int) -> None:
        """Use at most ``threads`` compute threads in this process where the backend allows it (call
        before any op runs): worker processes then share the machine's cores instead of fighting."""
        ...

    def Runner(self, spec: LoopSpec) -> LoopRunner:  # noqa: N802 (a class in the backend module)
        """The compiled training loop of ``spec``."""
        ...


def for_name(name: str) -> Backend:
    """The backend module for a Keras backend name.

    Raises:
        FailedPrecondition: a Keras backend we have no compiled loop or forward pass for.
    """
    module: ModuleType
    if name == "tensorflow":
        from reuse.backend import tf as module
    elif name == "jax":
        from reuse.backend import jax as module
    else:
        raise FailedPrecondition(f"Keras backend {name!r} is not supported; supported: {', '.join(SUPPORTED)} "
                                 "(set KERAS_BACKEND)")
    return module  # type: ignore[return-value]  # a module satisfies the Protocol structurally


def active() -> Backend:
    """The backend module for the active Keras backend (``KERAS_BACKEND``); see :func:`for_name`."""
    import keras

    return for_name(keras.backend.backend())
