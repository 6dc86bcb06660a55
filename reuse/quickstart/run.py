"""The walk-through in order: six steps, each timed, the first failure ends the run."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reuse.quickstart import plan
from reuse.quickstart.compare import Comparison, compare
from reuse.quickstart.example import example_path
from reuse.quickstart.output import Out, Say, pct
from reuse.quickstart.serving import ServeResult, serve_and_call
from reuse.quickstart.steps import (
    ProgressFactory,
    ReuseRun,
    StepProgressFactory,
    build_new,
    no_progress,
    no_step_progress,
    preview_scope,
    register_example,
    train_and_finetune,
)
from reuse.service import Service
from reuse.text import table

TITLES = (
    "Register the example network shipped in models/",
    f"Preview the scope '{plan.SCOPE}'",
    "Build a new network: reused hidden1-3 (frozen) + a new head, for digits 5-9",
    "Train the new head, then fine-tune",
    "Compare with the same architecture trained from scratch",
    "Serve over gRPC (KServe v2) and call it with reuse.client",
)


@dataclass
class QuickstartResult:
    """What a walk-through produced; ``steps`` holds (title, seconds) for every step that finished."""

    store: Path
    base: str = ""
    scope_matched: list[str] = field(default_factory=list)
    built: str = ""
    run: ReuseRun | None = None
    comparison: Comparison | None = None
    served: ServeResult | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def run_quickstart(store: str | os.PathLike[str] | None = None, *,
                   options: plan.QuickstartOptions | None = None, say: Say = print,
                   progress: ProgressFactory = no_progress, example: Path | None = None,
                   step_progress: StepProgressFactory = no_step_progress) -> QuickstartResult:
    """Run the six steps in order; raise at the first that fails (after saying which).

    Args:
        store: the store folder; a fresh temporary folder when None.
        options: epochs, seeds (default :class:`QuickstartOptions`).
        say: where output lines go.
        progress: makes a progress callback (a context manager) for each training run of step 4.
        step_progress: makes one progress callback for all of step 5's runs, given how many are planned
            (the comparison's and the advisor's; see :data:`reuse.quickstart.steps.StepProgressFactory`).
        example: the example model file (default: the one shipped in ``models/``).
    """
    t0 = time.perf_counter()
    options = options or plan.QuickstartOptions()
    root = Path(store) if store is not None else Path(tempfile.mkdtemp(prefix="reuse-quickstart-")) / "models"
    say(f"reuse quickstart: store {root}"
        + ("  (a fresh temporary folder; --store PATH to choose one)" if store is None else ""))
    service = Service(root)
    out = Out(say, len(TITLES))
    result = QuickstartResult(store=root)

    def step(number: int, fn: Callable[[], Any]) -> Any:
        out.heading(number, TITLES[number - 1])
        start = time.perf_counter()
        try:
            value = fn()
        except BaseException:
            say(f"Step {number} failed: {TITLES[number - 1]}")
            raise
        result.steps.append((TITLES[number - 1], time.perf_counter() - start))
        return value

    result.base = step(1, lambda: register_example(service, out, example or example_path())).ref
    result.scope_matched = step(2, lambda: preview_scope(service, out, result.base))
    built = step(3, lambda: build_new(service, out, result.base))
    result.built = built.ref
    result.run = step(4, lambda: train_and_finetune(service, out, built, options, progress))
    run = result.run
    result.comparison = step(5, lambda: compare(service, out, result.base, run, options, step_progress))
    result.served = step(6, lambda: serve_and_call(root, out, run.finetuned.info.ref))
    result.seconds = time.perf_counter() - t0
    _summary(service, out, result, run, result.comparison, result.served)
    return result


def _summary(service: Service, out: Out, result: QuickstartResult, run: ReuseRun, comparison: Comparison,
             served: ServeResult) -> None:
    out.say("")
    out.say("Summary")
    rows = [(i.name, i.version, f"{i.params:,}" if i.params is not None else "-", _made_by(i.lineage))
            for i in service.list_models()]
    out.line(f"reuse list --store {result.store}:")
    out.table(("MODEL", "LATEST", "PARAMS", "LATEST MADE BY"), rows, right=(1, 2))
    out.line(f"new task, held-out test accuracy: frozen {pct(run.frozen_accuracy)}, fine-tuned "
             f"{pct(run.finetuned_accuracy)}, served over gRPC {pct(served.accuracy)}")
    out.line(f"reuse vs scratch: {comparison.verdict}")
    for line in table(("STEP", "SECONDS"),
                      [(t, f"{s:.1f}") for t, s in result.steps], right=(1,)).splitlines():
        out.say(f"    {line}")
    out.say(f"Every step succeeded in {result.seconds:.1f} s. The store stays in {result.store}; "
            f"try: reuse show {run.finetuned.info.ref} --store {result.store}")


def _made_by(lineage: dict[str, Any] | None) -> str:
    steps = (lineage or {}).get("steps") or []
    if steps:
        return str(steps[-1].get("op"))
    return str((lineage or {}).get("operation") or "register")
