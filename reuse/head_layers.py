"""Keras layers for a :class:`~reuse.heads.HeadSpec` (kept apart so parsing a spec needs no Keras)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras

import reuse.layers  # noqa: F401  (registers Maxout)
from reuse.heads import (
    ActivationSpec,
    BatchNormSpec,
    DenseSpec,
    DropoutSpec,
    HeadSpec,
    LayerSpec,
    MaxoutSpec,
    layer_token,
)

_INIT_CLASSES = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "glorot_normal": keras.initializers.GlorotNormal,
    "he_uniform": keras.initializers.HeUniform,
    "he_normal": keras.initializers.HeNormal,
    "lecun_normal": keras.initializers.LecunNormal,
}
# Activations that need a layer of their own (a learned or parameterised function).
_LAYER_ACTIVATIONS = ("leaky_relu", "prelu")


@dataclass(frozen=True)
class HeadLayer:
    """One Keras layer of a head and the spec token it came from (for error messages and lineage)."""

    token: str
    layer: Any


class _Names:
    """Unique layer names that avoid the reused layers' names."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)

    def __call__(self, wanted: str) -> str:
        name, n = wanted, 1
        while name in self.taken:
            name, n = f"{wanted}_{n}", n + 1
        self.taken.add(name)
        return name


def _activation_layer(activation: str, slope: float | None, name: str) -> Any:
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=slope, name=name)
    if activation == "prelu":
        return keras.layers.PReLU(name=name)
    return keras.layers.Activation(activation, name=name)


def _layers_for(spec: LayerSpec, position: int, *, is_output: bool, seed: int | None,
                names: _Names) -> list[Any]:
    base = "output" if is_output else f"head{position}"
    layer_seed = None if seed is None else seed + position
    if isinstance(spec, DenseSpec):
        init = _INIT_CLASSES[spec.initializer](seed=layer_seed)
        separate = spec.activation in _LAYER_ACTIVATIONS
        dense = keras.layers.Dense(
            spec.units,
            activation=None if separate else spec.activation,
            kernel_initializer=init,
            kernel_regularizer=keras.regularizers.L2(spec.l2) if spec.l2 is not None else None,
            kernel_constraint=keras.constraints.MaxNorm(spec.max_norm) if spec.max_norm is not None else None,
            name=names(base if is_output else f"{base}_dense"),
        )
        if not separate:
            return [dense]
        return [dense, _activation_layer(spec.activation, spec.slope, names(f"{base}_{spec.activation}"))]
    if isinstance(spec, BatchNormSpec):
        return [keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon,
                                                name=names(f"{base}_batchnorm"))]
    if isinstance(spec, DropoutSpec):
        return [keras.layers.Dropout(spec.rate, seed=layer_seed, name=names(f"{base}_dropout"))]
    if isinstance(spec, MaxoutSpec):
        return [reuse.layers.Maxout(spec.units, name=names(f"{base}_maxout"))]
    assert isinstance(spec, ActivationSpec)
    return [_activation_layer(spec.activation, spec.slope, names(f"{base}_{spec.activation}"))]


def head_layers(spec: HeadSpec, *, taken: Iterable[str] = (), seed: int | None = None,
                output_appended: bool = False) -> list[HeadLayer]:
    """New, unbuilt Keras layers for ``spec``, bottom to top.

    Layers are named ``head<i>_<type>`` (``head1_dense``, ``head2_dropout``, ...); an output layer appended
    by :meth:`HeadSpec.with_output` (``output_appended=True``) is named ``output``. Names in ``taken`` are
    avoided by adding ``_1``, ``_2``, ... With ``seed``, initialisers and dropout are reproducible.
    """
    names = _Names(taken)
    out: list[HeadLayer] = []
    last = len(spec.layers)
    for i, layer_spec in enumerate(spec.layers, start=1):
        token = layer_token(layer_spec)
        for layer in _layers_for(layer_spec, i, is_output=output_appended and i == last, seed=seed, names=names):
            out.append(HeadLayer(token, layer))
    return out
