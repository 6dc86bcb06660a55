"""The frozen-feature cache split of a network, the frozen part in inference mode, and reseeding.

**Frozen layers run in inference mode while the rest trains** (:func:`frozen_in_inference`), as the
Keras transfer-learning guide calls a frozen base with ``training=False``: dropout and noise in frozen
reused layers are off, frozen batch normalisation uses its moving statistics (Keras' own rule). The
switch is ``TrainConfig.frozen_mode = "training"`` (``--frozen-mode training``), which leaves frozen
dropout active as plain Keras would.

When part of a model's graph holds no weight being trained and behaves the same in training and
inference (frozen, or free of dropout, noise and batch-statistics normalisation), and the rest reads it
only through a few tensors (the *cut*), those tensors are computed once and the loop runs only the rest
on them. The two parts are Keras models over the same layer objects, so training the rest trains the
whole model in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reuse.keras_compat import (
    all_layers,
    inbound_nodes,
    inference_mode,
    is_layer,
    keras_history,
    outbound_nodes,
    seed_generators,
    set_keras_history,
    takes_training,
)


def _stochastic_classes() -> tuple[type, ...]:
    """Keras's dropout and noise layers and its random augmentation layers (the public ``Random*``)."""
    import keras

    kl = keras.layers
    augmentation = tuple(getattr(kl, n) for n in dir(kl) if n.startswith("Random"))
    return (kl.Dropout, kl.SpatialDropout1D, kl.SpatialDropout2D, kl.SpatialDropout3D, kl.AlphaDropout,
            kl.GaussianDropout, kl.GaussianNoise, *augmentation)


def _random_unused(layer: Any) -> bool:
    """A recurrent layer or cell without dropout owns a seed generator it never draws from."""
    return (hasattr(layer, "dropout") and hasattr(layer, "recurrent_dropout")
            and not layer.dropout and not layer.recurrent_dropout)


def is_deterministic(layer: Any) -> bool:
    """Whether ``layer`` computes the same in training and inference: no dropout, noise or random
    augmentation (anything holding a random seed generator, except recurrent layers without dropout),
    and batch normalisation only when frozen (Keras then uses its moving statistics)."""
    import keras

    stochastic = _stochastic_classes()
    for x in all_layers(layer, include_self=True):
        if isinstance(x, stochastic):
            return False
        if seed_generators(x) and not _random_unused(x):
            return False
        if isinstance(x, keras.layers.BatchNormalization) and x.trainable:
            return False
    return True


def frozen_leaves(model: Any) -> list[Any]:
    """The frozen layers of ``model`` (nested models opened) that behave differently while training."""
    import keras

    return [x for x in all_layers(model) if not x.trainable and not isinstance(x, keras.Model)
            and takes_training(x)]


def frozen_in_inference(model: Any, enabled: bool = True) -> Any:
    """A context in which ``model``'s frozen layers run in inference mode (see the module docstring)."""
    return inference_mode(frozen_leaves(model) if enabled else [])


def _all_frozen(op: Any) -> bool:
    """Whether every layer of ``op`` that behaves differently in training is frozen."""
    import keras

    return all(not x.trainable for x in all_layers(op, include_self=True)
               if not isinstance(x, keras.Model) and takes_training(x))


def _node_of(tensor: Any) -> tuple[Any, Any]:
    """The operation that made a Keras tensor and the graph node of that call."""
    history = keras_history(tensor)
    return history.operation, inbound_nodes(history.operation)[history.node_index]


def graph_nodes(model: Any) -> list[tuple[Any, list[Any], list[Any], Any]] | None:
    """``(operation, input tensors, output tensors, node)`` of each call in ``model``'s graph, inputs
    first (a nested model is one call); ``None`` when the model has no symbolic graph to walk."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    sources = {id(t) for t in inputs}
    order: list[tuple[Any, list[Any], list[Any], Any]] = []
    seen: set[int] = set()
    # Iterative post-order walk from the outputs back to the inputs.
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in sources:
            continue
        try:
            op, node = _node_of(tensor)
        except (AttributeError, IndexError):
            return None
        if id(node) in seen:
            continue
        ins = list(node.input_tensors)
        if expanded:
            seen.add(id(node))
            order.append((op, ins, list(node.output_tensors), node))
            continue
        if not ins:  # an input layer that is not one of the model's inputs, or a constant
            return None
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(ins))
    return order


@dataclass
class CacheSplit:
    """A frozen, deterministic part of a model (computed once) and the trained rest.

    ``prefix`` maps the model's inputs to the cut tensors; ``rest`` maps the cut tensors to the model's
    outputs. Both share the model's layer objects. ``layers`` are the layers of the cached part, in the
    model's order.
    """

    prefix: Any
    rest: Any
    layers: list[Any]

    @property
    def prefix_names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.layers)


def _holds_trained(op: Any, trained: set[int]) -> bool:
    return any(id(v) in trained for v in getattr(op, "variables", []))


def _cacheable(op: Any, trained: set[int], frozen_inference: bool) -> bool:
    if _holds_trained(op, trained):
        return False
    return not is_layer(op) or is_deterministic(op) or (frozen_inference and _all_frozen(op))


def find_cut(model: Any, train_vars: Sequence[Any], frozen_inference: bool = True
             ) -> tuple[list[Any], list[Any]] | None:
    """The cut of ``model``'s graph: (cut tensors, cached operations), or ``None`` when nothing is
    worth caching.

    A tensor is *fixed* when it is a model input, or made by a call of an operation that holds none of
    ``train_vars``, is deterministic, and reads only fixed tensors. The cut is the fixed tensors that
    calls which are not fixed read: the trained part sees the fixed part only through them, so the
    largest frozen, deterministic part of the graph is computed once. Nothing is cached when the cut is
    only model inputs, or an output is fixed (then nothing would train).
    """
    nodes = graph_nodes(model)
    if not nodes:
        return None
    trained = {id(v) for v in train_vars}
    fixed: set[int] = {id(t) for t in model.inputs}
    cached_ops: list[Any] = []
    for op, ins, outs, _ in nodes:
        if all(id(t) in fixed for t in ins) and _cacheable(op, trained, frozen_inference):
            fixed.update(id(t) for t in outs)
            if all(op is not o for o in cached_ops):
                cached_ops.append(op)
    if any(id(t) in fixed for t in model.outputs):
        return None
    cut: list[Any] = []
    for _, ins, outs, _ in nodes:
        if id(outs[0]) in fixed:
            continue
        for t in ins:
            if id(t) in fixed and all(t is not c for c in cut):
                cut.append(t)
    inputs = {id(t) for t in model.inputs}
    if all(id(t) in inputs for t in cut) or not cached_ops:
        return None
    return cut, cached_ops


def _one_or_list(tensors: list[Any]) -> Any:
    return tensors[0] if len(tensors) == 1 else tensors


def _restoring_graph(model: Any) -> Any:
    """Snapshot the graph's bookkeeping; the returned function puts it back.

    A sub-model over intermediate tensors makes Keras clone the graph nodes it needs, and opening a
    nested model calls its layers on new symbolic tensors: both append nodes to the shared layers (the
    input layers of pass-through inputs too) and the first re-points those tensors' ``_keras_history``.
    Putting both back keeps the model's own graph, as saving and code reading a layer's
    ``input``/``output`` see it, unchanged; the sub-models keep their own node lists.
    """
    nodes = graph_nodes(model) or []
    tensors = list(model.inputs) + [t for _, _, outs, _ in nodes for t in outs]
    ops = ([keras_history(t).operation for t in model.inputs] + [n[0] for n in nodes]
           + all_layers(model))
    unique = list({id(op): op for op in ops}.values())
    saved_ops = [(x, list(inbound_nodes(x)), list(outbound_nodes(x))) for x in unique]
    saved_history = [(t, keras_history(t)) for t in tensors]

    def restore() -> None:
        for layer, inbound, outbound in saved_ops:
            inbound_nodes(layer)[:] = inbound
            outbound_nodes(layer)[:] = outbound
        for tensor, history in saved_history:
            set_keras_history(tensor, history)

    return restore


def _is_graph_model(op: Any) -> bool:
    import keras

    return isinstance(op, keras.Model) and graph_nodes(op) is not None


def opened_graph(model: Any, train_vars: Sequence[Any], frozen_inference: bool = True) -> Any:
    """``model``, or, when a nested model in it is not cacheable whole (some of its layers train, or
    it holds dropout), an equivalent functional model over the same layers with such nested models
    opened up (their layers called directly), so the cut can reach inside them. Nested models that
    are cacheable whole stay one call."""
    import keras
    from keras import tree

    trained = {id(v) for v in train_vars}

    def to_open(op: Any) -> bool:
        return _is_graph_model(op) and not _cacheable(op, trained, frozen_inference)

    nodes = graph_nodes(model)
    if not nodes or not any(to_open(op) for op, _, _, _ in nodes):
        return model

    def replay(sub: Any, given: list[Any]) -> list[Any]:
        local = {id(t): v for t, v in zip(sub.inputs, given, strict=True)}
        for op, ins, outs, node in graph_nodes(sub) or []:
            if to_open(op):
                vals = replay(op, [local[id(t)] for t in ins])
            else:
                args, kwargs = node.arguments.fill_in(local)
                vals = tree.flatten(op(*args, **kwargs))
            local.update((id(t), v) for t, v in zip(outs, vals, strict=True))
        return [local[id(t)] for t in sub.outputs]

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    outputs = replay(model, inputs)
    try:
        return keras.Model(_one_or_list(inputs), _one_or_list(outputs), name=f"{model.name}_opened")
    except ValueError:
        # One graph needs unique layer names; a nested model may reuse an outer name. Keep it whole.
        return model


def cache_split(model: Any, train_vars: Sequence[Any], frozen_inference: bool = True) -> CacheSplit | None:
    """Split ``model`` at the cut :func:`find_cut` finds: a prefix model from the inputs to the cut
    tensors and a rest model from them to the outputs, over the same layers; ``None`` when there is
    nothing worth caching. ``frozen_inference``: frozen layers run in inference mode, so frozen dropout
    and noise count as deterministic."""
    import keras

    restore = _restoring_graph(model)
    try:
        graph = opened_graph(model, train_vars, frozen_inference)
        found = find_cut(graph, train_vars, frozen_inference)
        if found is None:
            return None
        cut, cached_ops = found
        prefix = keras.Model(_one_or_list(list(graph.inputs)), _one_or_list(cut), name=f"{model.name}_cached")
        rest = keras.Model(_one_or_list(cut), _one_or_list(list(graph.outputs)), name=f"{model.name}_rest")
    finally:
        restore()
    order = {id(x): i for i, x in enumerate(graph.layers)}
    layers = sorted((op for op in cached_ops if not isinstance(op, keras.layers.InputLayer)
                     and is_layer(op)), key=lambda x: order.get(id(x), len(order)))
    return CacheSplit(prefix=prefix, rest=rest, layers=layers)


def seed_generator_states(layers_owner: Any) -> list[Any]:
    """The state variables of every random seed generator (dropout, noise) inside ``layers_owner``."""
    out = []
    for layer in all_layers(layers_owner, include_self=True):
        for sg in seed_generators(layer):
            out.append(sg.state)
    return out


def reseed(model: Any, seed: int) -> None:
    """Give every seed generator in ``model`` a state derived from ``seed``, so dropout is reproducible."""
    import numpy as np

    for i, state in enumerate(seed_generator_states(model)):
        value = np.array([seed, i + 1], dtype=state.dtype).reshape(tuple(state.shape))
        state.assign(value)
