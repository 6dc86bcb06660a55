"""What a served model takes and returns: tensor names, dtypes and shapes, read from the Keras model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.errors import InvalidInput
from reuse.keras_compat import producer_name
from reuse.names import Versioned


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor. ``shape`` excludes nothing: its first entry is the batch (None)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def row_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]


@dataclass(frozen=True)
class ModelSignature(Versioned):
    """The resolved model reference and its tensors, in the model's order; the names of its output
    classes when it was trained on named classes (index i names output column i), and the spec of its
    preprocessing stage ("" when it has none)."""

    name: str
    version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    class_names: tuple[str, ...] = ()
    preprocess: str = ""


def _dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def _producer_name(tensor: Any, index: int) -> str:
    # Output KerasTensors carry generated names ("keras_tensor_7"); the layer that made them carries
    # the name the user chose.
    return producer_name(tensor) or f"output_{index}"


def signature_of(model: Any, name: str, version: int, *, class_names: Sequence[str] | None = None
                 ) -> ModelSignature:
    """Read the signature of a Keras functional or Sequential model (``class_names``: as the store
    records them)."""
    from reuse.layers.preprocess import stage_record

    inputs = tuple(TensorSpec(t.name, str(t.dtype), _dims(t.shape)) for t in model.inputs)
    outputs = tuple(TensorSpec(_producer_name(t, i), str(t.dtype), _dims(t.shape))
                    for i, t in enumerate(model.outputs))
    stage = stage_record(model)
    return ModelSignature(name, version, inputs, outputs, tuple(str(c) for c in class_names or ()),
                          stage["spec"] if stage else "")


def check_arrays(sig: ModelSignature, arrays: list[np.ndarray]) -> int:
    """Check arrays against the signature's inputs; return the common number of rows.

    Raises:
        InvalidInput: wrong count, dtype, rank or row shape, or inputs with different row counts.
    """
    if len(arrays) != len(sig.inputs):
        names = ", ".join(s.name for s in sig.inputs)
        raise InvalidInput(f"model {sig.ref} takes {len(sig.inputs)} input(s) ({names}); got {len(arrays)}")
    rows: int | None = None
    for spec, arr in zip(sig.inputs, arrays, strict=True):
        if arr.dtype != np.dtype(spec.dtype):
            raise InvalidInput(f"input {spec.name!r}: dtype {arr.dtype}, expected {spec.dtype}")
        want = spec.row_shape
        if arr.ndim != len(spec.shape) or any(w is not None and w != g for w, g in zip(want, arr.shape[1:],
                                                                                    strict=True)):
            raise InvalidInput(f"input {spec.name!r}: shape {list(arr.shape)}, expected "
                               f"{[-1 if d is None else d for d in spec.shape]}")
        if arr.shape[0] < 1:
            raise InvalidInput(f"input {spec.name!r}: no rows; expected at least one")
        if rows is not None and arr.shape[0] != rows:
            raise InvalidInput(f"inputs have different row counts ({rows} and {arr.shape[0]}); "
                               "expected equal")
        rows = arr.shape[0]
    return int(rows or 0)


def input_arrays(sig: ModelSignature | None, inputs: Any) -> list[np.ndarray]:
    """The arrays of one request in the model's input order: from one array, a list in input order, or
    a mapping by input name (which needs ``sig``).

    Raises:
        InvalidInput: a mapping whose names are not exactly the model's inputs.
    """
    if isinstance(inputs, Mapping):
        assert sig is not None
        missing = [s.name for s in sig.inputs if s.name not in inputs]
        if missing or len(inputs) != len(sig.inputs):
            raise InvalidInput(f"inputs {sorted(inputs)}; model {sig.ref} takes "
                               f"{[s.name for s in sig.inputs]}")
        return [np.asarray(inputs[s.name]) for s in sig.inputs]
    return [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
