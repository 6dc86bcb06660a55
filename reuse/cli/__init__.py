"""The ``reuse`` command line. It talks only to :mod:`reuse.service`."""

from __future__ import annotations

import os
import sys

import click

from reuse.errors import ReuseError
from reuse.text import first_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ReuseGroup(click.Group):
    """Turns every :class:`ReuseError` into a one-line ``Error: ...`` and exit code 1, in one place."""

    # Commands that only read the store's index or talk to a server: no deep-learning backend needed, so
    # no 4-5 s TensorFlow import (tests/cli/test_cli_startup.py checks that they stay free of it).
    LIGHT_COMMANDS = frozenset({"list", "versions", "show", "layers", "delete", "store", "jobs",
                                "job", "lineage"})

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and name not in self.LIGHT_COMMANDS and not {"--help", "-h"} & set(rest):
            from reuse.cli._quiet_backend import import_backend_quietly

            import_backend_quietly()
        return name, cmd, rest

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ReuseError as exc:
            raise click.ClickException(first_line(exc)) from exc


@click.group(cls=ReuseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reuse")
def cli() -> None:
    """Build new Keras networks from the lower layers of ones you already trained."""


def _register_commands() -> None:
    from reuse.cli import (
        advise_cmds,
        build_cmds,
        ensemble_cmds,
        quickstart_cmds,
        rank_cmds,
        serve_cmds,
        store_cmds,
        train_cmds,
    )

    for module in (store_cmds, build_cmds, ensemble_cmds, train_cmds, advise_cmds, rank_cmds, serve_cmds,
                   quickstart_cmds):
        for cmd in module.COMMANDS:
            cli.add_command(cmd)


_register_commands()


def main() -> None:
    sys.exit(cli.main(prog_name="reuse"))
