"""Compiled prediction and evaluation (never ``model.predict`` in a loop)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from reuse.backend.compiled import CompiledForward
from reuse.backend.spec import Forward
from reuse.data import Dataset, check_for_model, output_kind
from reuse.data.checks import model_inputs
from reuse.train.task import Task

BATCH = 4096


class Predictor:
    """A compiled inference function for a model (or a part of one), applied in batches of
    ``batch_size`` rows (:class:`reuse.backend.compiled.CompiledForward`).

    Build once and reuse (the compiled function and its traces are kept); it reads the current
    weights on every call, so it stays valid while the model trains. ``compiled=False`` runs the
    model eagerly instead: cheaper for a single pass over data (no tracing), e.g. caching features.
    Inputs are one array or a tuple of arrays (one per model input, the same rows); outputs likewise.
    """

    def __init__(self, model: Any, *, batch_size: int = BATCH, compiled: bool = True) -> None:
        self.forward = Forward(model)
        self.batch_size = int(batch_size)
        self.compiled = compiled
        self._compiled = CompiledForward(model, max_rows=self.batch_size) if compiled else None

    def _run(self, arrays: list[np.ndarray], several: bool) -> list[np.ndarray]:
        if self._compiled is not None:
            return self._compiled(arrays)
        out = self.forward(tuple(arrays) if several else arrays[0], False)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    def __call__(self, x: np.ndarray | tuple[np.ndarray, ...]) -> Any:
        """Outputs for every row of ``x`` (float32 unless the model says otherwise), in compiled batches."""
        several = isinstance(x, tuple)
        xs = [_typed(a) for a in (x if several else (x,))]
        n, b = len(xs[0]), self.batch_size
        parts = [self._run([a[lo:lo + b] for a in xs], several) for lo in range(0, n, b)]
        if not parts:
            return np.zeros((0,), np.float32)
        joined = [np.concatenate(col) for col in zip(*parts, strict=True)]
        return tuple(joined) if len(joined) > 1 else joined[0]


def _typed(a: np.ndarray) -> np.ndarray:
    # Integer inputs (token ids) keep their type; everything else is float32, as the loops train.
    return np.ascontiguousarray(a) if a.dtype.kind in "iub" else np.ascontiguousarray(a, dtype=np.float32)


def score(task: Task, outputs: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Mean loss and metric of ``outputs`` against ``y`` (data loss, without regularisation terms)."""
    loss_parts, metric_parts = [], []
    for lo in range(0, len(y), BATCH):
        p, t = outputs[lo:lo + BATCH], y[lo:lo + BATCH]
        loss_parts.append(np.asarray(task.loss(t, p), dtype=np.float64))
        metric_parts.append(np.asarray(task.score(t, p), dtype=np.float64))
    return {f"{prefix}loss": float(np.concatenate(loss_parts).mean()),
            f"{prefix}{task.metric}": float(np.concatenate(metric_parts).mean())}


def evaluate(model: Any, data: Dataset, *, batch_size: int = BATCH) -> dict[str, float]:
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
            batch_size: int = BATCH) -> np.ndarray:
    """The model's outputs (class probabilities for a softmax output) for every sample of ``data``
    (a data set, one array, or arrays by input name for a model with several inputs).

    Raises:
        InvalidInput: the features do not fit the model or hold NaN/inf.
    """
    if not isinstance(data, Dataset):
        data = Dataset(x=data, y=None, source="input array" if isinstance(data, np.ndarray) else "input arrays")
    ds = check_for_model(replace(data, y=None), model, require_labels=False)
    return Predictor(model, batch_size=batch_size)(model_inputs(ds))
