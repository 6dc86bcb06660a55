"""Progress events of an advice run: what the CLI's progress bar and the gRPC job stream read.

An advice run emits ``AdviceStarted``, then for each training run (one candidate, one seed) its
``RunProgress`` events (each wrapping a :mod:`reuse.train.events` event of that run, possibly from a
worker process) and one ``RunFinished``, and at the end ``AdviceFinished``. Runs that were not started
(budget, cancellation) are listed in ``AdviceFinished.not_run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdviceStarted:
    """Attributes: ``runs`` planned (candidates x seeds), ``candidates`` labels, ``seeds``, worker ``jobs``,
    ``metric`` that scores each run (e.g. ``val_accuracy``)."""

    runs: int
    candidates: tuple[str, ...]
    seeds: tuple[int, ...]
    jobs: int
    metric: str


@dataclass(frozen=True)
class RunProgress:
    """A training event (``TrainStarted``/``EpochEnd``/``TrainFinished``) of one run."""

    candidate: str
    depth: int
    finetune: bool
    seed: int
    event: Any


@dataclass(frozen=True)
class RunFinished:
    """One run finished: its ``score`` (the metric on the validation data), wall ``seconds``, and how
    many runs are ``done`` of the ``total`` planned."""

    candidate: str
    depth: int
    finetune: bool
    seed: int
    score: float
    seconds: float
    done: int
    total: int


@dataclass(frozen=True)
class AdviceFinished:
    """The run ended: ``stopped`` is ``None`` (everything ran), ``"budget"`` or ``"cancelled"``;
    ``not_run`` lists ``"candidate, seed S"`` strings."""

    done: int
    total: int
    stopped: str | None
    seconds: float
    not_run: tuple[str, ...] = ()


AdviceEvent = AdviceStarted | RunProgress | RunFinished | AdviceFinished
AdviceProgress = Callable[[AdviceEvent], None]
