"""The example pretrained network shipped in ``models/``: how it is made, where it lives, what it scored.

``digits-base`` is five Dense layers of 100 units (``hidden1``..``hidden5``, he_normal + ELU) and a
softmax output, trained on scikit-learn's digits 0-4 (the fixed train split of ``builtin:digits``) with
our own training loop. ``scripts/make_example_model.py`` re-creates it; the file is committed as
``models/digits-base/v1.h5``, an ordinary store entry (the store's index under ``models/.reuse`` is a
cache, rebuilt on demand).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.atomic import atomic_path
from reuse.errors import NotFound

NAME = "digits-base"
VERSION = 1
TRAIN_DATA = "builtin:digits?classes=0-4"
TEST_DATA = "builtin:digits?classes=0-4&split=test"
HIDDEN = 5
UNITS = 100
SEED = 0
EPOCHS = 60
LEARNING_RATE = 1e-3
DESCRIPTION = (f"{HIDDEN} Dense layers of {UNITS} units (he_normal, ELU) + softmax, trained on scikit-learn "
               "digits 0-4 (builtin:digits train split); made by scripts/make_example_model.py")
TAGS = {"dataset": "sklearn-digits", "classes": "0-4", "example": "yes"}


def repo_root() -> Path:
    """The source tree this package runs from (the example model ships in its ``models/`` folder)."""
    return Path(__file__).resolve().parents[2]


def example_path(root: str | os.PathLike[str] | None = None) -> Path:
    """The shipped file, ``<root>/models/digits-base/v1.h5`` (root: the repository the package runs from).

    Raises:
        NotFound: the file is missing (an installed package without the repository's ``models/``).
    """
    path = Path(root or repo_root()) / "models" / NAME / f"v{VERSION}.h5"
    if not path.is_file():
        raise NotFound(f"{path}: the example model is missing; run `python scripts/make_example_model.py` "
                       "from the repository root to create it")
    return path


@dataclass(frozen=True)
class ExampleModel:
    path: Path
    test_accuracy: float
    train_accuracy: float
    epochs: int
    seconds: float


def build_network(seed: int = SEED) -> Any:
    """The untrained architecture: ``Input(64) -> hidden1..hidden5 -> output`` (softmax over 5 classes)."""
    import keras

    keras.utils.set_random_seed(seed)
    layers: list[Any] = [keras.Input((64,), name="pixels")]
    for i in range(1, HIDDEN + 1):
        layers.append(keras.layers.Dense(UNITS, activation="elu", kernel_initializer="he_normal",
                                         name=f"hidden{i}"))
    layers.append(keras.layers.Dense(5, activation="softmax", name="output"))
    return keras.Sequential(layers, name=NAME)


def make_example_model(out_root: str | os.PathLike[str], *,
                       epochs: int = EPOCHS, seed: int = SEED) -> ExampleModel:
    """Train ``digits-base`` and write it to ``<out_root>/models/digits-base/v1.h5``, replacing any old one.

    The model is registered in a scratch store (so the file carries our metadata and checksums) and the
    version file is then moved into place atomically: re-running gives version 1 again, never version 2.

    Args:
        out_root: the repository root (or any folder; ``models/`` is created in it).
        epochs: training epochs (Adam, batch 32, no early stopping).
        seed: seeds the initial weights and the shuffling.
    """
    from reuse.data import load_data
    from reuse.store import ModelStore
    from reuse.train import TrainConfig, evaluate, train

    train_ds, test_ds = load_data(TRAIN_DATA), load_data(TEST_DATA)
    model = build_network(seed)
    config = TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", lr=LEARNING_RATE, seed=seed)
    res = train(model, train_ds, config)
    test = evaluate(model, test_ds)
    metrics = {"accuracy": res.metrics["accuracy"], "loss": res.metrics["loss"],
               "test_accuracy": test["accuracy"], "test_loss": test["loss"],
               "test_samples": test["samples"], "test_data": TEST_DATA}
    settings = {**res.settings(), "data": TRAIN_DATA, "test": TEST_DATA}
    final = Path(out_root) / "models" / NAME / f"v{VERSION}.h5"
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reuse-example-") as tmp:
        info = ModelStore(Path(tmp) / "store").register(
            model, NAME, description=DESCRIPTION, tags=TAGS, class_names=[str(c) for c in range(5)],
            metrics=metrics, history=res.history, settings=settings)
        with atomic_path(final) as staged:
            shutil.copyfile(info.path, staged)
    return ExampleModel(final, float(test["accuracy"]), float(res.metrics["accuracy"]), res.epochs_run,
                        res.seconds)
