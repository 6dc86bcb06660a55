"""The advisor: train every candidate over several seeds, tabulate, recommend.

Each candidate (see :mod:`reuse.advise.plan`) is trained on the training data with early stopping on the
validation loss (best weights kept) and scored on the validation data: accuracy for classification, the
loss (mean squared error) for regression. The same validation data decide early stopping and the score
for every candidate, so any optimism from that is shared. The recommendation follows
:func:`reuse.advise.recommend.recommend`.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reuse.advise.events import AdviceFinished, AdviceProgress, AdviceStarted, RunFinished
from reuse.advise.plan import CandidatePlan, DepthPlan, plan_candidates
from reuse.advise.recommend import Candidate, CandidateResult, Recommendation, recommend
from reuse.advise.runner import Job, RunRecord, RunRecorded, Unit, UnitContext, UnitResult, build_candidate
from reuse.advise.schedule import Budget, run_units
from reuse.data import Dataset, check_for_model, output_kind, split_stratified, split_validation
from reuse.errors import InvalidInput
from reuse.heads import HeadSpec, parse_head
from reuse.store import ModelStore
from reuse.train.config import TrainConfig

DEFAULT_MARGIN = 0.005
REGRESSION_MARGIN = 0.01  # relative to the best mean loss
FEW_VAL_SAMPLES = 30


@dataclass(frozen=True)
class AdviseConfig:
    """How to measure.

    Attributes:
        seeds: seeds per candidate (``seed .. seed + seeds - 1``); each seed changes the head's (for
            scratch: the whole network's) initial weights and the shuffling.
        epochs, patience: at most ``epochs`` per phase; stop after ``patience`` epochs without a lower
            validation loss and keep the best epoch's weights.
        batch_size, optimizer, lr: as :class:`reuse.train.TrainConfig` (``lr`` ``None``: the optimizer's).
        finetune_lr: rate of the fine-tuning phase (default a tenth of the training rate).
        finetune: also try each depth frozen then fine-tuned.
        budget_minutes: start no run that would end after this much time (``None``: no limit).
        jobs: worker processes (1: train in this process); with ``ray``, the runs in flight at once.
        ray: ``None`` (local processes), ``"local"`` (start a Ray instance here and stop it afterwards)
            or the address of a Ray cluster: each unit becomes a Ray task (needs the ``ray`` extra).
        ray_cpus, ray_gpus: what each Ray task asks for.
        min_margin: the smallest difference that counts (default 0.005 accuracy, at least one
            validation sample's worth; for regression 1% of the best mean loss).
        val_split: the fraction held out (stratified by class) when no validation data is given.
        cache: cache the frozen layers' output (same results, faster).
        augment, augment_views: augmentation of the training images in every run, as
            :class:`reuse.train.TrainConfig` (never part of a registered network).
    """

    seeds: int = 3
    seed: int = 0
    epochs: int = 200
    patience: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    finetune_lr: float | None = None
    finetune: bool = True
    budget_minutes: float | None = None
    jobs: int = 1
    min_margin: float | None = None
    val_split: float = 0.25
    cache: bool = True
    ray: str | None = None
    ray_cpus: float = 1.0
    ray_gpus: float = 0.0
    augment: str | None = None
    augment_views: int = 0

    def __post_init__(self) -> None:
        def whole(name: str, low: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise InvalidInput(f"invalid {name} {v!r}: expected an integer >= {low}")

        whole("seeds", 1)
        whole("jobs", 1)
        whole("patience", 1)
        for name in ("budget_minutes", "finetune_lr"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InvalidInput(f"invalid {name} {v!r}: expected a positive number")
        if self.min_margin is not None and not (math.isfinite(self.min_margin) and self.min_margin >= 0):
            raise InvalidInput(f"invalid min_margin {self.min_margin!r}: expected a number >= 0")
        if not 0.0 < self.val_split < 1.0:
            raise InvalidInput(f"invalid validation split {self.val_split!r}: expected a fraction in (0, 1)")
        self.train_config()  # checks epochs, batch size, optimizer, lr, seed
        if self.ray is not None:
            from reuse.advise.ray_schedule import check_ray

            check_ray(self.ray, self.ray_cpus, self.ray_gpus)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
                           lr=self.lr, early_stopping=self.patience, seed=self.seed, cache=self.cache,
                           augment=self.augment, augment_views=self.augment_views)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass
class Advice:
    """The outcome of an advice run. ``rows`` are in candidate order (simplest first) and include
    candidates with no finished run (empty ``scores``); ``recommendation`` is ``None`` when no run
    finished. ``stopped`` is ``None``, ``"budget"`` or ``"cancelled"``."""

    base: str
    data: str
    val: str
    metric: str
    higher_is_better: bool
    samples: int
    val_samples: int
    seeds: tuple[int, ...]
    jobs: int
    rows: list[CandidateResult]
    recommendation: Recommendation | None
    not_run: list[tuple[Candidate, tuple[int, ...]]]
    stopped: str | None
    seconds: float
    output: dict[str, Any]
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    registered: str | None = None
    plot: str | None = None
    plan: CandidatePlan | None = field(default=None, repr=False)
    job: Job | None = field(default=None, repr=False)
    kept: dict[Candidate, RunRecord] = field(default_factory=dict, repr=False)
    # keep_weights="seeds": every finished seed of the recommendation, and the validation data they were
    # scored on
    kept_seeds: list[RunRecord] = field(default_factory=list, repr=False)
    val_data: Dataset | None = field(default=None, repr=False)
    registered_ensemble: str | None = None
    # advise --shortlist: what the ranking trained and skipped (reuse.rank.shortlist), and for a shortlist
    # across models each joined row's own advice run and candidate there
    shortlist: dict[str, Any] | None = None
    parts: dict[Candidate, Any] = field(default_factory=dict, repr=False)

    def row_dict(self, r: CandidateResult) -> dict[str, Any]:
        c = r.candidate
        chosen = self.recommendation is not None and self.recommendation.choice.candidate == c
        return {
            "candidate": c.label, "depth": c.depth, "finetune": c.finetune, "scope": r.extra.get("scope"),
            "layers": list(r.extra.get("layers", ())), "mean": _finite(r.mean) if r.scores else None,
            "std": _finite(r.std) if r.scores else None, "scores": [_finite(s) for s in r.scores],
            "seeds": list(r.extra.get("seeds", ())), "seconds": round(r.seconds, 4),
            "trainable_params": r.trainable_params if r.scores else None,
            "epochs_run": list(r.extra.get("epochs_run", ())), "recommended": chosen,
        } | ({"base": r.extra["base"]} if "base" in r.extra else {})

    def to_dict(self) -> dict[str, Any]:
        rec = self.recommendation
        return {
            "base": self.base, "data": self.data, "val": self.val, "metric": self.metric,
            "higher_is_better": self.higher_is_better, "samples": self.samples,
            "val_samples": self.val_samples, "seeds": list(self.seeds), "jobs": self.jobs,
            "rows": [self.row_dict(r) for r in self.rows], "recommendation": None if rec is None else {
                "candidate": rec.choice.candidate.label, "depth": rec.choice.candidate.depth,
                "finetune": rec.choice.candidate.finetune, "reuse_helps": rec.reuse_helps,
                "reason": rec.reason, "mean": _finite(rec.choice.mean), "std": _finite(rec.choice.std)},
            "not_run": [{"candidate": c.label, "depth": c.depth, "finetune": c.finetune, "seeds": list(s)}
                        for c, s in self.not_run],
            "stopped": self.stopped, "seconds": round(self.seconds, 3), "output": self.output,
            "settings": self.settings, "warnings": list(self.warnings), "registered": self.registered,
            "registered_ensemble": self.registered_ensemble,
            "plot": self.plot,
            "shortlist": self.shortlist,
        }


def resolve_output(head: HeadSpec, classes: int | None, regression: bool | int,
                   data: Dataset, val: Dataset | None) -> tuple[int | None, bool | int]:
    """The output layer to append: as given (``regression=True``: one output per target column), none
    when the head ends in one, else read from the labels (whole numbers >= 0: classes 0..max; anything
    else: regression with one output per target)."""
    ys = [d.y for d in (data, val) if d is not None and d.y is not None]
    y = np.concatenate([np.asarray(v).reshape(len(v), -1) for v in ys])
    if regression is True and y.shape[1] > 1:
        return classes, int(y.shape[1])
    if classes is not None or regression is not False:
        return classes, regression
    if head.layers and getattr(head.layers[-1], "activation", None) in ("softmax", "sigmoid"):
        return None, False
    if y.dtype.kind in "iub" or (y.dtype.kind == "f" and y.shape[1] == 1 and np.all(np.isfinite(y))
                                 and np.all(y == np.round(y)) and y.min() >= 0):
        n = max(int(y.max()) + 1, len(data.class_names or ()))
        if n < 2:
            raise InvalidInput(f"{data.source}: every label is {int(y.max())}; expected at least two "
                               "classes (or pass --regression)")
        return n, False
    return None, (True if y.shape[1] == 1 else int(y.shape[1]))


def _validation(data: Dataset, val: Dataset | None,
                regression: bool, config: AdviseConfig) -> tuple[Dataset, Dataset]:
    if val is not None:
        return data, val
    if regression:
        return split_validation(data, config.val_split, config.seed)
    return split_stratified(data, config.val_split, config.seed)


@dataclass(frozen=True)
class AdviceSetup:
    """What :func:`prepare_advice` checked and built: the candidates, head, job settings and data."""

    plan: CandidatePlan
    spec: HeadSpec
    job: Job
    ctx: UnitContext
    kind: str


def prepare_advice(store: ModelStore, base_ref: str, data: Dataset, *, val: Dataset | None = None,
                   head: HeadSpec | str | None = None, classes: int | None = None,
                   regression: bool | int = False, depths: str | list[int] | None = None,
                   scopes: list[str] | None = None, match: str = "full", blocks: str | None = None,
                   config: AdviseConfig | None = None, keep_weights: bool = False) -> AdviceSetup:
    """Every check :func:`advise` makes before training: the candidates (depths or scopes), the head and
    output layer, and the data against every candidate (each is built once). Arguments as :func:`advise`.

    Raises:
        NotFound, InvalidInput, InvalidPattern, NoLayersMatched, IncompatibleShapes.
    """
    config = config or AdviseConfig()
    plan = plan_candidates(store, base_ref, depths=depths, scopes=scopes, match=match, blocks=blocks)
    spec = parse_head(head) if isinstance(head, str) else (head or HeadSpec())
    classes, regression = resolve_output(spec, classes, regression, data, val)
    train_ds, val_ds = _validation(data, val, regression is not False, config)
    cfg = config.train_config()
    job = Job(plan.base, spec.to_string(), classes, regression, match, cfg,
              config.finetune_lr or cfg.learning_rate / 10.0, "", keep_weights)
    ctx = UnitContext(store, train_ds, val_ds)
    return AdviceSetup(plan, spec, job, ctx, _check_candidates(ctx, job, plan))


def advise(store: ModelStore, base_ref: str, data: Dataset, *, val: Dataset | None = None,
           head: HeadSpec | str | None = None, classes: int | None = None, regression: bool | int = False,
           depths: str | list[int] | None = None, scopes: list[str] | None = None, match: str = "full",
           blocks: str | None = None, config: AdviseConfig | None = None, keep_weights: bool | str = False,
           progress: AdviceProgress | None = None, cancel: threading.Event | None = None) -> Advice:
    """Measure which reuse depth (frozen or fine-tuned, or none) serves the task of ``data`` best.

    Args:
        store, base_ref: the base network.
        data: labelled training data; val: validation data (default: a stratified split of ``data``).
        head, classes, regression: the new head, as for :func:`reuse.build.build_network`; the output
            layer is read from the labels when neither ``classes`` nor ``regression`` is given.
        depths: e.g. ``"0..N"``, ``"0,1,3"`` or a list; default every depth. scopes: candidates as scope
            patterns instead of depths. match: ``full`` or ``prefix`` for the scopes. blocks: a block
            pattern such as ``block_{1..16}_`` instead (candidate ``i`` reuses up to the ``i``-th block;
            see :mod:`reuse.advise.plan`).
        config: settings (:class:`AdviseConfig`). keep_weights: keep the trained weights of each
            candidate's first finished seed (for :func:`reuse.advise.register.register_choice`); ``"seeds"``:
            also every finished seed of the recommended candidate (``kept_seeds``, for
            :func:`reuse.advise.register.register_ensemble_choice`).
        progress: receives :mod:`reuse.advise.events`. cancel: set it to stop; runs that finished are kept.

    Returns:
        An :class:`Advice` (partial when stopped by the budget or cancelled).

    Raises:
        NotFound, InvalidInput, InvalidPattern, NoLayersMatched, IncompatibleShapes: before any training.
        ResourceExhausted: a worker process died.
    """
    config = config or AdviseConfig()
    cancel = cancel or threading.Event()
    emit = progress or (lambda ev: None)
    t0 = time.perf_counter()
    setup = prepare_advice(store, base_ref, data, val=val, head=head, classes=classes, regression=regression,
                           depths=depths, scopes=scopes, match=match, blocks=blocks, config=config,
                           keep_weights=bool(keep_weights))
    plan, spec, job, ctx, kind = setup.plan, setup.spec, setup.job, setup.ctx, setup.kind
    classes, regression, train_ds, val_ds, cfg = job.classes, job.regression, ctx.train, ctx.val, job.config
    metric, higher = ("val_loss", False) if kind == "regression" else ("val_accuracy", True)
    job = replace(job, metric=metric)
    seeds = config.seed_list
    units = [Unit(d, plan.plans[d].scope, s, config.finetune and d > 0) for s in seeds for d in plan.depths]
    planned = [(c, u.seed) for u in units for c in u.candidates]
    candidates = sorted({c for c, _ in planned}, key=lambda c: c.complexity)
    emit(AdviceStarted(len(planned), tuple(c.label for c in candidates), seeds, config.jobs, metric))
    records: list[RunRecord] = []
    counted = [0]

    def on_event(ev: Any) -> None:
        if isinstance(ev, RunRecorded):
            counted[0] += 1
            c = ev.candidate
            emit(RunFinished(c.label, c.depth, c.finetune, ev.seed, ev.score, ev.seconds,
                             counted[0], len(planned)))
        else:
            emit(ev)

    def on_result(result: UnitResult) -> None:
        records.extend(result.records)

    budget = Budget(config.budget_minutes * 60.0 if config.budget_minutes else None)
    with tempfile.TemporaryDirectory(prefix="reuse-advise-") as tmp, ctx.cache:
        sched = run_units(units, job, ctx, jobs=config.jobs, budget=budget, on_event=on_event,
                          on_result=on_result, cancel=cancel, workdir=Path(tmp), ray=config.ray,
                          ray_cpus=config.ray_cpus, ray_gpus=config.ray_gpus)
    finished = {(r.candidate, r.seed) for r in records}
    missing: dict[Candidate, list[int]] = {}
    for c, s in planned:
        if (c, s) not in finished:
            missing.setdefault(c, []).append(s)
    rows = [_row(c, [r for r in records if r.candidate == c], plan.plans[c.depth]) for c in candidates]
    margin = noise_margin(config, rows, higher, len(val_ds))
    rec = recommend(rows, higher_is_better=higher, min_margin=margin) if any(r.scores for r in rows) else None
    kept: dict[Candidate, RunRecord] = {}
    for r in sorted(records, key=lambda r: r.seed):
        if r.weights is not None:
            kept.setdefault(r.candidate, r)
    kept_seeds = [] if keep_weights != "seeds" or rec is None else sorted(
        (r for r in records if r.candidate == rec.choice.candidate and r.weights is not None),
        key=lambda r: r.seed)
    seconds = time.perf_counter() - t0
    not_run = [(c, tuple(missing[c])) for c in sorted(missing, key=lambda c: c.complexity)]
    failed = [f"{c.label}, seed {u.seed} failed: {why}" for u, why in sched.failed for c in u.candidates]
    emit(AdviceFinished(len(records), len(planned), sched.stopped, seconds,
                        tuple(f"{c.label}, seed {s}" for c, ss in not_run for s in ss)))
    settings = {**config.__dict__, "depths": list(plan.depths), "scopes": list(scopes) if scopes else None,
                "match": match, "finetune_lr": job.finetune_lr, "lr": cfg.learning_rate}
    if blocks is not None:
        settings["blocks"] = blocks
    output = {"head": spec.to_string(), "classes": classes, "regression": regression}
    return Advice(plan.base, data.source, val_ds.source, metric, higher, len(train_ds), len(val_ds), seeds,
                  config.jobs, rows, rec, not_run, sched.stopped, seconds, output, settings,
                  [*plan.notes, *failed, *_warnings(records, len(val_ds), higher)], plan=plan, job=job,
                  kept=kept, kept_seeds=kept_seeds, val_data=val_ds if kept_seeds else None)


def _check_candidates(ctx: UnitContext, job: Job, plan: CandidatePlan) -> str:
    """Build every candidate once and check the data against it, so errors come before any training.
    The context keeps the checked data (typed, or read into memory where it fits: see
    :func:`reuse.data.check_for_model`), so every run uses the same arrays and no run reads them again."""
    kind = None
    for depth, p in plan.plans.items():
        model, _ = build_candidate(ctx, job, Unit(depth, p.scope, 0, False))
        out = output_kind(model)
        ctx.train = check_for_model(ctx.train, model, kind=out)
        ctx.val = check_for_model(ctx.val, model, kind=out)
        kind = out.kind
    assert kind is not None
    return kind


def _row(c: Candidate, runs: list[RunRecord], p: DepthPlan) -> CandidateResult:
    runs = sorted(runs, key=lambda r: r.seed)
    extra = {"scope": p.scope if (c.depth > 0 or p.given) else None, "layers": p.layers,
             "seeds": [r.seed for r in runs], "epochs_run": [r.epochs_run for r in runs],
             "diverged": sum(r.diverged for r in runs)}
    seconds = sum(r.seconds for r in runs) / len(runs) if runs else 0.0
    params = runs[0].trainable_params if runs else 0
    return CandidateResult(c, tuple(r.score for r in runs), seconds, params, extra)


def noise_margin(config: AdviseConfig, rows: list[CandidateResult], higher: bool, n_val: int) -> float:
    """The noise to beat: ``min_margin``; else one validation row (scores) or a share of the least loss."""
    if config.min_margin is not None:
        return config.min_margin
    if higher:
        return max(DEFAULT_MARGIN, 1.0 / max(n_val, 1))
    means = [abs(r.mean) for r in rows if r.scores and math.isfinite(r.mean)]
    return REGRESSION_MARGIN * min(means) if means else 0.0


def _warnings(records: list[RunRecord], n_val: int, higher: bool) -> list[str]:
    out = []
    if n_val < FEW_VAL_SAMPLES:
        step = f"; accuracy moves in steps of {1.0 / n_val:.3f}" if higher else ""
        out.append(f"only {n_val} validation samples: the scores are coarse{step}")
    diverged = sum(r.diverged for r in records)
    if diverged:
        out.append(f"{diverged} run(s) diverged (non-finite loss); try a lower learning rate")
    capped = [r for r in records if r.capped]
    if capped:
        names = [c.label for c in sorted({r.candidate for r in capped}, key=lambda c: c.complexity)]
        out.append(f"{len(capped)} of {len(records)} run(s) used every epoch without early stopping "
                   f"and may be undertrained ({', '.join(names)}): raise --epochs or --lr")
    return out
