"""Constructed tasks for the advisor tests, where the right answer is known, and a store with their bases.

- ``relabel``: the base ``digits10`` is trained on all ten digits; the new task asks for the digit modulo
  5 (0 and 5 are one class, ...) from 3 labelled images per digit. Everything the new task needs is a
  function of the base's top hidden features, so reusing them must win over training from scratch.
- ``blind``: the base ``blind`` is trained on 16 inputs whose last 8 are always zero (its first layer
  never learned anything about them); the new task's classes live only in those 8 inputs, with plenty of
  labels. Reuse cannot help: training from scratch must win or tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from reuse.data import Dataset, load_data
from reuse.store import ModelStore
from reuse.train import TrainConfig, train

FAST = {"epochs": 60, "patience": 5, "lr": 0.03, "batch_size": 8, "seeds": 2}


@dataclass(frozen=True)
class Env:
    root: Path
    store: Path
    files: dict[str, str]


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((n_in,), name="features")]
    layers += [keras.layers.Dense(h, activation="relu", name=f"hidden{i}") for i, h in enumerate(hidden, 1)]
    layers.append(keras.layers.Dense(n_out, activation="softmax", name="output"))
    return keras.Sequential(layers, name="base")


def _clusters(n: int, k: int, d: int, seed: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = np.random.default_rng(seed).normal(scale=3.0, size=(k, d))
    y = np.arange(n) % k
    return centers[y] + rng.normal(size=(n, d)), y


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return str(path)


def make_env(root: Path) -> Env:
    store = ModelStore(root / "store")
    files: dict[str, str] = {}
    # relabel: digits mod 5 from the features of a ten-digit classifier.
    base = mlp(64, (32, 32), 10)
    train(base, load_data("builtin:digits"), TrainConfig(epochs=40, seed=0))
    store.register(base, "digits10", class_names=[str(i) for i in range(10)])
    few, test = load_data("builtin:digits?per_class=3"), load_data("builtin:digits?split=test")
    files["a_train"] = _save(root / "a_train.npz", few.x, few.y % 5)
    files["a_val"] = _save(root / "a_val.npz", test.x, test.y % 5)
    # blind: the base never saw its last 8 inputs move.
    rng = np.random.default_rng(0)
    xa, ya = _clusters(600, 3, 8, 1, rng)
    blind = mlp(16, (32, 32), 3)
    train(blind, Dataset(np.concatenate([xa, np.zeros_like(xa)], 1).astype(np.float32), ya, "blind"),
          TrainConfig(epochs=30, seed=0))
    store.register(blind, "blind")
    xb, yb = _clusters(300, 3, 8, 2, rng)
    x = np.concatenate([rng.normal(size=(300, 8)), xb], 1)
    files["b_train"] = _save(root / "b_train.npz", x[:150], yb[:150])
    files["b_val"] = _save(root / "b_val.npz", x[150:], yb[150:])
    return Env(root, root / "store", files)


_ENV: dict[str, Env] = {}


def shared_env(tmp_path_factory) -> Env:
    """One environment per test session (the bases take a couple of seconds to train)."""
    if "env" not in _ENV:
        _ENV["env"] = make_env(tmp_path_factory.mktemp("advise"))
    return _ENV["env"]
