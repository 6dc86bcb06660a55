"""How much memory a pass over data holds per row: measured once per network from its graph.

:func:`activation_bytes` walks the network's graph in the order it runs and keeps each tensor alive
from the call that makes it to the last call that reads it, as a backend's executor does: the most
bytes alive at once, for one sample, inputs included (a nested model counts what is alive inside it
while it runs), counted twice for the backend's scratch. :func:`training_bytes` adds what the backward pass
keeps: every tensor from the first trained layer on, :data:`TRAIN_FACTOR` times (the values kept, their
gradients, and scratch). Passes divide what the memory budget leaves by these to size their batches
(:meth:`reuse.memory.MemoryBudget.rows_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reuse.train.network import graph_nodes

TRAIN_FACTOR = 3
# A backend holds scratch beside the tensors (convolution buffers): measured at 1.6x the live tensors of
# MobileNetV2 through block 6 (150x150, batch 32, TensorFlow on CPU), so passes count them twice.
SCRATCH_FACTOR = 2
UNKNOWN_DIM = 256  # a dimension the graph leaves open (a sequence length), counted as this


def tensor_bytes(t: Any) -> int:
    """Bytes of one sample of a symbolic tensor (open dimensions count as :data:`UNKNOWN_DIM`)."""
    dims = [UNKNOWN_DIM if d is None else int(d) for d in tuple(t.shape)[1:]]
    try:
        item = np.dtype(str(t.dtype)).itemsize
    except TypeError:
        item = 4
    return int(np.prod(dims, dtype=np.int64)) * item


def _peak(model: Any, seen: dict[int, int]) -> int:
    import keras

    nodes = graph_nodes(model)
    if nodes is None:  # no graph to read: its inputs and outputs, four times over
        return 4 * sum(tensor_bytes(t) for t in [*model.inputs, *model.outputs])
    last_use: dict[int, int] = {}
    for step, (_, ins, _, _) in enumerate(nodes):
        for t in ins:
            last_use[id(t)] = step
    alive = {id(t): tensor_bytes(t) for t in model.inputs}
    peak = sum(alive.values())
    for step, (op, ins, outs, _) in enumerate(nodes):
        inner = 0
        if isinstance(op, keras.Model):
            if id(op) not in seen:
                seen[id(op)] = _peak(op, seen)
            inner = seen[id(op)]
        for t in outs:
            alive[id(t)] = tensor_bytes(t)
        peak = max(peak, sum(alive.values()) + inner)
        for t in ins:
            if last_use.get(id(t)) == step and all(t is not o for o in model.outputs):
                alive.pop(id(t), None)
    return peak


def activation_bytes(model: Any) -> int:
    """Per-row bytes a forward pass of ``model`` holds at most at once (see the module docstring),
    :data:`SCRATCH_FACTOR` times over for the backend's scratch."""
    return max(1, SCRATCH_FACTOR * _peak(model, {}))


def training_bytes(model: Any, train_vars: Sequence[Any]) -> int:
    """Per-row bytes a training step of ``model`` holds: the forward pass's peak, plus every tensor from
    the first call that holds a trained variable on (kept for the backward pass), :data:`TRAIN_FACTOR`
    times."""
    trained = {id(v) for v in train_vars}
    nodes = graph_nodes(model)
    if nodes is None:
        return activation_bytes(model) * (1 + TRAIN_FACTOR)
    behind: set[int] = set()
    kept = 0
    for op, ins, outs, _ in nodes:
        holds = any(id(v) in trained for v in getattr(op, "variables", []))
        if holds or any(id(t) in behind for t in ins):
            behind.update(id(t) for t in outs)
            kept += sum(tensor_bytes(t) for t in outs)
    return activation_bytes(model) + TRAIN_FACTOR * kept


def input_bytes(model: Any) -> int:
    """Per-row bytes of ``model``'s inputs."""
    return sum(tensor_bytes(t) for t in model.inputs)


def output_bytes(model: Any) -> int:
    """Per-row bytes of ``model``'s outputs (what a pass keeps of each row)."""
    return sum(tensor_bytes(t) for t in model.outputs)
