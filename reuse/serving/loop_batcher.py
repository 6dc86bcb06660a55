"""Dynamic batching on the server's event loop: the same merging as :mod:`reuse.serving.batcher`, with no
thread per request and no hand-off per request.

The gRPC server's ModelInfer handlers are coroutines on one asyncio loop. Each queues its request here
and awaits an asyncio future; a batch starts on the loop's next turn, so every request that arrived in
the meantime is in it (up to ``max_batch_size`` rows; a larger request runs alone, never split). Under
concurrent load (several requests queued, or arrivals faster than ``max_delay_s`` apart while batches
merged several) the batch waits up to ``max_delay_s`` for more, and starts at once when it is full.

A short forward pass runs on the loop itself: measured in bench/serve.py, handing each batch to a
thread and back cost more than the pass. A pass whose moving average is above ``INLINE_S`` (and every
first pass, which may trace) runs in the batcher's own thread instead, so the loop keeps answering
other calls (health, metadata, management) while it runs. One batch runs at a time either way.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reuse.errors import FailedPrecondition
from reuse.serving.batcher import BatchStats, Forward

INLINE_S = 0.002


class LoopBatcher:
    """Merge concurrent ``forward`` calls made from coroutines on one event loop.

    Not thread-safe: call :meth:`submit` on the loop only (``close`` and ``stats`` from anywhere).
    ``inline_s``: the longest moving average of the pass that still runs on the loop (``INLINE_S``).
    """

    def __init__(self, forward: Forward, *, max_batch_size: int = 64, max_delay_s: float = 0.001,
                 name: str = "batcher", inline_s: float = INLINE_S) -> None:
        self._forward = forward
        self.inline_s = float(inline_s)
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_delay_s = max(0.0, float(max_delay_s))
        self._name = name
        self._queue: deque[tuple[list[np.ndarray], int, asyncio.Future]] = deque()
        self._queued_rows = 0
        self._first_at = 0.0  # arrival of the oldest queued request
        self._last_arrival = 0.0
        self._gap_s = float("inf")  # moving average of the time between arrivals
        self._forward_s = float("inf")  # moving average of the forward pass (inf: not measured yet)
        self._last_batch = 0
        self._running = False
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._waiting = False  # the scheduled start is a wait for more requests
        self._thread: ThreadPoolExecutor | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stats = BatchStats()

    def submit(self, arrays: list[np.ndarray]) -> asyncio.Future:
        """Queue one request; the future resolves to its outputs (or the forward pass's exception)."""
        if self._closed:
            raise FailedPrecondition("the model is being unloaded; retry the request")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new server on this model: nothing of the old loop runs
            self._loop, self._queue, self._queued_rows = loop, deque(), 0
            self._handle, self._waiting, self._running = None, False, False
        fut = loop.create_future()
        now = time.monotonic()
        gap = now - self._last_arrival
        self._gap_s = gap if self._gap_s == float("inf") else 0.8 * self._gap_s + 0.2 * gap
        self._last_arrival = now
        rows = int(arrays[0].shape[0])
        if not self._queue:
            self._first_at = now
        self._queue.append((arrays, rows, fut))
        self._queued_rows += rows
        if not self._running:
            if self._handle is None:
                self._handle = loop.call_soon(self._start)
            elif self._waiting and self._queued_rows >= self.max_batch_size:
                self._handle.cancel()  # the batch is full: stop waiting
                self._handle, self._waiting = loop.call_soon(self._start), False
        return fut

    def _under_load(self) -> bool:
        gap = self._gap_s
        return len(self._queue) > 1 or (
            gap < self.max_delay_s and (self._last_batch > 1 or gap < self._forward_s)
        )

    def _start(self) -> None:
        self._handle, self._waiting = None, False
        if self._running or not self._queue:
            return
        loop = asyncio.get_running_loop()
        if self._queued_rows < self.max_batch_size and self._under_load():
            left = self._first_at + self.max_delay_s - time.monotonic()
            if left > 0:
                self._handle, self._waiting = loop.call_later(left, self._start), True
                return
        batch, rows = [], 0
        q = self._queue
        while q and (not batch or rows + q[0][1] <= self.max_batch_size):
            item = q.popleft()
            self._queued_rows -= item[1]
            if not item[2].cancelled():
                batch.append(item)
                rows += item[1]
        if q:
            self._first_at = time.monotonic()
        if not batch:
            return
        self._running = True
        self._last_batch = len(batch)
        inputs = batch[0][0] if len(batch) == 1 else [
            np.concatenate(parts) for parts in zip(*(b[0] for b in batch), strict=True)]
        if self._forward_s <= self.inline_s:
            t0 = time.perf_counter()
            try:
                outs = self._forward(inputs)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, not swallowed
                self._done(batch, None, exc, time.perf_counter() - t0)
                return
            self._done(batch, outs, None, time.perf_counter() - t0)
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        task = loop.run_in_executor(self._thread, self._timed, inputs)
        task.add_done_callback(lambda t: self._done(batch, None, t.exception(), took=0.0) if t.exception()
                               else self._done(batch, *t.result()))

    def _timed(self, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], None, float]:
        """The pass in the batcher's thread, timed there (the hand-off is not the pass's cost)."""
        t0 = time.perf_counter()
        outs = self._forward(inputs)
        return outs, None, time.perf_counter() - t0

    def _done(self, batch: list, outs: list[np.ndarray] | None, exc: BaseException | None,
              took: float) -> None:
        self._running = False
        if took:  # a failed pass in the thread leaves the average as it was
            self._forward_s = took if self._forward_s == float("inf") else 0.8 * self._forward_s + 0.2 * took
        if exc is None:
            self._stats.add(len(batch), sum(b[1] for b in batch))
            start = 0
            for _, rows, fut in batch:
                if not fut.done():
                    fut.set_result([o[start:start + rows] for o in outs])
                start += rows
        else:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        if self._queue and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._start)
        elif self._closed and not self._queue:
            self._end_thread()

    def stats(self) -> BatchStats:
        s = self._stats
        return BatchStats(s.requests, s.rows, s.batches, s.max_batch_requests, dict(s.histogram))

    def close(self) -> None:
        """Refuse new requests; those queued are still answered. Its thread (if any) ends after them."""
        self._closed = True
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._end_thread)
            except RuntimeError:  # the loop is closed: nothing runs on it any more
                self._end_thread(force=True)

    def _end_thread(self, force: bool = False) -> None:
        if self._thread is not None and (force or not (self._running or self._queue)):
            self._thread.shutdown(wait=False)
            self._thread = None
