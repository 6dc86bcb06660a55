"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
from typing import Any

import click

from reuse.config import ENV_STORE

store_option = click.option(
    "--store",
    "store",
    envvar=ENV_STORE,
    type=click.Path(file_okay=False),
    default=None,
    show_envvar=True,
    help="Model store folder (default: ./models).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def get_service(store: str | None):
    from reuse.service import Service

    return Service(store)
