"""``reuse quickstart``: the end-to-end walk-through that ``make run`` starts."""

from __future__ import annotations

from pathlib import Path

import click

from reuse.cli.common import local_only
from reuse.cli.train_progress import ProgressBar
from reuse.config import ENV_STORE


@click.command("quickstart")
@click.option("--store", "store", type=click.Path(file_okay=False), default=None,
              help=f"Store folder to use (default: a fresh temporary folder; {ENV_STORE} is ignored here).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None,
              help="Training epochs of the new head and of the from-scratch network (default 100; "
                   "30 with --quick). Fine-tuning runs half as many.")
@click.option("--quick", is_flag=True, help="Fewer epochs, two seeds in the comparison, no advisor run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--example", type=click.Path(dir_okay=False), default=None,
              help="The example model file (default: models/digits-base/v1.h5 of the repository).")
@local_only("quickstart")
def quickstart_cmd(store: str | None, epochs: int | None, quick: bool, quiet: bool,
                   example: str | None) -> None:
    """Walk through the product on scikit-learn's digits: register the shipped example network, preview
    a scope, build a network for digits 5-9 from its reused layers, train and fine-tune it, compare with
    training from scratch, serve it over gRPC and call it. Exits 1 if any step fails."""
    from reuse.cli.quickstart_progress import RunsBar
    from reuse.quickstart import QuickstartOptions, run_quickstart

    options = QuickstartOptions.quick(epochs) if quick else QuickstartOptions.full(epochs)
    run_quickstart(store, options=options, say=click.echo, example=Path(example) if example else None,
                   progress=lambda: ProgressBar(False if quiet else None),
                   step_progress=lambda runs: RunsBar(runs, enabled=False if quiet else None))


COMMANDS = [quickstart_cmd]
