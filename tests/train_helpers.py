"""Small, separable data sets for the training tests."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from reuse.data import Dataset
from reuse.store import ModelStore


def toy_data(n: int = 60, n_in: int = 8, k: int = 3, seed: int = 0, noise: float = 1.0,
             source: str = "toy") -> Dataset:
    """``k`` Gaussian clusters in ``n_in`` dimensions, classes interleaved."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(scale=2.0, size=(k, n_in))
    y = np.arange(n) % k
    x = centers[y] + rng.normal(scale=noise, size=(n, n_in))
    return Dataset(x.astype(np.float32), y.astype(np.int64), source)


def layer_weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before
            if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))}


def conv_store(store: Path, side: int) -> None:
    """Register ``conv``: a frozen two-layer conv prefix on ``side``×``side`` RGB pixels, a 2-class head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((side, side, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inp)
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu", name="conv1", trainable=False)(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2", trainable=False)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    ModelStore(store).register(keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="out")(x)),
                               "conv")
