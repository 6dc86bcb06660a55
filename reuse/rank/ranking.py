"""``reuse rank``: score every cut of every matching stored model against new labels, without training.

Order of work: every check that reads no weight comes first (the labels, the models and their cuts, the
data against each model's input, the metric), then the raw-input baseline (which also checks the data
for NaN), then one model at a time: its feature pass (:mod:`reuse.rank.features`) and the scores of its
cuts (:mod:`reuse.rank.scores`). Only one model's pooled features are held at a time; they are dropped
once scored. A model or cut that cannot be scored is listed with the reason, not an error.

Budget and cancellation are checked before each model and between the batches of a pass: what was
not finished is listed (``stopped``: ``"budget"`` or ``"cancelled"``) and the ranking covers the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reuse.data import Dataset
from reuse.errors import InvalidInput, NoLayersMatched, ReuseError
from reuse.rank.cuts import ModelPlan, match_models, plan_model
from reuse.rank.features import batches, feature_passes, memory_needed, run_pass
from reuse.rank.result import DEFAULT_METRIC, NotRanked, Ranking, Scored, order
from reuse.rank.scores import KNN_MAX_ROWS, SCORES, Task, score_all
from reuse.store import ModelStore
from reuse.text import echo, first_line

MAX_BASELINE_WIDTH = 4096
FEW_ROWS = 50


@dataclass(frozen=True)
class RankStarted:
    models: tuple[str, ...]
    cuts: int


@dataclass(frozen=True)
class ModelRanked:
    ref: str
    done: int
    total: int
    scored: int
    seconds: float
    stopped: str | None = None


@dataclass(frozen=True)
class RankNote:
    """A progress line from elsewhere (a rank job's event, read by the remote facade)."""

    text: str


def describe(ev: Any) -> str | None:
    """A progress event as one line for people (None: nothing to say)."""
    if isinstance(ev, RankStarted):
        return f"ranking {ev.cuts} cut(s) of {len(ev.models)} model(s)"
    if isinstance(ev, ModelRanked):
        stopped = f" (stopped: {ev.stopped})" if ev.stopped else ""
        return f"[{ev.done}/{ev.total}] {ev.ref}: {ev.scored} cut(s) scored in {ev.seconds:.2f} s{stopped}"
    if isinstance(ev, RankNote):
        return ev.text
    return None


@dataclass
class ModelOutcome:
    """What ranking one model gave: its scored cuts and the ones it could not score."""

    ref: str
    scored: list[Scored] = field(default_factory=list)
    not_ranked: list[NotRanked] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None


def unfinished(plan: ModelPlan, why: str, *, started: bool) -> ModelOutcome:
    """The outcome of a model stopped (``why``: ``budget`` or ``cancelled``) before it was ranked."""
    when = "not finished" if started else "not started"
    reason = f"{when}: the time budget ran out" if why == "budget" else f"{when}: cancelled"
    skipped = NotRanked(plan.name, plan.version, reason, stopped=why)
    return ModelOutcome(plan.ref, not_ranked=[skipped], stopped=why)


def parse_metric(metric: str | Sequence[str] | None, task: Task) -> tuple[str, ...]:
    """``auto`` (LogME and k-NN), one score, or several (``logme,knn,sfda``), checked.

    Raises:
        InvalidInput: an unknown score, or SFDA for regression targets.
    """
    if metric is None or metric == "auto":
        return DEFAULT_METRIC
    names = [m.strip() for m in (metric.split(",") if isinstance(metric, str) else metric)]
    bad = [m for m in names if m not in SCORES]
    if not names or bad:
        raise InvalidInput(f"invalid metric {echo(metric)}: expected auto or some of {', '.join(SCORES)}")
    if task.regression and "sfda" in names:
        raise InvalidInput("metric sfda needs class labels; the labels are regression targets")
    return tuple(dict.fromkeys(names))


def task_of(ds: Dataset, regression: bool | None = None) -> Task:
    """The labels of ``ds`` as the scores read them.

    Raises:
        InvalidInput: no labels, one class, fewer than two rows, or labels that are not finite numbers.
    """
    if ds.y is None:
        raise InvalidInput(f"{ds.source}: has no labels; rank scores features against labels")
    try:
        return Task.of(ds.y, regression=regression)
    except ValueError as exc:
        raise InvalidInput(f"{ds.source}: {exc}") from None


def baseline_width(rows: int, width: int, memory_bytes: int) -> int:
    """How many input values per row the baseline scores: all of them, at most :data:`MAX_BASELINE_WIDTH`,
    and no more than its features and their scoring fit in ``memory_bytes``.

    Raises:
        InvalidInput: not even one value per row fits.
    """
    w = min(width, MAX_BASELINE_WIDTH)
    while w > 1 and memory_needed(rows, [w]) > memory_bytes:
        w //= 2
    if memory_needed(rows, [w]) > memory_bytes:
        one, limit = memory_needed(rows, [1]) / 2**20, memory_bytes / 2**20
        raise InvalidInput(f"{rows} rows cannot be scored within the memory limit of {limit:.3g} MB (scoring "
                           f"one value per row takes {one:.3g} MB); raise --memory-mb or use fewer rows")
    return w


def baseline_features(ds: Dataset, rows: int = 1024,
                      memory_bytes: int | None = None) -> tuple[np.ndarray, str | None]:
    """The raw inputs, one flat float32 row per sample (every input array side by side), read in batches;
    above :func:`baseline_width` values per row, a seeded random choice of that many columns.

    Raises:
        InvalidInput: non-numeric, NaN or infinite values (the message says how many and where), or rows
        too many for the memory limit.
    """
    width = sum(int(np.prod(a.shape[1:], dtype=np.int64)) for a in ds.arrays.values())
    keep = (min(width, MAX_BASELINE_WIDTH) if memory_bytes is None
            else baseline_width(len(ds), width, memory_bytes))
    cols = None
    note = None
    if keep < width:
        cols = np.sort(np.random.default_rng(0).choice(width, keep, replace=False))
        note = f"scored on {keep} of the {width} input values per row (a seeded random choice)"
    out = np.empty((len(ds), keep), dtype=np.float32)
    lo = 0
    for batch in batches(ds, rows):
        arrays = list(batch.values()) if isinstance(batch, dict) else [batch]
        if any(a.dtype.kind not in "biuf" for a in arrays):
            raise InvalidInput(f"{ds.source}: features are not numbers")
        flat = np.concatenate([np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays], axis=1)
        bad = ~np.isfinite(flat)
        if bad.any():
            row = lo + int(np.flatnonzero(bad.any(axis=1))[0])
            raise InvalidInput(f"{ds.source}: NaN or infinite feature values (first at row {row}); expected "
                               "finite numbers")
        out[lo:lo + len(flat)] = flat if cols is None else flat[:, cols]
        lo += len(flat)
    return out, note


Stop = Callable[[], str | None]


def rank_model(store: ModelStore, plan: ModelPlan, ds: Dataset, task: Task, scores: Sequence[str], *,
               memory_bytes: int, rows: int | None = None, stop: Stop = lambda: None) -> ModelOutcome:
    """Score every scorable cut of ``plan`` from its feature pass(es); see the module docstring."""
    t0 = time.perf_counter()
    out = ModelOutcome(plan.ref)
    name, version = plan.name, plan.version

    def skip(cut: Any, reason: str, stopped: str | None = None) -> None:
        out.not_ranked.append(NotRanked(name, version, reason, cut.scope, cut.depth, stopped))

    try:
        passes, reasons = feature_passes(store, plan)
    except ReuseError as exc:
        out.not_ranked.append(NotRanked(name, version, f"cannot be built: {first_line(exc)}"))
        out.seconds = time.perf_counter() - t0
        return out
    for cut, why in reasons.items():
        skip(cut, why)
    for fp in passes:
        need = memory_needed(len(ds), fp.widths)
        if need > memory_bytes:
            for cut in fp.cuts:
                skip(cut, f"its features ({len(ds)} rows x {sum(fp.widths)} values) and their scoring would "
                     f"take {need / 2**20:.1f} MB, over the limit of {memory_bytes / 2**20:.3g} MB "
                     "(--memory-mb)")
            continue
        t1 = time.perf_counter()
        feats, done, why = run_pass(fp, ds, plan.ref, rows=rows, stop=stop)
        share = (time.perf_counter() - t1) / len(fp.cuts)
        if why is not None:
            out.stopped = why
            reason = "the time budget ran out" if why == "budget" else "cancelled"
            for cut in fp.cuts:
                skip(cut, f"not finished: {reason} during its forward pass ({done} of {len(ds)} rows)", why)
            continue
        for cut, f, width in zip(fp.cuts, feats, fp.widths, strict=True):
            t2 = time.perf_counter()
            try:
                got = score_all(f, task, scores)
            except ValueError as exc:
                skip(cut, f"not scored: {exc} (a diverged base?)")
                continue
            out.scored.append(Scored(name, version, cut.depth, cut.scope, cut.layers, cut.params, width, got,
                                     share + time.perf_counter() - t2))
        del feats
    out.seconds = time.perf_counter() - t0
    return out


def _refuse_if_nothing_fits(plans: list[ModelPlan], ds: Dataset, scopes: Sequence[str] | None) -> None:
    if any(p.scorable for p in plans):
        return
    if all(p.reason and p.reason.startswith("the data does not fit") for p in plans):
        listed = "; ".join(f"{p.ref}: {str(p.reason).split(': ', 1)[1]}" for p in plans[:5])
        raise InvalidInput(f"{ds.source}: the data fits no matching model ({listed})")
    if scopes is not None and all(p.reason is None and all("matches no layer" in (c.reason or "")
                                                           for c in p.cuts) for p in plans):
        shown = ", ".join(p.ref for p in plans[:10])
        raise NoLayersMatched(f"no cut scope matches a layer of any matching model ({shown})")


@dataclass(frozen=True)
class RankSetup:
    """What :func:`prepare_rank` checked: the labels, the ranking rule, the scores, the models' plans."""

    task: Task
    metric: tuple[str, ...]
    scores: tuple[str, ...]
    refs: list[str]
    plans: list[ModelPlan]


def default_memory_mb() -> float:
    """The most a rank's kept features and their scoring may take: half of what the process's memory
    budget (``--memory-mb``, ``$REUSE_MEMORY_MB``: :mod:`reuse.memory`) leaves, at least 1 MB."""
    from reuse.memory import MiB, process_budget

    return max(1.0, process_budget().available() * 0.5 / MiB)


def prepare_rank(store: ModelStore, data: Dataset, *, models: str | Sequence[str] | None = None,
                 scopes: Sequence[str] | None = None, blocks: str | None = None, match: str = "full",
                 metric: str | Sequence[str] | None = None, regression: bool | None = None,
                 budget_seconds: float | None = None, memory_mb: float | None = None,
                 rows: int | None = None) -> RankSetup:
    """Every check of :func:`rank` that reads no weight and no feature: the options, the labels, the
    metric, the models and their cuts, the data against each model's input. Arguments as :func:`rank`.

    Raises:
        InvalidInput, InvalidPattern, NoLayersMatched, NotFound.
    """
    memory_mb = default_memory_mb() if memory_mb is None else memory_mb
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or not memory_mb > 0:
        raise InvalidInput(f"invalid memory limit {echo(memory_mb)} MB: expected a positive number")
    if budget_seconds is not None and (isinstance(budget_seconds, bool)
                                       or not isinstance(budget_seconds, (int, float))
                                       or not budget_seconds > 0):
        raise InvalidInput(f"invalid budget {echo(budget_seconds)} s: expected a positive number of seconds")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise InvalidInput(f"invalid rows per batch {echo(rows)}: expected an integer >= 1")
    if match not in ("full", "prefix"):
        raise InvalidInput(f"invalid match {echo(match)}: expected full or prefix")
    task = task_of(data, regression)
    chosen = parse_metric(metric, task)
    scores = tuple(s for s in SCORES if s != "sfda" or not task.regression)
    width = sum(int(np.prod(a.shape[1:], dtype=np.int64)) for a in data.arrays.values())
    baseline_width(len(data), width, round(memory_mb * 2**20))
    refs = match_models(store, models)
    plans = [plan_model(store, ref, data, scopes=scopes, blocks=blocks, match=match) for ref in refs]
    _refuse_if_nothing_fits(plans, data, scopes)
    return RankSetup(task, chosen, scores, refs, plans)


def rank(store: ModelStore, data: Dataset, *, models: str | Sequence[str] | None = None,
         scopes: Sequence[str] | None = None, blocks: str | None = None, match: str = "full",
         metric: str | Sequence[str] | None = None, regression: bool | None = None,
         budget_seconds: float | None = None, memory_mb: float | None = None, rows: int | None = None,
         progress: Callable[[Any], None] | None = None, cancel: threading.Event | None = None,
         runner: Callable[..., list[ModelOutcome]] | None = None) -> Ranking:
    """Rank every cut of every model ``models`` selects for the labelled ``data``, without training.

    Args:
        models: which models (see :func:`reuse.rank.cuts.match_models`); None: all.
        scopes: cuts as scope patterns (else the advisor's candidates); blocks: a block pattern instead.
        match: how ``scopes`` match layer names (``full`` or ``prefix``).
        metric: the ranking rule (``auto``, one score, or several); regression: force regression targets.
        budget_seconds: stop starting models, and stop a pass, once this much time has passed.
        memory_mb: refuse a model whose pooled features and their scoring would take more than this
            (default: half of what the process's memory budget leaves, :func:`default_memory_mb`).
        rows: rows per batch of the pass (default: from the network's activations per row).
        progress: receives :class:`RankStarted` and :class:`ModelRanked`; cancel: set it to stop.
        runner: runs the models' work (default :func:`run_here`, one after another in this process;
            :func:`reuse.rank.ray_rank.ray_runner` makes one that runs them as Ray tasks).

    Raises:
        InvalidInput, InvalidPattern, NoLayersMatched, NotFound: before any model's pass.
    """
    t0 = time.perf_counter()
    cancel = cancel or threading.Event()
    emit = progress or (lambda ev: None)
    memory_mb = default_memory_mb() if memory_mb is None else memory_mb
    setup = prepare_rank(store, data, models=models, scopes=scopes, blocks=blocks, match=match, metric=metric,
                         regression=regression, budget_seconds=budget_seconds, memory_mb=memory_mb, rows=rows)
    task, chosen, scores, refs, plans = setup.task, setup.metric, setup.scores, setup.refs, setup.plans
    base_f, base_note = baseline_features(data, memory_bytes=round(memory_mb * 2**20))
    tb = time.perf_counter()
    baseline = Scored(None, None, None, None, (), 0, base_f.shape[1], score_all(base_f, task, scores), 0.0,
                      note=base_note)
    baseline.seconds = time.perf_counter() - tb
    del base_f
    deadline = None if budget_seconds is None else t0 + budget_seconds
    emit(RankStarted(tuple(refs), sum(len(p.scorable) for p in plans)))
    not_ranked: list[NotRanked] = []
    for p in plans:
        if p.reason is not None:
            not_ranked.append(NotRanked(p.name, p.version, p.reason))
        else:
            not_ranked.extend(NotRanked(p.name, p.version, c.reason, c.scope, c.depth)
                              for c in p.cuts if c.reason)
    todo = [p for p in plans if p.scorable]
    run = runner or run_here
    outcomes = run(store, todo, data, task, scores, memory_bytes=round(memory_mb * 2**20), rows=rows,
                   deadline=deadline, cancel=cancel, emit=emit)
    scored = [s for o in outcomes for s in o.scored]
    for o in outcomes:
        not_ranked.extend(o.not_ranked)
    stops = {o.stopped for o in outcomes if o.stopped}
    stopped = "cancelled" if "cancelled" in stops else ("budget" if stops else None)
    ranked = order([*scored, baseline], chosen)
    candidates = [s for s in ranked if s is not baseline]
    settings = {"models": models if models is None or isinstance(models, str) else list(models),
                "scopes": list(scopes) if scopes else None, "blocks": blocks, "match": match,
                "budget_seconds": budget_seconds, "memory_mb": memory_mb, "rows": rows}
    notes = [n for p in plans for n in p.notes]
    kind = "regression" if task.regression else "classification"
    return Ranking(data.source, len(data), kind, task.classes, chosen, scores, candidates, baseline,
                   not_ranked, refs, time.perf_counter() - t0, stopped,
                   [*notes, *_warnings(candidates, baseline, len(data), base_note)], settings)


def _warnings(candidates: list[Scored], baseline: Scored, n: int, base_note: str | None) -> list[str]:
    out = [f"baseline {base_note}"] if base_note else []
    if n < FEW_ROWS:
        out.append(f"only {n} labelled rows: the scores are noisy; trust large differences only")
    if n > KNN_MAX_ROWS:
        out.append(f"k-NN used a stratified sample of {KNN_MAX_ROWS} of the {n} rows")
    if candidates and (baseline.rank or 0) < (candidates[0].rank or 0):
        out.append("no candidate beats the raw inputs: reusing these layers is not likely to help")
    return out


def stopper(deadline: float | None, cancel: Any) -> Stop:
    """A ``stop`` for :func:`rank_model`: ``"cancelled"`` once ``cancel`` is set, ``"budget"`` once
    ``time.perf_counter()`` passes ``deadline``."""
    def stop() -> str | None:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if deadline is not None and time.perf_counter() > deadline:
            return "budget"
        return None

    return stop


def run_here(store: ModelStore, plans: Sequence[ModelPlan], ds: Dataset, task: Task, scores: Sequence[str], *,
             memory_bytes: int, rows: int | None, deadline: float | None, cancel: threading.Event,
             emit: Callable[[Any], None]) -> list[ModelOutcome]:
    """Rank the models one after another in this process."""
    stop = stopper(deadline, cancel)
    outcomes = []
    for i, p in enumerate(plans, start=1):
        why = stop()
        if why is not None:
            outcomes.append(unfinished(p, why, started=False))
            continue
        o = rank_model(store, p, ds, task, scores, memory_bytes=memory_bytes, rows=rows, stop=stop)
        outcomes.append(o)
        emit(ModelRanked(p.ref, i, len(plans), len(o.scored), o.seconds, o.stopped))
    return outcomes
