"""The part of a network a training loop runs, and the frozen-feature cache split.

When a model is a chain of layers and its first layers hold no weight being trained and behave the same
in training and inference (no dropout, noise or batch-statistics normalisation), their output is
computed once and the loop runs only the rest on it. The layers are shared, so training the rest
trains the whole model in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class Forward:
    """A callable network part: a whole model, or a chain of its layers called in order."""

    def __init__(self, model: Any, layers: Sequence[Any] | None = None) -> None:
        self.model = model
        self.layers = list(layers) if layers is not None else None

    def __call__(self, x: Any, training: bool) -> Any:
        if self.layers is None:
            return self.model(x, training=training)
        for layer in self.layers:
            x = layer(x, training=training) if _has_training_arg(layer) else layer(x)
        return x

    @property
    def variables(self) -> list[Any]:
        if self.layers is None:
            return list(self.model.variables)
        return _unique(v for layer in self.layers for v in layer.variables)

    def losses(self) -> list[Any]:
        """Regularisation and activity losses of the last call (read right after calling)."""
        if self.layers is None:
            return list(self.model.losses)
        return [loss for layer in self.layers for loss in layer.losses]


def _unique(items: Any) -> list[Any]:
    seen: set[int] = set()
    out = []
    for v in items:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _has_training_arg(layer: Any) -> bool:
    return bool(getattr(layer, "_call_has_training_arg", False))


STOCHASTIC = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
              "GaussianDropout", "GaussianNoise")


def is_deterministic(layer: Any) -> bool:
    """Whether ``layer`` computes the same in training and inference: no dropout, noise or random
    augmentation (anything holding a random seed generator), and batch normalisation only when frozen
    (Keras then uses its moving statistics)."""
    for x in layer._flatten_layers(include_self=True, recursive=True):
        name = type(x).__name__
        if getattr(x, "_seed_generators", None) or name in STOCHASTIC or name.startswith("Random"):
            return False
        if name == "BatchNormalization" and x.trainable:
            return False
    return True


def chain_layers(model: Any) -> list[Any] | None:
    """The model's layers (without the input layer) if each feeds only the next one, else ``None``."""
    import keras

    if isinstance(model, keras.Sequential):
        return list(model.layers)
    layers = [x for x in getattr(model, "layers", []) if type(x).__name__ != "InputLayer"]
    inputs = getattr(model, "inputs", None)
    if not layers or not inputs or len(inputs) != 1 or len(model.outputs) != 1:
        return None
    try:
        prev = inputs[0]
        for layer in layers:
            if len(layer._inbound_nodes) != 1 or layer.input is not prev:
                return None
            prev = layer.output
        return layers if prev is model.outputs[0] else None
    except (AttributeError, ValueError):
        return None


@dataclass
class CacheSplit:
    """A frozen, deterministic prefix (computed once) and the trained rest."""

    prefix: list[Any]
    rest: list[Any]

    @property
    def prefix_names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.prefix)


def cache_split(model: Any, train_vars: Sequence[Any]) -> CacheSplit | None:
    """The longest prefix of ``model``'s layers that holds none of ``train_vars`` and is deterministic,
    or ``None`` when there is none worth caching (no chain, no such prefix, or nothing left to train)."""
    layers = chain_layers(model)
    if not layers:
        return None
    trained = {id(v) for v in train_vars}
    k = 0
    for layer in layers:
        if any(id(v) in trained for v in layer.variables) or not is_deterministic(layer):
            break
        k += 1
    if k == 0 or k == len(layers):
        return None
    return CacheSplit(prefix=layers[:k], rest=layers[k:])


def seed_generator_states(layers_owner: Any) -> list[Any]:
    """The state variables of every random seed generator (dropout, noise) inside ``layers_owner``."""
    out = []
    for layer in layers_owner._flatten_layers(include_self=True, recursive=True):
        for sg in getattr(layer, "_seed_generators", []) or []:
            out.append(sg.state)
    return out


def reseed(model: Any, seed: int) -> None:
    """Give every seed generator in ``model`` a state derived from ``seed``, so dropout is reproducible."""
    import numpy as np

    for i, state in enumerate(seed_generator_states(model)):
        value = np.array([seed, i + 1], dtype=state.dtype).reshape(tuple(state.shape))
        state.assign(value)
