"""TensorFlow SavedModel export (``model.export(path, format="tf_saved_model")``) and its outputs once
loaded back. The format is TensorFlow's, so this module imports TensorFlow on any backend; the check
against Keras is the caller's (:func:`reuse.export.formats.export_savedmodel`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_and_reload(model: Any, path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Export ``model`` to the folder ``path``, load it back with TensorFlow and return its ``serve``
    outputs on ``inputs`` (row-aligned arrays, one per model input)."""
    import tensorflow as tf

    model.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))  # held: its variables die with it, mid-call otherwise
    out = loaded.serve(*(tf.constant(x) for x in inputs))
    outs = (
        list(out.values())
        if isinstance(out, dict)
        else list(out)
        if isinstance(out, (list, tuple))
        else [out]
    )
    return [np.asarray(o) for o in outs]
