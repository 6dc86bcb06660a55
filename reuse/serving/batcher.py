"""Dynamic batching: concurrent requests for one model merged into one forward pass and split back.

One worker thread per served model takes whatever requests are queued (up to ``max_batch_size`` rows),
runs them as one batch and answers each request with its own rows. The worker waits up to
``max_delay_s`` for more requests only under concurrent load: several requests are already queued, or
requests arrive faster than ``max_delay_s`` apart and either the last batch merged several or more than
one request arrives per forward pass (moving averages of the gaps and of the forward time). A lone
client cannot send its next request before it has its answer, so its gaps exceed the forward time and
its requests run at once; under load, batches fill. A request larger than ``max_batch_size`` rows runs alone;
a request is never split.

A request that arrives alone (nothing queued, no batch forming or running, and the arrival pattern
would not make the worker wait for more) runs in the caller's own thread: no hand-off to the worker and
back (measured in bench/serve.py: less CPU per request and lower latency at concurrency 1). The model
still runs one batch at a time: requests arriving meanwhile queue for the worker, which starts once
the inline pass is over.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from reuse.errors import FailedPrecondition

Forward = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass
class BatchStats:
    """Counters of one batcher; ``histogram`` maps requests-per-batch to how many batches had it."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    max_batch_requests: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, n_requests: int, n_rows: int) -> None:
        self.requests += n_requests
        self.rows += n_rows
        self.batches += 1
        self.max_batch_requests = max(self.max_batch_requests, n_requests)
        self.histogram[n_requests] = self.histogram.get(n_requests, 0) + 1

    def merge(self, other: BatchStats) -> None:
        """Add another batcher's counters to these."""
        self.requests += other.requests
        self.rows += other.rows
        self.batches += other.batches
        self.max_batch_requests = max(self.max_batch_requests, other.max_batch_requests)
        for k, v in other.histogram.items():
            self.histogram[k] = self.histogram.get(k, 0) + v


class _Pending:
    __slots__ = ("arrays", "rows", "future")

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.rows = int(arrays[0].shape[0])
        self.future: Future[list[np.ndarray]] = Future()


class DynamicBatcher:
    """Merge concurrent calls of ``forward`` on row-aligned numpy inputs.

    Args:
        forward: maps a list of arrays (one per model input, same row count) to a list of outputs.
        max_batch_size: most rows merged into one call.
        max_delay_s: longest wait for more requests once the model is under concurrent load.
    """

    def __init__(self, forward: Forward, *, max_batch_size: int = 64, max_delay_s: float = 0.001,
                 name: str = "batcher") -> None:
        self._forward = forward
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_delay_s = max(0.0, float(max_delay_s))
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_arrival = 0.0
        self._gap_s = float("inf")  # moving average of the time between arrivals
        self._last_batch = 0
        self._forward_s = 0.0  # moving average of the forward pass's duration
        self._busy = False  # a batch is forming or running (the worker's or an inline one)
        self._queued_rows = 0
        self._forming_rows = -1  # while the worker waits for more requests: the rows of its batch so far
        self._stats = BatchStats()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, arrays: list[np.ndarray]) -> Future[list[np.ndarray]]:
        """Queue one request; the future resolves to its outputs (or the forward pass's exception).

        A request that arrives alone runs here, in the caller's thread, and its future is done on return.
        """
        p = _Pending(arrays)
        with self._cond:
            if self._closed:
                raise FailedPrecondition("the model is being unloaded; retry the request")
            now = time.monotonic()
            gap = now - self._last_arrival
            self._gap_s = gap if self._gap_s == float("inf") else 0.8 * self._gap_s + 0.2 * gap
            self._last_arrival = now
            inline = not self._busy and not self._queue and not self._under_load(1)
            if inline:
                self._busy = True
                self._last_batch = 1
            else:
                self._queue.append(p)
                self._queued_rows += p.rows
                # Wake the worker only when it acts on it: it waits for a first request, or for a batch
                # that is now full (each arrival waking it cost a thread switch per request under load).
                if not self._busy or (self._forming_rows >= 0
                                      and self._forming_rows + self._queued_rows >= self.max_batch_size):
                    self._cond.notify()
        if inline:
            try:
                self._run([p])
            finally:
                with self._cond:
                    self._busy = False
                    if self._queue:
                        self._cond.notify()
        return p.future

    def _under_load(self, queued: int) -> bool:
        """Whether the worker should wait for more requests after taking ``queued`` (lock held)."""
        gap = self._gap_s
        return queued > 1 or (gap < self.max_delay_s and (self._last_batch > 1 or gap < self._forward_s))

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(arrays).result()

    def stats(self) -> BatchStats:
        with self._cond:
            s = self._stats
            return BatchStats(s.requests, s.rows, s.batches, s.max_batch_requests, dict(s.histogram))

    def close(self, timeout: float | None = 5.0) -> None:
        """Answer what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- worker --------------------------------------------------------------------------------
    def _take(self, batch: list[_Pending], rows: int) -> int:
        q = self._queue
        while q and (not batch or rows + q[0].rows <= self.max_batch_size):
            p = q.popleft()
            batch.append(p)
            rows += p.rows
            self._queued_rows -= p.rows
        return rows

    def _collect(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue or self._busy:
                if self._closed and not self._queue:
                    return None
                self._cond.wait()
            self._busy = True
            batch: list[_Pending] = []
            rows = self._take(batch, 0)
            if self._under_load(len(batch)):
                deadline = time.monotonic() + self.max_delay_s
                while rows < self.max_batch_size and not self._closed and (
                        not self._queue or rows + self._queue[0].rows <= self.max_batch_size):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    woke = True
                    if not self._queue:
                        self._forming_rows = rows
                        woke = self._cond.wait(left)
                        self._forming_rows = -1
                    rows = self._take(batch, rows)
                    if not woke:
                        break
            self._last_batch = len(batch)
            return batch

    def _loop(self) -> None:
        while (batch := self._collect()) is not None:
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False

    def _run(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        t0 = time.perf_counter()
        try:
            if len(live) == 1:
                outs = self._forward(live[0].arrays)
            else:
                merged = [np.concatenate(parts) for parts in zip(*(p.arrays for p in live), strict=True)]
                outs = self._forward(merged)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, not swallowed
            for p in live:
                p.future.set_exception(exc)
            return
        took = time.perf_counter() - t0
        with self._cond:
            self._forward_s = took if not self._forward_s else 0.8 * self._forward_s + 0.2 * took
            self._stats.add(len(live), sum(p.rows for p in live))
        start = 0
        for p in live:
            end = start + p.rows
            p.future.set_result([o[start:end] for o in outs])
            start = end
