"""Running advisor units in this process (one job) or in spawned worker processes (``jobs > 1``).

Workers get plain values only: the store's folder, the training and validation data as row sources over
files (:func:`reuse.data.stream.shared`: data read from files stays where it is, arrays in memory are
written once to an uncompressed ``.npz``; no worker gets a pickled copy of the data), one folder for the
frozen-feature cache they share (the first worker to need a prefix's features computes them under a file
lock, the others read them), and each unit's :class:`~reuse.advise.runner.Job` and
:class:`~reuse.advise.runner.Unit`.
They ignore Ctrl-C (the terminal sends it to the whole process group): the parent turns it into a
cancellation, which workers see through a shared event and answer by returning the runs they finished.

Budget: a unit is started only if the time since scheduling began plus the unit's estimated duration
(the mean of finished units of the same depth, else of all finished units) fits in the budget. Nothing
already running is interrupted.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reuse.advise.runner import Job, Unit, UnitContext, UnitResult, run_unit
from reuse.data import Dataset
from reuse.data.stream import shared
from reuse.errors import ResourceExhausted
from reuse.train.features import FeatureCache

POLL_SECONDS = 0.1


@dataclass
class Schedule:
    """What ran (``results``, in completion order), what did not, and why it stopped early (if so);
    ``failed``: units whose worker died (on Ray), with why."""

    results: list[UnitResult] = field(default_factory=list)
    not_run: list[Unit] = field(default_factory=list)
    stopped: str | None = None
    failed: list[tuple[Unit, str]] = field(default_factory=list)

    def take(self, result: UnitResult, budget: Budget, on_result: Callable[[UnitResult], None]) -> None:
        """Count a finished unit against the budget, keep it, pass it on; a cancelled one stops the run."""
        budget.add(result)
        self.results.append(result)
        on_result(result)
        if result.cancelled and self.stopped is None:
            self.stopped = "cancelled"


class Budget:
    """Decides whether a unit may start; ``seconds=None`` means no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.t0 = time.perf_counter()
        self.times: dict[int, list[float]] = {}

    def estimate(self, unit: Unit) -> float:
        same = self.times.get(unit.depth)
        every = [t for ts in self.times.values() for t in ts]
        pool = same or every
        return sum(pool) / len(pool) if pool else 0.0

    def allows(self, unit: Unit) -> bool:
        if self.seconds is None:
            return True
        return time.perf_counter() - self.t0 + self.estimate(unit) <= self.seconds

    def leave_out(self, seconds: float) -> None:
        """Not count ``seconds`` already spent (an engine's start) as time used."""
        self.t0 += seconds

    def add(self, result: UnitResult) -> None:
        if not result.cancelled:
            self.times.setdefault(result.unit.depth, []).append(result.seconds)


OnEvent = Callable[[Any], None]
OnResult = Callable[[UnitResult], None]


def run_units(units: Sequence[Unit], job: Job, ctx: UnitContext, *, jobs: int, budget: Budget,
              on_event: OnEvent, on_result: OnResult, cancel: threading.Event, workdir: Path,
              ray: str | None = None, ray_cpus: float = 1.0, ray_gpus: float = 0.0) -> Schedule:
    """Run ``units`` in order (``jobs`` at a time), stopping early on cancel or when over budget.
    ``ray``: run them as Ray tasks instead (:mod:`reuse.advise.ray_schedule`), each asking for
    ``ray_cpus`` CPUs and ``ray_gpus`` GPUs.

    Raises:
        ReuseError: a unit failed (other than by cancellation); ResourceExhausted: a local worker died.
    """
    if ray is not None:
        from reuse.advise.ray_schedule import run_units_ray

        return run_units_ray(units, job, ctx, address=ray, jobs=jobs, cpus=ray_cpus, gpus=ray_gpus,
                             budget=budget, on_event=on_event, on_result=on_result, cancel=cancel,
                             schedule=Schedule(), local_cpus=cores())
    if jobs <= 1 or len(units) <= 1:
        return _run_here(units, job, ctx, budget, on_event, on_result, cancel)
    return _run_pool(units, job, ctx, min(jobs, len(units)), budget, on_event, on_result, cancel, workdir)


def _run_here(units: Sequence[Unit], job: Job, ctx: UnitContext, budget: Budget, on_event: OnEvent,
              on_result: OnResult, cancel: threading.Event) -> Schedule:
    out = Schedule()
    pending = deque(units)
    while pending:
        if cancel.is_set():
            out.stopped = "cancelled"
            break
        if not budget.allows(pending[0]):
            out.stopped = "budget"
            break
        result = run_unit(ctx, job, pending.popleft(), progress=on_event, cancel=cancel)
        budget.add(result)
        out.results.append(result)
        on_result(result)
        if result.cancelled:
            out.stopped = "cancelled"
            break
    out.not_run = list(pending)
    return out


_WORKER: dict[str, Any] = {}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _init_worker(store_root: str, train: Dataset, val: Dataset, features: str, threads: int, stop: Any,
                 events: Any) -> None:
    # The parent handles Ctrl-C and tells workers through ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from reuse.backend import active
    from reuse.store import ModelStore

    # Imports Keras and its backend now, so their import time does not count as training time.
    active().limit_threads(threads)
    cache = FeatureCache(features, keep=True)  # the folder is shared; the parent removes it
    _WORKER.update(ctx=UnitContext(ModelStore(store_root), train, val, cache), stop=stop, events=events)


def _work(job: Job, unit: Unit) -> UnitResult:
    w = _WORKER
    return run_unit(w["ctx"], job, unit, progress=w["events"].put, cancel=w["stop"])


def _drain(events: Any, on_event: OnEvent) -> None:
    while True:
        try:
            ev = events.get_nowait()
        except queue_mod.Empty:
            return
        on_event(ev)


def _run_pool(units: Sequence[Unit], job: Job, ctx: UnitContext, jobs: int, budget: Budget,
              on_event: OnEvent, on_result: OnResult, cancel: threading.Event, workdir: Path) -> Schedule:
    mp = multiprocessing.get_context("spawn")
    stop, events = mp.Event(), mp.Queue()
    data = (shared(ctx.train, workdir / "train.npz"), shared(ctx.val, workdir / "val.npz"))
    out = Schedule()
    pending = deque(units)
    running: dict[Future, Unit] = {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp, initializer=_init_worker,
                               initargs=(str(ctx.store.root), *data, str(workdir / "features"),
                                         max(1, cores() // jobs), stop, events))
    try:
        while pending or running:
            if out.stopped is None and cancel.is_set():
                out.stopped = "cancelled"
                stop.set()
            while out.stopped is None and pending and len(running) < jobs:
                if not budget.allows(pending[0]):
                    out.stopped = "budget"
                    break
                unit = pending.popleft()
                running[pool.submit(_work, job, unit)] = unit
            if not running:
                break
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            _drain(events, on_event)
            for fut in done:
                running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    if cancel.is_set():
                        out.stopped = "cancelled"
                        continue
                    raise ResourceExhausted(f"an advisor worker process died ({exc}); "
                                            "try fewer --jobs") from exc
                out.take(result, budget, on_result)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        # Workers have exited, so everything they sent is here (a result can overtake its events).
        _drain(events, on_event)
        events.close()
        events.join_thread()
    out.not_run = list(pending)
    return out
