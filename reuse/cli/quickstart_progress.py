"""One progress bar on stderr for a quickstart step of many training runs (step 5: the comparison's runs,
then the advisor's), counting finished runs; silent unless stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any

from reuse.advise.events import AdviceStarted, RunFinished, RunProgress
from reuse.train.events import EpochEnd, TrainFinished, TrainStarted


class RunsBar:
    """Callable for ``progress=`` of every run of the step: plain training events (one run each, counted
    at its last phase's ``TrainFinished``) and the advisor's events (its runs counted at ``RunFinished``;
    ``AdviceStarted`` corrects the planned total to what the advisor actually plans)."""

    def __init__(self, runs: int, *, title: str = "step 5", enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = runs
        self.done = 0
        self.title = title
        self._progress: Any = None
        self._task: Any = None
        self._advice_done = 0
        self._run = ""

    def __enter__(self) -> RunsBar | None:
        if not self.enabled:
            return None  # no callback at all: each run is then one compiled call (reuse.train.engine)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(self.title), BarColumn(bar_width=30),
            TextColumn("run {task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.title, total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _show(self, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=self.total, info=info)

    def __call__(self, event: Any) -> None:
        if isinstance(event, TrainStarted):
            self._run = " ".join(x for x in (event.task, event.label) if x)  # e.g. "finetune seed 1"
            self._show(f"{self._run}: starting")
        elif isinstance(event, EpochEnd):
            self._show(f"{self._run}: epoch {event.epoch}/{event.epochs}")
        elif isinstance(event, TrainFinished):
            if event.phase == event.phases:
                self.done += 1
            self._show(f"{self._run}: done")
        elif isinstance(event, AdviceStarted):
            self.total = self.done + event.runs
            self._show(f"advisor: {event.runs} runs")
        elif isinstance(event, RunProgress) and isinstance(event.event, EpochEnd):
            self._show(f"advisor {event.candidate}, seed {event.seed}: epoch {event.event.epoch}")
        elif isinstance(event, RunFinished):
            self.done += 1
            self._show(f"advisor {event.candidate}, seed {event.seed}: {event.score:.4f}")
