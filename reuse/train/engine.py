"""Drives the active backend's compiled training loop (:mod:`reuse.backend`): as few calls as
possible, events and cancellation between calls.

Without a progress callback or a cancel token the whole run is one compiled call. With either, the
first call runs one epoch (it includes compilation); later calls run as many epochs as fit in about
``CHUNK_SECONDS``, so the progress bar moves and a cancel is honoured within about that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from reuse.backend import active
from reuse.backend.spec import LoopSpec
from reuse.errors import Cancelled
from reuse.train.events import EpochEnd, ProgressCallback, TrainFinished, TrainStarted

CHUNK_SECONDS = 0.25
MAX_CHUNK = 10_000


@dataclass
class LoopOutcome:
    history: dict[str, list[float]]
    epochs_run: int
    stopped_early: bool
    diverged: bool
    best_epoch: int | None
    seconds: float
    calls: int


@dataclass(frozen=True)
class Phase:
    """Where a run sits in a multi-phase job, for its events."""

    task: str = "train"
    phase: int = 1
    phases: int = 1
    label: str = ""


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("training cancelled; nothing was registered")


def run_loop(spec: LoopSpec, *, metric: str, phase: Phase = Phase(), cached: tuple[str, ...] = (),
             progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> LoopOutcome:
    """Train ``spec`` to the end (or early stop); emit events; raise Cancelled when asked to stop.

    The variables of ``spec`` hold the result afterwards (best epoch's when early stopping restores).
    """
    t0 = time.perf_counter()
    _check_cancel(cancel)
    runner = active().Runner(spec)
    epochs = spec.epochs
    if progress:
        progress(TrainStarted(phase.task, epochs, spec.n, spec.n_val,
                              spec.steps_per_epoch, cached, phase.phase, phase.phases, phase.label))
    interactive = progress is not None or cancel is not None
    done, calls, chunk, per_epoch = 0, 0, 1, None
    stopped = False
    history = np.full((epochs, 4), np.nan)
    while done < epochs and not stopped:
        _check_cancel(cancel)
        start = time.perf_counter()
        res = runner.run(min(epochs, done + chunk) if interactive else epochs)
        now = time.perf_counter()
        calls += 1
        new = res.epochs_done - done
        history, stopped = res.history, res.stopped
        if new > 0:
            rate = (now - start) / new
            # The first call includes compilation; later calls measure the real pace.
            per_epoch = rate if (per_epoch is None or calls > 1) else per_epoch
            if progress:
                base = start - t0
                for j in range(new):
                    e = done + j
                    left = epochs - e - 1
                    progress(EpochEnd(e + 1, epochs, *_row(history[e], metric, spec.has_val),
                                      elapsed=base + (j + 1) * rate, eta=left * per_epoch,
                                      phase=phase.phase, phases=phase.phases))
            chunk = int(min(MAX_CHUNK, max(1, CHUNK_SECONDS / max(per_epoch, 1e-9))))
        done = res.epochs_done
        if not interactive:
            break
    _check_cancel(cancel)
    best = runner.finish()
    diverged = bool(done and not np.isfinite(history[done - 1, 0]))
    hist = _history(history[:done], metric, spec.has_val)
    return LoopOutcome(hist, done, stopped and not diverged and done < epochs, diverged,
                       None if best is None else best + 1, time.perf_counter() - t0, calls)


def _row(row: np.ndarray, metric: str, has_val: bool) -> tuple[dict[str, float], dict[str, float]]:
    losses = {"loss": float(row[0])}
    metrics = {metric: float(row[1])}
    if has_val:
        losses["val_loss"] = float(row[2])
        metrics[f"val_{metric}"] = float(row[3])
    return losses, metrics


def _history(rows: np.ndarray, metric: str, has_val: bool) -> dict[str, list[float]]:
    out = {"loss": rows[:, 0].tolist(), metric: rows[:, 1].tolist()}
    if has_val:
        out["val_loss"] = rows[:, 2].tolist()
        out[f"val_{metric}"] = rows[:, 3].tolist()
    return out


def finished_event(outcome: LoopOutcome, metrics: dict[str, float], phase: Phase) -> TrainFinished:
    return TrainFinished(outcome.epochs_run, outcome.stopped_early, outcome.best_epoch, dict(metrics),
                         outcome.seconds, phase.phase, phase.phases)
