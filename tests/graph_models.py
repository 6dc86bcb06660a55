"""Small models with several inputs and integer inputs, and their data, shared by the training, gRPC and
HTTP tests."""

from __future__ import annotations

import keras
import numpy as np

from reuse.data import Dataset


def two_inputs(seed: int = 0, frozen_left: bool = False) -> keras.Model:
    keras.utils.set_random_seed(seed)
    a = keras.Input((4,), name="x_left")
    b = keras.Input((3,), name="x_right")
    ha = keras.layers.Dense(6, activation="relu", name="left", trainable=not frozen_left)(a)
    hb = keras.layers.Dense(6, activation="relu", name="right")(b)
    h = keras.layers.Concatenate(name="cat")([ha, hb])
    return keras.Model([a, b], keras.layers.Dense(3, activation="softmax", name="out")(h), name="pair")


def two_input_data(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return {"x_left": (rng.normal(size=(n, 4)) + y[:, None]).astype(np.float32),
            "x_right": (rng.normal(size=(n, 3)) - y[:, None]).astype(np.float32), "y": y}


def token_model(seed: int = 0, dropout: float = 0.0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(20, 4, name="emb", trainable=False)(tokens)
    h = keras.layers.LSTM(6, name="lstm", trainable=False, dropout=dropout)(h)
    return keras.Model(tokens, keras.layers.Dense(2, activation="softmax", name="head")(h), name="tok")


def token_data(n: int = 32, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 20, size=(n, 5)).astype(np.int32)
    return Dataset({"tokens": x}, (x[:, 0] > 9).astype(np.int64), "tokens")
