"""The preprocessing stage of a built model, as one registered Keras layer (``reuse>Preprocess``).

It runs the operations of a :class:`reuse.preprocess_spec.PreprocessSpec` on the channels-last input:
multiply, divide, add or subtract per-channel constants, and reverse the channel order (RGB -> BGR).
Only public Keras ops, no weights and no Python code in the saved file, so a model with it loads in safe
mode (after ``import reuse.layers``), caches as a frozen deterministic layer, and exports to ONNX
(Div, Add, Sub, Mul, Gather).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from reuse.errors import InvalidInput
from reuse.preprocess_spec import PreprocessSpec, spec_from_dict


@keras.saving.register_keras_serializable(package="reuse")
class Preprocess(keras.layers.Layer):
    """Raw pixels in, what the reused layers expect out.

    Args:
        spec: the spec text it was built from (for people: ``tf``, ``caffe``, ``rescale:1/255``).
        ops: ``[[name, values], ...]``: what it computes, in order (``mul``/``div``/``add``/``sub`` with one
            value or one per channel, ``bgr`` with none). The ops, not the text, define the layer, so a
            stored model computes the same whatever later versions call a preset.
    """

    def __init__(self, spec: str = "", ops: list | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        try:
            parsed = spec_from_dict({"spec": spec, "ops": list(ops or [])})
        except InvalidInput as exc:
            raise ValueError(str(exc)) from exc
        self.spec = parsed.text
        self.ops = [[name, list(values)] for name, values in parsed.ops]
        self._constants: list[tuple[str, Any]] = []

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        dtype = self.compute_dtype
        self._constants = []
        for name, values in self.ops:
            if name == "bgr":
                if channels != 3:
                    raise ValueError(f"Preprocess {self.spec!r}: RGB->BGR needs 3 channels, got input shape "
                                     f"{tuple(input_shape)}")
                self._constants.append((name, np.array([2, 1, 0], dtype="int32")))
                continue
            if len(values) != 1 and channels != len(values):
                raise ValueError(f"Preprocess {self.spec!r}: {name} has {len(values)} values, the input "
                                 f"{channels} channels (shape {tuple(input_shape)})")
            self._constants.append((name, np.asarray(values, dtype=dtype)))

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        for name, c in self._constants:
            if name == "bgr":
                x = keras.ops.take(x, c, axis=-1)
            elif name == "mul":
                x = x * c
            elif name == "div":
                x = x / c
            elif name == "add":
                x = x + c
            else:
                x = x - c
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spec": self.spec, "ops": self.ops}

    def to_spec(self) -> PreprocessSpec:
        return spec_from_dict({"spec": self.spec, "ops": self.ops})


def stage_record(model: Any) -> dict[str, Any] | None:
    """The preprocessing stage of ``model`` as stored metadata, ``{"spec", "ops", "layer"}``: its first
    top-level Preprocess layer (a build puts it right after the input), or None."""
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, Preprocess):
            return {**layer.to_spec().to_dict(), "layer": layer.name}
    return None
