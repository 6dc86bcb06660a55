"""A store of small bases trained on source tasks of graded relatedness to one target, for the rank tests.

Target: digits 5-9 (relabelled 0-4), 20 labelled images per class (the advisor benchmark's task). Bases,
each ``pixels -> hidden1..hidden3 (32 units, ReLU) -> output``:

- ``all10``: trained on all ten digits (it has seen 5-9: the most related);
- ``d04``: trained on digits 0-4 (same images, other classes);
- ``perm04``: trained on digits 0-4 with the pixels permuted (its features look at the wrong places);
- ``randlab``: trained on all ten digits with random labels (features fitted to noise);
- ``untrained``: never trained.

What a frozen head on each cut achieves is measured in the tests themselves, not assumed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from reuse.data import Dataset, load_data
from reuse.store import ModelStore
from reuse.train import TrainConfig, train

TARGET = "builtin:digits?classes=5-9&relabel=1&per_class=20"
TARGET_VAL = "builtin:digits?classes=5-9&relabel=1&split=test"
BASES = ("all10", "d04", "perm04", "randlab", "untrained")


@dataclass(frozen=True)
class Graded:
    store: Path
    data: str  # the target as an .npz file
    val: str


def mlp(seed: int, n_out: int, width: int = 32, depth: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,), name="pixels")]
    layers += [keras.layers.Dense(width, activation="relu", name=f"hidden{i}") for i in range(1, depth + 1)]
    layers.append(keras.layers.Dense(n_out, activation="softmax", name="output"))
    return keras.Sequential(layers, name="base")


def make_graded(root: Path) -> Graded:
    store = ModelStore(root / "store")
    digits, first = load_data("builtin:digits"), load_data("builtin:digits?classes=0-4")
    perm = np.random.default_rng(5).permutation(64)
    noise = np.random.default_rng(1).integers(0, 10, len(digits.y))
    sources = {"all10": (digits.x, digits.y, 10), "d04": (first.x, first.y, 5),
               "perm04": (first.x[:, perm], first.y, 5), "randlab": (digits.x, noise, 10)}
    for name in BASES:
        if name == "untrained":
            store.register(mlp(3, 5), name)
            continue
        x, y, k = sources[name]
        model = mlp(0, k)
        train(model, Dataset(x, y, name), TrainConfig(epochs=40, seed=0, lr=0.003))
        store.register(model, name)
    target = load_data(TARGET)
    path = root / "target.npz"
    np.savez(path, x=target.x, y=target.y)
    return Graded(root / "store", str(path), TARGET_VAL)


_CACHE: dict[str, Graded] = {}


def graded(tmp_path_factory) -> Graded:
    """One graded store per test session (its bases take a few seconds to train)."""
    if "g" not in _CACHE:
        _CACHE["g"] = make_graded(tmp_path_factory.mktemp("graded"))
    return _CACHE["g"]
