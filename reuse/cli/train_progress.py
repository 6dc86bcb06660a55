"""A per-epoch progress bar on stderr, driven by the training events (the same stream gRPC forwards)."""

from __future__ import annotations

import sys
from typing import Any

from reuse.train.events import EpochEnd, FeaturePass, TrainEvent, TrainFinished, TrainStarted


def _fmt(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items())


def epoch_figures(event: EpochEnd) -> str:
    """An epoch's figures, each labelled with the mode it was measured in.

    The training figures are running means over the epoch's batches in training mode (dropout active,
    weights changing batch to batch), so they differ from the final figures the commands print, which
    are measured afterwards in inference mode; validation figures are measured in inference mode at the
    end of the epoch.
    """
    values = {**event.losses, **event.metrics}
    train = {k: v for k, v in values.items() if not k.startswith("val_")}
    val = {k: v for k, v in values.items() if k.startswith("val_")}
    text = f"(training mode) {_fmt(train)}"
    return f"{text}  (inference mode) {_fmt(val)}" if val else text


class ProgressBar:
    """Callable for ``progress=``: one bar per training phase; silent unless stderr is a terminal.

    The bar reads ``epoch N/M (training mode) loss ... accuracy ...``: see :func:`epoch_figures`.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None
        self._pass: Any = None
        self._pass_key: Any = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[info]}"), TextColumn("ETA {task.fields[eta]}"),
            console=Console(stderr=True), transient=False)
        self._progress.start()

    def __call__(self, event: TrainEvent) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._start()
        p = self._progress
        if isinstance(event, FeaturePass):
            self._feature_pass(p, event)
            return
        if isinstance(event, TrainStarted):
            name = event.label or event.task
            if event.phases > 1 and not event.label:
                name = f"{name} {event.phase}/{event.phases}"
            self._task = p.add_task(name, total=event.epochs, info="", eta="?", unit="epoch")
        elif isinstance(event, EpochEnd) and self._task is not None:
            p.update(self._task, completed=event.epoch, info=epoch_figures(event), eta=f"{event.eta:.1f}s",
                     unit=f"epoch {event.epoch}/{event.epochs}")
        elif isinstance(event, TrainFinished) and self._task is not None:
            p.update(self._task, total=event.epochs_run, completed=event.epochs_run, eta="done")

    def _feature_pass(self, p: Any, event: FeaturePass) -> None:
        """The one pass over the data that computes a frozen part's features: rows, rows/s and ETA."""
        name = event.message.split(" -> ")[0]
        key = (name, event.phase)
        if self._pass is None or key != self._pass_key:
            self._pass_key = key
            self._pass = p.add_task(name, total=max(event.rows_total, 1), info="", eta="?", unit="")
        rate = (
            f"{event.rows_per_second:.0f} rows/s -> {event.message.split(' -> ')[-1]}"
            if event.rows_done
            else (event.message.split(" -> ")[-1])
        )
        p.update(self._pass, completed=event.rows_done,
                 info=f"{event.rows_done}/{event.rows_total} rows, {rate}",
                 eta=f"{event.eta:.1f}s" if event.rows_done < event.rows_total else "done")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
