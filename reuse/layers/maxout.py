"""The Maxout layer that heads can use, registered so a stored model loads in Keras safe mode.

Registration happens on import: import this module before loading a model that uses it
(``reuse.heads.layers`` and the store's loader do). The class name in a saved config is ``reuse>Maxout``
(the package and class name, not this module's), so models stored before the module was renamed load.
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
