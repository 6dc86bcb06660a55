"""Loss and metric per sample for a model's output kind, written in ``keras.ops`` (any backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.data.checks import OutputKind


@dataclass(frozen=True)
class Task:
    """The loss and metric used to train and judge a network.

    ``kind``: ``multiclass`` (sparse categorical cross-entropy, accuracy), ``binary`` (binary
    cross-entropy, accuracy) or ``regression`` (mean squared error, mean absolute error; also used to
    train autoencoders).
    """

    kind: str
    from_logits: bool = False

    @classmethod
    def for_output(cls, out: OutputKind) -> Task:
        return cls(out.kind, out.from_logits)

    @property
    def metric(self) -> str:
        return "mae" if self.kind == "regression" else "accuracy"

    def loss(self, y: Any, p: Any) -> Any:
        """Per-sample loss, shape (batch,)."""
        import keras
        from keras import ops

        if self.kind == "multiclass":
            return keras.losses.sparse_categorical_crossentropy(y, p, from_logits=self.from_logits)
        if self.kind == "binary":
            return keras.losses.binary_crossentropy(y, p, from_logits=self.from_logits)
        err = ops.square(ops.cast(y, p.dtype) - p)
        return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)

    def score(self, y: Any, p: Any) -> Any:
        """Per-sample metric, shape (batch,): 1.0 for a right class (accuracy), or the mean abs error."""
        from keras import ops

        if self.kind == "multiclass":
            return ops.cast(ops.equal(ops.cast(ops.argmax(p, axis=-1), "int32"), ops.cast(y, "int32")),
                            "float32")
        if self.kind == "binary":
            threshold = 0.0 if self.from_logits else 0.5
            hit = ops.equal(ops.cast(p > threshold, "float32"), ops.cast(y, "float32"))
            return ops.cast(ops.reshape(hit, (-1,)), "float32")
        err = ops.abs(ops.cast(y, p.dtype) - p)
        return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)
