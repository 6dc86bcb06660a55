"""Progress of ``reuse advise`` on stderr: a bar over all runs on a terminal, one line per finished run
otherwise (so logs show how far it got)."""

from __future__ import annotations

import sys
from typing import Any

import click

from reuse.advise.events import AdviceFinished, AdviceStarted, RunFinished, RunProgress
from reuse.train.events import EpochEnd


class AdviceProgressBar:
    """Callable for ``progress=``. ``enabled``: ``None`` shows a bar on a terminal and lines elsewhere,
    ``False`` shows nothing."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = enabled is not False
        self.bar = sys.stderr.isatty() if enabled is None else bool(enabled and sys.stderr.isatty())
        self._progress: Any = None
        self._task: Any = None
        self.metric = ""

    def __enter__(self) -> AdviceProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        info = TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis"))
        self._progress = Progress(TextColumn("advise"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TimeRemainingColumn(), info, console=Console(stderr=True))
        self._progress.start()
        self._task = self._progress.add_task("advise", total=total, info="")

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if isinstance(event, AdviceStarted):
            self.metric = event.metric
            if self.bar:
                self.close()  # a shortlist across models runs one advice per model
                self._start(event.runs)
            else:
                click.echo(f"advise: {event.runs} runs ({len(event.candidates)} candidates x "
                           f"{len(event.seeds)} seeds) on {event.jobs} job(s)", err=True)
        elif (
            isinstance(event, RunProgress)
            and self._progress is not None
            and isinstance(event.event, EpochEnd)
        ):
            e = event.event
            loss = e.losses.get("val_loss", e.losses.get("loss", float("nan")))
            self._progress.update(self._task,
                                  info=f"{event.candidate} s{event.seed} epoch {e.epoch} loss {loss:.3f}")
        elif isinstance(event, RunFinished):
            text = (f"[{event.done}/{event.total}] {event.candidate}, seed {event.seed}: {self.metric} "
                    f"{event.score:.4f} ({event.seconds:.2f} s)")
            if self._progress is not None:
                self._progress.update(self._task, completed=event.done,
                                      info=f"{event.candidate} s{event.seed}: {event.score:.4f}")
            else:
                click.echo(text, err=True)
        elif isinstance(event, AdviceFinished) and self._progress is None and event.stopped:
            click.echo(f"advise: stopped ({event.stopped}) after {event.done} of {event.total} runs",
                       err=True)
        elif self._progress is None:  # the ranking before a --shortlist
            from reuse.rank.ranking import describe

            line = describe(event)
            if line:
                click.echo(f"shortlist: {line}", err=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
