"""Advisor units as Ray tasks (``reuse advise --ray local|ADDRESS``); needs the ``ray`` extra.

``local`` starts a Ray instance on this machine (node address 127.0.0.1, no dashboard) and stops it
afterwards (Ray's own servers still listen on every interface: see docs/scale-out.md); an address
(``HOST:PORT`` or ``ray://HOST:PORT``) joins a running cluster, whose workers must see the store at the same
path (a shared folder). What each task reads, and from where: arrays in memory (a built-in set, a CSV, data
small enough for the memory budget) go to Ray's object store once per advice and every task reads them from
there; data read from files (an image folder, an .npy, an .h5, a large .npz) goes as its paths, so every node
must see those files at the same paths, and each task reads the batches it needs from them. Each worker
process keeps its own frozen-feature cache (in memory, or in its node's temporary folder), shared by the tasks
it runs for one advice. Each unit is one task asking for ``cpus`` CPUs (and ``gpus`` GPUs); it sends back the
same :class:`~reuse.advise.runner.UnitResult` as a local worker process. Tasks are not retried: a worker that
dies (out of memory, killed, node lost) becomes a failed unit, reported as such, and the advice goes on with
the others.

Cancellation goes through a small actor that workers poll at most every :data:`STOP_POLL_SECONDS`
seconds; a worker that sees it returns the runs it finished. Per-epoch progress comes back through the
same actor, best effort; the finished runs are announced from the results themselves, so their count is
exact.

Ray's usage statistics stay off (``RAY_USAGE_STATS_ENABLED=0``) before Ray is imported: nothing here
reaches an outside address.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from reuse.advise.runner import Job, RunRecorded, Unit, UnitContext, UnitResult, run_unit
from reuse.config import import_optional
from reuse.errors import FailedPrecondition, InvalidInput, ReuseError
from reuse.text import first_line

POLL_SECONDS = 0.1
STOP_POLL_SECONDS = 0.5
INSTALL_HINT = "Ray is not installed; install the extra with: pip install 'reuse[ray]'"
_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


def check_ray(address: str | None, cpus: float = 1.0, gpus: float = 0.0) -> None:
    """Refuse a malformed ``--ray`` value or resource request, or a missing extra, before any work.

    Raises:
        InvalidInput: not ``local`` nor ``[ray://]HOST:PORT``, or a non-positive CPU / negative GPU count.
        FailedPrecondition: Ray is not installed.
    """
    if address is None:
        return
    if address != "local" and not _ADDRESS.fullmatch(address):
        raise InvalidInput(f"invalid Ray address {address!r}: expected 'local' or HOST:PORT (or ray://HOST:PORT)")
    for name, v, low_ok in (("ray CPUs per run", cpus, False), ("ray GPUs per run", gpus, True)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 if low_ok else v > 0):
            raise InvalidInput(f"invalid {name} {v!r}: expected a number {'>= 0' if low_ok else '> 0'}")
    _import_ray()


def _import_ray() -> Any:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        return import_optional("ray")
    except ImportError as exc:
        raise FailedPrecondition(INSTALL_HINT) from exc


@contextmanager
def connected(address: str, cpus: int) -> Iterator[Any]:
    """Ray, connected: a fresh local instance with ``cpus`` CPUs (``local``), or the cluster at
    ``address``. A connection this process already holds (``ray.init`` by the caller) is used as is
    and left open."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address == "local":
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level="WARNING", log_to_driver=False, configure_logging=False)
    else:
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as exc:
            raise FailedPrecondition(f"cannot join the Ray cluster at {address}: "
                                     f"{exc}{_auth_hint()}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()  # stops a local instance; only disconnects from a cluster


def _auth_hint() -> str:
    # Ray turns token authentication on by itself only for a cluster it finds, never for an address.
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return ("; if the cluster uses token authentication (Ray's default), run with RAY_AUTH_MODE=token and "
            "its token in RAY_AUTH_TOKEN (or the file ~/.ray/auth_token, or the file named by "
            "RAY_AUTH_TOKEN_PATH)")


class _Channel:
    """The actor between the driver and the tasks: the stop flag and a buffer of progress events."""

    def __init__(self) -> None:
        self.stop, self.events = False, []

    def set_stop(self) -> None:
        self.stop = True

    def is_stopped(self) -> bool:
        return self.stop

    def put(self, ev: Any) -> None:
        self.events.append(ev)

    def drain(self) -> list[Any]:
        out, self.events = self.events, []
        return out


class _RemoteStop:
    """``cancel`` for :func:`run_unit` inside a task: asks the channel at most every few tenths of a
    second."""

    def __init__(self, channel: Any) -> None:
        self.channel, self.seen, self.at = channel, False, 0.0

    def is_set(self) -> bool:
        import ray

        now = time.monotonic()
        if not self.seen and now - self.at >= STOP_POLL_SECONDS:
            self.at = now
            self.seen = bool(ray.get(self.channel.is_stopped.remote()))
        return self.seen


_CTX: dict[str, Any] = {}  # per worker process: the last advice's context, so its feature cache is reused


def _unit_task(store_root: str, key: str, train: Any, val: Any, threads: int, job: Job, unit: Unit,
               channel: Any) -> UnitResult:
    import signal

    with contextlib.suppress(ValueError):  # ValueError: not the main thread; then Ray's handler stays
        # A worker started by ``local`` may share the terminal's process group: the driver turns Ctrl-C
        # into a cancellation, which this task answers by returning the runs it finished.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    from reuse.backend import active
    from reuse.store import ModelStore

    # Imports Keras and its backend now, so their import time does not count as training time.
    active().limit_threads(threads)
    if _CTX.get("key") != key:
        if "ctx" in _CTX:
            _CTX["ctx"].cache.close()  # the last advice's features (a temporary folder if on disk)
        _CTX.clear()
        _CTX.update(key=key, ctx=UnitContext(ModelStore(store_root), train, val))

    def forward(ev: Any) -> None:
        if not isinstance(ev, RunRecorded):  # the driver announces finished runs from the result
            channel.put.remote(ev)

    return run_unit(_CTX["ctx"], job, unit, progress=forward, cancel=_RemoteStop(channel))


def run_units_ray(units: Sequence[Unit], job: Job, ctx: UnitContext, *, address: str, jobs: int, cpus: float,
                  gpus: float, budget: Any, on_event: Any, on_result: Any, cancel: threading.Event,
                  schedule: Any, local_cpus: int = 1) -> Any:
    """As :func:`reuse.advise.schedule.run_units`, with each unit a Ray task; at most ``jobs`` in flight.
    ``local_cpus``: the CPUs a ``local`` instance gets (the caller passes this process's cores).

    Returns:
        A :class:`~reuse.advise.schedule.Schedule`; units whose worker died are in ``failed``.

    Raises:
        ReuseError: a unit failed in our code (as on local workers); FailedPrecondition: Ray is missing or
        the cluster cannot be joined.
    """
    check_ray(address, cpus, gpus)
    out = schedule
    pending = deque(units)
    t0 = time.perf_counter()
    with connected(address, local_cpus) as ray:
        channel = ray.remote(num_cpus=0)(_Channel).remote()
        task = ray.remote(_unit_task)
        resources = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0}
        train_ref, val_ref = ray.put(ctx.train), ray.put(ctx.val)
        key = f"{os.getpid()}-{id(ctx)}-{time.time_ns()}"
        threads = max(1, int(cpus))
        running: dict[Any, Unit] = {}

        def drain() -> None:
            for ev in ray.get(channel.drain.remote()):
                on_event(ev)

        def finish(result: UnitResult) -> None:
            for r in result.records:
                on_event(RunRecorded(r.candidate, r.seed, r.score, r.seconds))
            out.take(result, budget, on_result)

        # Starting or joining Ray is not time the budget's runs used (nor is a local pool's start).
        budget.leave_out(time.perf_counter() - t0)
        try:
            while pending or running:
                if out.stopped is None and cancel.is_set():
                    out.stopped = "cancelled"
                    channel.set_stop.remote()
                while out.stopped is None and pending and len(running) < jobs:
                    if not budget.allows(pending[0]):
                        out.stopped = "budget"
                        break
                    unit = pending.popleft()
                    # Named per unit: Ray titles a busy worker process "ray::<name>" (what ps shows).
                    named = task.options(name=f"reuse_advise_d{unit.depth}_s{unit.seed}", **resources)
                    running[named.remote(str(ctx.store.root), key, train_ref, val_ref, threads, job, unit,
                                         channel)] = unit
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                drain()
                for ref in done:
                    unit = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        if isinstance(exc.cause, ReuseError):
                            raise exc.cause from None
                        if not cancel.is_set():  # else a Ctrl-C that reached the task: not a failure
                            out.failed.append((unit, f"{type(exc.cause).__name__}: {exc.cause}"))
                        continue
                    except ray.exceptions.RayError as exc:  # the worker or its node died
                        out.failed.append((unit, first_line(exc, named=True)))
                        continue
                    finish(result)
        finally:
            channel.set_stop.remote()
            for ref in running:
                ray.cancel(ref, force=True)
            drain()
    out.not_run = list(pending)
    return out
