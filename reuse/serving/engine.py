"""The inference engine: resolve a reference, serve it from the cache, batch, and answer.

``NAME`` (no version) is resolved against the store on every request, so a newly registered version is
served as the latest at once; ``NAME:VERSION`` keeps serving that version while it exists.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from reuse.backend.compiled import CompiledForward
from reuse.errors import FailedPrecondition
from reuse.graph.signature import ModelSignature, check_arrays, signature_of
from reuse.serving.batcher import BatchStats, DynamicBatcher
from reuse.serving.cache import ModelCache
from reuse.serving.loop_batcher import LoopBatcher
from reuse.serving.onnx_runtime import OnnxCache
from reuse.serving.runtime_choice import RuntimeChoice, check_mode, choose
from reuse.store import ModelRef, ModelStore

SETTLE_NS = 50_000_000
EVICTION_RETRIES = 3
D = TypeVar("D")


@dataclass(frozen=True)
class ServingOptions:
    """Batching, cache and runtime settings of one engine (``runtime``: auto, onnx or keras; see
    :mod:`reuse.serving.runtime_choice`; ``onnx_threads``: ONNX Runtime's intra-op threads)."""

    max_batch_size: int = 64
    max_batch_delay_ms: float = 1.0
    cache_bytes: int = 1024 * 2**20
    runtime: str = "auto"
    onnx_threads: int = 1


@dataclass(frozen=True)
class InferResult:
    signature: ModelSignature
    outputs: list[np.ndarray]


@dataclass
class ServedStats(BatchStats):
    """A served version's batch counters and the runtime that serves it."""

    runtime: str = ""
    runtime_reason: str = ""


class ChosenForward:
    """A version's forward pass, chosen (ONNX Runtime or compiled Keras: :func:`choose`) on its first
    use rather than when the version is loaded: a request that does not fit the model is refused before
    any ONNX conversion is made or written."""

    def __init__(self, choose_now: Callable[[], tuple[Any, RuntimeChoice]]) -> None:
        self._choose = choose_now
        self._lock = threading.Lock()
        self._fn: Any = None
        self.choice: RuntimeChoice | None = None

    def resolve(self) -> RuntimeChoice:
        """Choose now (once; later calls return the choice)."""
        with self._lock:
            if self._fn is None:
                self._fn, self.choice = self._choose()
            assert self.choice is not None
            return self.choice

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._fn is None:
            self.resolve()
        return self._fn(arrays)


class ServedModel:
    """One loaded version: its signature, forward pass (and the runtime chosen for it) and batchers: a
    thread's for callers in threads, and one on the gRPC server's event loop (made on first use)."""

    def __init__(self, model: Any, sig: ModelSignature, options: ServingOptions, forward: Any = None,
                 runtime: RuntimeChoice | None = None) -> None:
        self.signature = sig
        self.forward = forward if forward is not None else CompiledForward(model)
        self._runtime = runtime or RuntimeChoice("keras", "compiled Keras forward pass")
        self._options = options
        self._batcher: DynamicBatcher | None = None
        self._loop_batcher: LoopBatcher | None = None
        self._lock = threading.Lock()
        self.closed = False  # evicted: callers holding it load the version again
        self.nbytes = int(sum(np.prod(w.shape, dtype=np.int64) * np.dtype(w.dtype).itemsize
                              for w in model.weights))

    @property
    def runtime(self) -> RuntimeChoice:
        """The runtime serving this version (chosen now if it was not yet)."""
        return self.forward.resolve() if isinstance(self.forward, ChosenForward) else self._runtime

    @property
    def runtime_chosen(self) -> RuntimeChoice | None:
        """The runtime, if it was chosen already (None: no request has run yet)."""
        return self.forward.choice if isinstance(self.forward, ChosenForward) else self._runtime

    def _knobs(self) -> dict:
        o = self._options
        return {"max_batch_size": o.max_batch_size, "max_delay_s": o.max_batch_delay_ms / 1000.0,
                "name": f"batch-{self.signature.ref}"}

    @property
    def batcher(self) -> DynamicBatcher:
        """The batcher of calls from threads (its worker thread starts on first use)."""
        with self._lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(self.forward, **self._knobs())
            return self._batcher

    def loop_batcher(self) -> LoopBatcher:
        """The batcher of calls from the event loop (call on the loop).

        Raises:
            FailedPrecondition: the version was evicted (closed) before its first call from the loop.
        """
        if self._loop_batcher is None:
            if self.closed:
                raise FailedPrecondition(f"model {self.signature.ref} was unloaded; load it again")
            self._loop_batcher = LoopBatcher(self.forward, **self._knobs())
        return self._loop_batcher

    def stats(self) -> BatchStats:
        """Both batchers' counters together."""
        s = BatchStats()
        for b in (self._batcher, self._loop_batcher):
            if b is not None:
                s.merge(b.stats())
        return s

    def close(self) -> None:
        self.closed = True
        if self._loop_batcher is not None:
            self._loop_batcher.close()
        if self._batcher is not None:
            self._batcher.close(timeout=None)


class InferenceEngine:
    """Serve the models of one store with dynamic batching and a byte-capped cache."""

    def __init__(self, store: ModelStore, options: ServingOptions | None = None) -> None:
        self.store = store
        self.options = options or ServingOptions()
        check_mode(self.options.runtime)
        self.cache: ModelCache[ServedModel] = ModelCache(self._load, self.options.cache_bytes)
        self._latest: dict[str, tuple[str, int, str]] = {}  # ref -> (name, its stamp, "name:version")
        self._latest_lock = threading.Lock()
        self.onnx_cache = OnnxCache(store.state_dir)

    def _load(self, key: str) -> ServedModel:
        ref = ModelRef.parse(key)
        # The checksum is read before the model: a file replaced in between keys the ONNX file by the
        # content it replaced, which no later load asks for (and every load checks the file against Keras).
        checksum = self.store.content_checksum(ref) if self.options.runtime != "keras" else ""
        model = self.store.load(ref)
        sig = signature_of(model, ref.name, ref.version or 0, class_names=self.store.info(ref).class_names)
        forward = ChosenForward(lambda: choose(model, sig, mode=self.options.runtime, cache=self.onnx_cache,
                                               checksum=checksum, threads=self.options.onnx_threads,
                                               keras_forward=CompiledForward))
        return ServedModel(model, sig, self.options, forward)

    def resolve(self, ref: str) -> str:
        """``NAME`` or ``NAME:VERSION`` to ``NAME:VERSION``; raises NotFound.

        The answer for a bare name is reused while the model's folder is unchanged (same mtime); a folder
        modified in the last ``SETTLE_NS`` is always listed again, so that two changes within one tick
        of the file system's clock cannot leave a stale answer.
        """
        cached = self._latest.get(ref)
        if cached is not None:
            name, mtime, resolved = cached
            if self.store.model_stamp(name) == mtime and time.time_ns() - mtime > SETTLE_NS:
                return resolved
        r = self.store.resolve(ref)
        resolved = str(r)
        stamp = self.store.model_stamp(r.name)  # None (an object store): list again every time
        if stamp is not None and ":" not in ref:
            with self._latest_lock:
                self._latest[ref] = (r.name, stamp, resolved)
        return resolved

    def served(self, ref: str) -> ServedModel:
        return self.cache.get(self.resolve(ref))

    def signature(self, ref: str) -> ModelSignature:
        return self.served(ref).signature

    def runtime(self, ref: str) -> RuntimeChoice:
        """The runtime serving ``ref`` (loading it)."""
        return self.served(ref).runtime

    def submit(self, ref: str | ModelSignature, arrays: list[np.ndarray]
               ) -> tuple[ModelSignature, Future[list[np.ndarray]]]:
        """Queue one request (arrays in the model's input order).

        ``ref`` may be a signature this engine just returned, whose caller has checked ``arrays`` against
        it (the wire conversion does): that skips resolving and checking again.

        Returns:
            The signature of the version that serves it, and a future of its outputs.

        Raises:
            NotFound: no such model or version. InvalidInput: arrays that do not fit the model.
        """
        key = ref.ref if isinstance(ref, ModelSignature) else self.resolve(ref)
        for _ in range(EVICTION_RETRIES):
            served = self.cache.get(key)
            if not isinstance(ref, ModelSignature):  # a signature's caller has checked its arrays
                check_arrays(served.signature, arrays)
            try:
                return served.signature, served.batcher.submit(arrays)
            except FailedPrecondition:
                continue  # evicted between lookup and submit: load again
        raise FailedPrecondition(f"model {key} keeps being evicted from the cache; raise --cache-mb")

    async def infer_on_loop(self, ref: str, decode: Callable[[ModelSignature], tuple[list[np.ndarray], D]],
                            pool: Executor | None = None, *, decode_in_pool: bool = False
                            ) -> tuple[ModelSignature, list[np.ndarray], D]:
        """One request from a coroutine on the event loop, start to end: look ``ref`` up, decode it,
        queue it on the version's loop batcher, await its outputs.

        The lookup runs on the loop where the store answers cheaply (a folder store: one stat) and the
        version is loaded; else (loading it, or resolving on an object store) in ``pool``. ``decode`` is
        the adapter's: it checks the request against the signature of the version that answers and
        returns the input arrays in the model's order and anything the adapter wants back (the outputs
        it asked for); it runs before any work, on the loop, or in ``pool`` with ``decode_in_pool`` (CPU
        work such as decoding images). A version evicted between the lookup and the queue is loaded again.

        Returns:
            The signature of the version that answered, its outputs, and what ``decode`` returned beside
            the arrays.

        Raises:
            NotFound, InvalidInput (from ``decode``), ResourceExhausted (larger than the cache),
            FailedPrecondition (evicted again and again: the cache is too small for the load).
        """
        loop = asyncio.get_running_loop()
        served = self.cache.peek(self.resolve(ref)) if self.store.cheap_lookups else None
        if served is None:
            served = await loop.run_in_executor(pool, self.served, ref)
        if decode_in_pool:
            arrays, extra = await loop.run_in_executor(pool, decode, served.signature)
        else:
            arrays, extra = decode(served.signature)
        key = served.signature.ref
        for _ in range(EVICTION_RETRIES):
            try:
                future = served.loop_batcher().submit(arrays)
            except FailedPrecondition:  # evicted since the lookup: load it again
                served = await loop.run_in_executor(pool, self.cache.get, key)
                continue
            return served.signature, await future, extra
        raise FailedPrecondition(f"model {key} keeps being evicted from the cache; raise --cache-mb")

    def infer(self, ref: str, arrays: list[np.ndarray]) -> InferResult:
        sig, future = self.submit(ref, arrays)
        return InferResult(sig, future.result())

    def forget(self, ref: str) -> None:
        """Drop a version from the cache and its ONNX files (after it was deleted from the store)."""
        r = ModelRef.parse(ref)
        self.cache.discard(str(r))
        if r.version is not None:
            self.onnx_cache.forget(r.name, r.version)

    def stats(self) -> dict[str, ServedStats]:
        out = {}
        for key in self.cache.loaded():
            served = self.cache.peek(key)
            if served is not None:
                chosen = served.runtime_chosen  # not chosen yet: no request has run (stats choose nothing)
                out[key] = ServedStats(**vars(served.stats()), runtime=chosen.runtime if chosen else "",
                                       runtime_reason=chosen.reason if chosen else "")
        return out

    def close(self) -> None:
        self.cache.clear()
