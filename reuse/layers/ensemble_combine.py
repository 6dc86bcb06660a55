"""The layer that joins an ensemble's members, registered so a stored ensemble loads in Keras safe mode.

Registration happens on import (the store's loader and the graph replay import it). The class name in a
saved config is ``reuse>EnsembleCombine``.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="reuse")
class EnsembleCombine(keras.layers.Layer):
    """Combines the outputs of an ensemble's members (a list of same-shaped tensors) into one.

    ``mode="mean"``: the weighted mean ``sum_i member_weights[i] * x_i`` (normalised to sum to 1).
    ``mode="vote"``: one-hot of the class with the largest (weighted) number of votes, a member voting for its
    argmax; ties are broken by the weighted sum of the members' outputs. ``activation`` records the members'
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
            raise ValueError("EnsembleCombine weights must be non-negative numbers with a positive sum, "
                             f"got {w!r}")
        self.member_weights = [float(v) / float(sum(w)) for v in w]
        self.mode = mode
        self.activation = activation

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        if len(inputs) != len(self.member_weights):
            raise ValueError(f"EnsembleCombine got {len(inputs)} inputs for "
                             f"{len(self.member_weights)} weights")
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
