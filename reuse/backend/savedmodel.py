"""TensorFlow SavedModel export (``model.export(path, format="tf_saved_model")``), loaded back and
compared with Keras. The format is TensorFlow's, so this module imports TensorFlow on any backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reuse.errors import FailedPrecondition
from reuse.export import onnx_file
from reuse.serving.signature import ModelSignature


def write_checked(model: Any, sig: ModelSignature, path: Path) -> float:
    """Export to the folder ``path``; returns the largest difference from Keras on the probe batch.

    Raises:
        FailedPrecondition: the reloaded SavedModel's outputs differ from Keras'.
    """
    import tensorflow as tf

    xs = onnx_file.probe_inputs(sig)
    want = onnx_file.keras_outputs(model, xs)  # also makes a loaded model "called", which export needs
    model.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))  # held: its variables die with it, mid-call otherwise
    out = loaded.serve(*(tf.constant(x) for x in xs))
    outs = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]
    worst, problem = onnx_file.difference([np.asarray(o) for o in outs], want)
    if problem:
        raise FailedPrecondition(f"the SavedModel export of {sig.ref} does not match Keras: {problem}")
    return worst
