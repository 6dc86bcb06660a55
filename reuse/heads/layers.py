"""Keras layers for a :class:`~reuse.heads.HeadSpec` (kept apart so parsing a spec needs no Keras).

:func:`apply_head` is the way to put a head on a Keras tensor: global pooling (``gap``, ``gmp``) becomes
the 1-D, 2-D or 3-D Keras class by the rank of the tensor it receives, so layers are made while applying.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras

import reuse.layers.maxout  # noqa: F401  (registers Maxout)
from reuse.errors import IncompatibleShapes, InvalidInput
from reuse.heads.spec import (
    ActivationSpec,
    BatchNormSpec,
    DenseSpec,
    DropoutSpec,
    FlattenSpec,
    GlobalAvgPoolSpec,
    GlobalMaxPoolSpec,
    HeadSpec,
    LayerSpec,
    MaxoutSpec,
    layer_token,
)
from reuse.text import first_line

_INIT_CLASSES = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "glorot_normal": keras.initializers.GlorotNormal,
    "he_uniform": keras.initializers.HeUniform,
    "he_normal": keras.initializers.HeNormal,
    "lecun_normal": keras.initializers.LecunNormal,
}
# Activations that need a layer of their own (a learned or parameterised function).
_LAYER_ACTIVATIONS = ("leaky_relu", "prelu")
# Global pooling by input rank: (batch, steps, ch), (batch, h, w, ch), (batch, d, h, w, ch).
_POOLING = {
    GlobalAvgPoolSpec: {3: keras.layers.GlobalAveragePooling1D, 4: keras.layers.GlobalAveragePooling2D,
                        5: keras.layers.GlobalAveragePooling3D},
    GlobalMaxPoolSpec: {3: keras.layers.GlobalMaxPooling1D, 4: keras.layers.GlobalMaxPooling2D,
                        5: keras.layers.GlobalMaxPooling3D},
}
OUTPUT_HINT = "add gap or flatten to the head, e.g. --head gap,dense:64:relu"


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
                names: _Names, rank: int | None = None) -> list[Any]:
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
        return [reuse.layers.maxout.Maxout(spec.units, name=names(f"{base}_maxout"))]
    if isinstance(spec, FlattenSpec):
        return [keras.layers.Flatten(name=names(f"{base}_flatten"))]
    if isinstance(spec, (GlobalAvgPoolSpec, GlobalMaxPoolSpec)):
        assert rank in _POOLING[type(spec)], rank  # apply_head checks the rank first
        return [_POOLING[type(spec)][rank](name=names(f"{base}_{layer_token(spec)}"))]
    assert isinstance(spec, ActivationSpec)
    return [_activation_layer(spec.activation, spec.slope, names(f"{base}_{spec.activation}"))]


def head_layers(spec: HeadSpec, *, taken: Iterable[str] = (), seed: int | None = None,
                output_appended: bool = False) -> list[HeadLayer]:
    """New, unbuilt Keras layers for ``spec``, bottom to top (prefer :func:`apply_head`).

    Layers are named ``head<i>_<type>`` (``head1_dense``, ``head2_dropout``, ``head1_gap``, ...); an output
    layer appended by :meth:`HeadSpec.with_output` (``output_appended=True``) is named ``output``. Names in
    ``taken`` are avoided by adding ``_1``, ``_2``, ... With ``seed``, initialisers and dropout are
    reproducible.

    Raises:
        InvalidInput: the head has ``gap``/``gmp``, whose Keras class depends on the input's rank.
    """
    pooling = [layer_token(s) for s in spec.layers if type(s) in _POOLING]
    if pooling:
        raise InvalidInput(f"head layer {pooling[0]!r} needs the rank of its input to choose a Keras class: "
                           "use reuse.heads.layers.apply_head, which builds the head on a tensor")
    names = _Names(taken)
    out: list[HeadLayer] = []
    last = len(spec.layers)
    for i, layer_spec in enumerate(spec.layers, start=1):
        token = layer_token(layer_spec)
        for layer in _layers_for(layer_spec, i, is_output=output_appended and i == last,
                                 seed=seed, names=names):
            out.append(HeadLayer(token, layer))
    return out


def _fmt(shape: Any) -> str:
    return str(tuple(shape))


def apply_head(spec: HeadSpec, x: Any, *, taken: Iterable[str] = (), seed: int | None = None,
               output_appended: bool = False, output: str | None = None,
               source: str = "the reused layers") -> tuple[Any, list[str]]:
    """Make the layers of ``spec`` and call them, bottom to top, on the Keras tensor ``x``.

    Names and seeds are as for :func:`head_layers`. ``gap``/``gmp`` become the 1-D, 2-D or 3-D Keras
    pooling class for an input of rank 3, 4 or 5 (batch included).

    Args:
        spec: the head (with its output layer, if any, already appended).
        x: the reused layers' output (a symbolic Keras tensor).
        taken: layer names already used in the model.
        seed: makes initialisers and dropout reproducible.
        output_appended: the last layer is the output layer appended for ``classes``/``regression``.
        output: ``"classes"``, ``"regression"`` or ``None``; when set, the head must end in shape
            ``(batch, units)``, as training expects.
        source: what produced ``x``, for messages (e.g. ``layer block_6_project_BN``).

    Returns:
        The head's output tensor and the names of the Keras layers made, bottom to top.

    Raises:
        IncompatibleShapes: a layer cannot take the tensor it gets (naming the layer, what fed it and the
            shape), or ``output`` is set and the head does not end in ``(batch, units)``.
        InvalidInput: ``output`` is not one of the values above.
    """
    if output not in (None, "classes", "regression"):
        raise InvalidInput(f"invalid output {output!r}: expected 'classes', 'regression' or None")
    names = _Names(taken)
    made: list[str] = []
    last = len(spec.layers)
    for i, layer_spec in enumerate(spec.layers, start=1):
        token = layer_token(layer_spec)
        what = f"head layer {token!r}"
        rank = len(x.shape)
        if type(layer_spec) in _POOLING and rank not in _POOLING[type(layer_spec)]:
            raise IncompatibleShapes(
                f"{what} cannot take the output of {source}, of shape {_fmt(x.shape)}: global pooling needs "
                f"an input of rank 3, 4 or 5 (batch, steps or spatial axes, channels), got rank {rank}"
                + ("; the tensor is already (batch, features), so leave it out" if rank == 2 else ""))
        for layer in _layers_for(layer_spec, i, is_output=output_appended and i == last, seed=seed,
                                 names=names, rank=rank):
            try:
                x = layer(x)
            except (ValueError, TypeError) as exc:
                raise IncompatibleShapes(f"{what} cannot take the output of {source}, of shape "
                                         f"{_fmt(x.shape)}: {first_line(exc)}") from exc
            made.append(layer.name)
        source = what
    if output is not None and len(x.shape) != 2:
        raise IncompatibleShapes(
            f"the head's output has shape {_fmt(x.shape)}, but a {output} output must have shape "
            f"(batch, units): {OUTPUT_HINT}")
    return x, made
