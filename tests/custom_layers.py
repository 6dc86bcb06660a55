"""Keras classes of a user's own module, for the tests of ``--trust-module``: the keras.io
TokenAndPositionEmbedding layer, a Scale layer, a functional subclass of keras.Model (a graph built in
``__init__``, as KerasHub backbones are) and a subclassed model (its own ``call``, no graph). Imported as
``tests.custom_layers``, the name a test trusts."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="reuse_tests")
class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding plus a learned position embedding, positions from ``ops.arange`` (keras.io)."""

    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = layers.Embedding(maxlen, embed_dim)

    def call(self, x):
        positions = ops.arange(0, ops.shape(x)[-1])
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package="reuse_tests")
class Scale(layers.Layer):
    """One learned scale per feature."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


@keras.saving.register_keras_serializable(package="reuse_tests")
class TinyBackbone(keras.Model):
    """A functional subclass: its config is its constructor's arguments, its layers a graph with ops."""

    def __init__(self, width: int = 8, **kwargs):
        image = keras.Input((16, 16, 3), name="image")
        x = layers.Conv2D(width, 3, activation="relu", name="stem")(image)
        for i in (1, 2):
            y = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
            x = layers.BatchNormalization(name=f"block{i}_bn")(x + y)
        super().__init__(inputs=image, outputs=ops.mean(x, axis=(1, 2)), **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name, "trainable": self.trainable}


@keras.saving.register_keras_serializable(package="reuse_tests")
class Subclassed(keras.Model):
    """A subclassed model: layers made in ``__init__``, wiring only in ``call``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(4, activation="relu")
        self.out = layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))
