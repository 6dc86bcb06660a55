"""The TensorFlow backend: a whole training run in one ``tf.function``, and the compiled forward pass.

Training: a whole run of epochs and steps in one ``tf.function`` over in-memory tensors.
The TensorFlow backend of Keras 3 has no ``optimizer.stateless_apply``, so this loop updates the Keras
variables in place; the per-epoch shuffle is a stateless, seeded permutation, and early stopping,
validation and the best-weights copy all run inside the compiled loop. Traced without autograph (the
loops are explicit ``tf.while_loop``s), which keeps tracing cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from reuse.backend.spec import ChunkResult, Forward, LoopSpec, eval_batches, map_arrays
from reuse.backend.tf_updates import FusedUpdate

NAME = "tensorflow"
ONNX_CONVERTER = "tf2onnx"  # the package Keras' ONNX export converts through here


class _NoRetraceWarning(logging.Filter):
    """Each run compiles its own loop on purpose; TensorFlow's "excessive retracing" hint is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetraceWarning())


# A single pass over data (caching features, final metrics) runs eagerly: cheaper than tracing.
EAGER_ONE_SHOT = True


def _sum_losses(losses: list[Any]) -> Any:
    return tf.add_n([tf.cast(x, tf.float32) for x in losses]) if losses else 0.0


class Stepper:
    """One optimizer step on a batch, for both loops (the whole run compiled, and chunks from the host).

    The tape watches trainable variables itself; frozen-flagged ones we train (batch-norm scale and
    offset during fine-tuning) are watched explicitly.
    """

    def __init__(self, spec: LoopSpec) -> None:
        self.s = spec
        spec.optimizer.build(spec.train_vars)
        self.fused = FusedUpdate.for_optimizer(spec.optimizer, spec.train_vars)
        self.unwatched = [v.value for v in spec.train_vars if not v.trainable]

    def step(self, xb: Any, yb: Any) -> tuple[Any, Any]:
        s = self.s
        with tf.GradientTape() as tape:
            if self.unwatched:
                tape.watch(self.unwatched)
            p = s.forward(xb, True)
            loss = tf.reduce_mean(s.task.loss(yb, p)) + _sum_losses(s.forward.losses())
        grads = tape.gradient(loss, s.train_vars)
        if self.fused is not None:
            with tf.control_dependencies([self.fused.apply(grads)]):
                return tf.identity(loss), tf.reduce_sum(s.task.score(yb, p))
        s.optimizer.apply(grads, s.train_vars)
        return loss, tf.reduce_sum(s.task.score(yb, p))


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the rows in ``epoch``: the same one the compiled whole-run loop draws."""
    key = tf.stack([tf.constant(seed, tf.int32), tf.constant(epoch, tf.int32)])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key)).numpy()


class Runner:
    """Runs epochs ``[start, stop)`` of ``spec`` per call; state lives in TF variables between calls."""

    def __init__(self, spec: LoopSpec) -> None:
        self.s = spec
        # x is one tensor, or a tuple (one per model input) indexed alike.
        self.x = map_arrays(tf.convert_to_tensor, spec.x)
        self.y = tf.convert_to_tensor(spec.y)
        self.xv = map_arrays(tf.convert_to_tensor, spec.xv) if spec.has_val else None
        self.yv = tf.convert_to_tensor(spec.yv) if spec.has_val else None
        self.stepper = Stepper(spec)
        self.hist = tf.Variable(tf.fill([spec.epochs, 4], float("nan")), trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)
        self.best = tf.Variable(float("inf"), trainable=False)
        self.best_epoch = tf.Variable(-1, dtype=tf.int32, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.kept = spec.train_vars + spec.state_vars if spec.keep_best else []
        self.copies = [tf.Variable(v.value, trainable=False) for v in self.kept]
        self._fn = tf.function(self._run, autograph=False, jit_compile=False)

    # -- the compiled body ---------------------------------------------------------------------
    def _epoch(self, e: Any) -> Any:
        s = self.s
        n, b = s.n, s.batch
        if s.shuffle:
            key = tf.stack([tf.constant(s.seed, tf.int32), e])
            perm = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        else:
            perm = tf.range(n)

        # One traced step serves every batch, the shorter last one too: the batch dimension is
        # dynamic (a graph without XLA does not need static shapes), which halves tracing time.
        def body(i: Any, tot: Any, score: Any) -> tuple[Any, Any, Any]:
            start = i * b
            size = tf.minimum(b, n - start)
            idx = tf.slice(perm, [start], [size])
            loss, hits = self.stepper.step(map_arrays(lambda a: tf.gather(a, idx), self.x),
                                           tf.gather(self.y, idx))
            return i + 1, tot + loss * tf.cast(size, tf.float32), score + hits

        _, tot, score = tf.while_loop(lambda i, *_: i < s.steps_per_epoch, body,
                                      (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        return tf.stack([tot / n, score / n])

    def _evaluate(self, x: Any, y: Any, n: int) -> Any:
        s = self.s
        b, full, rem = eval_batches(n)

        def part(xb: Any, yb: Any) -> tuple[Any, Any]:
            p = s.forward(xb, False)
            return tf.reduce_sum(s.task.loss(yb, p)), tf.reduce_sum(s.task.score(yb, p))

        def body(i: Any, tot: Any, score: Any) -> tuple[Any, Any, Any]:
            rows = tf.range(i * b, i * b + b)
            lo, hi = part(map_arrays(lambda a: tf.gather(a, rows), x), tf.gather(y, rows))
            return i + 1, tot + lo, score + hi

        _, tot, score = tf.while_loop(lambda i, *_: i < full, body,
                                      (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        if rem:
            lo, hi = part(map_arrays(lambda a: a[full * b:], x), y[full * b:])
            tot, score = tot + lo, score + hi
        reg = _sum_losses(s.forward.losses())
        return tf.stack([tot / n + reg, score / n])

    def _early_stopping(self, e: Any, monitor: Any) -> Any:
        s = self.s

        def improved() -> Any:
            ops = [self.best.assign(monitor), self.best_epoch.assign(e), self.wait.assign(0)]
            ops += [c.assign(v.value) for c, v in zip(self.copies, self.kept, strict=True)]
            with tf.control_dependencies(ops):
                return tf.constant(False)

        def worse() -> Any:
            with tf.control_dependencies([self.wait.assign_add(1)]):
                return self.wait.read_value() >= s.patience

        return tf.cond(monitor < self.best, improved, worse)

    def _run(self, stop: Any) -> Any:
        s = self.s

        def cond(e: Any) -> Any:
            return tf.logical_and(e < stop, tf.logical_not(self.stopped.read_value()))

        def body(e: Any) -> Any:
            train = self._epoch(e)
            val = (self._evaluate(self.xv, self.yv, s.n_val) if s.has_val
                   else tf.constant([float("nan")] * 2))
            row = tf.concat([train, val], 0)
            halt = tf.logical_not(tf.math.is_finite(train[0]))
            if s.patience is not None:
                monitor = val[0] if s.has_val else train[0]
                halt = tf.logical_or(halt, self._early_stopping(e, monitor))
            ops = [self.hist.scatter_nd_update([[e]], [row]), self.epoch.assign(e + 1),
                   self.stopped.assign(halt)]
            with tf.control_dependencies(ops):
                return e + 1

        return tf.while_loop(cond, body, (self.epoch.read_value(),))

    # -- host side -------------------------------------------------------------------------------
    def run(self, stop: int) -> ChunkResult:
        """Run from the current epoch up to ``stop`` (exclusive) or until stopped."""
        self._fn(tf.constant(stop, tf.int32))
        return ChunkResult(self.hist.numpy(), int(self.epoch.numpy()), bool(self.stopped.numpy()))

    def finish(self) -> int | None:
        """Restore the best epoch's weights when asked; return its 0-based index (None: not tracked)."""
        if self.s.patience is None:
            return None
        best = int(self.best_epoch.numpy())
        if self.s.keep_best and best >= 0:
            for c, v in zip(self.copies, self.kept, strict=True):
                v.assign(c.value())
        return best if best >= 0 else None


class ChunkRunner:
    """Epochs driven from the host over chunks of rows (data that is not in memory whole): each call
    runs the optimizer steps over one chunk, in order, in one compiled call (:class:`Stepper`)."""

    def __init__(self, spec: LoopSpec) -> None:
        self.s = spec
        self.stepper = Stepper(spec)
        self._train = tf.function(self._train_chunk, autograph=False, jit_compile=False,
                                  reduce_retracing=True)
        self._eval: Any = None

    def _train_chunk(self, xc: Any, yc: Any) -> Any:
        b = self.s.batch
        m = tf.shape(yc)[0]

        def body(i: Any, tot: Any, score: Any) -> tuple[Any, Any, Any]:
            start = i * b
            size = tf.minimum(b, m - start)
            loss, hits = self.stepper.step(map_arrays(lambda a: a[start:start + size], xc),
                                           yc[start:start + size])
            return i + 1, tot + loss * tf.cast(size, tf.float32), score + hits

        steps = (m + b - 1) // b
        _, tot, score = tf.while_loop(lambda i, *_: i < steps, body,
                                      (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        return tf.stack([tot, score])

    def train(self, xc: Any, yc: np.ndarray) -> tuple[float, float]:
        """Steps over one chunk's rows, in order; the sums of loss x rows and of the metric."""
        out = self._train(map_arrays(tf.convert_to_tensor, xc), tf.convert_to_tensor(yc)).numpy()
        return float(out[0]), float(out[1])

    def _evaluate_batch(self, xb: Any, yb: Any) -> Any:
        s = self.s
        p = s.forward(xb, False)
        return tf.stack([tf.reduce_sum(s.task.loss(yb, p)), tf.reduce_sum(s.task.score(yb, p)),
                         tf.cast(_sum_losses(s.forward.losses()), tf.float32)])

    def evaluate(self, xb: Any, yb: np.ndarray) -> tuple[float, float, float]:
        """Inference-mode sums of the loss and the metric over a batch, and the regularisation terms."""
        if self._eval is None:
            self._eval = tf.function(self._evaluate_batch, autograph=False, reduce_retracing=True)
        out = self._eval(map_arrays(tf.convert_to_tensor, xb), tf.convert_to_tensor(yb)).numpy()
        return float(out[0]), float(out[1]), float(out[2])

    def snapshot(self, variables: list[Any]) -> list[np.ndarray]:
        return [v.numpy() for v in variables]

    def restore(self, variables: list[Any], values: list[np.ndarray]) -> None:
        for v, val in zip(variables, values, strict=True):
            v.assign(val)

    def finish(self) -> None:
        """Nothing to write back: the steps update the Keras variables in place."""


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads for TensorFlow ops in this process (call before any op runs), so
    worker processes sharing the machine's cores do not each start one compute thread per core."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # the runtime is already initialised: keep its settings
        pass


def _signature(forward: Forward, arrays: list[np.ndarray]) -> tuple[Any, ...]:
    """Input specs with the batch dimension open; the model's declared shapes where they fit the arrays
    (so a variable-length axis stays open too), else the arrays' own."""
    try:
        declared = list(forward.model.inputs)
    except (AttributeError, ValueError):  # a subclassed model has no symbolic inputs
        declared = []
    specs = []
    for i, a in enumerate(arrays):
        t = declared[i] if len(declared) == len(arrays) else None
        fits = (t is not None and len(t.shape) == a.ndim and tf.as_dtype(t.dtype) == tf.as_dtype(a.dtype)
                and all(d is None or d == n for d, n in zip(t.shape[1:], a.shape[1:], strict=True)))
        specs.append(tf.TensorSpec((None, *(t.shape[1:] if fits else a.shape[1:])), a.dtype))
    return tuple(specs)


def compile_forward(forward: Forward, on_trace: Callable[[], None] | None = None
                    ) -> tuple[Callable[[list[np.ndarray]], list[np.ndarray]], bool]:
    """One concrete function per input signature, the batch dimension left open: polymorphic.

    Calling the concrete function directly skips ``tf.function``'s per-call argument dispatch, which
    costs as much as the forward pass itself for small batches. TF variables are read when the graph
    runs, so the function always sees the current weights.
    """

    def traced(*xs: Any) -> list[Any]:
        if on_trace is not None:
            on_trace()  # a Python side effect: runs only while tracing
        out = forward(xs if len(xs) > 1 else xs[0], False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    by_arrays: dict[tuple[Any, ...], Any] = {}
    by_signature: dict[tuple[Any, ...], Any] = {}

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        key = tuple((a.shape[1:], a.dtype.str) for a in arrays)
        fn = by_arrays.get(key)
        if fn is None:
            signature = _signature(forward, arrays)
            fn = by_signature.get(signature)
            if fn is None:
                fn = by_signature[signature] = tf.function(
                    traced, input_signature=list(signature), autograph=False).get_concrete_function()
            by_arrays[key] = fn
        return [t.numpy() for t in fn(*(tf.constant(a) for a in arrays))]

    return run, True
