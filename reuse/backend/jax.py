"""The JAX backend: a whole training run in one ``jax.jit`` call, and the compiled forward pass.

Training: a whole run of epochs and steps in one ``jax.jit`` call, written with Keras's stateless API.
Weights, optimizer slots and loop bookkeeping are one pytree carried through ``lax.while_loop``
(epochs) and ``lax.fori_loop`` (steps); the forward pass runs in a ``keras.StatelessScope`` and the
update is ``optimizer.stateless_apply``. Data stay on the device as arguments of the compiled call.

Data parallel (``LoopSpec.data_parallel``): the state and the data are replicated on a one-axis mesh of
every device, and each batch is constrained to be split along that axis, so XLA runs each device's
share of the forward and backward pass and sums the gradients across devices: the same step as on one
device over the same global batch, in one compiled call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax import lax

from reuse.backend.spec import ChunkResult, Forward, LoopSpec, bucket, eval_batches, map_arrays
from reuse.keras_compat import all_layers

NAME = "jax"
ONNX_CONVERTER = "jax2onnx"  # the package Keras' ONNX export converts through here

# Eager JAX compiles every primitive per shape, so even a single pass over data is faster jitted.
EAGER_ONE_SHOT = False


def stateless_forward(forward: Forward, variables: list[Any], values: list[Any], x: Any,
                      training: bool) -> tuple[Any, list[Any], list[Any]]:
    """Call ``forward`` with ``variables`` read as ``values``; return outputs, updated values, losses."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True)),
                              collect_losses=True) as scope:
        out = forward(x, training)
        losses = forward.losses()
    return out, [scope.get_current_value(v) for v in variables], losses


def _total(losses: list[Any]) -> Any:
    return sum((jnp.asarray(x, jnp.float32) for x in losses), jnp.float32(0.0))


class _Steps:
    """The stateless optimizer step both loops run: the weights, slots and bookkeeping in one pytree
    (``carry``), each batch optionally split over every device (data parallel)."""

    def __init__(self, spec: LoopSpec) -> None:
        self.s = spec
        opt = spec.optimizer
        opt.build(spec.train_vars)
        self.nt = len(spec.train_vars)
        self.mixes_rows = any(isinstance(x, keras.layers.BatchNormalization) and x.trainable
                              for x in all_layers(spec.forward.model, include_self=True))
        self.all_vars = spec.train_vars + spec.state_vars
        t = [v.value for v in spec.train_vars]
        st = [v.value for v in spec.state_vars]
        self.carry: dict[str, Any] = {
            "t": t, "s": st, "o": [v.value for v in opt.variables],
            "bt": list(t) if spec.keep_best else [], "bs": list(st) if spec.keep_best else [],
            "hist": jnp.full((spec.epochs, 4), jnp.nan, jnp.float32),
            "epoch": jnp.int32(0), "stopped": jnp.bool_(False),
            "best": jnp.float32(jnp.inf), "best_epoch": jnp.int32(-1), "wait": jnp.int32(0),
        }
        self.batch_sharding = self.replicated = None
        if spec.data_parallel:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(jax.devices()), ("batch",))
            self.batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
            self.replicated = NamedSharding(mesh, PartitionSpec())
            self.carry = jax.device_put(self.carry, self.replicated)

    def _loss(
        self, t: list[Any], st: list[Any], xb: Any, yb: Any, w: Any
    ) -> tuple[Any, tuple[list[Any], Any]]:
        s = self.s
        p, new, losses = stateless_forward(s.forward, self.all_vars, t + st, xb, True)
        # ``w`` marks real rows (1) and padding (0) of the last batch: the mean over real rows.
        loss = jnp.sum(w * s.task.loss(yb, p)) / jnp.sum(w) + _total(losses)
        return loss, (new[self.nt:], jnp.sum(w * s.task.score(yb, p)))

    def _step(self, c: dict[str, Any], xb: Any, yb: Any, w: Any) -> tuple[dict[str, Any], Any, Any]:
        if self.batch_sharding is not None:
            xb, yb, w = jax.tree.map(lambda a: lax.with_sharding_constraint(a, self.batch_sharding),
                                     (xb, yb, w))
        (loss, (st, hits)), grads = jax.value_and_grad(self._loss, has_aux=True)(c["t"], c["s"], xb, yb, w)
        t, o = self.s.optimizer.stateless_apply(c["o"], grads, c["t"])
        return {**c, "t": t, "s": st, "o": o}, loss, hits

    def _write_back(self, t: list[Any], st: list[Any]) -> None:
        s, c = self.s, self.carry
        for v, val in zip(s.train_vars, t, strict=True):
            v.assign(val)
        for v, val in zip(s.state_vars, st, strict=True):
            v.assign(val)
        for v, val in zip(s.optimizer.variables, c["o"], strict=True):
            v.assign(val)


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the rows in ``epoch``: the same one the compiled whole-run loop draws."""
    return np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(seed), jnp.int32(epoch)), n))


class Runner(_Steps):
    """Runs epochs up to ``stop`` per call; the state pytree stays on the device between calls."""

    def __init__(self, spec: LoopSpec) -> None:
        super().__init__(spec)
        # x is one array, or a tuple (one per model input) indexed alike: a pytree either way.
        self.data = [map_arrays(jnp.asarray, spec.x), jnp.asarray(spec.y)]
        if spec.has_val:
            self.data += [map_arrays(jnp.asarray, spec.xv), jnp.asarray(spec.yv)]
        if self.replicated is not None:
            self.data = jax.device_put(self.data, self.replicated)
        self._fn = jax.jit(self._run)

    # -- the compiled body ---------------------------------------------------------------------
    def _epoch(self, c: dict[str, Any], x: Any, y: Any) -> tuple[dict[str, Any], Any]:
        s = self.s
        n, b = s.n, s.batch
        if s.shuffle:
            perm = jax.random.permutation(jax.random.fold_in(jax.random.key(s.seed), c["epoch"]), n)
        else:
            perm = jnp.arange(n)
        # XLA needs static shapes. The short last batch is padded and masked, so one step body is
        # compiled, unless a layer mixes rows of a batch (batch normalisation in training), where
        # padding would change the result: then it gets its own step.
        masked = bool(s.remainder) and not self.mixes_rows
        steps = s.steps_per_epoch if masked else s.steps
        if masked:
            perm = jnp.concatenate([perm, jnp.zeros(steps * b - n, perm.dtype)])
        real = (jnp.arange(steps * b) < n).astype(jnp.float32)

        def body(i: Any, acc: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            cc, tot, score = acc
            idx = lax.dynamic_slice(perm, (i * b,), (b,))
            w = lax.dynamic_slice(real, (i * b,), (b,))
            cc, loss, hits = self._step(cc, map_arrays(lambda a: a[idx], x), y[idx], w)
            return cc, tot + loss * jnp.sum(w), score + hits

        c, tot, score = lax.fori_loop(0, steps, body, (c, jnp.float32(0.0), jnp.float32(0.0)))
        if s.remainder and not masked:
            idx = perm[s.steps * b:]
            c, loss, hits = self._step(c, map_arrays(lambda a: a[idx], x), y[idx],
                                       jnp.ones((s.remainder,), jnp.float32))
            tot, score = tot + loss * s.remainder, score + hits
        return c, jnp.stack([tot / n, score / n])

    def _evaluate(self, c: dict[str, Any], x: Any, y: Any) -> Any:
        s = self.s
        n = int(y.shape[0])
        b, full, rem = eval_batches(n)
        values = c["t"] + c["s"]

        def part(xb: Any, yb: Any) -> tuple[Any, Any, Any]:
            p, _, losses = stateless_forward(s.forward, self.all_vars, values, xb, False)
            return jnp.sum(s.task.loss(yb, p)), jnp.sum(s.task.score(yb, p)), _total(losses)

        def body(i: Any, acc: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            xb = map_arrays(lambda a: lax.dynamic_slice_in_dim(a, i * b, b), x)
            yb = lax.dynamic_slice_in_dim(y, i * b, b)
            lo, hi, reg = part(xb, yb)
            return acc[0] + lo, acc[1] + hi, reg

        tot, score, reg = lax.fori_loop(0, full, body, (jnp.float32(0.0), jnp.float32(0.0), jnp.float32(0.0)))
        if rem:
            lo, hi, reg = part(map_arrays(lambda a: a[full * b:], x), y[full * b:])
            tot, score = tot + lo, score + hi
        return jnp.stack([tot / n + reg, score / n])

    def _run(self, c: dict[str, Any], stop: Any, data: list[Any]) -> dict[str, Any]:
        s = self.s

        def cond(cc: dict[str, Any]) -> Any:
            return (cc["epoch"] < stop) & ~cc["stopped"]

        def body(cc: dict[str, Any]) -> dict[str, Any]:
            e = cc["epoch"]
            cc, train = self._epoch(cc, data[0], data[1])
            val = self._evaluate(cc, data[2], data[3]) if s.has_val else jnp.full((2,), jnp.nan, jnp.float32)
            halt = ~jnp.isfinite(train[0])
            if s.patience is not None:
                monitor = val[0] if s.has_val else train[0]
                better = monitor < cc["best"]
                wait = jnp.where(better, 0, cc["wait"] + 1)
                cc = {**cc, "best": jnp.where(better, monitor, cc["best"]),
                      "best_epoch": jnp.where(better, e, cc["best_epoch"]), "wait": wait}
                if s.keep_best:
                    keep = lambda new, old: jnp.where(better, new, old)  # noqa: E731
                    cc = {**cc, "bt": jax.tree.map(keep, cc["t"], cc["bt"]),
                          "bs": jax.tree.map(keep, cc["s"], cc["bs"])}
                halt = halt | (wait >= s.patience)
            hist = cc["hist"].at[e].set(jnp.concatenate([train, val]))
            return {**cc, "hist": hist, "epoch": e + 1, "stopped": halt}

        return lax.while_loop(cond, body, c)

    # -- host side -------------------------------------------------------------------------------
    def run(self, stop: int) -> ChunkResult:
        """Run from the current epoch up to ``stop`` (exclusive) or until stopped."""
        self.carry = self._fn(self.carry, jnp.int32(stop), self.data)
        c = self.carry
        return ChunkResult(np.asarray(c["hist"]), int(c["epoch"]), bool(c["stopped"]))

    def finish(self) -> int | None:
        """Write the trained (or best) values back into the Keras variables; return the best epoch."""
        c, s = self.carry, self.s
        best = int(c["best_epoch"]) if s.patience is not None else -1
        use_best = s.keep_best and best >= 0
        self._write_back(c["bt"] if use_best else c["t"], c["bs"] if use_best else c["s"])
        return best if best >= 0 else None


class ChunkRunner(_Steps):
    """Epochs driven from the host over chunks of rows (data that is not in memory whole): each call
    runs the steps over one chunk in one jitted call. A chunk is padded to ``spec.chunk_rows`` rows and
    the padding masked, so one trace serves every chunk; a short last batch of a network that mixes
    rows in training (batch normalisation) gets its own exact-shape step instead, as in :class:`Runner`."""

    def __init__(self, spec: LoopSpec) -> None:
        super().__init__(spec)
        self._train = jax.jit(self._train_chunk)
        self._one = jax.jit(self._step)
        self._eval: Any = None

    def _train_chunk(self, c: dict[str, Any], xc: Any, yc: Any, w: Any, steps: Any) -> tuple[Any, Any, Any]:
        b = self.s.batch

        def body(i: Any, acc: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            cc, tot, score = acc
            xb = map_arrays(lambda a: lax.dynamic_slice_in_dim(a, i * b, b), xc)
            wb = lax.dynamic_slice_in_dim(w, i * b, b)
            cc, loss, hits = self._step(cc, xb, lax.dynamic_slice_in_dim(yc, i * b, b), wb)
            return cc, tot + loss * jnp.sum(wb), score + hits

        return lax.fori_loop(0, steps, body, (c, jnp.float32(0.0), jnp.float32(0.0)))

    def train(self, xc: Any, yc: np.ndarray) -> tuple[float, float]:
        """Steps over one chunk's rows, in order; the sums of loss x rows and of the metric."""
        b, m = self.s.batch, len(yc)
        full = m // b
        exact_tail = bool(m % b) and self.mixes_rows
        steps = full if exact_tail else -(-m // b)
        size = max(self.s.chunk_rows or m, steps * b)
        pad = lambda a: np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]), a.dtype)])  # noqa: E731
        w = (np.arange(size) < (full * b if exact_tail else m)).astype(np.float32)
        c, tot, score = self._train(self.carry, map_arrays(pad, xc), pad(yc), w, jnp.int32(steps))
        if exact_tail:
            tail = slice(full * b, m)
            c, loss, hits = self._one(c, map_arrays(lambda a: a[tail], xc), yc[tail],
                                      jnp.ones((m - full * b,), jnp.float32))
            tot, score = tot + loss * (m - full * b), score + hits
        self.carry = c
        return float(tot), float(score)

    def _evaluate_batch(self, values: list[Any], xb: Any, yb: Any, w: Any) -> Any:
        s = self.s
        p, _, losses = stateless_forward(s.forward, self.all_vars, values, xb, False)
        return jnp.stack([jnp.sum(w * s.task.loss(yb, p)), jnp.sum(w * s.task.score(yb, p)), _total(losses)])

    def evaluate(self, xb: Any, yb: np.ndarray) -> tuple[float, float, float]:
        """Inference-mode sums of the loss and the metric over a batch (padded to a power of two, the
        padding masked), and the regularisation terms."""
        m = len(yb)
        size = bucket(m)
        pad = lambda a: np.concatenate([a, np.zeros((size - m, *a.shape[1:]), a.dtype)])  # noqa: E731
        w = (np.arange(size) < m).astype(np.float32)
        if self._eval is None:
            self._eval = jax.jit(self._evaluate_batch)
        out = np.asarray(self._eval(self.carry["t"] + self.carry["s"], map_arrays(pad, xb), pad(yb), w))
        return float(out[0]), float(out[1]), float(out[2])

    def snapshot(self, variables: list[Any]) -> list[np.ndarray]:
        values = {id(v): val for v, val in zip(self.all_vars, self.carry["t"] + self.carry["s"], strict=True)}
        return [np.asarray(values[id(v)]) for v in variables]

    def restore(self, variables: list[Any], values: list[np.ndarray]) -> None:
        where = {id(v): i for i, v in enumerate(self.all_vars)}
        merged = list(self.carry["t"] + self.carry["s"])
        for v, val in zip(variables, values, strict=True):
            merged[where[id(v)]] = jnp.asarray(val)
        self.carry = {**self.carry, "t": merged[:self.nt], "s": merged[self.nt:]}

    def finish(self) -> None:
        """Write the trained values back into the Keras variables."""
        self._write_back(self.carry["t"], self.carry["s"])


def limit_threads(threads: int) -> None:
    """Nothing to do: XLA's CPU thread pool is fixed when the backend starts (``XLA_FLAGS``), not per
    process afterwards."""


def compile_forward(forward: Forward, on_trace: Callable[[], None] | None = None
                    ) -> tuple[Callable[[list[np.ndarray]], list[Any]], bool]:
    """``jax.jit`` over the stateless forward pass: one trace per batch shape, so not polymorphic.

    The variables' current values are passed in on every call, so the function sees the current weights.
    """
    variables = forward.variables

    def traced(values: list[Any], xs: list[Any]) -> list[Any]:
        if on_trace is not None:
            on_trace()  # a Python side effect: runs only while tracing
        out = stateless_forward(forward, variables, values, tuple(xs) if len(xs) > 1 else xs[0], False)[0]
        return list(out) if isinstance(out, (list, tuple)) else [out]

    fn = jax.jit(traced)

    def run(arrays: list[np.ndarray]) -> list[Any]:
        return fn([v.value for v in variables], list(arrays))

    return run, False
