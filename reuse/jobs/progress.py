"""Training events as job progress, and back: the one place that maps one to the other.

A train or fine-tune job turns each :mod:`reuse.train.events` event into a progress event whose fields
carry it (``stage``, the phase, epochs, losses, metrics, ...; see :class:`reuse.jobs.JobEvent`), plus a
``message`` for people (``reuse job ID --watch`` prints it). A client following the job over gRPC turns
the job events back into the same training events (:func:`train_event`), reading only those fields.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from reuse.errors import Cancelled
from reuse.jobs.records import JobEvent, Progress
from reuse.train.events import EpochEnd, FeaturePass, TrainEvent, TrainFinished, TrainStarted


def _name(started: TrainStarted | None) -> str:
    """The phase's name in messages: its task, or its label and number in a run of several phases."""
    if started is None:
        return ""
    return (
        started.task
        if started.phases == 1
        else f"{started.label or started.task} {started.phase}/{started.phases}"
    )


def progress_of(ev: TrainEvent, started: TrainStarted | None) -> dict[str, Any]:
    """The job progress event of one training event (``started``: the event that began its phase)."""
    name = _name(started)
    phase = {"task": started.task if started else "", "label": started.label if started else "",
             "phase": ev.phase, "phases": ev.phases}
    if isinstance(ev, FeaturePass):
        rate = f", {ev.rows_per_second:.0f} rows/s, ETA {ev.eta:.0f} s" if ev.rows_done else ""
        return {"stage": "feature_pass", **phase, "rows_done": ev.rows_done, "rows_total": ev.rows_total,
                "eta_s": ev.eta, "message": f"{ev.message}: {ev.rows_done}/{ev.rows_total} rows{rate}"}
    if isinstance(ev, TrainStarted):
        cached = f"; cached {', '.join(ev.cached_layers)}" if ev.cached_layers else ""
        return {"stage": "train_started", **phase, "epoch": 0, "epochs": ev.epochs, "samples": ev.samples,
                "val_samples": ev.val_samples, "steps_per_epoch": ev.steps_per_epoch,
                "cached_layers": list(ev.cached_layers),
                "message": f"started {name}: {ev.samples} samples, {ev.steps_per_epoch} steps per "
                           f"epoch{cached}"}
    if isinstance(ev, EpochEnd):
        return {"stage": "epoch_end", **phase, "epoch": ev.epoch, "epochs": ev.epochs, "losses": ev.losses,
                "metrics": ev.metrics, "eta_s": ev.eta, "message": name}
    early = f", stopped early (best epoch {ev.best_epoch})" if ev.stopped_early else ""
    return {"stage": "train_finished", **phase, "epoch": ev.epochs_run, "epochs": ev.epochs_run,
            "metrics": ev.metrics, "eta_s": 0.0, "stopped_early": ev.stopped_early,
            "best_epoch": ev.best_epoch or 0, "message": f"finished {name}: {ev.epochs_run} epochs{early}"}


def job_progress(progress: Progress, cancel: threading.Event) -> Callable[[Any], None]:
    """A training ``progress`` callback that forwards events to a job and stops once ``cancel`` is set.

    Raising Cancelled from the callback also covers the moment after the last epoch: the final
    ``TrainFinished`` comes before the facade registers the model, so a cancel seen then registers
    nothing. A mapping is passed on as it is (an advisor's own job events).
    """
    started: TrainStarted | None = None

    def on_event(ev: Any) -> None:
        nonlocal started
        if cancel.is_set():
            raise Cancelled("cancelled during training; nothing was registered")
        if isinstance(ev, Mapping):
            progress(dict(ev))
        elif isinstance(ev, (FeaturePass, TrainStarted, EpochEnd, TrainFinished)):
            if isinstance(ev, TrainStarted):
                started = ev
            progress(progress_of(ev, started))

    return on_event


def train_event(ev: JobEvent) -> TrainEvent | None:
    """The training event a running job's event stands for (None: a state change or other progress).

    ``elapsed`` is not sent (0.0); ``eta`` is the server's estimate (0.0 when unknown).
    """
    if ev.state != "running":
        return None
    phase = {"phase": ev.phase or 1, "phases": ev.phases or 1}
    if ev.stage == "feature_pass":
        # elapsed is not sent; it is left so that rows_per_second reads 0 (unknown) on the client
        return FeaturePass(ev.rows_done, ev.rows_total, 0.0, max(ev.eta_s, 0.0),
                           ev.message.split(": ")[0], **phase)
    if ev.stage == "train_started":
        return TrainStarted(task=ev.task, epochs=ev.epochs, samples=ev.samples, val_samples=ev.val_samples,
                            steps_per_epoch=ev.steps_per_epoch, cached_layers=tuple(ev.cached_layers),
                            label=ev.label, **phase)
    if ev.stage == "epoch_end":
        return EpochEnd(ev.epoch, ev.epochs, dict(ev.losses), dict(ev.metrics), elapsed=0.0,
                        eta=max(ev.eta_s, 0.0), **phase)
    if ev.stage == "train_finished":
        return TrainFinished(epochs_run=ev.epoch, stopped_early=ev.stopped_early,
                             best_epoch=ev.best_epoch or None, metrics=dict(ev.metrics), **phase)
    return None
