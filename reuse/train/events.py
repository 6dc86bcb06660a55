"""Progress events of a training run: the one stream the CLI's progress bar and the gRPC server read.

A run emits ``FeaturePass`` events while it computes the features of a frozen part (when it has one to
cache), then ``TrainStarted``, one ``EpochEnd`` per epoch, then ``TrainFinished``. Several epochs may run
in one compiled call; their ``EpochEnd`` events then arrive together after the call, with ``elapsed``
spread evenly over the call and ``eta`` from the measured time per epoch. Runs made of several phases
(``--seeds N``, pretraining) carry ``phase``/``phases`` numbers and a label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainStarted:
    """A training phase begins.

    Attributes:
        task: ``train``, ``finetune``, ``pretrain``, ...
        epochs: epochs planned (early stopping may end sooner).
        samples, val_samples: rows of training and validation data.
        steps_per_epoch: optimizer steps per epoch.
        cached_layers: layers whose output was computed once and cached (empty: no cache).
        phase, phases, label: position of this phase in a multi-phase run (1-based) and its name.
    """

    task: str
    epochs: int
    samples: int
    val_samples: int
    steps_per_epoch: int
    cached_layers: tuple[str, ...] = ()
    phase: int = 1
    phases: int = 1
    label: str = ""


@dataclass(frozen=True)
class EpochEnd:
    """One epoch finished.

    Attributes:
        epoch: 1-based epoch number; ``epochs``: epochs planned.
        losses: ``{"loss": ..., "val_loss": ...}`` (``val_loss`` only with validation data).
        metrics: ``{"accuracy": ..., "val_accuracy": ...}`` (``mae`` for regression).
        elapsed: seconds since the phase started; ``eta``: estimated seconds to the planned end.
    """

    epoch: int
    epochs: int
    losses: dict[str, float]
    metrics: dict[str, float]
    elapsed: float
    eta: float
    phase: int = 1
    phases: int = 1


@dataclass(frozen=True)
class TrainFinished:
    """A training phase ended (not emitted when cancelled or failed).

    Attributes:
        epochs_run: epochs actually run; ``stopped_early``: early stopping ended it;
        best_epoch: 1-based epoch whose weights were kept (``None`` without early stopping);
        metrics: final metrics of the trained network; elapsed: seconds.
    """

    epochs_run: int
    stopped_early: bool
    best_epoch: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    phase: int = 1
    phases: int = 1


@dataclass(frozen=True)
class FeaturePass:
    """Progress of the one pass that computes a frozen part's features (before the first epoch).

    Attributes:
        rows_done, rows_total: rows computed so far, of all.
        elapsed: seconds since the pass started; ``eta``: estimated seconds left.
        message: what is computed and where it goes (``frozen features (train) -> memory``), or why
            nothing is cached.
    """

    rows_done: int
    rows_total: int
    elapsed: float
    eta: float
    message: str = ""
    phase: int = 1
    phases: int = 1

    @property
    def rows_per_second(self) -> float:
        return self.rows_done / self.elapsed if self.elapsed > 0 else 0.0


TrainEvent = TrainStarted | EpochEnd | TrainFinished | FeaturePass
ProgressCallback = Callable[[TrainEvent], None]
