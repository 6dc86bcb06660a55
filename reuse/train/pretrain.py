"""Greedy layer-wise pretraining, supervised or unsupervised (stacked autoencoders).

Supervised: train one hidden layer and the output; then repeatedly take the output layer off, freeze
the hidden layers, add a hidden layer, put the same output layer back and train.

Unsupervised: each new hidden layer is the encoder of an autoencoder that reconstructs the layer's
input (the frozen stack's output) through a linear decoder; at every depth a softmax output is trained
on the frozen stack to measure it. The final network is the stack plus that output; ``finetune``
then trains every layer at a tenth of the rate.

Frozen layers form a deterministic prefix, so every phase trains on cached features.

Stability: the published recipe (raw inputs, SGD 0.01 momentum 0.9, no clipping) diverges or
collapses to a constant output in some seeds. Our defaults standardise the inputs inside the network
(a frozen ``Normalization`` layer) and clip gradient norms to 1 in the autoencoder phases
(``ae_clipnorm``); see bench/pretrain_blobs.py for the measurements behind them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reuse.data import Dataset
from reuse.data.checks import OutputKind
from reuse.data.rows import is_lazy
from reuse.errors import InvalidInput
from reuse.train.config import TrainConfig
from reuse.train.engine import Phase
from reuse.train.events import ProgressCallback
from reuse.train.finetune import unfreeze_layers
from reuse.train.fit import train
from reuse.train.infer import Predictor, evaluate

MODES = ("supervised", "unsupervised")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of a greedy layer-wise pretraining run (defaults: the classic blobs experiment).

    ``epochs``/``batch_size``/``optimizer``/``lr``/``momentum``/``clipnorm`` apply to the supervised
    phases; ``ae_*`` to the autoencoder phases (``ae_lr`` ``None``: same as ``lr``). ``scale``
    standardises inputs with a frozen Normalization layer at the bottom of the network.
    """

    layers: int = 3
    units: int = 10
    mode: str = "supervised"
    finetune: bool = False
    activation: str = "relu"
    init: str = "he_uniform"
    scale: bool = True
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    clipnorm: float | None = None
    ae_optimizer: str = "sgd"
    ae_lr: float | None = None
    ae_momentum: float = 0.9
    ae_clipnorm: float | None = 1.0
    finetune_epochs: int | None = None
    seed: int = 0
    cache: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput(f"invalid pretraining mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if not isinstance(self.layers, int) or not 1 <= self.layers <= 64:
            raise InvalidInput(f"invalid number of layers {self.layers!r}: expected 1 to 64")
        if not isinstance(self.units, int) or not 1 <= self.units <= 65536:
            raise InvalidInput(f"invalid number of units {self.units!r}: expected 1 to 65536")
        self.supervised_config()  # validates the training settings
        self.autoencoder_config()

    def supervised_config(self, epochs: int | None = None, lr: float | None = None) -> TrainConfig:
        return TrainConfig(epochs=epochs or self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
                           lr=lr or self.lr,
                           momentum=self.momentum if self.optimizer in ("sgd", "rmsprop") else 0.0,
                           clipnorm=self.clipnorm, seed=self.seed, cache=self.cache)

    def autoencoder_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.ae_optimizer,
                           lr=self.ae_lr or self.lr,
                           momentum=self.ae_momentum if self.ae_optimizer in ("sgd", "rmsprop") else 0.0,
                           clipnorm=self.ae_clipnorm, seed=self.seed, cache=self.cache)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DepthRow:
    """Accuracy of the network at one depth (hidden layers); ``reconstruction``: the autoencoder's
    final training loss (unsupervised mode)."""

    depth: int
    train_accuracy: float
    test_accuracy: float | None
    train_loss: float
    test_loss: float | None
    reconstruction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PretrainResult:
    model: Any
    mode: str
    table: list[DepthRow]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    seconds: float
    phases: list[dict[str, Any]] = field(default_factory=list)


def _initializer(name: str, seed: int) -> Any:
    import keras

    init = keras.initializers.get(name)
    cfg = init.get_config()
    if "seed" in cfg:
        cfg["seed"] = seed
        init = type(init).from_config(cfg)
    return init


class _Builder:
    """Creates the layers of a pretraining run with seeded initialisers."""

    def __init__(self, config: PretrainConfig, n_in: tuple[int, ...], x: np.ndarray) -> None:
        import keras

        self.keras = keras
        self.c = config
        self.n_in = n_in
        self.count = 0
        self.norm = None
        if config.scale:
            if is_lazy(x):  # streamed: the per-feature mean and variance, a batch at a time
                mean, var = _moments(x)
                self.norm = keras.layers.Normalization(axis=-1, mean=mean, variance=var, name="scale")
                self.norm.build((None, *n_in))
            else:
                self.norm = keras.layers.Normalization(axis=-1, name="scale")
                self.norm.adapt(x)
            self.norm.trainable = False

    def _seed(self) -> int:
        self.count += 1
        return self.c.seed * 10_007 + self.count

    def hidden(self, depth: int) -> Any:
        return self.keras.layers.Dense(self.c.units, activation=self.c.activation, name=f"hidden{depth}",
                                       kernel_initializer=_initializer(self.c.init, self._seed()))

    def dense(self, units: int, activation: str, name: str) -> Any:
        return self.keras.layers.Dense(units, activation=activation, name=name,
                                       kernel_initializer=_initializer("glorot_uniform", self._seed()))

    def model(self, layers: list[Any], name: str) -> Any:
        front = [self.norm] if self.norm is not None else []
        return self.keras.Sequential([self.keras.Input(self.n_in), *front, *layers], name=name)


def _moments(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) variance of a row source's last axis, in one streamed pass."""
    from reuse.data.rows import batches, read_range
    from reuse.train.infer import BATCH

    count, total, squares = 0, 0.0, 0.0
    for lo, hi in batches(len(x), BATCH):
        b = read_range(x, lo, hi).astype(np.float64).reshape(-1, x.shape[-1])
        count, total, squares = count + len(b), total + b.sum(axis=0), squares + np.square(b).sum(axis=0)
    mean = total / max(count, 1)
    return mean.astype(np.float32), np.maximum(squares / max(count, 1) - np.square(mean), 0.0).astype(
        np.float32
    )


def pretrain(data: Dataset, config: PretrainConfig, *, test: Dataset | None = None,
             progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
             name: str = "pretrained") -> PretrainResult:
    """Grow a network greedily, one hidden layer at a time, and measure it at every depth.

    Args:
        data: labelled training data (class indices 0..k-1).
        config: see :class:`PretrainConfig`.
        test: data for the test column of the table (optional).
        progress, cancel: as :func:`reuse.train.train`; each phase emits its own events.
        name: the Keras name of the final model.

    Returns:
        the final network (not registered), the per-depth table and the last phase's history.

    Raises:
        InvalidInput: bad data or settings. Cancelled: ``cancel`` was set.
    """
    t0 = time.perf_counter()
    y = data.y
    if y is None or y.dtype.kind not in "iu" or y.size == 0:
        raise InvalidInput(f"{data.source}: pretraining needs integer class labels")
    n_classes = max(int(y.max()) + 1, len(data.class_names or ()))
    if n_classes < 2:
        raise InvalidInput(f"{data.source}: pretraining needs at least two classes")
    x = data.x if is_lazy(data.x) else np.asarray(data.x, dtype=np.float32)
    b = _Builder(config, tuple(x.shape[1:]), x)
    run = _Run(config, b, data, test, n_classes, progress, cancel)
    grown = run.supervised() if config.mode == "supervised" else run.unsupervised()
    model = b.model([x for x in grown.layers if x is not b.norm], name)
    if config.finetune:
        extra, _ = unfreeze_layers(model, tuple(layer.name for layer in model.layers if layer is not b.norm))
        cfg = config.supervised_config(config.finetune_epochs, lr=config.lr / 10.0)
        r = train(model, data, cfg, progress=progress, cancel=cancel, extra_trainable=extra,
                  phase=run.phase("fine-tune all layers"))
        run.last_history = r.history
        run.record(config.layers, model, None, "finetune")
    final = run.table[-1]
    metrics = {"accuracy": final.train_accuracy, "loss": final.train_loss}
    if final.test_accuracy is not None:
        metrics.update(test_accuracy=final.test_accuracy, test_loss=final.test_loss)
    return PretrainResult(model, config.mode, run.table, run.last_history, metrics,
                          time.perf_counter() - t0, run.phases)


class _Run:
    def __init__(self, config: PretrainConfig, builder: _Builder, data: Dataset, test: Dataset | None,
                 n_classes: int, progress: ProgressCallback | None, cancel: threading.Event | None) -> None:
        self.c, self.b, self.data, self.test = config, builder, data, test
        self.n_classes = n_classes
        self.progress, self.cancel = progress, cancel
        self.table: list[DepthRow] = []
        self.phases: list[dict[str, Any]] = []
        self.last_history: dict[str, list[float]] = {}
        per_depth = 1 if config.mode == "supervised" else 2
        self.total = config.layers * per_depth + (1 if config.finetune else 0)
        self.done = 0

    def phase(self, label: str) -> Phase:
        self.done += 1
        return Phase("pretrain", self.done, self.total, label)

    def record(self, depth: int, model: Any, reconstruction: float | None, stage: str) -> None:
        tr = evaluate(model, self.data)
        te = evaluate(model, self.test) if self.test is not None else None
        row = DepthRow(depth, tr["accuracy"], te["accuracy"] if te else None, tr["loss"],
                       te["loss"] if te else None, reconstruction)
        if stage == "finetune":
            row.reconstruction = self.table[-1].reconstruction
            self.table[-1] = row
        else:
            self.table.append(row)
        self.phases.append({"stage": stage, **row.to_dict()})

    def _fit(self, model: Any, data: Dataset, config: TrainConfig, label: str,
             kind: OutputKind | None = None) -> Any:
        r = train(model, data, config, progress=self.progress, cancel=self.cancel, phase=self.phase(label),
                  kind=kind)
        return r

    def supervised(self) -> Any:
        c, b = self.c, self.b
        hidden: list[Any] = []
        out = b.dense(self.n_classes, "softmax", "output")
        model = None
        for depth in range(1, c.layers + 1):
            for h in hidden:
                h.trainable = False
            hidden.append(b.hidden(depth))
            model = b.model([*hidden, out], f"supervised_depth{depth}")
            r = self._fit(model, self.data, c.supervised_config(), f"depth {depth}/{c.layers}: supervised")
            self.last_history = r.history
            self.record(depth, model, None, "supervised")
        return model

    def unsupervised(self) -> Any:
        c, b = self.c, self.b
        hidden: list[Any] = []
        model = None
        x = self.data.x if is_lazy(self.data.x) else np.asarray(self.data.x, dtype=np.float32)
        for depth in range(1, c.layers + 1):
            for h in hidden:
                h.trainable = False
            # The new layer's input: the frozen stack's output (scaled inputs at depth 1).
            has_below = bool(hidden) or b.norm is not None
            target = Predictor(b.model(hidden, "below"))(x) if has_below else x
            new = b.hidden(depth)
            decoder = b.dense(int(target.shape[1]), "linear", f"decoder{depth}")
            ae = b.model([*hidden, new, decoder], f"autoencoder_depth{depth}")
            r = self._fit(ae, Dataset(x, target, f"{self.data.source} (reconstruction)"),
                          c.autoencoder_config(), f"depth {depth}/{c.layers}: autoencoder",
                          kind=OutputKind("regression", int(target.shape[1])))
            hidden.append(new)
            new.trainable = False
            out = b.dense(self.n_classes, "softmax", "output")
            model = b.model([*hidden, out], f"unsupervised_depth{depth}")
            rc = self._fit(model, self.data, c.supervised_config(),
                           f"depth {depth}/{c.layers}: output layer")
            self.last_history = rc.history
            self.record(depth, model, r.metrics.get("loss"), "unsupervised")
        return model
