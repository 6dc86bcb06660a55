"""The event-loop batcher (reuse.serving.loop_batcher) on a real asyncio loop, without a transport."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from reuse.errors import FailedPrecondition
from reuse.serving.loop_batcher import LoopBatcher


class Double:
    """A forward pass that records its batch sizes and threads, taking ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.threads: list[threading.Thread] = []
        self.delay = delay

    def __call__(self, arrays):
        self.sizes.append(arrays[0].shape[0])
        self.threads.append(threading.current_thread())
        if self.delay:
            time.sleep(self.delay)
        return [arrays[0] * 2]


def rows(n: int, value: float) -> list[np.ndarray]:
    return [np.full((n, 2), value, np.float32)]


def test_concurrent_requests_merge_into_one_pass_and_each_gets_its_rows():
    fwd = Double()
    # inline_s: a busy CI machine may stretch a tiny pass past the default
    b = LoopBatcher(fwd, max_batch_size=64, max_delay_s=0.0, inline_s=0.05)

    async def main():
        await b.submit(rows(1, 0))  # the first pass (unmeasured) runs in the batcher's thread
        xs = [rows(1 + i % 3, i) for i in range(20)]
        outs = await asyncio.gather(*[b.submit(x) for x in xs])  # all queued before the loop turns
        return xs, outs

    xs, outs = asyncio.run(main())
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out[0], x[0] * 2)
    assert fwd.sizes == [1, sum(x[0].shape[0] for x in xs)]
    assert fwd.threads[0] is not threading.main_thread() and fwd.threads[1] is threading.main_thread()
    s = b.stats()
    assert (s.requests, s.batches, s.max_batch_requests) == (21, 2, 20)
    b.close()


def test_batches_respect_the_row_cap_and_a_larger_request_runs_alone():
    fwd = Double()
    b = LoopBatcher(fwd, max_batch_size=4, max_delay_s=0.0)

    async def main():
        await b.submit(rows(1, 0))
        small = [b.submit(rows(1, i)) for i in range(6)]
        big = b.submit(rows(10, 7))
        return await asyncio.gather(*small, big)

    outs = asyncio.run(main())
    assert outs[-1][0].shape == (10, 2) and outs[-1][0][0, 0] == 14
    assert fwd.sizes[1:] == [4, 2, 10]  # never more than 4 merged; the 10-row request never split
    b.close()


def test_under_load_a_batch_waits_for_more_but_starts_once_full():
    fwd = Double()
    b = LoopBatcher(fwd, max_batch_size=3, max_delay_s=30.0)

    async def main():
        await b.submit(rows(1, 0))
        first = [b.submit(rows(1, 1)), b.submit(rows(1, 2))]  # two queued at once: load, so it waits
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in first) and fwd.sizes == [1]
        third = b.submit(rows(1, 3))  # the batch is full now: it starts without waiting 30 s
        return await asyncio.wait_for(asyncio.gather(*first, third), 10)

    outs = asyncio.run(main())
    assert [o[0][0, 0] for o in outs] == [2, 4, 6] and fwd.sizes == [1, 3]
    b.close()


def test_a_slow_pass_runs_off_the_loop_and_passes_never_overlap():
    fwd = Double(delay=0.05)
    b = LoopBatcher(fwd, max_batch_size=64, max_delay_s=0.0, inline_s=0.001)
    ticks = []

    async def ticker():
        for _ in range(20):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def main():
        t = asyncio.ensure_future(ticker())
        first = b.submit(rows(1, 1))
        await asyncio.sleep(0.01)
        later = [b.submit(rows(1, i)) for i in range(3)]  # queued while the first pass runs
        outs = await asyncio.gather(first, *later)
        await t
        return outs

    outs = asyncio.run(main())
    assert [o[0][0, 0] for o in outs] == [2, 0, 2, 4]
    assert fwd.sizes == [1, 3] and all(th is not threading.main_thread() for th in fwd.threads)
    assert max(np.diff(ticks)) < 0.045  # the loop kept turning during the 50 ms passes
    b.close()


def test_errors_reach_every_caller_cancelled_requests_are_skipped_and_close_refuses():
    def broken(arrays):
        raise RuntimeError("boom")

    b = LoopBatcher(broken, max_delay_s=0.0)

    async def failing():
        futs = [b.submit(rows(1, i)) for i in range(3)]
        return await asyncio.gather(*futs, return_exceptions=True)

    assert all(isinstance(e, RuntimeError) and str(e) == "boom" for e in asyncio.run(failing()))

    fwd = Double()
    b = LoopBatcher(fwd, max_delay_s=0.0)

    async def cancelling():
        await b.submit(rows(1, 0))
        gone = b.submit(rows(5, 1))
        gone.cancel()
        kept = await b.submit(rows(1, 2))
        b.close()
        with pytest.raises(FailedPrecondition, match="being unloaded"):
            b.submit(rows(1, 3))
        return kept

    assert asyncio.run(cancelling())[0][0, 0] == 4 and fwd.sizes == [1, 1]


def test_a_new_event_loop_starts_clean():
    """A model served by one server's loop, then by another's (a restarted server in one process)."""
    fwd = Double()
    b = LoopBatcher(fwd, max_delay_s=0.0)

    async def one(v):
        return await b.submit(rows(1, v))

    assert asyncio.run(one(1))[0][0, 0] == 2
    loop = asyncio.new_event_loop()
    b._handle = loop.call_soon(lambda: None)  # a start scheduled on a loop that never ran it
    loop.close()
    assert asyncio.run(one(2))[0][0, 0] == 4
    b.close()
