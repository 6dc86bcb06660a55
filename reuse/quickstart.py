"""The walk-through behind ``reuse quickstart`` (and ``make run``), as a sequence of small steps.

Today: train a small MLP on scikit-learn's handwritten digits, register it in a store, list the store,
show the model's layers, export it to ``.keras`` and check the export predicts the same. Later issues
append steps (reuse its lower layers, fine-tune, serve). Each step reports through ``say`` so the core
prints nothing itself.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse.errors import StoreCorrupt
from reuse.service import Service
from reuse.store import ModelInfo
from reuse.text import human_bytes, shape, short_time, table

Say = Callable[[str], None]
MODEL_NAME = "digits-mlp"
SEED = 0


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


@dataclass(frozen=True)
class QuickstartResult:
    store: Path
    ref: str
    test_accuracy: float
    export_path: Path


def load_digits_data(seed: int = SEED) -> Digits:
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with the package), scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int64")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return Digits(x_tr, y_tr, x_te, y_te, [str(c) for c in data.target_names])


def build_mlp(n_in: int, n_classes: int, seed: int = SEED) -> Any:
    """Three hidden Dense layers named hidden1..hidden3 (the layers later steps reuse) and a softmax head."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((n_in,), name="pixels"),
            keras.layers.Dense(64, activation="relu", name="hidden1"),
            keras.layers.Dense(32, activation="relu", name="hidden2"),
            keras.layers.Dense(16, activation="relu", name="hidden3"),
            keras.layers.Dense(n_classes, activation="softmax", name="output"),
        ],
        name=MODEL_NAME,
    )


def train_step(data: Digits, epochs: int, say: Say) -> tuple[Any, dict[str, list[float]], dict[str, float]]:
    """Train the MLP; return the model, its per-epoch history and its test metrics."""
    import keras

    model = build_mlp(data.x_train.shape[1], len(data.class_names))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    say(f"Training {MODEL_NAME} on {len(data.x_train)} digit images for {epochs} epochs "
        f"({len(data.x_test)} held out for testing)")
    every = max(1, epochs // 5)

    def report(epoch: int, logs: dict[str, float]) -> None:
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            say(f"  epoch {epoch + 1:>3}/{epochs}: loss {logs['loss']:.4f}  accuracy {logs['accuracy']:.3f}  "
                f"val_accuracy {logs['val_accuracy']:.3f}")

    fit = model.fit(data.x_train, data.y_train, validation_split=0.15, epochs=epochs, batch_size=32, verbose=0,
                    callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)])
    loss, acc = model.evaluate(data.x_test, data.y_test, verbose=0)
    say(f"  test accuracy {acc:.3f} (loss {loss:.4f})")
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return model, history, {"test_accuracy": float(acc), "test_loss": float(loss)}


def register_step(service: Service, model: Any, data: Digits, history: dict[str, list[float]],
                  metrics: dict[str, float], epochs: int, say: Say) -> ModelInfo:
    info = service.register_model(
        model, MODEL_NAME, description="MLP on scikit-learn digits (quickstart)",
        tags={"dataset": "sklearn-digits", "by": "quickstart"}, class_names=data.class_names,
        metrics=metrics, history=history, settings={"epochs": epochs, "optimizer": "adam", "learning_rate": 3e-3},
    )
    say(f"Registered {info.ref} in {service.store_root} ({human_bytes(info.size_bytes)})")
    return info


def list_step(service: Service, say: Say) -> None:
    infos = service.list_models()
    say("The store now holds (reuse list):")
    rows = [(i.name, i.version, short_time(i.created), i.params, i.description) for i in infos]
    say(_indent(table(["MODEL", "VERSION", "CREATED (UTC)", "PARAMS", "DESCRIPTION"], rows, right=(1, 3))))


def show_layers_step(service: Service, ref: str, say: Say) -> None:
    layers = service.model_layers(ref)
    say(f"Layers of {ref} (reuse show {ref}):")
    rows = [(la.name, la.class_name, shape(la.output_shape), f"{la.params:,}", "yes" if la.trainable else "no")
            for la in layers]
    say(_indent(table(["LAYER", "TYPE", "OUTPUT SHAPE", "PARAMS", "TRAINABLE"], rows, right=(3,))))


def export_step(service: Service, ref: str, out: Path, data: Digits, say: Say) -> Path:
    """Export to .keras, then reopen it with plain Keras and check it predicts as the stored model does."""
    import keras

    path = service.export_model(ref, out, overwrite=True)
    stored = service.load_model(ref).predict(data.x_test, verbose=0)
    exported = keras.models.load_model(path, compile=False).predict(data.x_test, verbose=0)
    if not np.allclose(stored, exported, atol=1e-6):
        raise StoreCorrupt(f"{path}: the exported model predicts differently from {ref}")
    say(f"Exported {ref} to {path}; plain keras.models.load_model gives the same predictions")
    return path


def run_quickstart(store: str | Path | None = None, *, epochs: int = 30, say: Say = print) -> QuickstartResult:
    """Run every step in order; raise (ReuseError or otherwise) at the first that fails.

    Args:
        store: the store folder; a fresh temporary folder when None.
        epochs: training epochs for the MLP.
        say: where progress lines go.
    """
    work = Path(tempfile.mkdtemp(prefix="reuse-quickstart-"))
    root = Path(store) if store is not None else work / "models"
    say(f"Store: {root}" + ("  (a fresh temporary folder; pass --store to choose one)" if store is None else ""))
    service = Service(root)
    data = load_digits_data()
    model, history, metrics = train_step(data, epochs, say)
    info = register_step(service, model, data, history, metrics, epochs, say)
    list_step(service, say)
    show_layers_step(service, info.ref, say)
    path = export_step(service, info.ref, work / f"{MODEL_NAME}-v{info.version}.keras", data, say)
    say("Quickstart finished: every step succeeded.")
    return QuickstartResult(root, info.ref, metrics["test_accuracy"], path)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
