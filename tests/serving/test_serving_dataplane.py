"""The data plane both wire adapters call: InferenceEngine.infer_on_loop (lookup, load, decode, batch,
eviction retry), on a real store and a real event loop; faults come in through its own seams (the
adapter's ``decode`` and the ``pool`` that loads)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import numpy as np
import pytest
from conftest import make_mlp

from reuse.errors import FailedPrecondition, InvalidInput, NotFound
from reuse.graph.signature import check_arrays
from reuse.serving.engine import InferenceEngine, ServingOptions


def plain_decode(x: np.ndarray):
    def decode(sig):
        check_arrays(sig, [x])
        return [x], "asked-for"

    return decode


@pytest.fixture
def engine(store):
    store.register(make_mlp(seed=0), "a")
    store.register(make_mlp(seed=1), "b")
    eng = InferenceEngine(store, ServingOptions(runtime="keras"))
    yield eng
    eng.close()


class EvictAfterLoad(Executor):
    """A pool that loads in a thread, then drops what it loaded from the cache ``times`` times."""

    def __init__(self, engine: InferenceEngine, times: int) -> None:
        self.engine, self.times, self.loads = engine, times, 0
        self._pool = ThreadPoolExecutor(1)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        def load():
            served = fn(*args, **kwargs)
            self.loads += 1
            if self.times > 0:
                self.times -= 1
                self.engine.cache.discard(served.signature.ref)
            return served

        return self._pool.submit(load)


def test_one_call_answers_as_the_thread_path_and_hands_back_what_decode_returned(engine, rng):
    x = rng.normal(size=(3, 8)).astype("float32")
    sig, outs, extra = asyncio.run(engine.infer_on_loop("a", plain_decode(x)))
    assert sig.ref == "a:1" and extra == "asked-for"
    np.testing.assert_allclose(outs[0], engine.infer("a:1", [x]).outputs[0], rtol=1e-6)


def test_a_version_evicted_after_its_load_is_loaded_again(engine, rng):
    x = rng.normal(size=(2, 8)).astype("float32")
    pool = EvictAfterLoad(engine, times=2)
    sig, outs, _ = asyncio.run(engine.infer_on_loop("b", plain_decode(x), pool))
    assert sig.ref == "b:1" and outs[0].shape == (2, 3)
    assert pool.loads == 3  # the first load, then one per eviction


def test_a_version_evicted_every_time_ends_in_failed_precondition(engine, rng):
    x = rng.normal(size=(1, 8)).astype("float32")
    with pytest.raises(FailedPrecondition, match=r"model a:1 keeps being evicted .*--cache-mb"):
        asyncio.run(engine.infer_on_loop("a", plain_decode(x), EvictAfterLoad(engine, times=99)))


def test_decode_refusal_comes_before_any_work_and_unknown_models_are_not_found(engine, rng):
    calls = []

    def refuse(sig):
        calls.append(sig.ref)
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        asyncio.run(engine.infer_on_loop("a", refuse))
    assert calls == ["a:1"] and engine.stats()["a:1"].requests == 0
    with pytest.raises(NotFound):
        asyncio.run(engine.infer_on_loop("nope", refuse))
    with pytest.raises(NotFound):
        asyncio.run(engine.infer_on_loop("a:7", refuse))


def test_loaded_versions_are_looked_up_on_the_loop_without_the_pool(engine, rng):
    x = rng.normal(size=(1, 8)).astype("float32")
    asyncio.run(engine.infer_on_loop("a", plain_decode(x)))  # loads
    pool = EvictAfterLoad(engine, times=0)

    async def many():
        return await asyncio.gather(*(engine.infer_on_loop("a", plain_decode(x), pool) for _ in range(16)))

    answers = asyncio.run(many())
    assert pool.loads == 0 and len(answers) == 16
    assert engine.stats()["a:1"].max_batch_requests > 1  # merged on the loop
