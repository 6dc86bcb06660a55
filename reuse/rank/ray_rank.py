"""``reuse rank --ray local|ADDRESS``: each model's feature pass and scores as one Ray task.

The same Ray connection as the advisor's (:func:`reuse.advise.ray_schedule.connected`: ``local`` starts
an instance on this machine and stops it afterwards; an address joins a cluster whose workers see the
store at the same path). The data go to Ray's object store once; each task opens the store, ranks one
model (:func:`reuse.rank.ranking.rank_model`) and sends back its scores, never its features. The time
budget travels as a wall-clock deadline that tasks check between batches; cancellation cancels the
tasks still running. A task whose worker dies is reported as that model's reason; tasks are not retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from reuse.data import Dataset
from reuse.errors import ReuseError
from reuse.rank.cuts import ModelPlan
from reuse.rank.ranking import ModelOutcome, ModelRanked, rank_model, unfinished
from reuse.rank.result import NotRanked
from reuse.rank.scores import Task
from reuse.text import first_line

POLL_SECONDS = 0.1


def _model_task(store_root: str, plan: ModelPlan, ds: Dataset, task: Task, scores: Sequence[str],
                memory_bytes: int, rows: int | None, wall_deadline: float | None) -> ModelOutcome:
    from reuse.store import ModelStore

    def stop() -> str | None:
        return "budget" if wall_deadline is not None and time.time() > wall_deadline else None

    if stop() is not None:
        return unfinished(plan, "budget", started=False)
    return rank_model(ModelStore(store_root), plan, ds, task, scores, memory_bytes=memory_bytes, rows=rows,
                      stop=stop)


def ray_runner(address: str, *, cpus: float = 1.0) -> Callable[..., list[ModelOutcome]]:
    """A ``runner`` for :func:`reuse.rank.ranking.rank` that ranks every model as a Ray task asking for
    ``cpus`` CPUs.

    Raises:
        InvalidInput: a malformed address or CPU count. FailedPrecondition: Ray is not installed.
    """
    from reuse.advise.ray_schedule import check_ray

    check_ray(address, cpus)

    def run(store: Any, plans: Sequence[ModelPlan], ds: Dataset, task: Task, scores: Sequence[str], *,
            memory_bytes: int, rows: int | None, deadline: float | None, cancel: Any,
            emit: Callable[[Any], None]) -> list[ModelOutcome]:
        from reuse.advise.ray_schedule import connected
        from reuse.advise.schedule import cores

        wall = None if deadline is None else time.time() + (deadline - time.perf_counter())
        outcomes: dict[str, ModelOutcome] = {}
        if not plans:
            return []
        with connected(address, cores()) as ray:
            fn = ray.remote(_model_task)
            data_ref = ray.put(ds)
            pending = {fn.options(name=f"reuse_rank_{i}", num_cpus=cpus, max_retries=0).remote(
                str(store.root), p, data_ref, task, tuple(scores), memory_bytes, rows, wall): p
                for i, p in enumerate(plans)}
            try:
                while pending:
                    if cancel is not None and cancel.is_set():
                        for ref, p in pending.items():
                            ray.cancel(ref, force=True)
                            outcomes[p.ref] = unfinished(p, "cancelled", started=True)
                        pending = {}
                        break
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                    for ref in done:
                        p = pending.pop(ref)
                        outcomes[p.ref] = _result(ray, ref, p)
                        o = outcomes[p.ref]
                        emit(ModelRanked(p.ref, len(outcomes), len(plans), len(o.scored), o.seconds,
                                         o.stopped))
            finally:
                for ref in pending:
                    ray.cancel(ref, force=True)
        return [outcomes[p.ref] for p in plans]

    return run


def _result(ray: Any, ref: Any, plan: ModelPlan) -> ModelOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, ReuseError):
            raise exc.cause from None
        why = first_line(exc.cause, named=True)
    except ray.exceptions.RayError as exc:  # the worker or its node died
        why = first_line(exc, named=True)
    failed = NotRanked(plan.name, plan.version, f"its Ray task failed ({why})")
    return ModelOutcome(plan.ref, not_ranked=[failed])
