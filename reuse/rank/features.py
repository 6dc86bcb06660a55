"""The features of every cut of a model from one forward pass, pooled, a batch at a time.

The network of a model's deepest cut is built the way ``reuse build`` builds it
(:func:`reuse.build.build_network`: only the layers up to that cut are read from the store), and its
outputs are the exits of every cut it contains, each pooled to one vector per row: a conv map
``(rows, H, W, C)`` by the mean over its positions (channels last, as Keras lays them out), a sequence
``(rows, T, C)`` by the mean over time. So one pass gives every cut (a cut that is not inside the deepest
one, or whose exit is a layer called more than once, gets a pass of its own).

Memory: the pass reads the data ``rows`` at a time through :func:`batches` (the one place data is read)
and keeps only the pooled features, ``rows x width`` float32 values per cut; the activations inside the
network live for one batch. :func:`memory_needed` says what a model's features and their scoring take,
so a model that would not fit the limit is refused before its pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reuse.data import Dataset
from reuse.data.checks import InputSpec, check_features, input_specs, model_inputs
from reuse.errors import ReuseError
from reuse.rank.cuts import Cut, ModelPlan
from reuse.rank.scores import DISTANCE_BLOCK_BYTES, KNN_MAX_ROWS
from reuse.text import first_line


@dataclass(frozen=True)
class FeaturePass:
    """A network from the model's inputs to the pooled features of ``cuts`` (one output each)."""

    model: Any
    cuts: tuple[Cut, ...]
    widths: tuple[int, ...]
    specs: tuple[InputSpec, ...]


def batches(ds: Dataset, rows: int) -> Iterator[Any]:
    """Row-aligned input batches of ``ds`` (one array, or arrays by name), ``rows`` at a time: the one
    place the feature pass reads data."""
    n = len(ds)
    for lo in range(0, n, rows):
        if ds.named:
            yield {k: a[lo:lo + rows] for k, a in ds.arrays.items()}
        else:
            yield ds.x[lo:lo + rows]


def _pooled(tensor: Any, index: int) -> Any:
    """``tensor`` as one vector per row: as it is when it has one axis beside the batch, else averaged
    over every axis but the last (channels)."""
    import keras

    rank = len(tensor.shape)
    if rank == 2:
        return tensor
    pool = {3: keras.layers.GlobalAveragePooling1D, 4: keras.layers.GlobalAveragePooling2D,
            5: keras.layers.GlobalAveragePooling3D}.get(rank)
    if pool is None:
        raise ValueError(f"its output has {rank - 1} axes besides the rows; only 1 to 4 can be pooled")
    return pool(name=f"rank_pool_{index}")(tensor)


def _exit_tensor(model: Any, arch: Any, lineage: dict[str, Any], cut: Cut) -> Any:
    """The tensor of ``model`` (built from a cut that holds ``cut``) where ``cut`` ends.

    Raises:
        ValueError: the exit is a layer called more than once (its output is not one tensor).
    """
    from reuse.graph.subgraph import plan_subgraph

    names = {x["path"]: x["name"] for x in lineage["layers"]}
    producer = {c.key: c.layer for c in arch.calls}
    (ref,) = plan_subgraph(arch, cut.layers).exits
    path = producer[ref.call]
    if arch.node(path).calls != 1:
        raise ValueError(f"its exit, layer {path}, is called {arch.node(path).calls} times")
    out = model.get_layer(names[path]).output
    return out[ref.index] if isinstance(out, (list, tuple)) else out


def feature_passes(store: Any, plan: ModelPlan) -> tuple[list[FeaturePass], dict[Cut, str]]:
    """The passes that give every scorable cut of ``plan`` (usually one), and why the others fail."""
    import keras

    from reuse.build import build_network
    from reuse.graph.reader import parse_architecture

    arch = parse_architecture(store.model_config(plan.ref))
    todo = sorted(plan.scorable, key=lambda c: (-len(c.layers), c.depth))
    reasons: dict[Cut, str] = {}
    passes: list[FeaturePass] = []
    while todo:
        root, rest = todo[0], todo[1:]
        try:
            # build_network wants a head; a one-unit Dense (left out of the feature network) takes any exit.
            built = build_network(store, plan.ref, root.scope, head="dense:1", match=plan.match,
                                  name="rank_features")
        except ReuseError as exc:
            reasons[root] = f"its layers cannot be built: {first_line(exc)}"
            todo = rest
            continue
        held, tensors, left = [root], [built.model.layers[-1].input], []
        chosen = set(root.layers)
        for c in rest:
            if not set(c.layers) <= chosen:
                left.append(c)
                continue
            try:
                tensors.append(_exit_tensor(built.model, arch, built.lineage, c))
                held.append(c)
            except (ValueError, KeyError):
                left.append(c)  # its own pass
        outputs, kept, widths = [], [], []
        for c, t in zip(held, tensors, strict=True):
            try:
                pooled = _pooled(t, len(outputs))
            except ValueError as exc:
                reasons[c] = str(exc)
                continue
            width = pooled.shape[-1]
            if width is None:
                reasons[c] = "the width of its output is not known"
                continue
            outputs.append(pooled)
            kept.append(c)
            widths.append(int(width))
        todo = left
        if not outputs:
            continue
        order = sorted(range(len(kept)), key=lambda i: kept[i].depth)
        model = keras.Model(built.model.inputs, [outputs[i] for i in order], name="rank_features")
        passes.append(FeaturePass(model, tuple(kept[i] for i in order), tuple(widths[i] for i in order),
                                  tuple(input_specs(model))))
    return passes, reasons


def memory_needed(rows: int, widths: Sequence[int]) -> int:
    """Bytes that the pooled features of ``widths`` over ``rows`` rows take (float32), plus what scoring
    the widest of them takes at once: float64 copies (four of rows x width at most: SFDA's features, their
    centred and challenged copies and NumPy's covariance copy), about eight matrices of min(rows, width)
    squared (the Gram matrix and its eigenvectors, SFDA's scatter matrices and factors), the k-NN sample
    and its distance block."""
    if not widths:
        return 0
    kept = 4 * rows * sum(widths)
    w = max(widths)
    knn = min(rows, KNN_MAX_ROWS)
    block = min(DISTANCE_BLOCK_BYTES, 8 * knn * knn)
    return kept + 8 * (4 * rows * w + 8 * min(rows, w) ** 2 + knn * w) + block


Stop = Callable[[], str | None]


def run_pass(fp: FeaturePass, ds: Dataset, ref: str, *, rows: int | None = None,
             stop: Stop = lambda: None) -> tuple[list[np.ndarray], int, str | None]:
    """The pooled features of every cut of ``fp`` on ``ds``.

    ``stop`` is asked before each batch; when it answers a reason (``"budget"``, ``"cancelled"``) the
    pass ends there. Returns the features (one float32 array per cut, rows x width), how many rows
    were computed, and the reason it stopped early (None when it finished).
    """
    from reuse.train.infer import Predictor

    n = len(ds)
    outs = [np.empty((n, w), dtype=np.float32) for w in fp.widths]
    # Checked once: data in memory stay so; a row source is read, and checked, a batch at a time, ahead
    # of the pass; the batch is sized from the memory budget unless ``rows`` is given.
    x = model_inputs(check_features(replace(ds, y=None), list(fp.specs), ref))
    predictor = Predictor(fp.model, batch_size=rows)
    done = 0
    for lo, hi, got in predictor.batches(x):
        why = stop()
        if why is not None:
            return outs, done, why
        for out, part in zip(outs, got, strict=True):
            out[lo:hi] = part.reshape(hi - lo, -1)
        done = hi
    return outs, done, None
