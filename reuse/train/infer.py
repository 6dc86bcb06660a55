"""Compiled prediction and evaluation (never ``model.predict`` in a loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from reuse.backend.compiled import CompiledForward
from reuse.backend.spec import Forward, rows
from reuse.data import Dataset, check_for_model, output_kind
from reuse.data.checks import model_inputs
from reuse.data.rows import batches
from reuse.data.stream import ahead, read_inputs
from reuse.train.footprint import activation_bytes
from reuse.train.task import Task

BATCH = 4096  # most rows a pass runs at once, whatever the budget allows
# Most estimated activation bytes a pass's batch may hold, whatever the budget allows: past a few dozen
# rows of a conv net, larger batches only cost memory on a CPU (measured in docs/training.md).
MAX_PASS_BYTES = 1024**3


class Predictor:
    """A compiled inference function for a model (or a part of one), applied batch by batch.

    Build once and reuse (the compiled function and its traces are kept); it reads the current
    weights on every call, so it stays valid while the model trains. ``compiled=False`` runs the
    model eagerly instead: cheaper for a single short pass (no tracing). Inputs are one array or row
    source, or a tuple of them (one per model input, the same rows); outputs are arrays in memory.

    Rows per batch: ``batch_size`` when given, else as many as the memory budget allows for the
    model's activations (:func:`reuse.train.footprint.activation_bytes`, measured once here), at most
    :data:`BATCH`. Row sources are read a batch ahead on a thread (decoding overlaps the forward pass).

    Raises:
        ResourceExhausted: (on creation) not even one row's activations fit the memory budget.
    """

    def __init__(self, model: Any, *, batch_size: int | None = None, compiled: bool = True,
                 forward: Forward | None = None) -> None:
        self.forward = forward or Forward(model)
        self.batch_size = int(batch_size) if batch_size else rows_for_pass(model)
        self.compiled = compiled
        self._compiled = (CompiledForward(model, max_rows=self.batch_size, forward=self.forward) if compiled
                          else None)

    def _run(self, arrays: list[np.ndarray], several: bool) -> list[np.ndarray]:
        if self._compiled is not None:
            return self._compiled(arrays)
        out = self.forward(tuple(arrays) if several else arrays[0], False)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    def batches(self, x: Any, before: Callable[[int], None] | None = None
                ) -> Iterator[tuple[int, int, list[np.ndarray]]]:
        """``(lo, hi, outputs)`` for consecutive batches of ``x``'s rows; ``before(i)`` runs before the
        ``i``-th batch is computed (to set random state per batch)."""
        several = isinstance(x, tuple)
        spans = list(batches(rows(x), self.batch_size))

        def load(span: tuple[int, int]) -> list[np.ndarray]:
            got = read_inputs(x, *span)
            return [_typed(a) for a in (got if several else (got,))]

        for i, ((lo, hi), xs) in enumerate(zip(spans, ahead(load, spans), strict=True)):
            if before is not None:
                before(i)
            yield lo, hi, self._run(xs, several)

    def __call__(self, x: Any) -> Any:
        """Outputs for every row of ``x`` (float32 unless the model says otherwise), in batches."""
        parts = [outs for _, _, outs in self.batches(x)]
        if not parts:
            return np.zeros((0,), np.float32)
        joined = [np.concatenate(col) for col in zip(*parts, strict=True)]
        return tuple(joined) if len(joined) > 1 else joined[0]


def _typed(a: np.ndarray) -> np.ndarray:
    # Integer inputs (token ids) keep their type; everything else is float32, as the loops train.
    return np.ascontiguousarray(a) if a.dtype.kind in "iub" else np.ascontiguousarray(a, dtype=np.float32)


def rows_for_pass(model: Any, *, share: float = 0.5) -> int:
    """Rows a pass of ``model`` may run at once under the process's memory budget (at most BATCH).

    Raises:
        ResourceExhausted: not even one row fits; the message gives the budget it would need.
    """
    from reuse.memory import process_budget
    from reuse.train.footprint import input_bytes

    # Inputs are held three times: the batch read ahead (decoded, for images), the batch computed, and
    # the copy the backend makes of it.
    per_row = activation_bytes(model) + 2 * input_bytes(model)
    cap = max(1, min(BATCH, MAX_PASS_BYTES // per_row))
    return process_budget().rows_for(per_row, what=f"a pass of {model.name!r}", share=share, cap=cap)


def score(task: Task, outputs: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Mean loss and metric of ``outputs`` against ``y`` (data loss, without regularisation terms)."""
    loss_parts, metric_parts = [], []
    for lo in range(0, len(y), BATCH):
        p, t = outputs[lo:lo + BATCH], y[lo:lo + BATCH]
        loss_parts.append(np.asarray(task.loss(t, p), dtype=np.float64))
        metric_parts.append(np.asarray(task.score(t, p), dtype=np.float64))
    return {f"{prefix}loss": float(np.concatenate(loss_parts).mean()),
            f"{prefix}{task.metric}": float(np.concatenate(metric_parts).mean())}


def evaluate(model: Any, data: Dataset, *, batch_size: int | None = None) -> dict[str, float]:
    """Loss and metric of ``model`` on ``data``, after checking the data fits the model.

    Returns:
        ``{"loss": ..., "accuracy": ..., "samples": n}`` (``mae`` instead of ``accuracy`` for regression).

    Raises:
        InvalidInput: the data does not fit the model (shape, NaN/inf, labels out of range).
    """
    kind = output_kind(model)
    ds = check_for_model(data, model, kind=kind)
    outputs = Predictor(model, batch_size=batch_size)(model_inputs(ds))
    result = score(Task.for_output(kind), outputs, ds.y)
    result["samples"] = len(ds)
    return result


def predict(model: Any, data: Dataset | np.ndarray | dict[str, np.ndarray], *,
            batch_size: int | None = None) -> np.ndarray:
    """The model's outputs (class probabilities for a softmax output) for every sample of ``data``
    (a data set, one array, or arrays by input name for a model with several inputs).

    Raises:
        InvalidInput: the features do not fit the model or hold NaN/inf.
    """
    if not isinstance(data, Dataset):
        data = Dataset(x=data, y=None,
                       source="input array" if isinstance(data, np.ndarray) else "input arrays")
    ds = check_for_model(replace(data, y=None), model, require_labels=False)
    return Predictor(model, batch_size=batch_size)(model_inputs(ds))
