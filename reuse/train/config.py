"""Training settings: one frozen dataclass, checked on creation, and the optimizer it describes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from reuse.errors import InvalidInput
from reuse.text import echo

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "rmsprop", "adamw", "nadam")
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001, "rmsprop": 0.001, "adamw": 0.001, "nadam": 0.001}
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
FROZEN_MODES = ("inference", "training")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the training data (>= 1).
        batch_size: samples per step (>= 1); the last, smaller batch of an epoch is kept.
        optimizer: one of ``OPTIMIZERS``.
        lr: learning rate; ``None`` means the optimizer's default (``DEFAULT_LR``).
        momentum: for ``sgd`` and ``rmsprop``.
        nesterov: Nesterov momentum (``sgd``).
        clipnorm: clip each gradient to this norm (not together with ``clipvalue``).
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        early_stopping: patience in epochs, or ``None``: stop when the monitored loss (validation loss
            when there is validation data, else training loss) has not improved for this many epochs.
        restore_best: with early stopping, keep the weights of the best epoch.
        val_split: hold out this fraction of the training data for validation (0 = none).
        seed: seeds the per-epoch shuffle and any dropout in the trained layers.
        cache: compute the output of a frozen, deterministic prefix of the network once and train the
            rest on it (same results, faster).
        shuffle: reshuffle the training data every epoch.
        weight_decay: for ``adamw`` (default 0.004, Keras's).
        data_parallel: split each batch over every local device (every host's, once
            ``keras.distribution.initialize`` has run); needs the JAX backend.
        frozen_mode: ``inference`` (default): frozen layers run in inference mode while the rest
            trains (frozen dropout and noise off, as a base called with ``training=False``);
            ``training``: they follow the training flag, as in plain Keras.
        features_dir: write the frozen part's features to this folder and keep them there (a later
            run on the same data with the same frozen weights reads them instead of computing them);
            default: in memory, or a temporary folder removed after the run.
        augment: augmentation of the training images, e.g. ``flip,rotate:0.1`` (see
            :mod:`reuse.train.augment`); never part of the trained network.
        augment_views: with a frozen part, compute this many augmented views of the training set
            through it once (epoch ``e`` trains on view ``e mod K``) instead of augmenting every batch
            and running the frozen part each time (0, the default).
    """

    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.0
    nesterov: bool = False
    clipnorm: float | None = None
    clipvalue: float | None = None
    early_stopping: int | None = None
    restore_best: bool = True
    val_split: float = 0.0
    seed: int = 0
    cache: bool = True
    shuffle: bool = True
    weight_decay: float | None = None
    data_parallel: bool = False
    frozen_mode: str = "inference"
    features_dir: str | None = None
    augment: str | None = None
    augment_views: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, expected: str) -> InvalidInput:
            return InvalidInput(f"invalid {field} {echo(value)}: expected {expected}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", self.epochs, "an integer >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch size", self.batch_size, "an integer >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("learning rate", self.lr, "a positive number")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise bad("momentum", self.momentum, "a number in [0, 1)")
        if (self.momentum or self.nesterov) and self.optimizer not in MOMENTUM_OPTIMIZERS:
            raise InvalidInput(f"momentum applies to {' and '.join(MOMENTUM_OPTIMIZERS)}, not "
                               f"{self.optimizer}")
        if self.nesterov and self.optimizer != "sgd":
            raise InvalidInput(f"nesterov applies to sgd, not {self.optimizer}")
        if self.clipnorm is not None and self.clipvalue is not None:
            raise InvalidInput("give clipnorm or clipvalue, not both")
        for name in ("clipnorm", "clipvalue"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise bad(name, v, "a positive number")
        if self.early_stopping is not None and (not isinstance(self.early_stopping, int)
                                                or self.early_stopping < 1):
            raise bad("early-stopping patience", self.early_stopping, "an integer >= 1")
        if not 0.0 <= self.val_split < 1.0:
            raise bad("validation split", self.val_split, "a fraction in [0, 1)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", self.seed, "an integer >= 0")
        if self.weight_decay is not None:
            if self.optimizer != "adamw":
                raise InvalidInput(f"weight_decay applies to adamw, not {self.optimizer}")
            if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
                raise bad("weight decay", self.weight_decay, "a number >= 0")
        if self.augment is not None:
            from reuse.train.augment import AugmentSpec

            AugmentSpec.parse(self.augment)
        if not isinstance(self.augment_views, int) or self.augment_views < 0:
            raise bad("augment views", self.augment_views, "an integer >= 0")
        if self.augment_views and not self.augment:
            raise InvalidInput("--augment-views needs --augment (the augmentation to make the views with)")
        if self.frozen_mode not in FROZEN_MODES:
            raise bad("frozen mode", self.frozen_mode, f"one of {', '.join(FROZEN_MODES)}")
        if self.data_parallel:
            check_data_parallel()

    @property
    def learning_rate(self) -> float:
        """The learning rate in effect: ``lr`` or the optimizer's default."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.optimizer]

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr"] = self.learning_rate
        return d

    @classmethod
    def from_options(cls, options: dict[str, Any], parent: dict[str, Any], *, finetune: bool) -> TrainConfig:
        """A config from plain option values (``None`` = not given); fine-tuning without an ``optimizer``
        inherits the parent's optimizer settings (``parent``: its recorded training settings).

        Raises:
            InvalidInput: an option that is not a TrainConfig field, or a bad value.
        """
        given = {k: v for k, v in options.items() if v is not None}
        if finetune and "optimizer" not in given and parent.get("optimizer"):
            for key in ("optimizer", "momentum", "nesterov", "batch_size"):
                if key not in given and key in parent:
                    given[key] = parent[key]
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInput(f"unknown training options {unknown}; expected TrainConfig fields")
        return cls(**given)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        # data_parallel says how a run was executed, not how to train: a record from JAX loads anywhere.
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "data_parallel"}
        return cls(**known)


def make_optimizer(config: TrainConfig) -> Any:
    """A fresh Keras optimizer for ``config``."""
    import keras

    clip: dict[str, float] = {}
    if config.clipnorm is not None:
        clip["clipnorm"] = config.clipnorm
    if config.clipvalue is not None:
        clip["clipvalue"] = config.clipvalue
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=config.nesterov, **clip)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **clip)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=config.momentum, **clip)
    if config.optimizer == "adamw":
        wd = 0.004 if config.weight_decay is None else config.weight_decay
        return keras.optimizers.AdamW(lr, weight_decay=wd, **clip)
    return keras.optimizers.Nadam(lr, **clip)


def join_hosts() -> bool:
    """Join the other hosts of a multi-host data-parallel run, when this process is one of several.

    Keras's ``keras.distribution.initialize`` reads ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (every host's
    ``HOST:PORT``, the first is the coordinator), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
    ``KERAS_DISTRIBUTION_PROCESS_ID``; it must run before JAX computes anything, so the CLI calls this
    before it loads a model. Without those variables it does nothing and returns False.

    Raises:
        InvalidInput: the Keras backend is not JAX (the option does not fit this process).
    """
    import os

    if not os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        return False
    check_data_parallel()
    import keras

    keras.distribution.initialize()
    return True


def check_data_parallel() -> None:
    """Refuse data-parallel training on a backend other than JAX.

    Raises:
        InvalidInput: the Keras backend is not JAX (the option does not fit this process).
    """
    import keras

    name = keras.backend.backend()
    if name != "jax":
        # Keras 3 models do not train under tf.distribute.MultiWorkerMirroredStrategy
        # (keras-team/keras#20585).
        raise InvalidInput(f"data-parallel training needs the JAX backend (KERAS_BACKEND=jax, with the "
                                 f"jax extra: pip install 'reuse[jax]'); this process runs {name!r}")
