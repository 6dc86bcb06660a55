"""How much memory a pass over data holds per row: measured once per network from its graph.

:func:`activation_bytes` adds up the output of every call in the network's graph (nested models walked)
for one sample, plus its inputs: an upper bound on what a forward pass holds for a row, since a
backend frees a tensor once nothing reads it any more. Passes divide what the memory budget leaves by
it to size their batches (:meth:`reuse.memory.MemoryBudget.rows_for`); training counts a step's
activations :data:`TRAIN_FACTOR` times (the forward values kept for the backward pass, and gradients).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reuse.train.network import graph_nodes

TRAIN_FACTOR = 3
UNKNOWN_DIM = 256  # a dimension the graph leaves open (a sequence length), counted as this


def tensor_bytes(t: Any) -> int:
    """Bytes of one sample of a symbolic tensor (open dimensions count as :data:`UNKNOWN_DIM`)."""
    dims = [UNKNOWN_DIM if d is None else int(d) for d in tuple(t.shape)[1:]]
    try:
        item = np.dtype(str(t.dtype)).itemsize
    except TypeError:
        item = 4
    return int(np.prod(dims, dtype=np.int64)) * item


def activation_bytes(model: Any) -> int:
    """Per-row bytes of every tensor a forward pass of ``model`` makes, its inputs included."""
    import keras

    total = sum(tensor_bytes(t) for t in model.inputs)
    seen: set[int] = set()

    def walk(m: Any) -> int:
        nodes = graph_nodes(m)
        if nodes is None:
            return sum(tensor_bytes(t) for t in m.outputs) * 4  # no graph to read: a rough bound
        out = 0
        for op, _, outs, _ in nodes:
            if isinstance(op, keras.Model) and id(op) not in seen:
                seen.add(id(op))
                out += walk(op)
            else:
                out += sum(tensor_bytes(t) for t in outs)
        return out

    return max(1, total + walk(model))


def input_bytes(model: Any) -> int:
    """Per-row bytes of ``model``'s inputs."""
    return sum(tensor_bytes(t) for t in model.inputs)


def output_bytes(model: Any) -> int:
    """Per-row bytes of ``model``'s outputs (what a pass keeps of each row)."""
    return sum(tensor_bytes(t) for t in model.outputs)
