"""Custom Keras layers that heads can use, registered so a stored model loads in Keras safe mode.

Registration happens on import: import this module before loading a model that uses them
(``reuse.build`` and ``reuse.heads`` do). The class name in a saved config is ``reuse>Maxout``.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="reuse")
class Maxout(keras.layers.Layer):
    """Maxout (Goodfellow et al., 2013) as a weightless layer: the last axis, of size ``units * k``,
    is split into ``units`` groups of ``k`` consecutive features and each group is reduced by its maximum.

    Put a linear Dense of ``units * k`` features in front of it to get a learned maxout unit with ``k``
    pieces (``dense:256,maxout:64`` in a head spec).
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"Maxout units must be a positive integer, got {units!r}")
        self.units = units

    def build(self, input_shape: tuple) -> None:
        features = input_shape[-1]
        if features is None or features % self.units:
            raise ValueError(
                f"Maxout({self.units}) needs a last axis that is a multiple of {self.units}; "
                f"got input shape {tuple(input_shape)}"
            )
        if any(d is None for d in input_shape[1:]):
            raise ValueError(f"Maxout needs fixed non-batch dimensions; got input shape {tuple(input_shape)}")
        self.pieces = features // self.units

    def call(self, inputs: Any) -> Any:
        grouped = keras.ops.reshape(inputs, (-1, *inputs.shape[1:-1], self.units, self.pieces))
        return keras.ops.max(grouped, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="reuse")
class EnsembleCombine(keras.layers.Layer):
    """Combines the outputs of an ensemble's members (a list of same-shaped tensors) into one.

    ``mode="mean"``: the weighted mean ``sum_i member_weights[i] * x_i`` (normalised to sum to 1). ``mode="vote"``:
    one-hot of the class with the largest (weighted) number of votes, a member voting for its argmax;
    ties are broken by the weighted sum of the members' outputs. ``activation`` records the members'
    output activation, which the combination keeps (a mean of softmax outputs is a distribution, a vote
    is one-hot), so :func:`reuse.data.output_kind` reads an ensemble as it reads its members; it is not
    applied again.
    """

    def __init__(self, member_weights: list[float], mode: str = "mean", activation: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("mean", "vote"):
            raise ValueError(f"EnsembleCombine mode must be 'mean' or 'vote', got {mode!r}")
        w = list(member_weights)
        if not w or any(not isinstance(v, (int, float)) or v < 0 for v in w) or sum(w) <= 0:
            raise ValueError(f"EnsembleCombine weights must be non-negative numbers with a positive sum, got {w!r}")
        self.member_weights = [float(v) / float(sum(w)) for v in w]
        self.mode = mode
        self.activation = activation

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        if len(inputs) != len(self.member_weights):
            raise ValueError(f"EnsembleCombine got {len(inputs)} inputs for {len(self.member_weights)} weights")
        mean = inputs[0] * self.member_weights[0]
        for x, w in zip(inputs[1:], self.member_weights[1:], strict=True):
            mean = mean + x * w
        if self.mode == "mean":
            return mean
        units = inputs[0].shape[-1]
        votes = ops.zeros_like(mean)
        for x, w in zip(inputs, self.member_weights, strict=True):
            votes = votes + ops.one_hot(ops.argmax(x, axis=-1), units, dtype=mean.dtype) * w
        top = ops.max(votes, axis=-1, keepdims=True)
        # Classes within rounding of the most votes are tied; among them the largest summed output wins.
        tied = ops.greater_equal(votes, top - 1e-6)
        best = ops.argmax(ops.where(tied, mean, ops.full_like(mean, -1e30)), axis=-1)
        return ops.one_hot(best, units, dtype=mean.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "member_weights": list(self.member_weights), "mode": self.mode,
                "activation": self.activation}
