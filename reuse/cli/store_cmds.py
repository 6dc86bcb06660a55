"""Store commands: register, list, show, delete, export, store check."""

from __future__ import annotations

import click

from reuse.cli.common import emit_json, get_service, json_option, server_option, store_option


@click.command("list")
@store_option
@server_option
@json_option
def list_cmd(store: str | None, as_json: bool) -> None:
    """List the models in the store (latest version of each)."""
    infos = get_service(store).list_models()
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    for i in infos:
        click.echo(f"{i.name}:{i.version}\t{i.created}\t{i.description}")


COMMANDS = [list_cmd]
