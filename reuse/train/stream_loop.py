"""The training loop for data that is not in memory whole: epochs driven from the host, chunk by chunk.

Each epoch takes the same row order the compiled whole-run loop would (the backend's
:func:`permutation`), cuts it into chunks of ``spec.chunk_rows`` rows (a multiple of the batch size, so
batches are the same), reads each chunk's rows from their source (features on disk, an image folder, an
array file) on a thread while the previous chunk trains, and runs the chunk's optimizer steps in one
compiled call (:class:`reuse.backend.ChunkLoopRunner`). The same seed therefore gives the same batches
and the same weights as the in-memory loop. Validation, early stopping and the best weights are kept on
the host between epochs; a cancel is honoured between chunks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from reuse.backend import active
from reuse.backend.spec import LoopSpec
from reuse.data.rows import batches, rows_of
from reuse.data.stream import ahead, read_inputs, take_inputs
from reuse.errors import Cancelled
from reuse.train.engine import LoopOutcome, Phase, _history, _row
from reuse.train.events import EpochEnd, ProgressCallback, TrainStarted


class EpochViews:
    """Several versions of the training rows (augmented views' features): epoch ``e`` reads view
    ``e mod K``. Only the streamed loop takes it."""

    def __init__(self, views: list[Any]) -> None:
        self.views = views
        first = views[0][0] if isinstance(views[0], tuple) else views[0]
        self.shape = tuple(first.shape)
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def view(self, epoch: int) -> Any:
        return self.views[epoch % len(self.views)]


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("training cancelled; nothing was registered")


def _validate(runner: Any, xv: Any, yv: np.ndarray, rows: int) -> tuple[float, float]:
    spans = list(batches(len(yv), rows))
    tot = score = reg = 0.0
    for (lo, hi), xb in zip(spans, ahead(lambda span: read_inputs(xv, *span), spans), strict=True):
        lo_sum, hi_sum, reg = runner.evaluate(xb, yv[lo:hi])
        tot, score = tot + lo_sum, score + hi_sum
    n = len(yv)
    return tot / n + reg, score / n


def run_stream_loop(spec: LoopSpec, *, metric: str, eval_rows: int, phase: Phase | None = None,
                    cached: tuple[str, ...] = (), progress: ProgressCallback | None = None,
                    cancel: threading.Event | None = None) -> LoopOutcome:
    """Train ``spec`` (``chunk_rows`` set) to the end or early stop; emit events; raise Cancelled.

    ``eval_rows``: rows per validation batch. The trained (or, with early stopping, best) values are
    in the Keras variables afterwards.
    """
    t0 = time.perf_counter()
    phase = phase or Phase()
    _check_cancel(cancel)
    backend = active()
    runner = backend.ChunkRunner(spec)
    n, chunk = spec.n, int(spec.chunk_rows or spec.n)
    if progress:
        progress(TrainStarted(phase.task, spec.epochs, n, spec.n_val, spec.steps_per_epoch, cached,
                              phase.phase, phase.phases, phase.label))
    kept = spec.train_vars + spec.state_vars
    history = np.full((spec.epochs, 4), np.nan)
    best, best_epoch, wait, best_values = np.inf, -1, 0, None
    done, stopped = 0, False
    for e in range(spec.epochs):
        order = backend.permutation(n, spec.seed, e) if spec.shuffle else np.arange(n)
        spans = list(batches(n, chunk))

        xe = spec.x.view(e) if isinstance(spec.x, EpochViews) else spec.x

        def read(span: tuple[int, int], order: np.ndarray = order, xe: Any = xe) -> tuple[Any, np.ndarray]:
            idx = order[span[0]:span[1]]
            return take_inputs(xe, idx), spec.y[idx]

        tot = score = 0.0
        for xc, yc in ahead(read, spans):
            _check_cancel(cancel)
            lo_sum, hi_sum = runner.train(xc, yc)
            tot, score = tot + lo_sum, score + hi_sum
        row = [tot / n, score / n, np.nan, np.nan]
        if spec.has_val:
            row[2:] = _validate(runner, spec.xv, spec.yv, eval_rows)
        history[e] = row
        done = e + 1
        if not np.isfinite(row[0]):
            stopped = True
        elif spec.patience is not None:
            monitor = row[2] if spec.has_val else row[0]
            if monitor < best:
                best, best_epoch, wait = monitor, e, 0
                if spec.keep_best:
                    best_values = runner.snapshot(kept)
            else:
                wait += 1
                stopped = wait >= spec.patience
        if progress:
            per_epoch = (time.perf_counter() - t0) / done
            progress(EpochEnd(done, spec.epochs, *_row(history[e], metric, spec.has_val),
                              elapsed=time.perf_counter() - t0, eta=(spec.epochs - done) * per_epoch,
                              phase=phase.phase, phases=phase.phases))
        if stopped:
            break
    _check_cancel(cancel)
    if best_values is not None:
        runner.restore(kept, best_values)
    runner.finish()
    diverged = bool(done and not np.isfinite(history[done - 1, 0]))
    return LoopOutcome(_history(history[:done], metric, spec.has_val), done,
                       stopped and not diverged and done < spec.epochs, diverged,
                       best_epoch + 1 if spec.patience is not None and best_epoch >= 0 else None,
                       time.perf_counter() - t0, done * max(1, -(-n // chunk)))


def chunk_rows(x: Any, batch: int, *, share: float = 0.2, cap_bytes: int = 256 * 1024**2) -> int:
    """Rows per chunk of the streamed loop: a multiple of ``batch`` whose input bytes (held about three
    times over: the chunk training, the next one read ahead, and its copy for the backend) fit ``share``
    of what the memory budget leaves, and at most ``cap_bytes``.

    Raises:
        ResourceExhausted: not even one batch fits.
    """
    from reuse.data.rows import row_nbytes
    from reuse.memory import fmt_bytes, process_budget

    if isinstance(x, EpochViews):
        x = x.view(0)
    parts = x if isinstance(x, tuple) else (x,)
    per_row = sum(max(row_nbytes(a), int(np.prod(a.shape[1:], dtype=np.int64)) * 4) for a in parts)
    budget = process_budget()
    room = min(int(budget.available() * share), cap_bytes)
    rows = room // (3 * per_row)
    if rows < batch:
        budget.refuse(f"a chunk of one batch ({batch} rows) needs {fmt_bytes(batch * 3 * per_row)} of input",
                      batch * 3 * per_row, share)
    return int(min(rows_of(x), rows // batch * batch) or batch)
