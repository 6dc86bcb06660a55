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


class ChunkLoopRunner(Protocol):
    """A training run driven from the host a chunk of rows at a time (data not in memory whole)."""

    def train(self, xc: Any, yc: np.ndarray) -> tuple[float, float]:
        """The optimizer steps over one chunk's rows in order; sums of loss x rows and of the metric."""
        ...

    def evaluate(self, xb: Any, yb: np.ndarray) -> tuple[float, float, float]:
        """Inference-mode sums of loss and metric over a batch, and the regularisation terms."""
        ...

    def snapshot(self, variables: list[Any]) -> list[np.ndarray]:
        """The current values of ``variables`` (some of the run's), as arrays."""
        ...

    def restore(self, variables: list[Any], values: list[np.ndarray]) -> None:
        """Set ``variables`` back to ``values`` (a :meth:`snapshot`)."""
        ...

    def finish(self) -> None:
        """Leave the trained values in the Keras variables."""
        ...


@runtime_checkable
class Backend(Protocol):
    """What a backend module provides.

    Attributes:
        NAME: the ``keras.backend.backend()`` name it serves.
        EAGER_ONE_SHOT: whether a single pass over data (caching features, final metrics) is cheaper
            run eagerly than compiled.
        ONNX_CONVERTER: the package Keras' ONNX export converts through on this backend.
    """

    NAME: str
    EAGER_ONE_SHOT: bool
    ONNX_CONVERTER: str

    def compile_forward(self, forward: Forward, on_trace: Callable[[], None] | None = None
                        ) -> tuple[ForwardFn, bool]:
        """``forward(x, training=False)`` compiled; it reads the variables' current values on each call.

        ``on_trace`` is called each time the backend traces. Returns ``(fn, polymorphic)``: when
        ``polymorphic`` is False every new batch size is a new trace, so callers pad to
        :func:`reuse.backend.spec.bucket` sizes.
        """
        ...

    def limit_threads(self, threads: int) -> None:
        """Use at most ``threads`` compute threads in this process where the backend allows it (call
        before any op runs): worker processes then share the machine's cores instead of fighting."""
        ...

    def Runner(self, spec: LoopSpec) -> LoopRunner:  # noqa: N802 (a class in the backend module)
        """The compiled training loop of ``spec``."""
        ...

    def ChunkRunner(self, spec: LoopSpec) -> ChunkLoopRunner:  # noqa: N802 (a class in the backend module)
        """The training loop of ``spec`` driven from the host a chunk of rows at a time."""
        ...

    def permutation(self, n: int, seed: int, epoch: int) -> np.ndarray:
        """The order of ``n`` rows in ``epoch`` of a run seeded ``seed`` (the compiled loop's own)."""
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
        raise FailedPrecondition(f"Keras backend {name!r} is not supported; supported: "
                                 f"{', '.join(SUPPORTED)} (set KERAS_BACKEND)")
    return module  # type: ignore[return-value]  # a module satisfies the Protocol structurally


def active() -> Backend:
    """The backend module for the active Keras backend (``KERAS_BACKEND``); see :func:`for_name`."""
    import keras

    return for_name(keras.backend.backend())
