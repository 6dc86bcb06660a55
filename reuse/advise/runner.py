"""One unit of advisor work: one reuse depth and one seed, in this process or a worker process.

A unit of depth ``k >= 1`` builds the network reusing depth ``k`` frozen, trains its head (the *frozen*
candidate), and then, when asked, unfreezes the reused layers and trains on at a lower rate (the
*fine-tuned* candidate: frozen, then fine-tuned, so it shares the whole frozen phase). A unit of depth 0
trains the scratch network. Units get everything as plain values, so a worker process rebuilds them from
the store on disk; the frozen-prefix features are shared through the context's :class:`FeatureCache`
between the units that reuse the same layers (and, with worker processes, between the workers, through
one folder on disk).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reuse.advise.events import RunProgress
from reuse.advise.recommend import Candidate
from reuse.data import Dataset
from reuse.errors import Cancelled
from reuse.graph.arch import exact_scope
from reuse.keras_compat import all_layers
from reuse.store import ModelStore
from reuse.train.config import TrainConfig
from reuse.train.engine import Phase
from reuse.train.features import FeatureCache


@dataclass(frozen=True)
class Job:
    """What every unit of one advice run shares (plain values: it is sent to worker processes)."""

    base: str
    head: str
    classes: int | None
    regression: bool | int
    match: str
    config: TrainConfig
    finetune_lr: float
    metric: str  # the key of TrainResult.metrics that scores a run, e.g. "val_accuracy"
    keep_weights: bool = False


@dataclass(frozen=True)
class Unit:
    depth: int
    scope: str
    seed: int
    finetune: bool

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        if self.depth == 0:
            return (Candidate(0),)
        return (Candidate(self.depth),) + ((Candidate(self.depth, True),) if self.finetune else ())


@dataclass
class RunRecord:
    """One trained candidate with one seed."""

    candidate: Candidate
    seed: int
    score: float
    metrics: dict[str, float]
    seconds: float
    epochs_run: int
    trainable_params: int
    diverged: bool
    history: dict[str, list[float]] | None = None
    weights: list[np.ndarray] | None = None
    layers: tuple[str, ...] = ()
    unfrozen: tuple[str, ...] = ()
    capped: bool = False  # its last phase ran every epoch without stopping early


@dataclass(frozen=True)
class RunRecorded:
    """Internal progress event: a run of the unit finished (the record itself comes with the unit)."""

    candidate: Candidate
    seed: int
    score: float
    seconds: float


@dataclass
class UnitResult:
    unit: Unit
    records: list[RunRecord] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0


class UnitContext:
    """What units read in one process: the store, the data (checked against the candidates once), and
    the frozen-feature cache the units share (``cache``; default one of this process, in memory or a
    temporary folder: :class:`reuse.train.features.FeatureCache`)."""

    def __init__(self, store: ModelStore, train: Dataset, val: Dataset,
                 cache: FeatureCache | None = None) -> None:
        self.store, self.train, self.val = store, train, val
        self.cache = cache if cache is not None else FeatureCache()


def build_candidate(ctx: UnitContext, job: Job, unit: Unit) -> tuple[Any, dict[str, Any]]:
    """The untrained network of ``unit`` (scratch: the same architecture, freshly initialised)."""
    from reuse.build import build_network

    built = build_network(ctx.store, job.base, unit.scope, head=job.head, classes=job.classes,
                          regression=job.regression, match=job.match, name="advice", seed=unit.seed)
    if unit.depth > 0:
        return built.model, built.lineage
    return fresh_copy(built.model, unit.seed), built.lineage


def fresh_copy(model: Any, seed: int) -> Any:
    """A trainable copy of ``model`` with every layer re-initialised from seeded initialisers."""
    import keras

    counter = itertools.count(1)

    def clone(layer: Any) -> Any:
        return type(layer).from_config(_seeded(layer.get_config(), seed * 1000 + next(counter) * 17))

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in all_layers(new):
        layer.trainable = True
    return new


def _seeded(config: dict[str, Any], seed: int) -> dict[str, Any]:
    out = dict(config)
    for i, (key, value) in enumerate(sorted(config.items())):
        if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
            out[key] = {**value, "config": {**value["config"], "seed": seed + i}}
    return out


def count_trainable(model: Any, extra: list[Any] | None = None) -> int:
    variables = {id(v): v for v in list(model.trainable_variables) + list(extra or [])}
    return int(sum(int(np.prod(v.shape)) for v in variables.values()))


def _bn_extra(model: Any, names: tuple[str, ...]) -> list[Any]:
    layers = {x.name: x for x in all_layers(model)}
    return [v for n in names for v in (layers[n].gamma, layers[n].beta) if v is not None]


def _record(job: Job, cand: Candidate, seed: int, result: Any, model: Any, seconds: float, epochs: int,
            params: int, history: dict[str, list[float]] | None, layers: tuple[str, ...]) -> RunRecord:
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return RunRecord(cand, seed, metrics.get(job.metric, float("nan")), metrics, seconds, epochs, params,
                     bool(result.diverged), history if job.keep_weights else None,
                     [np.array(w) for w in model.get_weights()] if job.keep_weights else None, layers,
                     tuple(result.unfrozen),
                     result.epochs_run >= result.config.epochs and not result.diverged)


def _joined(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: list(a.get(k, [])) + list(b.get(k, [])) for k in a if k in b}


Progress = Callable[[Any], None]


def run_unit(ctx: UnitContext, job: Job, unit: Unit, *, progress: Progress | None = None,
             cancel: Any = None) -> UnitResult:
    """Train the candidates of ``unit``; on cancellation return the runs that finished.

    Raises:
        ReuseError: the network cannot be built or trained on the data (other than cancellation).
    """
    from reuse.train import finetune, train

    out = UnitResult(unit)
    t0 = time.perf_counter()
    first, *rest = unit.candidates

    def relay(cand: Candidate) -> Callable[[Any], None] | None:
        if progress is None:
            return None
        return lambda ev: progress(RunProgress(cand.label, cand.depth, cand.finetune, unit.seed, ev))

    def done(record: RunRecord) -> None:
        out.records.append(record)
        if progress is not None:
            progress(RunRecorded(record.candidate, record.seed, record.score, record.seconds))

    try:
        model, lineage = build_candidate(ctx, job, unit)
        reused = tuple(x["name"] for x in lineage["layers"])
        cfg = job.config.with_(seed=unit.seed)
        params = count_trainable(model)
        r1 = train(model, ctx.train, cfg, val=ctx.val, progress=relay(first), cancel=cancel,
                   phase=Phase(label=f"{first.label}, seed {unit.seed}"), features=ctx.cache)
        t1 = time.perf_counter() - t0
        done(_record(job, first, unit.seed, r1, model, t1, r1.epochs_run, params, r1.history,
                     reused if unit.depth else ()))
        for cand in rest:
            r2 = finetune(model, exact_scope(reused), ctx.train, cfg.with_(lr=job.finetune_lr), val=ctx.val,
                          progress=relay(cand), cancel=cancel,
                          phase=Phase("finetune", label=f"{cand.label}, seed {unit.seed}"),
                          features=ctx.cache)
            params = count_trainable(model, _bn_extra(model, r2.bn_inference))
            done(_record(job, cand, unit.seed, r2, model, time.perf_counter() - t0,
                         r1.epochs_run + r2.epochs_run, params, _joined(r1.history, r2.history), reused))
    except Cancelled:
        out.cancelled = True
    out.seconds = time.perf_counter() - t0
    return out
