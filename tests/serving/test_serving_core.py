"""Serving core without a transport: dynamic batcher, model cache, engine (compiled forward:
test_backend.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import make_mlp

from reuse.errors import InvalidInput, NotFound, ResourceExhausted
from reuse.serving.batcher import DynamicBatcher
from reuse.serving.cache import ModelCache
from reuse.serving.engine import InferenceEngine, ServingOptions


class SlowDouble:
    """A forward pass that records batch sizes and takes a little time, like a real one."""

    def __init__(self, delay: float = 0.005) -> None:
        self.sizes: list[int] = []
        self.delay = delay

    def __call__(self, arrays):
        self.sizes.append(arrays[0].shape[0])
        time.sleep(self.delay)
        return [arrays[0] * 2]


def test_batcher_merges_concurrent_requests_and_splits_answers():
    fwd = SlowDouble()
    b = DynamicBatcher(fwd, max_batch_size=64, max_delay_s=0.002)
    xs = [np.full((1 + i % 3, 2), i, np.float32) for i in range(48)]
    with ThreadPoolExecutor(48) as pool:
        outs = list(pool.map(lambda x: b([x])[0], xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out, x * 2)
    stats = b.stats()
    assert stats.requests == 48 and stats.rows == sum(x.shape[0] for x in xs)
    assert stats.max_batch_requests > 1 and max(fwd.sizes) <= 64
    b.close()


def test_lone_request_is_not_held_back():
    b = DynamicBatcher(SlowDouble(0.0), max_batch_size=64, max_delay_s=30.0)
    for _ in range(3):  # a 30 s wait would time these out
        np.testing.assert_array_equal(b.submit([np.ones((1, 2), np.float32)]).result(timeout=5)[0], 2)
    b.close()


def test_lone_request_runs_in_the_callers_thread_and_passes_never_overlap():
    threads, active, worst = [], [0], [0]
    gate = threading.Event()

    def fwd(arrays):
        threads.append(threading.current_thread())
        active[0] += 1
        worst[0] = max(worst[0], active[0])
        if len(threads) == 1:
            gate.wait(10)  # the first, inline pass holds the model while others arrive
        active[0] -= 1
        return [arrays[0] * 2]

    b = DynamicBatcher(fwd, max_batch_size=64, max_delay_s=0.0)
    first: list = []
    lone = threading.Thread(target=lambda: first.append(b.submit([np.ones((1, 2), np.float32)])))
    lone.start()
    while not threads:
        time.sleep(0.001)
    assert threads[0] is lone  # no hand-off to the worker for a request that arrives alone
    with ThreadPoolExecutor(3) as pool:
        later = [pool.submit(b, [np.full((1, 2), i, np.float32)]) for i in range(3)]
        time.sleep(0.05)
        assert len(threads) == 1  # queued behind the inline pass, not run beside it
        gate.set()
        outs = [f.result(timeout=10)[0] for f in later]
    lone.join(10)
    assert first[0].done() and first[0].result()[0].tolist() == [[2.0, 2.0]]
    assert [o.tolist() for o in outs] == [[[0.0, 0.0]], [[2.0, 2.0]], [[4.0, 4.0]]]
    assert worst[0] == 1 and all(t is b._thread for t in threads[1:])
    assert b.stats().requests == 4
    b.close()


def test_a_batch_that_fills_up_runs_without_waiting_out_the_delay():
    gate, sizes = threading.Event(), []

    def fwd(arrays):
        sizes.append(arrays[0].shape[0])
        if len(sizes) == 1:
            gate.wait(10)  # a slow first pass: what follows looks like load, so the worker waits for more
        return [arrays[0] * 2]

    b = DynamicBatcher(fwd, max_batch_size=2, max_delay_s=30.0)
    sizes.append(0)  # quick lone requests first: they teach the batcher that requests come close together
    for _ in range(100):
        b([np.ones((1, 2), np.float32)])
    sizes.clear()
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(b, [np.ones((1, 2), np.float32)])
        while not sizes:
            time.sleep(0.001)
        second = pool.submit(b, [np.ones((1, 2), np.float32)])
        time.sleep(0.05)
        gate.set()
        time.sleep(0.05)  # the worker now holds `second` and waits for a row to fill its batch
        third = pool.submit(b, [np.ones((1, 2), np.float32)])
        for f in (first, second, third):  # a 30 s wait would time these out
            assert f.result(timeout=10)[0].tolist() == [[2.0, 2.0]]
    assert sizes == [1, 2]
    b.close()


def test_request_larger_than_max_batch_runs_alone_and_errors_reach_every_caller():
    fwd = SlowDouble(0.0)
    b = DynamicBatcher(fwd, max_batch_size=4)
    assert b([np.ones((10, 2), np.float32)])[0].shape == (10, 2)
    assert fwd.sizes == [10]
    b.close()

    def broken(arrays):
        raise RuntimeError("boom")

    b = DynamicBatcher(broken)
    with pytest.raises(RuntimeError, match="boom"):
        b([np.ones((1, 2), np.float32)])
    b.close()


class Entry:
    def __init__(self, key: str, nbytes: int) -> None:
        self.key, self.nbytes, self.closed = key, nbytes, False

    def close(self) -> None:
        self.closed = True


def test_cache_evicts_least_recently_used_by_bytes_and_loads_once():
    loads: list[str] = []
    gate = threading.Event()

    def loader(key):
        loads.append(key)
        gate.wait(1)
        return Entry(key, 40 if key != "huge" else 1000)

    cache = ModelCache(loader, limit_bytes=100)
    gate.set()
    a = cache.get("a")
    cache.get("b")
    cache.get("a")  # a is now the most recently used
    cache.get("c")  # 120 bytes > 100: evicts b
    assert sorted(cache.loaded()) == ["a", "c"] and not a.closed
    assert loads == ["a", "b", "c"]
    with pytest.raises(ResourceExhausted, match="--cache-mb"):
        cache.get("huge")
    gate.clear()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, "d") for _ in range(8)]
        time.sleep(0.05)
        gate.set()
        assert len({id(f.result()) for f in futures}) == 1
    assert loads.count("d") == 1


def test_engine_serves_new_latest_and_keeps_pinned(store, rng):
    store.register(make_mlp(seed=1), "m")
    engine = InferenceEngine(store, ServingOptions(max_batch_size=8))
    x = rng.normal(size=(2, 8)).astype("float32")
    r1 = engine.infer("m", [x])
    assert r1.signature.ref == "m:1"
    m2 = make_mlp(seed=2)
    store.register(m2, "m")
    r2 = engine.infer("m", [x])
    assert r2.signature.ref == "m:2"
    np.testing.assert_allclose(r2.outputs[0], np.asarray(m2(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(engine.infer("m:1", [x]).outputs[0], r1.outputs[0])
    with pytest.raises(NotFound):
        engine.infer("m:3", [x])
    with pytest.raises(InvalidInput, match=r"expected \[-1, 8\]"):
        engine.infer("m", [x[:, :5]])
    with pytest.raises(InvalidInput, match="dtype float64, expected float32"):
        engine.infer("m", [x.astype("float64")])
    engine.close()
