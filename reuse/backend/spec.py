"""What a backend is handed: the network part to run (``Forward``) and a training run (``LoopSpec``).

Backend-neutral: the backends (:mod:`reuse.backend.tf`, :mod:`reuse.backend.jax`) read these; the
training code (:mod:`reuse.train`) fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# History columns, in this order, in the arrays the loops return.
COLUMNS = ("loss", "metric", "val_loss", "val_metric")
EVAL_BATCH = 2048


def as_model_input(x: Any) -> Any:
    """One array as is; several (a tuple, one per model input) as the list Keras models take."""
    return list(x) if isinstance(x, tuple) else x


class Forward:
    """A callable network part: a whole model, or a sub-model sharing its layers (the cached rest).

    ``x`` is one array or a tuple of arrays (one per input of the part).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, x: Any, training: bool) -> Any:
        return self.model(as_model_input(x), training=training)

    @property
    def variables(self) -> list[Any]:
        return list(self.model.variables)

    def losses(self) -> list[Any]:
        """Regularisation and activity losses of the last call (read right after calling)."""
        return list(self.model.losses)


class Objective(Protocol):
    """Per-sample loss and metric of a batch (:class:`reuse.train.task.Task` is one)."""

    def loss(self, y: Any, p: Any) -> Any: ...

    def score(self, y: Any, p: Any) -> Any: ...


@dataclass
class LoopSpec:
    """A training run as the loop sees it: the data, the variables to train, and the rules.

    ``x``/``xv`` are one array or a tuple of arrays (one per input of ``forward``, the same rows); for
    the streamed loop (:mod:`reuse.train.stream_loop`) they may be row sources (:mod:`reuse.data.rows`).
    ``train_vars`` are updated by the optimizer; ``state_vars`` are every other variable the forward
    pass reads or updates (frozen weights, moving statistics, random seed states). ``patience`` ``None``
    disables early stopping; training always stops when the training loss stops being finite.
    """

    forward: Forward
    train_vars: list[Any]
    state_vars: list[Any]
    optimizer: Any
    task: Objective
    x: np.ndarray | tuple[np.ndarray, ...]
    y: np.ndarray
    xv: np.ndarray | tuple[np.ndarray, ...] | None
    yv: np.ndarray | None
    batch_size: int
    epochs: int
    seed: int
    shuffle: bool = True
    patience: int | None = None
    restore_best: bool = True
    data_parallel: bool = False  # shard each batch over every device (JAX)
    chunk_rows: int | None = None  # streamed loop: rows per chunk (a multiple of the batch)

    @property
    def n(self) -> int:
        return rows(self.x)

    @property
    def n_val(self) -> int:
        return rows(self.xv) if self.xv is not None else 0

    @property
    def batch(self) -> int:
        return min(self.batch_size, self.n)

    @property
    def steps(self) -> int:
        """Full batches per epoch; a smaller last batch of ``remainder`` rows follows when non-zero."""
        return self.n // self.batch

    @property
    def remainder(self) -> int:
        return self.n - self.steps * self.batch

    @property
    def steps_per_epoch(self) -> int:
        return self.steps + (1 if self.remainder else 0)

    @property
    def has_val(self) -> bool:
        return self.n_val > 0

    @property
    def keep_best(self) -> bool:
        return self.patience is not None and self.restore_best


@dataclass
class ChunkResult:
    """After a compiled call: the history so far (``epochs`` x 4, NaN where not run), epochs done,
    and whether the run has stopped (early stopping or a non-finite loss)."""

    history: np.ndarray
    epochs_done: int
    stopped: bool


def rows(x: Any) -> int:
    """Rows of one array or of a tuple of arrays (the first one's)."""
    return int((x[0] if isinstance(x, tuple) else x).shape[0])


def map_arrays(fn: Any, x: Any) -> Any:
    """``fn`` applied to one array, or to each array of a tuple (a tuple back)."""
    return tuple(fn(a) for a in x) if isinstance(x, tuple) else fn(x)


def eval_batches(n: int) -> tuple[int, int, int]:
    """(batch, full batches, remainder) for evaluating ``n`` rows inside a compiled loop."""
    b = max(1, min(n, EVAL_BATCH))
    return b, n // b, n - (n // b) * b


def bucket(rows: int, cap: int | None = None) -> int:
    """The padded size of a batch of ``rows``: the power of two at or above it, but at most ``cap`` (or
    ``rows`` itself when that is more)."""
    padded = 1 << max(0, rows - 1).bit_length()
    return padded if cap is None else max(rows, min(cap, padded))
