"""``reuse quickstart``: the end-to-end walk-through that ``make run`` starts."""

from __future__ import annotations

import click

from reuse.config import ENV_STORE


@click.command("quickstart")
@click.option("--store", "store", type=click.Path(file_okay=False), default=None,
              help=f"Store folder to use (default: a fresh temporary folder; {ENV_STORE} is ignored here).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=30, show_default=True,
              help="Training epochs for the example network.")
def quickstart_cmd(store: str | None, epochs: int) -> None:
    """Train a small network on scikit-learn's digits, register, list, show and export it."""
    from reuse.quickstart import run_quickstart

    run_quickstart(store, epochs=epochs, say=click.echo)


COMMANDS = [quickstart_cmd]
